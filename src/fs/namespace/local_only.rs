//! Names whose files stay on this machine: editors' swap, backup and lock
//! files and similar scratch files. They are spooled, journaled (so they
//! survive a restart) and shown like any file, but never uploaded.

use globset::{Glob, GlobSet, GlobSetBuilder};

/// The default patterns, matched against a file's name (not its path).
pub const DEFAULT_PATTERNS: &[&str] = &[
    ".*.sw?",           // vim swap files: .name.swp, .swo, .swx
    ".*.sw??",          // vim's .swpx probe
    "*~",               // backups (vim, emacs, nano)
    "4913",             // vim's probe that the directory is writable
    ".~lock.*#",        // LibreOffice lock files
    ".#*",              // emacs lock files
    "#*#",              // emacs autosave files
    "sed??????",        // `sed -i`'s temporary file before it is renamed over the target
    ".goutputstream-*", // gedit's temporary file, renamed over the target
];

/// A compiled set of local-only patterns.
#[derive(Debug, Clone)]
pub struct LocalOnly {
    set: GlobSet,
}

impl LocalOnly {
    /// Compiles `patterns`; the error names the bad one.
    pub fn new<S: AsRef<str>>(patterns: &[S]) -> Result<LocalOnly, String> {
        let mut builder = GlobSetBuilder::new();
        for p in patterns {
            let glob = Glob::new(p.as_ref()).map_err(|e| format!("{:?}: {e}", p.as_ref()))?;
            builder.add(glob);
        }
        let set = builder.build().map_err(|e| e.to_string())?;
        Ok(LocalOnly { set })
    }

    /// The default patterns.
    pub fn defaults() -> LocalOnly {
        LocalOnly::new(DEFAULT_PATTERNS).expect("the defaults compile")
    }

    /// True when a file of this name stays local.
    pub fn matches(&self, name: &str) -> bool {
        self.set.is_match(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_catch_editor_files_and_spare_ordinary_names() {
        let l = LocalOnly::defaults();
        for n in [
            ".notes.txt.swp",
            ".notes.txt.swx",
            "notes.txt~",
            "4913",
            ".~lock.a.odt#",
            ".#a",
            "#a#",
            "sedAb12Cd",
            ".goutputstream-XYZ12",
        ] {
            assert!(l.matches(n), "{n}");
        }
        for n in [
            "notes.txt",
            "swap.sw",
            "4914",
            "sed.txt",
            "report.pdf",
            "a~b",
        ] {
            assert!(!l.matches(n), "{n}");
        }
    }

    #[test]
    fn a_bad_pattern_is_named() {
        let err = LocalOnly::new(&["ok*", "bad["]).unwrap_err();
        assert!(err.contains("bad["), "{err}");
    }
}
