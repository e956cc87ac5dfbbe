//! The on-disk state of Vessel's mock plugins.
//!
//! The host runs every plugin call in a fresh instance and may run calls
//! concurrently, so a mock cannot keep anything in memory. It keeps its state
//! in the directory the operator granted it instead, laid out so that tests
//! (and people) can read it directly:
//!
//! ```text
//! <state>/items/<id>.json     one file per VM or route the mock manages
//! <state>/slots/<n>           reservation of a numbered slot (e.g. an IP)
//! <state>/slots/last          the last slot handed out (where the next search starts)
//! <state>/calls.log          the call record: one JSON line per driver call
//! <state>/faults/<op>         an injected fault for operation <op>
//! ```
//!
//! The directories are made by the first write that needs them, so a call
//! that only reads (an `inspect`) touches nothing it does not read.
//!
//! Every write that another instance may race with uses an exclusive create
//! (`O_EXCL`), a write-then-rename, or one appending write of a whole line,
//! so concurrent calls never corrupt it.

use std::fs::{self, File, OpenOptions};
use std::io::{self, ErrorKind, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;
use serde::de::DeserializeOwned;

/// One entry of the call record: what a driver was asked and how it answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct CallRecord {
    /// The operation, e.g. `create`, `remove`, `add-route`.
    pub op: String,
    /// What it was applied to (a VM id or route id), empty for listings.
    pub target: String,
    /// `ok`, or the error case the call returned (e.g. `failed`).
    pub outcome: String,
    /// Milliseconds since the epoch when the call was recorded.
    pub at_ms: u64,
}

/// A fault injected for one operation, read from `faults/<op>`.
///
/// The file holds one line: an error case of the contract (`not-found`,
/// `already-exists`, `invalid-input`, `denied`, `timed-out`, `unavailable`,
/// `failed`), optionally followed by `:` and a message; or `hang` (sleep far
/// past any sensible call limit); or `hang-after` (do the operation, record
/// it, then never answer: a driver that did its job but whose answer is
/// lost); or `trap` (abort the instance).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Return the named error case with a message.
    Error {
        /// The contract's error case, as written in WIT.
        case: String,
        /// The message to return with it.
        message: String,
    },
    /// Never answer (the host's call limit must stop it).
    Hang,
    /// Do the operation, then never answer.
    HangAfter,
    /// Trap, as a crashing plugin would.
    Trap,
}

impl Fault {
    /// Parses the text of a fault file or setting.
    pub fn parse(text: &str) -> Fault {
        let text = text.trim();
        match text {
            "hang" => Fault::Hang,
            "hang-after" => Fault::HangAfter,
            "trap" => Fault::Trap,
            _ => {
                let (case, message) = match text.split_once(':') {
                    Some((case, message)) => (case.trim(), message.trim()),
                    None => (text, "injected fault"),
                };
                Fault::Error {
                    case: case.to_string(),
                    message: message.to_string(),
                }
            }
        }
    }
}

/// A mock's state directory.
#[derive(Debug, Clone)]
pub struct StateDir {
    root: PathBuf,
    /// In a plugin: the granted directory holding `root`, looked up once
    /// (see [`StateDir::reachable`]).
    #[cfg(target_os = "wasi")]
    grant: std::rc::Rc<std::cell::OnceCell<Option<Grant>>>,
}

/// A granted directory (a WASI preopen) and a path inside it.
#[cfg(target_os = "wasi")]
#[derive(Debug)]
struct Grant {
    dir: wasip2::filesystem::types::Descriptor,
    /// The path inside `dir`, relative, without a trailing `/`; empty for
    /// `dir` itself.
    inside: String,
}

/// The granted directory holding `path`, if one does: a preopen whose
/// guest path is a prefix of `path`, component by component. A path with
/// `..` in it is held by none (the sandbox would refuse it anyway).
#[cfg(target_os = "wasi")]
fn grant_of(path: &Path) -> Option<Grant> {
    use std::path::Component;
    if path.components().any(|c| c == Component::ParentDir) {
        return None;
    }
    let text = path.to_str()?;
    wasip2::filesystem::preopens::get_directories()
        .into_iter()
        .find_map(|(dir, name)| {
            let rest = text.strip_prefix(name.trim_end_matches('/'))?;
            let inside = if rest.is_empty() {
                rest
            } else {
                rest.strip_prefix('/')?
            };
            Some(Grant {
                dir,
                inside: inside.trim_end_matches('/').to_string(),
            })
        })
}

impl StateDir {
    /// The state directory at `root`. Nothing is touched yet: reads of a
    /// directory not made yet find nothing, and the first write makes the
    /// layout (see [`StateDir::with_layout`]).
    pub fn at(root: impl Into<PathBuf>) -> StateDir {
        StateDir {
            root: root.into(),
            #[cfg(target_os = "wasi")]
            grant: Default::default(),
        }
    }

    /// Where the state lives.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Fails when the state directory cannot be in anything the plugin was
    /// granted. In a plugin, a path outside every granted directory reads as
    /// missing, which would make a mock pointed at the wrong place answer
    /// "no such VM" (and a host take that as the VM being gone); so the
    /// mock checks this first, without touching the disk: some preopen
    /// must hold it. Natively every path is reachable.
    pub fn reachable(&self) -> io::Result<()> {
        #[cfg(target_os = "wasi")]
        if self.grant().is_none() {
            return Err(io::Error::new(
                ErrorKind::NotFound,
                "no directory granted to the plugin holds it",
            ));
        }
        Ok(())
    }

    #[cfg(target_os = "wasi")]
    fn grant(&self) -> Option<&Grant> {
        self.grant.get_or_init(|| grant_of(&self.root)).as_ref()
    }

    /// Runs `write`; when it fails because a directory of the layout is not
    /// there yet (a new state directory), makes them and runs it once more.
    /// Each write given here fails before changing anything when its
    /// directory is missing, so running it again is safe.
    fn with_layout<T>(&self, write: impl Fn() -> io::Result<T>) -> io::Result<T> {
        match write() {
            Err(e) if e.kind() == ErrorKind::NotFound => {
                self.make_layout()?;
                write()
            }
            other => other,
        }
    }

    /// Makes the root and its subdirectories, those not there yet.
    fn make_layout(&self) -> io::Result<()> {
        for sub in ["items", "slots", "faults"] {
            match fs::create_dir_all(self.root.join(sub)) {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    fn item_path(&self, id: &str) -> PathBuf {
        self.root.join("items").join(format!("{id}.json"))
    }

    /// Creates item `id` with `value`; fails with `AlreadyExists` if it exists.
    pub fn create_item<T: Serialize>(&self, id: &str, value: &T) -> io::Result<()> {
        let json = to_json(value)?;
        let mut file = self.with_layout(|| {
            OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(self.item_path(id))
        })?;
        file.write_all(&json)
    }

    /// Replaces item `id` with `value` atomically (write, then rename).
    pub fn put_item<T: Serialize>(&self, id: &str, value: &T) -> io::Result<()> {
        let json = to_json(value)?;
        self.with_layout(|| write_atomically(&self.item_path(id), &json))
    }

    /// Reads item `id`, or `None` if it does not exist.
    pub fn get_item<T: DeserializeOwned>(&self, id: &str) -> io::Result<Option<T>> {
        match read_small_file(&self.item_path(id)) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| io::Error::new(ErrorKind::InvalidData, e)),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Deletes item `id`; returns whether it existed.
    pub fn delete_item(&self, id: &str) -> io::Result<bool> {
        remove_if_present(&self.item_path(id))
    }

    /// Every item, sorted by id. Items that vanish or are half-written while
    /// listing (a concurrent create or remove) are skipped.
    pub fn items<T: DeserializeOwned>(&self) -> io::Result<Vec<(String, T)>> {
        let mut items = Vec::new();
        let listing = match fs::read_dir(self.root.join("items")) {
            Ok(listing) => listing,
            // Nothing was ever written.
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(items),
            Err(e) => return Err(e),
        };
        for entry in listing {
            // An entry can vanish while the directory is read (a write's
            // temporary file renamed, an item removed): WASI then reports
            // it as not found; it is simply not there any more.
            let entry = match entry {
                Ok(entry) => entry,
                Err(e) if e.kind() == ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(id) = name.strip_suffix(".json") else {
                continue;
            };
            if let Ok(Some(item)) = self.get_item::<T>(id) {
                items.push((id.to_string(), item));
            }
        }
        items.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(items)
    }

    /// Reserves a free slot number in `1..=max` for `owner`, handing them out
    /// in turn as CNI's host-local IPAM does with addresses: from the one
    /// after the last reserved, wrapping around. Returns `None` when every
    /// slot is taken.
    ///
    /// The cursor (`slots/last`) is only a hint; the exclusive create of the
    /// slot's file is what reserves it, so concurrent callers never share a
    /// slot. Each reservation costs a few file operations however many slots
    /// are taken (listing a large directory through WASI is slow).
    pub fn reserve_slot(&self, owner: &str, max: u32) -> io::Result<Option<u32>> {
        // A first attempt that finds no `slots/` has reserved nothing.
        self.with_layout(|| self.try_reserve_slot(owner, max))
    }

    fn try_reserve_slot(&self, owner: &str, max: u32) -> io::Result<Option<u32>> {
        let slots = self.root.join("slots");
        let cursor = slots.join("last");
        let last = match read_small_text(&cursor) {
            Ok(text) => text.trim().parse::<u32>().unwrap_or(0),
            Err(e) if e.kind() == ErrorKind::NotFound => 0,
            Err(e) => return Err(e),
        };
        for step in 1..=max {
            let n = (last.min(max) + step - 1) % max + 1;
            match OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(slots.join(n.to_string()))
            {
                Ok(mut file) => {
                    file.write_all(owner.as_bytes())?;
                    write_atomically(&cursor, n.to_string().as_bytes())?;
                    return Ok(Some(n));
                }
                Err(e) if e.kind() == ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            }
        }
        Ok(None)
    }

    /// Frees slot `n`.
    pub fn release_slot(&self, n: u32) -> io::Result<()> {
        remove_if_present(&self.root.join("slots").join(n.to_string())).map(|_| ())
    }

    /// The fault injected for `op`, if a `faults/<op>` file exists.
    pub fn fault(&self, op: &str) -> io::Result<Option<Fault>> {
        match read_small_text(&self.root.join("faults").join(op)) {
            Ok(text) => Ok(Some(Fault::parse(&text))),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Appends one entry to the call record: one line, written by one
    /// appending write (`O_APPEND`), so concurrent writers never interleave
    /// and nobody has to read what the others wrote. A writer killed in the
    /// middle leaves at most a last line without its newline, which readers
    /// skip.
    pub fn record_call(&self, op: &str, target: &str, outcome: &str) -> io::Result<()> {
        let record = CallRecord {
            op: op.to_string(),
            target: target.to_string(),
            outcome: outcome.to_string(),
            at_ms: now_ms(),
        };
        let mut line =
            serde_json::to_vec(&record).map_err(|e| io::Error::new(ErrorKind::InvalidData, e))?;
        line.push(b'\n');
        self.with_layout(|| self.append_record(&line))
    }

    /// Appends `line` to the call record (creating it) in one appending
    /// write: natively, a file opened with `O_APPEND`.
    #[cfg(not(target_os = "wasi"))]
    fn append_record(&self, line: &[u8]) -> io::Result<()> {
        OpenOptions::new()
            .append(true)
            .create(true)
            .open(self.root.join(CALL_LOG))?
            .write_all(line)
    }

    /// Appends `line` to the call record (creating it) in one appending
    /// write: in a plugin, WASI's `append-via-stream` and one
    /// `blocking-write-and-flush`, which a host (wasmtime) may perform on
    /// the calling thread. Rust's `std` writes files with `check-write`,
    /// `write` and `flush` instead, which wasmtime always hands to a thread
    /// pool and back: most of a short mock call's time went to that
    /// hand-off. Lines longer than one such write allows go through `std`.
    #[cfg(target_os = "wasi")]
    fn append_record(&self, line: &[u8]) -> io::Result<()> {
        use wasip2::filesystem::types::{DescriptorFlags, ErrorCode, OpenFlags, PathFlags};
        use wasip2::io::streams::StreamError;

        /// The most one `blocking-write-and-flush` takes.
        const MAX_WRITE: usize = 4096;
        let path = self.root.join(CALL_LOG);
        let failed = |error: ErrorCode| {
            let kind = match error {
                ErrorCode::NoEntry => ErrorKind::NotFound,
                ErrorCode::Access | ErrorCode::NotPermitted | ErrorCode::ReadOnly => {
                    ErrorKind::PermissionDenied
                }
                _ => ErrorKind::Other,
            };
            io::Error::new(kind, format!("{path:?}: {error:?}"))
        };
        let Some(grant) = self.grant().filter(|_| line.len() <= MAX_WRITE) else {
            return OpenOptions::new()
                .append(true)
                .create(true)
                .open(&path)?
                .write_all(line);
        };
        let relative = if grant.inside.is_empty() {
            CALL_LOG.to_string()
        } else {
            format!("{}/{CALL_LOG}", grant.inside)
        };
        let file = grant
            .dir
            .open_at(
                PathFlags::empty(),
                &relative,
                OpenFlags::CREATE,
                DescriptorFlags::WRITE,
            )
            .map_err(failed)?;
        let stream = file.append_via_stream().map_err(failed)?;
        stream
            .blocking_write_and_flush(line)
            .map_err(|error| match error {
                StreamError::LastOperationFailed(error) => {
                    io::Error::other(format!("{path:?}: {}", error.to_debug_string()))
                }
                StreamError::Closed => io::Error::other(format!("{path:?}: closed")),
            })
    }
}

/// The call record's file in a state directory.
const CALL_LOG: &str = "calls.log";

/// Reads the call record of the state directory at `root`, in call order.
/// This is how tests prove what a driver was asked to do. A last line
/// without its newline is still being written (or its writer was killed):
/// it is not part of the record yet.
pub fn read_calls(root: &Path) -> io::Result<Vec<CallRecord>> {
    let bytes = match fs::read(root.join(CALL_LOG)) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let whole = match bytes.iter().rposition(|&b| b == b'\n') {
        Some(last) => &bytes[..=last],
        None => &[][..],
    };
    whole
        .split(|&b| b == b'\n')
        .filter(|line| !line.is_empty())
        .map(|line| {
            serde_json::from_slice(line).map_err(|e| io::Error::new(ErrorKind::InvalidData, e))
        })
        .collect()
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn to_json<T: Serialize>(value: &T) -> io::Result<Vec<u8>> {
    serde_json::to_vec_pretty(value).map_err(|e| io::Error::new(ErrorKind::InvalidData, e))
}

/// Reads the whole of a small file. `fs::read` (and `File::read_to_end`)
/// first ask for the file's size, which in a plugin is two more WASI calls
/// (`stat` and `metadata-hash`) and a system call on every read, for files
/// that fit in one buffer anyway; read through `Take`, std's `read_to_end`
/// has no size to ask for and fills the buffer given.
fn read_small_file(path: &Path) -> io::Result<Vec<u8>> {
    let mut bytes = Vec::with_capacity(4096);
    File::open(path)?.take(u64::MAX).read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// [`read_small_file`] as UTF-8 text, which it must be.
fn read_small_text(path: &Path) -> io::Result<String> {
    String::from_utf8(read_small_file(path)?).map_err(|e| io::Error::new(ErrorKind::InvalidData, e))
}

fn write_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let tmp = path.with_extension(format!("tmp-{}", unique_suffix()));
    {
        let mut file = File::create(&tmp)?;
        file.write_all(bytes)?;
    }
    fs::rename(&tmp, path)
}

fn remove_if_present(path: &Path) -> io::Result<bool> {
    match fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// A name that sorts by time and that two concurrent writers will not both
/// pick: the time in nanoseconds, then 64 random bits (from the random keys
/// std seeds every `RandomState` with; plugin instances share no memory, so
/// a stack address or a counter would not be unique across them).
fn unique_suffix() -> String {
    use std::hash::{BuildHasher, Hasher};
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let random = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    format!("{nanos:020}-{random:016x}")
}

/// Defines the plumbing every mock driver shares, in the calling crate where
/// the plugin's generated `DriverError` and `config` are in scope:
///
/// - `state()`: the state directory named by the `state_dir` setting
///   (default `/state`);
/// - `unusable(state, e)`: the `DriverError::Unavailable` of a state
///   directory outside everything the plugin was granted;
/// - `io_failed(e)`: maps a state I/O error to `DriverError::Failed`;
/// - `operation(op, target, body)`: applies an injected fault for `op` (from
///   the `fail_<op>` setting or a `faults/<op>` file) or runs `body`, then
///   records the call and its outcome.
///
/// It is a macro because each plugin has its own generated binding types.
#[macro_export]
macro_rules! mock_driver_plumbing {
    ($plugin:literal) => {
        fn state() -> $crate::StateDir {
            $crate::StateDir::at(config::get("state_dir").unwrap_or_else(|| "/state".to_string()))
        }

        /// The error of a state directory outside everything the plugin
        /// was granted.
        fn unusable(state: &$crate::StateDir, e: std::io::Error) -> DriverError {
            DriverError::Unavailable(format!(
                "{} state directory {} is not usable ({e}); grant it a directory",
                $plugin,
                state.root().display()
            ))
        }

        fn io_failed(e: std::io::Error) -> DriverError {
            DriverError::Failed(format!("{} state: {e}", $plugin))
        }

        fn raise(fault: $crate::Fault) -> DriverError {
            match fault {
                $crate::Fault::Hang | $crate::Fault::HangAfter => loop {
                    std::thread::sleep(std::time::Duration::from_secs(3600));
                },
                $crate::Fault::Trap => panic!("{}: injected trap", $plugin),
                $crate::Fault::Error { case, message } => match case.as_str() {
                    "not-found" => DriverError::NotFound(message),
                    "already-exists" => DriverError::AlreadyExists(message),
                    "invalid-input" => DriverError::InvalidInput(message),
                    "denied" => DriverError::Denied(message),
                    "timed-out" => DriverError::TimedOut(message),
                    "unavailable" => DriverError::Unavailable(message),
                    _ => DriverError::Failed(message),
                },
            }
        }

        fn outcome<T>(result: &Result<T, DriverError>) -> &'static str {
            match result {
                Ok(_) => "ok",
                Err(DriverError::NotFound(_)) => "not-found",
                Err(DriverError::AlreadyExists(_)) => "already-exists",
                Err(DriverError::InvalidInput(_)) => "invalid-input",
                Err(DriverError::Denied(_)) => "denied",
                Err(DriverError::TimedOut(_)) => "timed-out",
                Err(DriverError::Unavailable(_)) => "unavailable",
                Err(DriverError::Failed(_)) => "failed",
            }
        }

        fn operation<T>(
            op: &str,
            target: &str,
            body: impl FnOnce(&$crate::StateDir) -> Result<T, DriverError>,
        ) -> Result<T, DriverError> {
            let state = state();
            state.reachable().map_err(|e| unusable(&state, e))?;
            let fault = match config::get(&format!("fail_{}", op.replace('-', "_"))) {
                Some(text) => Some($crate::Fault::parse(&text)),
                None => state.fault(op).map_err(io_failed)?,
            };
            let hang_after = fault == Some($crate::Fault::HangAfter);
            let result = match fault {
                Some($crate::Fault::HangAfter) | None => body(&state),
                Some(fault) => Err(raise(fault)),
            };
            // The record is best effort: a full disk must not turn a success
            // into an error.
            let _ = state.record_call(op, target, outcome(&result));
            if hang_after {
                raise($crate::Fault::HangAfter);
            }
            result
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_state(name: &str) -> StateDir {
        let dir = std::env::temp_dir().join(format!("mock-state-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("a temporary directory");
        StateDir::at(dir)
    }

    /// A thread recording `count` create calls on `state`, targets
    /// `{tag}-0`, `{tag}-1`, ...
    fn spawn_recorder(state: &StateDir, tag: String, count: usize) -> std::thread::JoinHandle<()> {
        let state = state.clone();
        std::thread::spawn(move || {
            for j in 0..count {
                state
                    .record_call("create", &format!("{tag}-{j}"), "ok")
                    .unwrap();
            }
        })
    }

    #[test]
    fn a_new_state_directory_is_made_by_the_first_write_and_not_by_reads() {
        let state = temp_state("lazy");
        let root = state.root().to_path_buf();
        fs::remove_dir(&root).unwrap();
        state.reachable().unwrap();
        // Reads of a directory that is not there find nothing, and make
        // nothing.
        assert_eq!(state.fault("inspect").unwrap(), None);
        assert_eq!(state.get_item::<u32>("vm").unwrap(), None);
        assert!(state.items::<u32>().unwrap().is_empty());
        assert!(!state.delete_item("vm").unwrap());
        assert!(!root.exists(), "reads made {}", root.display());
        // Each kind of write makes the layout it needs on its own.
        state.record_call("inspect", "vm", "ok").unwrap();
        assert!(root.join("items").is_dir() && root.join("slots").is_dir());
        assert_eq!(read_calls(&root).unwrap().len(), 1);
        for write in 0..3 {
            let _ = fs::remove_dir_all(&root);
            match write {
                0 => state.create_item("vm", &1u32).unwrap(),
                1 => state.put_item("vm", &1u32).unwrap(),
                _ => assert_eq!(state.reserve_slot("vm", 4).unwrap(), Some(1)),
            }
            assert!(root.join("faults").is_dir(), "write {write}");
        }
        assert_eq!(state.reserve_slot("other", 4).unwrap(), Some(2));
        let _ = fs::remove_dir_all(&root);
    }

    #[test]
    fn an_item_is_created_once() {
        let state = temp_state("create-once");
        state.create_item("a", &1u32).unwrap();
        let err = state.create_item("a", &2u32).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::AlreadyExists);
        assert_eq!(state.get_item::<u32>("a").unwrap(), Some(1));
        assert!(state.delete_item("a").unwrap());
        assert!(!state.delete_item("a").unwrap());
        assert_eq!(state.get_item::<u32>("a").unwrap(), None);
    }

    #[test]
    fn slots_are_handed_out_in_turn_and_reused_after_wrapping() {
        let state = temp_state("slots");
        assert_eq!(state.reserve_slot("x", 3).unwrap(), Some(1));
        assert_eq!(state.reserve_slot("y", 3).unwrap(), Some(2));
        state.release_slot(1).unwrap();
        assert_eq!(state.reserve_slot("z", 3).unwrap(), Some(3));
        assert_eq!(state.reserve_slot("w", 3).unwrap(), Some(1));
        assert_eq!(state.reserve_slot("v", 3).unwrap(), None);
    }

    #[test]
    fn concurrent_reservations_never_share_a_slot() {
        let state = temp_state("slots-concurrent");
        let threads: Vec<_> = (0..8)
            .map(|i| {
                let state = state.clone();
                std::thread::spawn(move || {
                    (0..20)
                        .map(|j| state.reserve_slot(&format!("{i}-{j}"), 1000).unwrap())
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let mut all: Vec<u32> = threads
            .into_iter()
            .flat_map(|t| t.join().unwrap())
            .map(|slot| slot.expect("a free slot"))
            .collect();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), 160);
    }

    #[test]
    fn concurrent_call_records_are_all_kept() {
        let state = temp_state("calls");
        let threads: Vec<_> = (0..8)
            .map(|i| spawn_recorder(&state, i.to_string(), 25))
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let calls = read_calls(&state.root).unwrap();
        assert_eq!(calls.len(), 200);
    }

    #[test]
    fn the_call_record_reads_whole_while_calls_are_recorded() {
        let state = temp_state("calls-read-while-writing");
        let writer = spawn_recorder(&state, "u".into(), 300);
        let mut seen = 0;
        while !writer.is_finished() {
            let calls = read_calls(&state.root).expect("a whole record at every read");
            assert!(calls.len() >= seen, "the record only grows");
            seen = calls.len();
        }
        writer.join().unwrap();
        assert_eq!(read_calls(&state.root).unwrap().len(), 300);
    }

    #[test]
    fn a_record_cut_off_while_being_written_is_not_read() {
        let state = temp_state("calls-cut-off");
        state.record_call("create", "u-1", "ok").unwrap();
        // What a writer killed in the middle of its line leaves.
        let mut log = OpenOptions::new()
            .append(true)
            .open(state.root.join(CALL_LOG))
            .unwrap();
        log.write_all(br#"{"op":"remove","tar"#).unwrap();
        let calls = read_calls(&state.root).unwrap();
        assert_eq!(calls.len(), 1);
        assert_eq!(calls[0].target, "u-1");
    }

    #[test]
    fn small_files_are_read_whole_across_chunks_and_when_empty() {
        let state = temp_state("read-small");
        let long: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        let path = state.root.join("long");
        fs::write(&path, &long).unwrap();
        assert_eq!(read_small_file(&path).unwrap(), long);
        fs::write(&path, b"").unwrap();
        assert!(read_small_file(&path).unwrap().is_empty());
        let missing = read_small_file(&state.root.join("missing")).unwrap_err();
        assert_eq!(missing.kind(), ErrorKind::NotFound);
        fs::write(&path, [0xff, 0xfe]).unwrap();
        let not_text = read_small_text(&path).unwrap_err();
        assert_eq!(not_text.kind(), ErrorKind::InvalidData);
    }

    #[test]
    fn faults_parse_cases_messages_hangs_and_traps() {
        assert_eq!(Fault::parse("hang\n"), Fault::Hang);
        assert_eq!(Fault::parse("trap"), Fault::Trap);
        assert_eq!(Fault::parse("hang-after"), Fault::HangAfter);
        assert_eq!(
            Fault::parse("unavailable: disk full"),
            Fault::Error {
                case: "unavailable".into(),
                message: "disk full".into()
            }
        );
        assert_eq!(
            Fault::parse("failed"),
            Fault::Error {
                case: "failed".into(),
                message: "injected fault".into()
            }
        );
    }
}
