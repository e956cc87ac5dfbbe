//! The signing key a host generates for itself when none is configured:
//! 32 random bytes, written as hex to `{data_dir}/signing.key` with mode
//! 0600, and read back on every later start, so tokens outlive restarts.

use std::fs::OpenOptions;
use std::io::{ErrorKind, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The key file's name under the data directory.
pub const FILE_NAME: &str = "signing.key";

/// Why the key file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    /// It could not be read, created or written.
    #[error("signing key file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Others than its owner may read it, so it cannot be trusted as secret.
    #[error(
        "signing key file {path} has mode {mode:o}: others may read it; \
         run `chmod 600 {path}` or delete it to have a new one made"
    )]
    Exposed {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// It does not hold a key Vessel wrote.
    #[error(
        "signing key file {path} does not hold a key (64 hex digits); delete it to have a new one made"
    )]
    Malformed {
        /// The file.
        path: PathBuf,
    },
    /// The system could not provide random bytes.
    #[error("cannot generate a signing key: {0}")]
    Random(String),
}

/// What [`load_or_create`] found.
#[derive(Debug)]
pub struct KeyFile {
    /// The key, as the bytes that sign and verify.
    pub key: Vec<u8>,
    /// Where it is.
    pub path: PathBuf,
    /// Whether this call made it.
    pub created: bool,
}

/// Reads the key in `data_dir`, or makes one if there is none.
pub fn load_or_create(data_dir: &Path) -> Result<KeyFile, KeyFileError> {
    let path = data_dir.join(FILE_NAME);
    let io = |source| KeyFileError::Io {
        path: path.clone(),
        source,
    };
    match std::fs::metadata(&path) {
        Ok(meta) => {
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                return Err(KeyFileError::Exposed { path, mode });
            }
            let text = std::fs::read_to_string(&path).map_err(io)?;
            let key = text.trim();
            if key.len() != 64 || !key.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(KeyFileError::Malformed { path });
            }
            Ok(KeyFile {
                key: key.as_bytes().to_vec(),
                path,
                created: false,
            })
        }
        Err(error) if error.kind() == ErrorKind::NotFound => {
            std::fs::create_dir_all(data_dir).map_err(io)?;
            let key = hex(&random_bytes::<32>()?);
            // Written whole under a temporary name, then linked into place:
            // two hosts starting at once on one data_dir cannot both make a
            // key, and neither ever reads a half-written one.
            let tmp = data_dir.join(format!(".{FILE_NAME}.{}", hex(&random_bytes::<8>()?)));
            let mut file = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)
                .map_err(io)?;
            let written = file
                .write_all(format!("{key}\n").as_bytes())
                .and_then(|()| file.sync_all());
            let linked = written.and_then(|()| std::fs::hard_link(&tmp, &path));
            let _ = std::fs::remove_file(&tmp);
            match linked {
                Ok(()) => Ok(KeyFile {
                    key: key.into_bytes(),
                    path,
                    created: true,
                }),
                Err(error) if error.kind() == ErrorKind::AlreadyExists => load_or_create(data_dir),
                Err(error) => Err(io(error)),
            }
        }
        Err(error) => Err(io(error)),
    }
}

fn random_bytes<const N: usize>() -> Result<[u8; N], KeyFileError> {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes).map_err(|e| KeyFileError::Random(e.to_string()))?;
    Ok(bytes)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_made_once_with_mode_0600_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let made = load_or_create(dir.path()).unwrap();
        assert!(made.created);
        assert_eq!(made.key.len(), 64);
        let mode = std::fs::metadata(&made.path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let again = load_or_create(dir.path()).unwrap();
        assert!(!again.created);
        assert_eq!(again.key, made.key);
    }

    #[test]
    fn hosts_starting_together_share_one_whole_key() {
        let dir = tempfile::tempdir().unwrap();
        let keys: Vec<Vec<u8>> = std::thread::scope(|scope| {
            let starts: Vec<_> = (0..8)
                .map(|_| scope.spawn(|| load_or_create(dir.path()).unwrap().key))
                .collect();
            starts.into_iter().map(|s| s.join().unwrap()).collect()
        });
        assert!(keys.iter().all(|key| key == &keys[0] && key.len() == 64));
        // No temporary file is left behind.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn a_key_others_may_read_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let made = load_or_create(dir.path()).unwrap();
        std::fs::set_permissions(&made.path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let error = load_or_create(dir.path()).unwrap_err();
        assert!(
            matches!(error, KeyFileError::Exposed { mode: 0o644, .. }),
            "{error}"
        );
        // The message never holds the key.
        let key = String::from_utf8(made.key).unwrap();
        assert!(!error.to_string().contains(&key));
    }
}
