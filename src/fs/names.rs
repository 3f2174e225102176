//! How remote names become POSIX names, as `TREE.md` fixes it:
//! invalid names are escaped deterministically, over-long ones shortened with
//! the id suffix, and duplicates in one directory get a stable `~id` suffix.
//!
//! Escapes (reversed by [`to_remote`]): `/` → `／` (U+FF0F), NUL → `␀`
//! (U+2400), and a leading `.` of `.`, `..` or a reserved hidden name → `．`
//! (U+FF0E).

use std::collections::HashMap;

/// Names reserved for hidden views: never shown for a remote object.
pub const RESERVED: &[&str] = &[".trash", ".revisions", ".posts", ".comments", ".messages"];

/// Longest file name a POSIX tool accepts, in bytes.
pub const NAME_MAX: usize = 255;

const SLASH: char = '\u{FF0F}';
const NUL: char = '\u{2400}';
const DOT: char = '\u{FF0E}';

/// Escapes one remote name into a valid POSIX name (not yet length-checked).
pub fn escape(remote: &str) -> String {
    let mut s: String = remote
        .chars()
        .map(|c| match c {
            '/' => SLASH,
            '\0' => NUL,
            c => c,
        })
        .collect();
    if s.is_empty() {
        s.push('_');
    }
    if s == "." || s == ".." || RESERVED.contains(&s.as_str()) {
        s.replace_range(0..1, &DOT.to_string());
    }
    s
}

/// Turns a POSIX name given by a user (create, mkdir, rename) back into the
/// remote name.
pub fn to_remote(local: &str) -> String {
    let mut s: String = local
        .chars()
        .map(|c| match c {
            SLASH => '/',
            NUL => '\0',
            c => c,
        })
        .collect();
    if let Some(rest) = s.strip_prefix(DOT) {
        let undotted = format!(".{rest}");
        if undotted == "." || undotted == ".." || RESERVED.contains(&undotted.as_str()) {
            s = undotted;
        }
    }
    s
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
pub fn check_local(name: &str) -> Result<(), super::FsError> {
    if name.len() > NAME_MAX {
        return Err(super::FsError::NameTooLong);
    }
    if name.is_empty() || name == "." || name == ".." || name.contains('/') {
        return Err(super::FsError::Invalid(format!("bad name {name:?}")));
    }
    if RESERVED.contains(&name) {
        return Err(super::FsError::NotPermitted);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

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
