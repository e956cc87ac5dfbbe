//! Staging a project: the copy the host makes of a user's project before a
//! VM driver copies it into the VM.
//!
//! A VM driver's copy may run with privilege (`ignite cp` runs as root
//! through sudo, and follows symlinks). Handing it the user's directory
//! would let a project pull any host file into its VM (`k ->
//! /root/.ssh/id_rsa`, `r -> /`), and a project changed between the check
//! and the copy would defeat any check. So the host, with its own rights
//! only, reads the project through a directory handle that cannot be left
//! (`cap-std`: every path, symlinks included, is resolved inside the
//! project, and an escape is an error), and writes a copy it owns under
//! `{data_dir}/staging/` holding only directories and regular files. The
//! driver copies that copy; nothing in it is the user's to change.
//!
//! Entry by entry:
//! - directories and regular files are copied (files opened non-blocking
//!   and checked again once open, so a file swapped for a FIFO cannot hang
//!   the copy);
//! - a symlink to a regular file inside the project is copied as that file;
//! - a symlink that leaves the project, dangles or points at a directory,
//!   and devices, FIFOs and sockets are *unsafe entries*: skipped and
//!   logged, or refused (`session.unsafe_project_entries`);
//! - the total bytes and entries are bounded (`session.project_max_bytes`,
//!   `session.project_max_entries`).

use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use cap_std::ambient_authority;
use cap_std::fs::{Dir, OpenOptions};

use crate::config::UnsafeEntries;

/// How a project is staged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StagingPolicy {
    /// What to do with unsafe entries.
    pub unsafe_entries: UnsafeEntries,
    /// The most bytes of files.
    pub max_bytes: u64,
    /// The most files and directories.
    pub max_entries: u64,
}

/// Why a project could not be staged.
#[derive(Debug, thiserror::Error)]
pub enum StagingError {
    /// The project holds an unsafe entry and the policy refuses them.
    #[error(
        "the project holds {path:?}, {what}; remove it (or have the operator set session.unsafe_project_entries = \"skip\")"
    )]
    Unsafe {
        /// The entry, relative to the project.
        path: String,
        /// What it is.
        what: &'static str,
    },
    /// The project is over a limit.
    #[error("the project is larger than allowed: {0}")]
    TooLarge(String),
    /// The project (or the staging area) could not be read or written.
    #[error("cannot stage the project: {0}")]
    Io(#[from] io::Error),
}

/// A staged copy of a project; removed when dropped.
#[derive(Debug)]
pub struct StagedProject {
    path: PathBuf,
    /// Files and directories copied.
    pub entries: u64,
    /// Bytes of files copied.
    pub bytes: u64,
    /// Unsafe entries left out, with what each was.
    pub skipped: Vec<(String, &'static str)>,
}

impl StagedProject {
    /// The staged copy's directory, for the VM driver.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for StagedProject {
    fn drop(&mut self) {
        if let Err(error) = std::fs::remove_dir_all(&self.path)
            && error.kind() != io::ErrorKind::NotFound
        {
            tracing::warn!(path = %self.path.display(), %error, "cannot remove a staged project");
        }
    }
}

/// The running totals of one staging.
struct Walk<'a> {
    project: &'a Dir,
    policy: StagingPolicy,
    entries: u64,
    bytes: u64,
    skipped: Vec<(String, &'static str)>,
}

impl Walk<'_> {
    fn count_entry(&mut self) -> Result<(), StagingError> {
        self.entries += 1;
        if self.entries > self.policy.max_entries {
            return Err(StagingError::TooLarge(format!(
                "more than {} files and directories (session.project_max_entries)",
                self.policy.max_entries
            )));
        }
        Ok(())
    }

    fn unsafe_entry(&mut self, rel: &Path, what: &'static str) -> Result<(), StagingError> {
        let path = rel.display().to_string();
        match self.policy.unsafe_entries {
            UnsafeEntries::Refuse => Err(StagingError::Unsafe { path, what }),
            UnsafeEntries::Skip => {
                tracing::info!(event = "project.skipped", path = %path.escape_debug(), what, "left an unsafe entry out of a project's copy");
                self.skipped.push((path, what));
                Ok(())
            }
        }
    }

    /// Copies the directory `rel` (relative to the project) into `out`.
    fn directory(&mut self, rel: &Path, out: &Path) -> Result<(), StagingError> {
        let listing = if rel.as_os_str().is_empty() {
            self.project.entries()?
        } else {
            self.project.read_dir(rel)?
        };
        let mut names: Vec<_> = listing
            .map(|entry| entry.map(|e| e.file_name()))
            .collect::<io::Result<_>>()?;
        names.sort();
        for name in names {
            let child = rel.join(&name);
            let target = out.join(&name);
            let meta = match self.project.symlink_metadata(&child) {
                Ok(meta) => meta,
                // Removed while we read: it is not part of the project now.
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e.into()),
            };
            let kind = meta.file_type();
            if kind.is_dir() {
                self.count_entry()?;
                std::fs::DirBuilder::new().mode(0o700).create(&target)?;
                self.directory(&child, &target)?;
            } else if kind.is_file() {
                self.file(&child, &target)?;
            } else if kind.is_symlink() {
                // Followed inside the project only: an escape is an error.
                match self.project.metadata(&child) {
                    Ok(meta) if meta.is_file() => self.file(&child, &target)?,
                    Ok(meta) if meta.is_dir() => {
                        self.unsafe_entry(&child, "a symlink to a directory")?
                    }
                    Ok(_) => self.unsafe_entry(&child, "a symlink to a special file")?,
                    Err(_) => self.unsafe_entry(&child, "a symlink that leaves the project")?,
                }
            } else {
                self.unsafe_entry(&child, "a device, FIFO or socket")?;
            }
        }
        Ok(())
    }

    /// Copies the regular file `rel` to `out`, within the byte budget.
    fn file(&mut self, rel: &Path, out: &Path) -> Result<(), StagingError> {
        let mut options = OpenOptions::new();
        options.read(true);
        cap_std::fs::OpenOptionsExt::custom_flags(&mut options, libc::O_NONBLOCK);
        let file = match self.project.open_with(rel, &options) {
            Ok(file) => file,
            Err(_) => return self.unsafe_entry(rel, "a symlink that leaves the project"),
        };
        if !file.metadata()?.is_file() {
            return self.unsafe_entry(rel, "a device, FIFO or socket");
        }
        self.count_entry()?;
        let mut writer = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(out)?;
        let allowed = self.policy.max_bytes - self.bytes;
        // One byte more than allowed tells "at the limit" from "over it".
        let copied = io::copy(&mut file.into_std().take(allowed + 1), &mut writer)?;
        if copied > allowed {
            return Err(StagingError::TooLarge(format!(
                "more than {} bytes of files (session.project_max_bytes)",
                self.policy.max_bytes
            )));
        }
        writer.flush()?;
        self.bytes += copied;
        Ok(())
    }
}

/// Copies the project at `source` into a new directory under
/// `staging_root` (made 0700 if missing), as the module docs describe.
pub fn stage(
    source: &Path,
    staging_root: &Path,
    name: &str,
    policy: StagingPolicy,
) -> Result<StagedProject, StagingError> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(staging_root)?;
    let unique = format!("{name}-{:016x}", rand_suffix()?);
    let path = staging_root.join(unique);
    std::fs::DirBuilder::new().mode(0o700).create(&path)?;
    // From here the directory is removed on every way out.
    let mut staged = StagedProject {
        path,
        entries: 0,
        bytes: 0,
        skipped: Vec::new(),
    };
    let project = Dir::open_ambient_dir(source, ambient_authority())?;
    let mut walk = Walk {
        project: &project,
        policy,
        entries: 0,
        bytes: 0,
        skipped: Vec::new(),
    };
    walk.directory(Path::new(""), &staged.path)?;
    staged.entries = walk.entries;
    staged.bytes = walk.bytes;
    staged.skipped = walk.skipped;
    Ok(staged)
}

/// 64 random bits, so staging directories' names cannot be predicted.
fn rand_suffix() -> io::Result<u64> {
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes).map_err(|e| io::Error::other(e.to_string()))?;
    Ok(u64::from_le_bytes(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn policy(unsafe_entries: UnsafeEntries) -> StagingPolicy {
        StagingPolicy {
            unsafe_entries,
            max_bytes: 1 << 20,
            max_entries: 1000,
        }
    }

    fn hostile_project(dir: &Path) -> PathBuf {
        let project = dir.join("project");
        std::fs::create_dir_all(project.join("src/deep")).unwrap();
        std::fs::write(project.join("README.md"), "hello").unwrap();
        std::fs::write(project.join("src/deep/main.rs"), "fn main() {}").unwrap();
        std::fs::write(dir.join("secret"), "host secret").unwrap();
        symlink(dir.join("secret"), project.join("key")).unwrap();
        symlink("/", project.join("root")).unwrap();
        symlink("/etc/hostname", project.join("hostname")).unwrap();
        symlink("../../secret", project.join("src/relative-escape")).unwrap();
        symlink("README.md", project.join("readme-link")).unwrap();
        symlink("src", project.join("src-link")).unwrap();
        symlink("missing", project.join("dangling")).unwrap();
        let fifo = project.join("fifo");
        let c_path = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0);
        project
    }

    fn listing(root: &Path) -> Vec<String> {
        let mut out = Vec::new();
        let mut stack = vec![root.to_path_buf()];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                let meta = std::fs::symlink_metadata(&path).unwrap();
                assert!(
                    meta.is_dir() || meta.is_file(),
                    "{} is neither a file nor a directory",
                    path.display()
                );
                if meta.is_dir() {
                    stack.push(path.clone());
                }
                out.push(path.strip_prefix(root).unwrap().display().to_string());
            }
        }
        out.sort();
        out
    }

    #[test]
    fn only_the_projects_own_files_and_directories_are_staged() {
        let dir = tempfile::tempdir().unwrap();
        let project = hostile_project(dir.path());
        let staged = stage(
            &project,
            &dir.path().join("staging"),
            "t",
            policy(UnsafeEntries::Skip),
        )
        .unwrap();
        assert_eq!(
            listing(staged.path()),
            [
                "README.md",
                "readme-link",
                "src",
                "src/deep",
                "src/deep/main.rs"
            ]
        );
        assert_eq!(
            std::fs::read_to_string(staged.path().join("readme-link")).unwrap(),
            "hello"
        );
        let mut skipped: Vec<&str> = staged.skipped.iter().map(|(p, _)| p.as_str()).collect();
        skipped.sort();
        assert_eq!(
            skipped,
            [
                "dangling",
                "fifo",
                "hostname",
                "key",
                "root",
                "src-link",
                "src/relative-escape"
            ]
        );
        let path = staged.path().to_path_buf();
        drop(staged);
        assert!(!path.exists(), "the staged copy is removed when dropped");
    }

    #[test]
    fn the_refuse_policy_fails_on_the_first_unsafe_entry() {
        let dir = tempfile::tempdir().unwrap();
        let project = hostile_project(dir.path());
        let staging = dir.path().join("staging");
        let error = stage(&project, &staging, "t", policy(UnsafeEntries::Refuse)).unwrap_err();
        assert!(matches!(error, StagingError::Unsafe { .. }), "{error}");
        // Nothing is left behind.
        assert_eq!(std::fs::read_dir(&staging).unwrap().count(), 0);
    }

    #[test]
    fn projects_over_the_limits_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let project = dir.path().join("big");
        std::fs::create_dir_all(&project).unwrap();
        std::fs::write(project.join("a"), vec![0u8; 600]).unwrap();
        std::fs::write(project.join("b"), vec![0u8; 600]).unwrap();
        let staging = dir.path().join("staging");
        let bytes = StagingPolicy {
            max_bytes: 1000,
            ..policy(UnsafeEntries::Skip)
        };
        assert!(matches!(
            stage(&project, &staging, "t", bytes),
            Err(StagingError::TooLarge(_))
        ));
        let entries = StagingPolicy {
            max_entries: 1,
            ..policy(UnsafeEntries::Skip)
        };
        assert!(matches!(
            stage(&project, &staging, "t", entries),
            Err(StagingError::TooLarge(_))
        ));
        let exact = StagingPolicy {
            max_bytes: 1200,
            max_entries: 2,
            ..policy(UnsafeEntries::Skip)
        };
        let staged = stage(&project, &staging, "t", exact).unwrap();
        assert_eq!((staged.entries, staged.bytes), (2, 1200));
    }
}
