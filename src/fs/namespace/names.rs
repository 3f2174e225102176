//! How remote names become POSIX names, as `TREE.md` fixes it:
//! invalid names are escaped deterministically, over-long ones shortened with
//! the id suffix, and duplicates in one directory get a stable `~id` suffix.
//!
//! Escapes (reversed by [`to_remote`]): `/` → `／` (U+FF0F), NUL → `␀`
//! (U+2400), and a leading `.` of `.`, `..` or a reserved hidden name → `．`
//! (U+FF0E). A remote name that holds one of these characters literally
//! gets `⧵` (U+29F5) before it, so that every remote name comes back
//! unchanged (`／x.txt` stays `／x.txt` through a move away and back); `⧵`
//! is itself quoted only where it would otherwise be read as a quote, so a
//! name a user types is stored as typed.

use std::collections::HashMap;

/// Names reserved for hidden views: never shown for a remote object.
pub const RESERVED: &[&str] = &[".trash", ".revisions", ".posts", ".comments", ".messages"];

/// Longest file name a POSIX tool accepts, in bytes.
pub const NAME_MAX: usize = 255;

const SLASH: char = '\u{FF0F}';
const NUL: char = '\u{2400}';
const DOT: char = '\u{FF0E}';
const QUOTE: char = '\u{29F5}';

/// True for `.`, `..` and the reserved hidden names.
fn is_special(name: &str) -> bool {
    name == "." || name == ".." || RESERVED.contains(&name)
}

/// Escapes one remote name into a valid POSIX name (not yet length-checked).
pub fn escape(remote: &str) -> String {
    let chars: Vec<char> = remote.chars().collect();
    let mut s = String::with_capacity(remote.len());
    let dotted = is_special(remote);
    for (i, &c) in chars.iter().enumerate() {
        let next = chars.get(i + 1).copied();
        match c {
            '/' => s.push(SLASH),
            '\0' => s.push(NUL),
            '.' if i == 0 && dotted => s.push(DOT),
            SLASH | NUL => {
                s.push(QUOTE);
                s.push(c);
            }
            // A literal leading `．` before a special rest would read as an escape.
            DOT if i == 0 && is_special(&format!(".{}", &remote[c.len_utf8()..])) => {
                s.push(QUOTE);
                s.push(c);
            }
            QUOTE if next.is_some_and(|n| matches!(n, '/' | '\0' | SLASH | NUL | DOT | QUOTE)) => {
                s.push(QUOTE);
                s.push(c);
            }
            c => s.push(c),
        }
    }
    if s.is_empty() {
        s.push('_');
    }
    s
}

/// Turns a POSIX name given by a user (create, mkdir, rename) back into the
/// remote name.
pub fn to_remote(local: &str) -> String {
    let chars: Vec<char> = local.chars().collect();
    let mut s = String::with_capacity(local.len());
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match (c, chars.get(i + 1)) {
            (QUOTE, Some(&n)) if matches!(n, SLASH | NUL | DOT | QUOTE) => {
                s.push(n);
                i += 2;
                continue;
            }
            (SLASH, _) => s.push('/'),
            (NUL, _) => s.push('\0'),
            (DOT, _)
                if i == 0 && is_special(&format!(".{}", chars[1..].iter().collect::<String>())) =>
            {
                s.push('.')
            }
            (c, _) => s.push(c),
        }
        i += 1;
    }
    s
}

/// `report (conflict 2026-12-02 061500).pdf`: where a local change goes
/// when someone else changed the remote file first.
pub fn conflict_name(name: &str, when: chrono::DateTime<chrono::Local>) -> String {
    let (stem, ext) = split_ext(name);
    let suffix = format!(" (conflict {}){ext}", when.format("%Y-%m-%d %H%M%S"));
    format!(
        "{}{suffix}",
        truncate(stem, NAME_MAX.saturating_sub(suffix.len()))
    )
}

/// Splits `name.ext` into (`name`, `.ext`); a leading dot is not an extension.
fn split_ext(name: &str) -> (&str, &str) {
    match name.rfind('.') {
        Some(i) if i > 0 && name.len() - i <= 16 && !name[i..].contains(' ') => name.split_at(i),
        _ => (name, ""),
    }
}

/// `report.pdf` + `17` → `report~17.pdf`, shortened to fit [`NAME_MAX`].
pub fn with_suffix(name: &str, id: &str) -> String {
    let (stem, ext) = split_ext(name);
    let suffix = format!("~{id}{ext}");
    let budget = NAME_MAX.saturating_sub(suffix.len());
    format!("{}{suffix}", truncate(stem, budget))
}

fn truncate(s: &str, max_bytes: usize) -> &str {
    if s.len() <= max_bytes {
        return s;
    }
    let mut end = max_bytes;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Assigns a unique, valid, stable name to each item of one directory.
/// `items` are (remote name, id); the result is in the same order. Among
/// items with the same name, the one with the smallest id keeps the plain
/// name and the others get `~id`; names over 255 bytes always carry `~id`.
pub fn assign(items: &[(&str, &str)]) -> Vec<String> {
    let escaped: Vec<String> = items.iter().map(|(n, _)| escape(n)).collect();
    let mut groups: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, n) in escaped.iter().enumerate() {
        groups.entry(n.as_str()).or_default().push(i);
    }
    let mut out: Vec<String> = escaped.clone();
    let mut taken: HashMap<String, ()> = HashMap::new();
    for (i, name) in escaped.iter().enumerate() {
        let id = items[i].1;
        let group = &groups[name.as_str()];
        let first = group
            .iter()
            .min_by(|a, b| id_order(items[**a].1, items[**b].1))
            .copied()
            == Some(i);
        if name.len() > NAME_MAX || !first {
            out[i] = with_suffix(name, id);
        }
    }
    // A suffixed name may, rarely, collide with a real name: suffix again.
    for (i, name) in out.clone().iter().enumerate() {
        if taken.contains_key(name) {
            out[i] = with_suffix(name, items[i].1);
        }
        taken.insert(out[i].clone(), ());
    }
    out
}

/// Numeric ids in numeric order, others as strings.
fn id_order(a: &str, b: &str) -> std::cmp::Ordering {
    match (a.parse::<u64>(), b.parse::<u64>()) {
        (Ok(x), Ok(y)) => x.cmp(&y),
        _ => a.cmp(b),
    }
}

/// Checks a name given by a user for create/mkdir/rename.
/// No name of this tree is longer than `NAME_MAX` bytes: a longer one is
/// ENAMETOOLONG, as on a local disk (not "no such file").
pub fn check_length(name: &str) -> Result<(), crate::fs::FsError> {
    match name.len() > NAME_MAX {
        true => Err(crate::fs::FsError::NameTooLong),
        false => Ok(()),
    }
}

pub fn check_local(name: &str) -> Result<(), crate::fs::FsError> {
    check_length(name)?;
    if name.is_empty() || name == "." || name == ".." || name.contains('/') {
        return Err(crate::fs::FsError::Invalid(format!("bad name {name:?}")));
    }
    if RESERVED.contains(&name) {
        return Err(crate::fs::FsError::NotPermitted);
    }
    // A newline or another control character breaks scripts, logs and
    // the APIs' names alike: refused at create, never stored.
    if name.chars().any(char::is_control) {
        return Err(crate::fs::FsError::Invalid(format!(
            "control character in name {:?}",
            name.escape_debug().to_string()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_remote_name_comes_back_unchanged_and_typed_names_stay_as_typed() {
        let remote = [
            "a/b",
            ".",
            "..",
            ".trash",
            "x\0y",
            "plain.txt",
            ".hidden",
            "／x.txt",
            "a／b/c",
            "．trash",
            "．x",
            "⧵",
            "a⧵b",
            "⧵／",
            "⧵/",
            "/⧵",
            "⧵⧵．",
            "␀",
            "．.",
            "x．trash",
        ];
        for n in remote {
            let local = escape(n);
            assert!(
                !local.contains('/') && !local.contains('\0'),
                "{n:?} → {local:?}"
            );
            assert_eq!(to_remote(&local), n, "{n:?} → {local:?}");
        }
        for typed in ["a／b", "．x", "a⧵b", "⧵", "notes.txt", "．．"] {
            assert_eq!(escape(&to_remote(typed)), typed, "{typed:?}");
        }
    }

    #[test]
    fn control_characters_are_refused_in_new_names() {
        for n in ["a\nb", "tab\there", "bell\u{7}", "del\u{7f}"] {
            assert!(
                matches!(check_local(n), Err(crate::fs::FsError::Invalid(_))),
                "{n:?}"
            );
        }
        assert!(check_local("ünïcödé ok.txt").is_ok());
    }

    #[test]
    fn escapes_are_reversible() {
        for n in ["a/b", ".", "..", ".trash", "x\0y", "plain.txt", ".hidden"] {
            let e = escape(n);
            assert!(!e.contains('/') && e != "." && e != ".." && !RESERVED.contains(&e.as_str()));
            assert_eq!(to_remote(&e), n, "{n:?} -> {e:?}");
        }
    }

    #[test]
    fn duplicates_get_stable_suffix() {
        let names = assign(&[("report.pdf", "17"), ("report.pdf", "3"), ("x", "5")]);
        assert_eq!(names, vec!["report~17.pdf", "report.pdf", "x"]);
        // Order of the listing does not change who keeps the plain name.
        let names = assign(&[("report.pdf", "3"), ("report.pdf", "17")]);
        assert_eq!(names, vec!["report.pdf", "report~17.pdf"]);
    }

    #[test]
    fn long_names_are_shortened_with_id() {
        let long = "é".repeat(200) + ".pdf";
        let names = assign(&[(long.as_str(), "42")]);
        assert!(names[0].len() <= NAME_MAX);
        assert!(names[0].ends_with("~42.pdf"), "{}", names[0]);
    }

    #[test]
    fn user_names_checked() {
        assert!(check_local("ok.txt").is_ok());
        assert!(check_local(".trash").is_err());
        assert!(check_local(&"a".repeat(256)).is_err());
    }
}
