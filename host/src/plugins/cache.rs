//! The compiled-plugin cache: native code that Vessel loads only if it
//! wrote it itself.
//!
//! A compiled component is machine code that runs as Vessel (which may run
//! ignite as root): whoever can put a file the host loads from here runs
//! code as Vessel. So:
//!
//! - the directory is created with mode 0700 and, before each use, must be
//!   a directory of the user Vessel runs as that no one else may write to;
//! - each entry is sealed: its file holds an HMAC-SHA256 tag, then the
//!   code. The tag covers the entry's name (which pins the component's
//!   source and the engine's configuration) and the code, under a secret
//!   key kept beside the directory in `<cache_dir>.key` (mode 0600). The
//!   tag is checked on the very bytes that are then loaded, so nothing can
//!   be swapped in between;
//! - entries are written to a temporary file with a random name, created
//!   exclusively (so never through a link planted in advance), and renamed
//!   into place, so readers see a whole entry or none, and any number of
//!   hosts may share the directory.
//!
//! Anything that fails a check is not loaded: the caller compiles again.

use std::fs::{DirBuilder, File, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};

/// The length of an entry's tag, at the start of its file.
const TAG_LEN: usize = 32;

/// What the tag covers before the name and the code, so that it can never
/// be confused with a MAC of anything else made with the key.
const TAG_DOMAIN: &[u8] = b"vessel compiled plugin v1\0";

/// Why the cache cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// A file or directory could not be read, created or written.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The cache path is not a directory.
    #[error("cache directory {path} is not a directory")]
    NotADirectory {
        /// The path.
        path: PathBuf,
    },
    /// The directory or the key belongs to another user, who could change it.
    #[error(
        "{path} belongs to uid {owner}, not to the user Vessel runs as (uid {uid}); \
         run `chown {uid} {path}` or choose another plugins.cache_dir"
    )]
    NotOwned {
        /// The directory or key file.
        path: PathBuf,
        /// Its owner.
        owner: u32,
        /// The user Vessel runs as.
        uid: u32,
    },
    /// Others than its owner may write to the directory.
    #[error(
        "cache directory {path} has mode {mode:o}: others may write to it; run `chmod 700 {path}`"
    )]
    OthersMayWrite {
        /// The directory.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// Others than its owner may read the key, so it cannot seal anything.
    #[error(
        "cache key file {path} has mode {mode:o}: others may read it; \
         run `chmod 600 {path}` or delete it to have a new one made"
    )]
    KeyExposed {
        /// The key file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The key file does not hold a key Vessel wrote.
    #[error(
        "cache key file {path} does not hold a key (64 hex digits); delete it to have a new one made"
    )]
    KeyMalformed {
        /// The key file.
        path: PathBuf,
    },
    /// The directory has no name to put the key file beside.
    #[error("cache directory {path} has no name to put its key file beside; name it explicitly")]
    NoKeyPath {
        /// The directory.
        path: PathBuf,
    },
    /// The system could not provide random bytes.
    #[error("cannot generate random bytes: {0}")]
    Random(String),
}

/// An opened cache: a directory that passed its checks, and the key that
/// seals its entries.
pub struct CompiledCache {
    dir: PathBuf,
    key: [u8; 32],
}

impl std::fmt::Debug for CompiledCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompiledCache")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

/// The key file of the cache in `dir`: `<dir>.key`, beside it (by default
/// `{data_dir}/cache.key`), so that it is not in the directory it guards.
pub fn key_file(dir: &Path) -> Option<PathBuf> {
    let mut name = dir.file_name()?.to_os_string();
    name.push(".key");
    Some(dir.with_file_name(name))
}

/// The name of the entry for a component whose source is `source`, compiled
/// by an engine whose compatibility hash is `engine_hash`.
pub fn entry_name(source: &[u8], engine_hash: u64) -> String {
    format!("{}-{engine_hash:016x}.cwasm", hex(&Sha256::digest(source)))
}

impl CompiledCache {
    /// Opens the cache in `dir`: creates it (mode 0700) if missing, checks
    /// it, and reads its key, making one if there is none.
    pub fn open(dir: &Path) -> Result<CompiledCache, CacheError> {
        create_private_dir(dir)?;
        check_dir(dir)?;
        let key_path = key_file(dir).ok_or_else(|| CacheError::NoKeyPath {
            path: dir.to_path_buf(),
        })?;
        let key = load_or_create_key(&key_path)?;
        Ok(CompiledCache {
            dir: dir.to_path_buf(),
            key,
        })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The code of entry `name`, if it is there and sealed with this
    /// cache's key; `None` otherwise (a reason other than absence is
    /// logged).
    pub fn load(&self, name: &str) -> Option<Vec<u8>> {
        let path = self.dir.join(name);
        let refuse = |reason: String| {
            tracing::warn!(
                event = "plugin_cache.rejected",
                path = %path.display(),
                %reason,
                "not loading compiled plugin; compiling it again"
            );
            None
        };
        if let Err(error) = check_dir(&self.dir) {
            return refuse(error.to_string());
        }
        let mut contents = match read_no_follow(&path) {
            Ok(contents) => contents,
            Err(error) if error.kind() == ErrorKind::NotFound => return None,
            Err(error) => return refuse(error.to_string()),
        };
        if contents.len() < TAG_LEN {
            return refuse("too short to hold a tag".into());
        }
        let code = contents.split_off(TAG_LEN);
        if self.mac(name, &code).verify_slice(&contents).is_err() {
            return refuse("its tag does not match: Vessel did not write it with this key".into());
        }
        Some(code)
    }

    /// Writes entry `name`, sealed, through a temporary file of its own.
    pub fn store(&self, name: &str, code: &[u8]) -> Result<(), CacheError> {
        check_dir(&self.dir)?;
        let tag = self.mac(name, code).finalize().into_bytes();
        let path = self.dir.join(name);
        write_new_then(&self.dir, name, &[&tag, code], |temp| {
            std::fs::rename(temp, &path)
        })
    }

    fn mac(&self, name: &str, code: &[u8]) -> Hmac<Sha256> {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.key)
            .expect("HMAC takes keys of any length");
        mac.update(TAG_DOMAIN);
        mac.update(name.as_bytes());
        mac.update(b"\0");
        mac.update(code);
        mac
    }
}

/// Creates `dir` with mode 0700 if it is missing (its parents with the
/// default mode).
fn create_private_dir(dir: &Path) -> Result<(), CacheError> {
    let io = |source| CacheError::Io {
        path: dir.to_path_buf(),
        source,
    };
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(io)?;
    }
    match DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => Ok(()),
        Err(error) if error.kind() == ErrorKind::AlreadyExists => Ok(()),
        Err(error) => Err(io(error)),
    }
}

/// Checks that `dir` is a directory of the user Vessel runs as that no one
/// else may write to.
fn check_dir(dir: &Path) -> Result<(), CacheError> {
    let meta = std::fs::metadata(dir).map_err(|source| CacheError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    if !meta.is_dir() {
        return Err(CacheError::NotADirectory {
            path: dir.to_path_buf(),
        });
    }
    check_owner(dir, &meta)?;
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o022 != 0 {
        return Err(CacheError::OthersMayWrite {
            path: dir.to_path_buf(),
            mode,
        });
    }
    Ok(())
}

fn check_owner(path: &Path, meta: &std::fs::Metadata) -> Result<(), CacheError> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let uid = unsafe { libc::geteuid() };
    if meta.uid() != uid {
        return Err(CacheError::NotOwned {
            path: path.to_path_buf(),
            owner: meta.uid(),
            uid,
        });
    }
    Ok(())
}

/// Reads the key at `path`, or makes one if there is none. The key appears
/// whole or not at all: it is written to a temporary file and linked into
/// place, which fails if another host made one first (whose key is then
/// read instead).
fn load_or_create_key(path: &Path) -> Result<[u8; 32], CacheError> {
    let io = |source| CacheError::Io {
        path: path.to_path_buf(),
        source,
    };
    match open_no_follow(path) {
        Ok(mut file) => {
            let meta = file.metadata().map_err(io)?;
            check_owner(path, &meta)?;
            let mode = meta.permissions().mode() & 0o7777;
            if mode & 0o077 != 0 {
                return Err(CacheError::KeyExposed {
                    path: path.to_path_buf(),
                    mode,
                });
            }
            let mut text = String::new();
            // 64 hex digits and a newline; anything longer is not a key.
            (&mut file)
                .take(128)
                .read_to_string(&mut text)
                .map_err(|_| CacheError::KeyMalformed {
                    path: path.to_path_buf(),
                })?;
            parse_key(text.trim()).ok_or_else(|| CacheError::KeyMalformed {
                path: path.to_path_buf(),
            })
        }
        Err(error) if error.kind() == ErrorKind::NotFound => {
            let mut key = [0u8; 32];
            getrandom::fill(&mut key).map_err(|e| CacheError::Random(e.to_string()))?;
            let dir = path.parent().unwrap_or(Path::new("."));
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let text = format!("{}\n", hex(&key));
            let linked = write_new_then(dir, &name, &[text.as_bytes()], |temp| {
                std::fs::hard_link(temp, path)
            });
            match linked {
                Ok(()) => Ok(key),
                Err(CacheError::Io { source, .. }) if source.kind() == ErrorKind::AlreadyExists => {
                    load_or_create_key(path)
                }
                Err(error) => Err(error),
            }
        }
        Err(error) => Err(io(error)),
    }
}

/// Writes `parts` to a new file in `dir` with a random name (mode 0600,
/// created exclusively), syncs it, hands its path to `publish` (which puts
/// it in place), and removes the temporary name if it is still there.
fn write_new_then(
    dir: &Path,
    name: &str,
    parts: &[&[u8]],
    publish: impl FnOnce(&Path) -> std::io::Result<()>,
) -> Result<(), CacheError> {
    let temp = dir.join(temp_name(name)?);
    let io = |path: &Path, source| CacheError::Io {
        path: path.to_path_buf(),
        source,
    };
    let written = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&temp)
        .and_then(|mut file| {
            for part in parts {
                file.write_all(part)?;
            }
            file.sync_all()
        });
    let published = written
        .map_err(|source| io(&temp, source))
        .and_then(|()| publish(&temp).map_err(|source| io(&dir.join(name), source)));
    // After a rename the name is gone already; after a link or a failure
    // it must go.
    let _ = std::fs::remove_file(&temp);
    published
}

/// A temporary name for `name` no one can guess in advance: 128 random
/// bits.
fn temp_name(name: &str) -> Result<String, CacheError> {
    let mut nonce = [0u8; 16];
    getrandom::fill(&mut nonce).map_err(|e| CacheError::Random(e.to_string()))?;
    Ok(format!(".{name}.{}.tmp", hex(&nonce)))
}

/// Opens `path` for reading unless it is a symbolic link; a FIFO planted
/// under the name does not block the open.
fn open_no_follow(path: &Path) -> std::io::Result<File> {
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
}

fn read_no_follow(path: &Path) -> std::io::Result<Vec<u8>> {
    let mut file = open_no_follow(path)?;
    if !file.metadata()?.is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    let mut contents = Vec::new();
    file.read_to_end(&mut contents)?;
    Ok(contents)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn parse_key(text: &str) -> Option<[u8; 32]> {
    if text.len() != 64 {
        return None;
    }
    let mut key = [0u8; 32];
    for (byte, pair) in key.iter_mut().zip(text.as_bytes().chunks(2)) {
        let pair = std::str::from_utf8(pair).ok()?;
        *byte = u8::from_str_radix(pair, 16).ok()?;
    }
    Some(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn the_directory_is_made_0700_and_the_key_0600_beside_it() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("data/cache");
        let cache = CompiledCache::open(&dir).unwrap();
        assert_eq!(mode(&dir), 0o700);
        let key = root.path().join("data/cache.key");
        assert_eq!(key_file(&dir).unwrap(), key);
        assert_eq!(mode(&key), 0o600);
        // The same key is read back, so entries outlive restarts.
        cache.store("a.cwasm", b"code").unwrap();
        let again = CompiledCache::open(&dir).unwrap();
        assert_eq!(again.load("a.cwasm").unwrap(), b"code");
    }

    #[test]
    fn an_entry_is_loaded_only_under_its_own_name_and_key() {
        let root = tempfile::tempdir().unwrap();
        let cache = CompiledCache::open(&root.path().join("cache")).unwrap();
        cache.store("a.cwasm", b"code of a").unwrap();
        cache.store("b.cwasm", b"code of b").unwrap();
        assert_eq!(cache.load("a.cwasm").unwrap(), b"code of a");
        // b's sealed entry under a's name.
        std::fs::copy(cache.dir().join("b.cwasm"), cache.dir().join("a.cwasm")).unwrap();
        assert_eq!(cache.load("a.cwasm"), None);
        // Code without a tag, and a flipped bit.
        std::fs::write(cache.dir().join("a.cwasm"), b"plain code, no tag at all").unwrap();
        assert_eq!(cache.load("a.cwasm"), None);
        cache.store("a.cwasm", b"code of a").unwrap();
        let mut sealed = std::fs::read(cache.dir().join("a.cwasm")).unwrap();
        *sealed.last_mut().unwrap() ^= 1;
        std::fs::write(cache.dir().join("a.cwasm"), &sealed).unwrap();
        assert_eq!(cache.load("a.cwasm"), None);
        // Another key (another host's cache) does not verify it either.
        let other = CompiledCache::open(&root.path().join("other")).unwrap();
        other.store("a.cwasm", b"code of a").unwrap();
        std::fs::copy(other.dir().join("a.cwasm"), cache.dir().join("a.cwasm")).unwrap();
        assert_eq!(cache.load("a.cwasm"), None);
        assert_eq!(cache.load("missing.cwasm"), None);
    }

    #[test]
    fn a_directory_others_may_write_is_refused() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("cache");
        let cache = CompiledCache::open(&dir).unwrap();
        cache.store("a.cwasm", b"code").unwrap();
        for lax in [0o770, 0o707, 0o1777] {
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(lax)).unwrap();
            let error = CompiledCache::open(&dir).unwrap_err();
            assert!(
                matches!(error, CacheError::OthersMayWrite { .. }),
                "{error}"
            );
            assert!(error.to_string().contains("chmod 700"), "{error}");
            // An open cache checks again before each use.
            assert_eq!(cache.load("a.cwasm"), None);
            assert!(cache.store("b.cwasm", b"code").is_err());
        }
        // Others may read: the code is no secret.
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert!(CompiledCache::open(&dir).is_ok());
    }

    #[test]
    fn a_key_others_may_read_is_refused() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("cache");
        CompiledCache::open(&dir).unwrap();
        let key = key_file(&dir).unwrap();
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o640)).unwrap();
        let error = CompiledCache::open(&dir).unwrap_err();
        assert!(matches!(error, CacheError::KeyExposed { .. }), "{error}");
        std::fs::write(&key, "not a key\n").unwrap();
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
        let error = CompiledCache::open(&dir).unwrap_err();
        assert!(matches!(error, CacheError::KeyMalformed { .. }), "{error}");
    }

    #[test]
    fn a_key_that_is_a_link_is_not_followed() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("cache");
        let elsewhere = root.path().join("elsewhere.key");
        std::fs::write(&elsewhere, format!("{}\n", "ab".repeat(32))).unwrap();
        std::fs::set_permissions(&elsewhere, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::os::unix::fs::symlink(&elsewhere, key_file(&dir).unwrap()).unwrap();
        assert!(CompiledCache::open(&dir).is_err());
    }

    #[test]
    fn temporary_names_are_random() {
        let a = temp_name("x.cwasm").unwrap();
        let b = temp_name("x.cwasm").unwrap();
        assert_ne!(a, b);
        assert_eq!(a.len(), ".x.cwasm.".len() + 32 + ".tmp".len());
    }

    #[test]
    fn no_temporary_file_is_left_behind() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("cache");
        let cache = CompiledCache::open(&dir).unwrap();
        cache.store("a.cwasm", b"code").unwrap();
        let names: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names, ["a.cwasm"]);
        let siblings = std::fs::read_dir(root.path()).unwrap().count();
        assert_eq!(siblings, 2, "the directory and its key only");
    }
}
