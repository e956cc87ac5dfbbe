//! Lexical path normalization: a path's `.` and `..` resolved without
//! touching the file system, so that a decision about a path never depends
//! on what exists there (or on a symlink someone put there).

use std::path::{Component, Path, PathBuf};

/// `path` made absolute (against `/`) without `.` and `..`, lexically: `..`
/// at the root stays at the root.
pub fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for component in path.components() {
        match component {
            Component::Normal(part) => out.push(part),
            Component::ParentDir => {
                out.pop();
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dots_are_resolved_without_the_file_system() {
        assert_eq!(normalize(Path::new("/a/./b/../c")), Path::new("/a/c"));
        assert_eq!(normalize(Path::new("/../../etc")), Path::new("/etc"));
        assert_eq!(
            normalize(Path::new("/srv/staging/../../etc/shadow")),
            Path::new("/etc/shadow")
        );
    }
}
