//! Where a start's project may come from: the check of `projectPath`
//! against the operator's project roots.

use std::path::{Path, PathBuf};

use crate::paths::normalize;

use super::error::SessionError;

/// The longest project path accepted, in bytes.
const MAX_PROJECT_PATH: usize = 4096;

/// Where projects may come from.
#[derive(Debug, Clone, Default)]
pub struct ProjectRoots {
    /// The roots, resolved; empty with `allow_any` means anywhere, empty
    /// without it means nowhere.
    roots: Vec<PathBuf>,
    allow_any: bool,
}

impl ProjectRoots {
    /// Roots from the configuration, resolved now. The configuration's
    /// check has made sure they exist; one that vanished since is dropped
    /// (it can hold no project), with an error in the log.
    pub fn new(roots: &[PathBuf], allow_any: bool) -> ProjectRoots {
        let roots = roots
            .iter()
            .filter_map(|root| match root.canonicalize() {
                Ok(resolved) => Some(resolved),
                Err(e) => {
                    tracing::error!(root = %root.display(), error = %e, "project root is unusable");
                    None
                }
            })
            .collect();
        ProjectRoots { roots, allow_any }
    }

    fn inside(&self, path: &Path) -> bool {
        self.roots.is_empty() && self.allow_any || self.roots.iter().any(|r| path.starts_with(r))
    }

    /// Resolves `raw` to an existing directory inside the roots. The path
    /// must be absolute and free of NUL bytes; it is checked against the
    /// roots first as written (`..` removed lexically), so that the answer
    /// for a path outside them says nothing about what exists there, and
    /// again once symlinks are resolved. Returns the resolved path.
    pub fn resolve(&self, raw: &str) -> Result<PathBuf, SessionError> {
        let invalid = |why: String| Err(SessionError::InvalidInput(why));
        if raw.is_empty() {
            return invalid("projectPath must not be empty".into());
        }
        if raw.len() > MAX_PROJECT_PATH {
            return invalid(format!(
                "projectPath is longer than {MAX_PROJECT_PATH} bytes"
            ));
        }
        if raw.contains('\0') {
            return invalid("projectPath must not contain NUL bytes".into());
        }
        let path = Path::new(raw);
        if !path.is_absolute() {
            return invalid(format!("projectPath {raw:?} must be an absolute path"));
        }
        if self.roots.is_empty() && !self.allow_any {
            return invalid(
                "no project roots are configured, so no project can be copied: set \
                 session.project_roots (env VESSEL_PROJECT_ROOTS)"
                    .into(),
            );
        }
        let outside = || {
            invalid(format!(
                "projectPath {raw:?} is outside the allowed project roots"
            ))
        };
        if !self.inside(&normalize(path)) {
            return outside();
        }
        let resolved = match path.canonicalize() {
            Ok(resolved) => resolved,
            Err(e) => return invalid(format!("projectPath {raw:?} cannot be used: {e}")),
        };
        if !self.inside(&resolved) {
            return outside();
        }
        if !resolved.is_dir() {
            return invalid(format!("projectPath {raw:?} is not a directory"));
        }
        if resolved.to_str().is_none() {
            return invalid(format!("projectPath {raw:?} is not valid UTF-8"));
        }
        Ok(resolved)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        std::fs::create_dir_all(root.join("root/alice")).unwrap();
        std::fs::create_dir_all(root.join("outside/secret")).unwrap();
        (dir, root)
    }

    fn message(result: Result<PathBuf, SessionError>) -> String {
        match result {
            Err(SessionError::InvalidInput(message)) => message,
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn a_directory_inside_a_root_is_accepted_and_resolved() {
        let (_guard, dir) = scratch();
        let roots = ProjectRoots::new(&[dir.join("root")], false);
        let raw = format!("{}/root/./alice", dir.display());
        assert_eq!(roots.resolve(&raw).unwrap(), dir.join("root/alice"));
    }

    #[test]
    fn escapes_relative_paths_files_and_missing_paths_are_refused() {
        let (_guard, dir) = scratch();
        let roots = ProjectRoots::new(&[dir.join("root")], false);
        std::fs::write(dir.join("root/file"), b"x").unwrap();
        std::os::unix::fs::symlink(dir.join("outside"), dir.join("root/link")).unwrap();
        for raw in [
            format!("{}/root/../outside", dir.display()),
            format!("{}/root/link", dir.display()),
            format!("{}/outside", dir.display()),
            format!("{}/root/file", dir.display()),
            format!("{}/root/missing", dir.display()),
            "root/alice".to_string(),
            String::new(),
            "/tmp/a\0b".to_string(),
        ] {
            message(roots.resolve(&raw));
        }
    }

    #[test]
    fn outside_the_roots_the_answer_is_the_same_whether_a_path_exists_or_not() {
        let (_guard, dir) = scratch();
        let roots = ProjectRoots::new(&[dir.join("root")], false);
        let existing = message(roots.resolve(&format!("{}/outside/secret", dir.display())));
        let missing = message(roots.resolve(&format!("{}/outside/nothing", dir.display())));
        assert_eq!(
            existing.replace("secret", "X"),
            missing.replace("nothing", "X")
        );
        assert!(existing.contains("outside the allowed project roots"));
    }

    #[test]
    fn without_roots_nothing_is_allowed_unless_any_project_is() {
        let (_guard, dir) = scratch();
        let outside = format!("{}/outside", dir.display());
        let none = ProjectRoots::new(&[], false);
        assert!(message(none.resolve(&outside)).contains("session.project_roots"));
        let any = ProjectRoots::new(&[], true);
        assert!(any.resolve(&outside).is_ok());
        assert!(any.resolve("relative").is_err());
    }
}
