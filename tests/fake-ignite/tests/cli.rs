//! Integration tests of the built `ignite` binary: a VM's whole life (run,
//! ps, cp, HTTP, rm), concurrent runs, the error formats of FORMATS.md,
//! fault injection and the call record. Only 127.x addresses and temporary
//! directories are used.

mod support;

use std::net::Ipv4Addr;
use std::thread;
use std::time::{Duration, Instant};

use support::{Env, http_get};

/// The fatal line a missing VM produces.
const MISSING: &str = "can't find VM: no ID/name matches for \"nope\"";

#[test]
fn a_vm_lives_and_dies() {
    let env = Env::new("lifecycle");
    let run = env.ok(&[
        "run",
        "weaveworks/ignite-ubuntu",
        "--name",
        "alice-vm",
        "--cpus",
        "2",
        "--memory",
        "1GB",
        "--ssh",
    ]);
    let messages = run.messages();
    let id = env.ok(&["ps", "-q"]).stdout.trim().to_string();
    assert_eq!(id.len(), 16, "ps -q prints the ID: {id:?}");
    assert_eq!(
        messages
            .iter()
            .map(|(l, m)| format!("{l}: {m}"))
            .collect::<Vec<_>>()[..2],
        [
            format!("info: Created VM with ID \"{id}\" and name \"alice-vm\""),
            "info: Networking is handled by \"cni\"".to_string()
        ]
    );
    assert!(messages[2].1.starts_with(&format!(
        "Started Firecracker VM \"{id}\" in a container with ID \""
    )));
    assert_eq!(
        messages[3].1,
        "Waiting for the ssh daemon within the VM to start..."
    );
    assert!(run.stderr.is_empty());

    let ps = env.ok(&["ps"]).stdout;
    let mut lines = ps.lines();
    assert_eq!(
        lines.next(),
        Some(
            "VM ID\t\t\tIMAGE\t\t\t\tKERNEL\t\t\t\t\tSIZE\tCPUS\tMEMORY\t\tCREATED\tSTATUS\tIPS\t\tPORTS\tNAME"
        )
    );
    let cells: Vec<&str> = lines
        .next()
        .expect("one VM row")
        .split('\t')
        .filter(|c| !c.is_empty())
        .collect();
    assert_eq!(
        cells[..6],
        [
            id.as_str(),
            "weaveworks/ignite-ubuntu:latest",
            "weaveworks/ignite-kernel:5.10.51",
            "4.0 GB",
            "2",
            "1024.0 MB"
        ]
    );
    assert!(cells[7].starts_with("Up "), "{cells:?}");
    assert_eq!(cells[8], "127.61.0.2");
    assert_eq!(cells[9], "alice-vm");

    let ip = env.ip_of("alice-vm");
    assert_eq!(ip, Ipv4Addr::new(127, 61, 0, 2));
    assert_eq!(
        http_get(ip, env.port, "/README.md")
            .expect("server answers")
            .status,
        404
    );

    let project = env.project(
        "proj",
        &[
            ("README.md", "hello from alice\n"),
            ("src/main.rs", "fn main() {}\n"),
        ],
    );
    let cp = env.ok(&["cp", &project.to_string_lossy(), "alice-vm:/workspace"]);
    assert_eq!(
        (cp.stdout.as_str(), cp.stderr.as_str()),
        ("", ""),
        "cp is silent"
    );
    let response = http_get(ip, env.port, "/README.md").expect("server answers");
    assert_eq!(
        (response.status, response.body.as_str()),
        (200, "hello from alice\n")
    );
    assert_eq!(response.header("X-Fake-Ignite-VM"), Some("alice-vm"));
    assert_eq!(
        http_get(ip, env.port, "/").expect("listing").body,
        "README.md\nsrc/\n"
    );
    assert_eq!(
        http_get(ip, env.port, "/src/main.rs").expect("nested").body,
        "fn main() {}\n"
    );

    let rm = env.ok(&["rm", "-f", &id[..6]]);
    assert_eq!(
        rm.messages().last().map(|(_, m)| m.clone()),
        Some(format!("Removed VM with name \"alice-vm\" and ID \"{id}\""))
    );
    let refused = http_get(ip, env.port, "/README.md").expect_err("server is gone");
    assert_eq!(refused.kind(), std::io::ErrorKind::ConnectionRefused);
    assert_eq!(
        env.ok(&["ps", "-a"]).stdout,
        "VM ID\tIMAGE\tKERNEL\tSIZE\tCPUS\tMEMORY\tCREATED\tSTATUS\tIPS\tPORTS\tNAME\n"
    );
    assert!(!support::exists(&env.state().join("vms").join(&id)));
}

#[test]
fn concurrent_runs_get_distinct_addresses() {
    let env = Env::new("concurrent");
    let names: Vec<String> = (0..6).map(|i| format!("vm-{i}")).collect();
    let handles: Vec<_> = names
        .iter()
        .map(|name| {
            let mut command = env.command(&["run", "img", "--name", name]);
            thread::spawn(move || command.output().expect("run"))
        })
        .collect();
    for handle in handles {
        let output = handle.join().expect("thread");
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stdout)
        );
    }
    let ips: Vec<Ipv4Addr> = names.iter().map(|name| env.ip_of(name)).collect();
    for (name, ip) in names.iter().zip(&ips) {
        let response = http_get(*ip, env.port, "/").expect("each VM serves");
        assert_eq!(response.header("X-Fake-Ignite-VM"), Some(name.as_str()));
    }
    let mut sorted = ips.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(
        sorted,
        (2..8)
            .map(|n| Ipv4Addr::new(127, 61, 0, n))
            .collect::<Vec<_>>()
    );
    // A freed address is handed out again, lowest first.
    let holder = names
        .iter()
        .zip(&ips)
        .find(|(_, ip)| **ip == Ipv4Addr::new(127, 61, 0, 3))
        .map(|(n, _)| n);
    env.ok(&["rm", "-f", holder.expect("someone holds .3")]);
    env.ok(&["run", "img", "--name", "again"]);
    assert_eq!(env.ip_of("again"), Ipv4Addr::new(127, 61, 0, 3));
}

#[test]
fn missing_vms_fail_like_ignite() {
    let env = Env::new("missing");
    for args in [
        vec!["rm", "nope"],
        vec!["rm", "-f", "nope"],
        vec!["stop", "nope"],
        vec!["inspect", "vm", "nope"],
        vec!["cp", "/etc/hostname", "nope:/tmp"],
    ] {
        let run = env.ignite(&args);
        assert_eq!(run.code, 1, "{args:?}");
        assert_eq!(
            run.messages(),
            [("fatal".to_string(), MISSING.to_string())],
            "{args:?}: {}",
            run.stdout
        );
        assert_eq!(
            run.stderr, "",
            "{args:?}: ignite logs fatal errors to stdout"
        );
    }
}

#[test]
fn running_vms_need_force_and_names_are_unique() {
    let env = Env::new("force");
    env.ok(&["run", "img", "--name", "busy"]);
    let id = env.ok(&["ps", "-q"]).stdout.trim().to_string();
    let rm = env.ignite(&["rm", "busy"]);
    assert_eq!(
        (rm.code, rm.messages()),
        (1, vec![("fatal".to_string(), format!("{id} is running"))])
    );
    let dup = env.ignite(&["run", "img", "--name", "busy"]);
    assert_eq!(
        dup.messages(),
        [(
            "fatal".to_string(),
            "invalid VM id/name \"busy\": already exists".to_string()
        )]
    );
    let upper = env.ignite(&["run", "img", "--name", "Busy"]);
    assert_eq!(upper.code, 1);
    assert!(
        upper.messages()[0]
            .1
            .starts_with("metadata.name: Invalid value: \"Busy\": a lowercase RFC 1123 subdomain"),
        "{}",
        upper.stdout
    );
    env.ok(&["stop", "busy"]);
    assert!(
        env.ok(&["ps"]).stdout.lines().count() == 1,
        "stopped VMs leave ps"
    );
    assert!(env.ok(&["ps", "-a"]).stdout.contains("Stopped"));
    assert!(
        env.ok(&["vm", "ls"]).stdout.contains("Stopped"),
        "vm ls lists every VM"
    );
    assert_eq!(
        env.ok(&["ps", "-a", "-t", "{{.Name}}:{{.Status.Running}}"])
            .stdout,
        "busy:false\n"
    );
    let cp = env.ignite(&["cp", "/etc/hostname", "busy:/tmp"]);
    assert_eq!(cp.messages()[0].1, format!("VM \"{id}\" is not running"));
    env.ok(&["rm", "busy"]);
}

#[test]
fn cp_needs_an_ssh_key_like_ignite() {
    let env = Env::new("nokey");
    env.ok(&["run", "img", "--name", "plain"]);
    let id = env.ok(&["ps", "-q"]).stdout.trim().to_string();
    let cp = env.ignite(&["cp", "/etc/hostname", "plain:/x"]);
    assert_eq!(
        (cp.code, cp.messages()[0].1.clone()),
        (1, format!("no private key found for VM \"{id}\""))
    );
    let key = env.project("key", &[("id", "not really a key")]).join("id");
    env.ok(&[
        "cp",
        "-i",
        &key.to_string_lossy(),
        "/etc/hostname",
        "plain:/hostname",
    ]);
    let both = env.ignite(&["cp", "plain:/a", "plain:/b"]);
    assert_eq!(
        both.messages()[0].1,
        "only one of source or destination can have VM name/ID"
    );
}

#[test]
fn usage_errors_go_to_stderr() {
    let env = Env::new("usage");
    let flag = env.ignite(&["rm", "--foo", "x"]);
    assert_eq!(flag.code, 1);
    assert_eq!(flag.stdout, "");
    assert!(
        flag.stderr
            .starts_with("Error: unknown flag: --foo\nUsage:\n  ignite rm <vm>... [flags]\n"),
        "{}",
        flag.stderr
    );
    let command = env.ignite(&["frobnicate"]);
    assert_eq!(
        (command.code, command.stderr.as_str()),
        (
            1,
            "Error: unknown command \"frobnicate\" for \"ignite\"\nRun 'ignite --help' for usage.\n"
        )
    );
    let args = env.ignite(&["inspect", "vm"]);
    assert!(
        args.stderr
            .starts_with("Error: accepts 2 arg(s), received 1\n")
    );
    let size = env.ignite(&["run", "img", "--memory", "lots"]);
    assert!(size.stderr.starts_with(
        "Error: invalid argument \"lots\" for \"--memory\" flag: strconv.UnmarshalText: parsing \"lots\": invalid syntax\n"
    ));
    assert_eq!(env.ok(&["rm", "--help"]).stderr, "");
    assert_eq!(env.ok(&["version", "-o", "short"]).stdout, "v0.10.0\n");
}

#[test]
fn faults_can_be_injected_and_calls_are_recorded() {
    let mut env = Env::new("faults");
    env.ok(&["run", "img", "--name", "one"]);
    std::fs::write(env.state().join("fail-ps"), "store unavailable\n").expect("write fault file");
    let ps = env.ignite(&["ps"]);
    assert_eq!(
        (ps.code, ps.messages()),
        (
            1,
            vec![("fatal".to_string(), "store unavailable".to_string())]
        )
    );
    std::fs::remove_file(env.state().join("fail-ps")).expect("remove fault file");
    env.ok(&["ps"]);
    env.set("FAKE_IGNITE_FAIL_RUN", "no capacity");
    let run = env.ignite(&["run", "img", "--name", "two"]);
    assert_eq!((run.code, run.messages()[0].1.as_str()), (1, "no capacity"));
    assert_eq!(
        env.ok(&["ps", "-a", "-q"]).stdout.lines().count(),
        1,
        "a failed run creates nothing"
    );
    let calls = env.calls();
    let runs: Vec<_> = calls.iter().filter(|c| c["argv"][0] == "run").collect();
    assert_eq!(runs.len(), 2);
    assert_eq!(runs[0]["exit"], 0);
    assert_eq!(runs[1]["exit"], 1);
    assert_eq!(
        runs[1]["argv"],
        serde_json::json!(["run", "img", "--name", "two"])
    );
}

#[test]
fn boots_take_the_configured_delay_and_servers_die_with_the_state() {
    let mut env = Env::new("boot");
    env.set("FAKE_IGNITE_BOOT_DELAY_MS", "400");
    let started = Instant::now();
    env.ok(&["run", "img", "--name", "slow", "-q"]);
    assert!(started.elapsed() >= Duration::from_millis(400));
    let ip = env.ip_of("slow");
    assert_eq!(
        http_get(ip, env.port, "/").expect("up").status,
        404,
        "no /workspace yet"
    );
    std::fs::remove_dir_all(env.state()).expect("remove state");
    let deadline = Instant::now() + Duration::from_secs(3);
    while http_get(ip, env.port, "/").is_ok() {
        assert!(
            Instant::now() < deadline,
            "server outlived its state directory"
        );
        thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn state_is_required_and_terminal_format_is_available() {
    let env = Env::new("nostate");
    let run = env
        .command(&["ps"])
        .env_remove("FAKE_IGNITE_STATE")
        .output()
        .expect("run");
    assert_eq!(run.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&run.stdout).contains("FAKE_IGNITE_STATE is not set"));
    let tty = env
        .command(&["rm", "nope"])
        .env("FAKE_IGNITE_LOG_FORMAT", "tty")
        .output()
        .expect("run");
    let stdout = String::from_utf8_lossy(&tty.stdout);
    assert!(
        stdout.starts_with(&format!("\x1b[31mFATA\x1b[0m[0000] {MISSING}")),
        "{stdout:?}"
    );
}
