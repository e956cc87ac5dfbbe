//! One plugin call through Vessel's runtime, against the same work done
//! natively: what the WebAssembly sandbox costs per call.
//!
//! Rows:
//! - `runtime/empty-call`: `inspect` of the `hostile` test plugin's `none`
//!   probe, which answers at once: a fresh instance, its WASI context, the
//!   call and its limits, and nothing else. This is the runtime's own cost.
//! - `runtime/mock-inspect`: the mock VM plugin's `inspect` of a VM that
//!   exists, the call a cache hit with liveness `inspect` makes. The mock
//!   does real file work in its state directory (reads its fault file and
//!   the VM's file, writes a call record).
//! - `native/mock-inspect`: the same file work as the mock's `inspect`,
//!   done by the same library (`mock-state`) compiled natively and called
//!   directly: the baseline the runtime rows compare with.
//!
//! Run with `scripts/build-plugins && cargo bench -p vessel-host --bench
//! plugin_call`. The plugins are read from the workspace's
//! `target/wasm32-wasip2/plugin` (or `$CARGO_TARGET_DIR`'s).

use std::path::PathBuf;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use serde::Deserialize;
use vessel::config::Config;
use vessel::plugins::{PluginRuntime, VmDriver, VmSpec};

/// Where `scripts/build-plugins` puts the components.
fn plugin_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
    target.join("wasm32-wasip2").join("plugin")
}

/// A configuration whose VM plugin is `file`, with its data under `dir`.
fn config(dir: &std::path::Path, file: &str) -> Config {
    let mut config = Config {
        data_dir: dir.to_path_buf(),
        ..Config::default()
    };
    config.plugins.dir = Some(plugin_dir());
    config.plugins.cache_dir = Some(dir.join("plugin-cache"));
    config.plugins.vm.path = PathBuf::from(file);
    config
}

/// The part of the mock's VM file that `inspect` reads.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
#[allow(dead_code)]
struct MockVm {
    vm_id: String,
    state: String,
    ip: String,
    ports: Vec<u16>,
}

fn plugin_calls(c: &mut Criterion) {
    assert!(
        plugin_dir().join("mock_vm.wasm").exists(),
        "build the plugins first: scripts/build-plugins"
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let dir = tempfile::tempdir().expect("a temporary directory");
    let plugins = PluginRuntime::new(dir.path().join("plugin-cache")).expect("the runtime");

    let hostile_dir = dir.path().join("hostile");
    let hostile =
        VmDriver::load(&plugins, &config(&hostile_dir, "hostile.wasm")).expect("hostile loads");
    let mock_dir = dir.path().join("mock");
    let mock = VmDriver::load(&plugins, &config(&mock_dir, "mock_vm.wasm")).expect("mock loads");
    let vm_id = "vessel-bench-0";
    runtime
        .block_on(mock.create(&VmSpec {
            vm_id: vm_id.to_string(),
            name: "bench".to_string(),
            image: "bench".to_string(),
            cpus: 1,
            memory_mib: 512,
            disk_mib: 1024,
            ports: vec![8080],
            labels: vec![("vessel.user".to_string(), "bench".to_string())],
        }))
        .expect("the mock creates a VM");
    let state = mock_state::StateDir::at(mock_dir.join("mock-vm"));

    let mut group = c.benchmark_group("plugin-call");
    group.measurement_time(Duration::from_secs(5));
    group.bench_function("runtime/empty-call", |b| {
        b.iter(|| {
            let answer = runtime.block_on(hostile.inspect("none"));
            assert!(matches!(answer, Ok(None)), "{answer:?}");
        })
    });
    group.bench_function("runtime/mock-inspect", |b| {
        b.iter(|| {
            let answer = runtime.block_on(mock.inspect(vm_id));
            assert!(matches!(answer, Ok(Some(_))), "{answer:?}");
        })
    });
    group.bench_function("native/mock-inspect", |b| {
        b.iter(|| {
            // What the mock's `inspect` does, natively: open the state
            // directory, look for a fault, read the VM, record the call.
            let state = mock_state::StateDir::at(mock_dir.join("mock-vm"));
            assert!(state.fault("inspect").expect("fault").is_none());
            let vm: Option<MockVm> = state.get_item(vm_id).expect("read");
            assert!(vm.is_some());
            state.record_call("inspect", vm_id, "ok").expect("record");
        })
    });
    group.finish();
    drop(state);
}

criterion_group!(benches, plugin_calls);
criterion_main!(benches);
