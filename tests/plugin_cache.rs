//! The compiled-plugin cache holds native code, so nothing put there by
//! anyone but the host itself is ever loaded: planted or altered entries
//! are compiled again, a directory others may write to is not used, and
//! entries are never written through a name someone could prepare.
//!
//! The components here are small hostile components (see
//! `vessel_tests::hostile_components`), which compile in milliseconds: one
//! whose `inspect` answers, and another whose `inspect` is stopped at its
//! memory limit, so which code a driver runs shows in how it answers.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use vessel::config::Config;
use vessel::plugins::{PluginError, PluginRuntime, SandboxLimit, VmDriver};
use vessel_tests::hostile_components::{self, Attack};
use vessel_tests::test_config;

/// A component whose `inspect` answers `Ok(None)`.
const ANSWERS: Attack = Attack::TwoMemories { mib: 1 };

/// A component whose `inspect` is stopped at the 32 MiB memory limit.
const STOPPED: Attack = Attack::TwoMemories { mib: 20 };

/// A test's directory: the components, a data directory, and caches.
struct Setup {
    root: tempfile::TempDir,
}

impl Setup {
    fn new() -> Setup {
        let root = tempfile::tempdir().unwrap();
        for (name, attack) in [("answers", ANSWERS), ("stopped", STOPPED)] {
            let path = root.path().join(format!("{name}.wasm"));
            std::fs::write(path, hostile_components::component(attack)).unwrap();
        }
        Setup { root }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.root.path().join(name)
    }

    /// A configuration whose VM driver is the component `name`.
    fn config(&self, name: &str) -> Config {
        let mut config = test_config(&self.path("data"), None);
        config.plugins.vm.path = self.path(&format!("{name}.wasm"));
        config.plugins.vm.memory_limit_mib = 32;
        config.plugins.vm.grants.dirs.clear();
        config
    }

    /// Loads the component `name` with a new runtime (as a host starting)
    /// caching in `cache`.
    fn load(&self, cache: &Path, name: &str) -> VmDriver {
        let runtime = PluginRuntime::new(cache.to_path_buf()).unwrap();
        VmDriver::load(&runtime, &self.config(name)).unwrap()
    }
}

/// Whether `driver` runs the code of the component that answers, or of the
/// one that is stopped.
async fn runs(driver: &VmDriver) -> &'static str {
    match driver.inspect("which").await {
        Ok(None) => "answers",
        Err(PluginError::LimitExceeded {
            limit: SandboxLimit::Memory { mib: 32 },
            ..
        }) => "stopped",
        other => panic!("neither component answers {other:?}"),
    }
}

/// The names of the files in `dir`.
fn files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

/// The one entry in `cache`.
fn entry(cache: &Path) -> PathBuf {
    let names = files(cache);
    assert_eq!(names.len(), 1, "one entry, no temporary files: {names:?}");
    cache.join(&names[0])
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

#[tokio::test]
async fn the_cache_is_created_0700_with_its_key_0600_beside_it() {
    let setup = Setup::new();
    let cache = setup.path("data/cache");
    let driver = setup.load(&cache, "answers");
    assert_eq!(runs(&driver).await, "answers");
    assert_eq!(format!("{:o}", mode(&cache)), "700");
    assert_eq!(format!("{:o}", mode(&setup.path("data/cache.key"))), "600");
    assert_eq!(format!("{:o}", mode(&entry(&cache))), "600");
    // A second start loads the entry rather than writing it again.
    let written = std::fs::metadata(entry(&cache)).unwrap().ino();
    let driver = setup.load(&cache, "answers");
    assert_eq!(runs(&driver).await, "answers");
    assert_eq!(std::fs::metadata(entry(&cache)).unwrap().ino(), written);
}

#[tokio::test]
async fn a_planted_entry_is_compiled_again_never_loaded() {
    let setup = Setup::new();
    let cache = setup.path("data/cache");
    // The entries of both components, as the host wrote them.
    let other = setup.path("other-cache");
    setup.load(&other, "stopped");
    let stopped = std::fs::read(entry(&other)).unwrap();
    setup.load(&cache, "answers");
    let answers = entry(&cache);

    let plants: [(&str, Vec<u8>); 4] = [
        // The other component's sealed entry under this one's name, as if
        // copied from another cache.
        ("another cache's entry", stopped.clone()),
        // Its code without the tag, as older Vessels wrote entries.
        ("code without a tag", stopped[32..].to_vec()),
        ("garbage", b"not a compiled component".to_vec()),
        ("nothing", Vec::new()),
    ];
    for (what, planted) in plants {
        std::fs::write(&answers, &planted).unwrap();
        let driver = setup.load(&cache, "answers");
        assert_eq!(runs(&driver).await, "answers", "{what} was loaded");
        // ... and the entry was written again, sealed.
        assert!(std::fs::read(&answers).unwrap() != planted, "{what} stays");
        let rewritten = std::fs::metadata(&answers).unwrap().ino();
        setup.load(&cache, "answers");
        assert_eq!(std::fs::metadata(&answers).unwrap().ino(), rewritten);
    }

    // A flipped bit in the code.
    let mut altered = std::fs::read(&answers).unwrap();
    let last = altered.len() - 1;
    altered[last] ^= 1;
    std::fs::write(&answers, &altered).unwrap();
    let driver = setup.load(&cache, "answers");
    assert_eq!(runs(&driver).await, "answers");
    assert!(
        std::fs::read(&answers).unwrap() != altered,
        "the altered entry stays"
    );
}

#[tokio::test]
async fn a_cache_directory_others_may_write_to_is_not_used() {
    let setup = Setup::new();
    let cache = setup.path("shared");
    std::fs::create_dir(&cache).unwrap();
    std::fs::set_permissions(&cache, std::fs::Permissions::from_mode(0o1777)).unwrap();
    let driver = setup.load(&cache, "answers");
    assert_eq!(runs(&driver).await, "answers");
    assert!(files(&cache).is_empty(), "nothing is written to it");
    assert!(!setup.path("shared.key").exists(), "no key is made for it");

    // A cache the host once used, made group-writable since: it is neither
    // read nor written (a used cache would replace this entry).
    let cache = setup.path("data/cache");
    setup.load(&cache, "answers");
    let planted = entry(&cache);
    std::fs::set_permissions(&cache, std::fs::Permissions::from_mode(0o770)).unwrap();
    std::fs::write(&planted, b"garbage").unwrap();
    let driver = setup.load(&cache, "answers");
    assert_eq!(runs(&driver).await, "answers");
    assert!(std::fs::read(&planted).unwrap() == b"garbage", "not used");
}

#[tokio::test]
async fn another_users_cache_directory_is_not_used() {
    let setup = Setup::new();
    let cache = setup.path("theirs");
    std::fs::create_dir(&cache).unwrap();
    std::fs::set_permissions(&cache, std::fs::Permissions::from_mode(0o700)).unwrap();
    // Only root may give a directory away; as anyone else, there is
    // nothing to test here.
    if std::os::unix::fs::chown(&cache, Some(65534), Some(65534)).is_err() {
        return;
    }
    let driver = setup.load(&cache, "answers");
    assert_eq!(runs(&driver).await, "answers");
    assert!(files(&cache).is_empty(), "nothing is written to it");
}

#[tokio::test]
async fn an_exposed_key_disables_the_cache() {
    let setup = Setup::new();
    let cache = setup.path("data/cache");
    setup.load(&cache, "answers");
    let key = setup.path("data/cache.key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let sealed = entry(&cache);
    std::fs::write(&sealed, b"garbage").unwrap();
    let driver = setup.load(&cache, "answers");
    assert_eq!(runs(&driver).await, "answers");
    assert!(std::fs::read(&sealed).unwrap() == b"garbage", "not used");
}

#[tokio::test]
async fn entries_are_not_written_through_a_prepared_name() {
    let setup = Setup::new();
    // The entry's name, which anyone can work out from the component.
    let name = {
        let other = setup.path("other-cache");
        setup.load(&other, "answers");
        entry(&other).file_name().unwrap().to_owned()
    };
    let name = name.to_str().unwrap();
    let cache = setup.path("data/cache");
    PluginRuntime::new(cache.clone()).unwrap();
    // A link where a writer using a predictable temporary name (such as
    // `<entry>.tmp-<pid>`, as Vessel once did) would write.
    let victim = setup.path("victim");
    std::fs::write(&victim, "precious").unwrap();
    let predictable = cache.join(name.replace(".cwasm", &format!(".tmp-{}", std::process::id())));
    std::os::unix::fs::symlink(&victim, &predictable).unwrap();

    let driver = setup.load(&cache, "answers");
    assert_eq!(runs(&driver).await, "answers");
    assert!(
        std::fs::read(&victim).unwrap() == b"precious",
        "written through the link"
    );
    assert!(
        std::fs::symlink_metadata(&predictable)
            .unwrap()
            .is_symlink()
    );
    // The entry is in place, whole, and loads.
    let written = std::fs::metadata(cache.join(name)).unwrap().ino();
    setup.load(&cache, "answers");
    assert_eq!(std::fs::metadata(cache.join(name)).unwrap().ino(), written);
}

#[tokio::test]
async fn hosts_starting_together_share_one_cache() {
    let setup = std::sync::Arc::new(Setup::new());
    let cache = setup.path("data/cache");
    let starts: Vec<_> = (0..4)
        .map(|_| {
            let setup = setup.clone();
            let cache = cache.clone();
            std::thread::spawn(move || {
                setup.load(&cache, "answers");
            })
        })
        .collect();
    for start in starts {
        start.join().unwrap();
    }
    // One key, one whole entry, no temporary files, and the entry verifies:
    // the next start loads it.
    let written = std::fs::metadata(entry(&cache)).unwrap().ino();
    let driver = setup.load(&cache, "answers");
    assert_eq!(runs(&driver).await, "answers");
    assert_eq!(std::fs::metadata(entry(&cache)).unwrap().ino(), written);
    assert_eq!(files(&setup.path("data")), ["cache", "cache.key"]);
}
