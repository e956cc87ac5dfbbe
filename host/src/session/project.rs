//! Validation of the project directory a start copies into the VM.

use std::path::{Path, PathBuf};

use super::error::SessionError;

/// The longest project path accepted, in bytes.
const MAX_PROJECT_PATH: usize = 4096;

/// Where projects may come from: a list of root directories, or anywhere
/// when the list is empty.
#[derive(Debug, Clone, Default)]
pub struct ProjectRoots {
    roots: Vec<PathBuf>,
}

impl ProjectRoots {
    /// Roots from the configuration, resolved now (a root that does not
    /// exist can hold no project and is dropped with a warning).
    pub fn new(roots: &[PathBuf]) -> ProjectRoots {
        let roots = roots
            .iter()
            .filter_map(|root| match root.canonicalize() {
                Ok(resolved) => Some(resolved),
                Err(e) => {
                    tracing::warn!(root = %root.display(), error = %e, "project root is unusable");
                    None
                }
            })
            .collect();
        ProjectRoots { roots }
    }

    /// Whether roots are configured (when not, any directory is allowed).
    pub fn is_restricted(&self) -> bool {
        !self.roots.is_empty()
    }

    /// Resolves `raw` to an existing directory inside the roots: it must be
    /// absolute, free of NUL bytes, and after resolving symlinks and `..`,
    /// inside a root. Returns the resolved path.
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
        let resolved = match path.canonicalize() {
            Ok(resolved) => resolved,
            Err(e) => return invalid(format!("projectPath {raw:?} cannot be used: {e}")),
        };
        if !resolved.is_dir() {
            return invalid(format!("projectPath {raw:?} is not a directory"));
        }
        if self.is_restricted() && !self.roots.iter().any(|root| resolved.starts_with(root)) {
            return invalid(format!(
                "projectPath {raw:?} is outside the allowed project roots"
            ));
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

    fn scratch(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("vessel-project-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("root/alice")).unwrap();
        std::fs::create_dir_all(dir.join("outside")).unwrap();
        dir.canonicalize().unwrap()
    }

    #[test]
    fn a_directory_inside_a_root_is_accepted_and_resolved() {
        let dir = scratch("inside");
        let roots = ProjectRoots::new(&[dir.join("root")]);
        let raw = format!("{}/root/./alice", dir.display());
        assert_eq!(roots.resolve(&raw).unwrap(), dir.join("root/alice"));
    }

    #[test]
    fn escapes_relative_paths_files_and_missing_paths_are_refused() {
        let dir = scratch("escapes");
        let roots = ProjectRoots::new(&[dir.join("root")]);
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
            let err = roots.resolve(&raw).unwrap_err();
            assert!(
                matches!(err, SessionError::InvalidInput(_)),
                "{raw:?}: {err:?}"
            );
        }
    }

    #[test]
    fn without_roots_any_existing_absolute_directory_is_accepted() {
        let dir = scratch("anywhere");
        let roots = ProjectRoots::new(&[]);
        assert!(!roots.is_restricted());
        let outside = format!("{}/outside", dir.display());
        assert!(roots.resolve(&outside).is_ok());
        assert!(roots.resolve("relative").is_err());
    }
}
