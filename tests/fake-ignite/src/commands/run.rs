//! `ignite run <image>`: create a VM (`run/create.go`) and start it
//! (`run/start.go`, `pkg/operations/start.go`). Starting allocates a
//! 127.61.0.N address, waits `FAKE_IGNITE_BOOT_DELAY_MS` and launches the
//! VM's HTTP server.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::time::Duration;

use crate::cli::{self, FlagSpec, Kind, Parsed};
use crate::commands::{ArgRule, Command, Context};
use crate::failure::{Failure, Outcome};
use crate::http::Site;
use crate::store::Store;
use crate::usage::CommandSpec;
use crate::vm::{self, FileMapping, PortMapping, Ssh, Vm};
use crate::{
    copy, goparse, ids, k8s, log::go_quote, netalloc, portspec, reference, server, sizes, timefmt,
};

/// Flags of `run` (`addCreateFlags` + `addStartFlags` + runtime/network).
const FLAGS: &[FlagSpec] = &[
    FlagSpec::new("config", None, Kind::Value, "string", "Specify a path to a file with the API resources you want to pass"),
    FlagSpec::new("copy-files", Some('f'), Kind::List, "strings", "Copy files/directories from the host to the created VM"),
    FlagSpec::new("cpus", None, Kind::Value, "uint", "VM vCPU count, 1 or even numbers between 1 and 32")
        .default("1")
        .validate(cli::validate_uint),
    FlagSpec::new("debug", Some('d'), Kind::Bool, "", "Debug mode, keep container after VM shutdown"),
    FlagSpec::new(
        "ignore-preflight-checks",
        None,
        Kind::List,
        "strings",
        "A list of checks whose errors will be shown as warnings. Example: 'BinaryInPath,Port,ExistingFile'. Value 'all' ignores errors from all checks.",
    ),
    FlagSpec::new("id-prefix", None, Kind::Value, "string", "Prefix string for system identifiers (default ignite)"),
    FlagSpec::new("interactive", Some('i'), Kind::Bool, "", "Attach to the VM after starting"),
    FlagSpec::new("kernel-args", None, Kind::Value, "string", "Set the command line for the kernel")
        .default("\"console=ttyS0 reboot=k panic=1 pci=off ip=dhcp\""),
    FlagSpec::new(
        "kernel-image",
        Some('k'),
        Kind::Value,
        "oci-image",
        "Specify an OCI image containing the kernel at /boot/vmlinux and optionally, modules",
    )
    .default("weaveworks/ignite-kernel:5.10.51")
    .validate(cli::validate_oci_image),
    FlagSpec::new("label", Some('l'), Kind::Array, "stringArray", "Set a label (foo=bar)"),
    FlagSpec::new("memory", None, Kind::Value, "size", "Amount of RAM to allocate for the VM")
        .default("512.0 MB")
        .validate(cli::validate_size),
    FlagSpec::new("name", Some('n'), Kind::Value, "string", "Specify the name"),
    FlagSpec::new(
        "network-plugin",
        None,
        Kind::Value,
        "plugin",
        "Network plugin to use. Available options are: [cni docker-bridge]",
    )
    .default("cni")
    .validate(validate_network_plugin),
    FlagSpec::new("ports", Some('p'), Kind::List, "strings", "Map host ports to VM ports"),
    FlagSpec::new(
        "registry-config-dir",
        None,
        Kind::Value,
        "string",
        "Directory containing the registry configuration (default ~/.docker/)",
    ),
    FlagSpec::new("require-name", None, Kind::Bool, "", "Require VM name to be passed, no name generation"),
    FlagSpec::new("runtime", None, Kind::Value, "runtime", "Container runtime to use. Available options are: [docker containerd]")
        .default("containerd")
        .validate(validate_runtime),
    FlagSpec::new("sandbox-image", None, Kind::Value, "oci-image", "Specify an OCI image for the VM sandbox")
        .default("weaveworks/ignite:v0.10.0")
        .validate(cli::validate_oci_image),
    FlagSpec::new("size", Some('s'), Kind::Value, "size", "VM filesystem size, for example 5GB or 2048MB")
        .default("4.0 GB")
        .validate(cli::validate_size),
    FlagSpec::new(
        "ssh",
        None,
        Kind::OptionalValue("<path>"),
        "",
        "Enable SSH for the VM. If <path> is given, it will be imported as the public key. If just '--ssh' is specified, a new keypair will be generated.",
    )
    .default("is unset, which disables SSH access to the VM")
    .validate(validate_ssh),
    FlagSpec::new("volumes", Some('v'), Kind::Value, "volume", "Expose block devices from the host inside the VM"),
];

/// `ignite run`.
pub static COMMAND: Command = Command {
    key: "run",
    spec: CommandSpec {
        path: "ignite run",
        args: "<OCI image>",
        aliases: &[],
        short: "Create a new VM and start it",
        flags: FLAGS,
    },
    args: ArgRule::Range(0, 1),
    needs_state: true,
    handler: handle,
};

/// `ignite vm run`.
pub static VM_COMMAND: Command = Command {
    key: "run",
    spec: CommandSpec {
        path: "ignite vm run",
        args: "<OCI image>",
        aliases: &[],
        short: "Create a new VM and start it",
        flags: FLAGS,
    },
    args: ArgRule::Range(0, 1),
    needs_state: true,
    handler: handle,
};

/// `metadata.go` `nameRegex`, `^[a-z-_0-9.:/@]*$`. Checked by `Create`
/// after `ValidateVM`'s stricter RFC 1123 check has passed, so for `run` it
/// can no longer fail; kept for the order of ignite's checks.
fn valid_name(name: &str) -> bool {
    name.chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.:/@".contains(c))
}

/// `SSHFlag.Set`: a path must name an existing public key.
fn validate_ssh(value: &str) -> Result<(), String> {
    if value == "<path>" || value.is_empty() {
        return Ok(());
    }
    let key = public_key_path(value);
    if Path::new(&key).is_file() {
        Ok(())
    } else {
        Err(format!("invalid SSH key: {key}"))
    }
}

/// `--ssh=<path>` always refers to the `.pub` file.
fn public_key_path(value: &str) -> String {
    if value.ends_with(".pub") {
        value.to_string()
    } else {
        format!("{value}.pub")
    }
}

/// `--runtime` values.
fn validate_runtime(value: &str) -> Result<(), String> {
    match value {
        "containerd" | "docker" => Ok(()),
        _ => Err(format!(
            "invalid runtime {}, must be one of [docker containerd]",
            go_quote(value)
        )),
    }
}

/// `--network-plugin` values.
fn validate_network_plugin(value: &str) -> Result<(), String> {
    match value {
        "cni" | "docker-bridge" => Ok(()),
        _ => Err(format!(
            "invalid network plugin {}, must be one of [cni docker-bridge]",
            go_quote(value)
        )),
    }
}

/// Everything `run` takes from its flags, validated.
struct Request {
    /// Normalized image reference.
    image: String,
    /// `--name`, if given.
    name: Option<String>,
    /// `--cpus`.
    cpus: u64,
    /// `--memory` in bytes.
    memory: u64,
    /// `--size` in bytes.
    disk_size: u64,
    /// `--ports`.
    ports: Vec<PortMapping>,
    /// `--copy-files`.
    copy_files: Vec<FileMapping>,
    /// `--ssh`.
    ssh: Option<Ssh>,
    /// `--label` values, checked by `Create` (after the name).
    labels: Vec<String>,
    /// `--kernel-image`, normalized.
    kernel: String,
    /// `--kernel-args`.
    kernel_args: String,
    /// `--sandbox-image`, normalized.
    sandbox: String,
    /// `--runtime`.
    runtime: String,
    /// `--network-plugin`.
    network_plugin: String,
}

/// Runs `ignite run`.
fn handle(ctx: &Context, parsed: &Parsed) -> Outcome {
    if parsed.flag("interactive") {
        return Err(Failure::fatal(
            "fake ignite: --interactive is not supported",
        ));
    }
    if parsed.changed("config") || parsed.changed("volumes") {
        return Err(Failure::fatal(
            "fake ignite: --config and --volumes are not supported",
        ));
    }
    let request = request(parsed)?;
    let settings = Settings::from_env()?;
    let store = ctx.store()?;
    let mut vm = create(ctx, store, request)?;
    if ctx.quiet {
        println!("{}", vm.id);
    } else {
        ctx.log.info(&format!(
            "Created VM with ID {} and name {}",
            go_quote(&vm.id),
            go_quote(&vm.name)
        ));
    }
    start(ctx, store, &mut vm, &settings)?;
    if vm.ssh == Some(Ssh::Generate) {
        ctx.log
            .info("Waiting for the ssh daemon within the VM to start...");
    }
    Ok(())
}

/// `NewCreateOptions` (`cmd/ignite/run/create.go`): reads the flags and
/// checks them in ignite's order: the image argument, `--copy-files`,
/// `--ports`, `--require-name`, then `ValidateVM` (the name as an RFC 1123
/// subdomain and the image being set, aggregated into one error).
fn request(parsed: &Parsed) -> Result<Request, Failure> {
    let image = parsed
        .args
        .first()
        .map(|arg| reference::parse_oci_image_ref(arg))
        .transpose()
        .map_err(Failure::Fatal)?;
    let copy_files = parse_file_mappings(&parsed.values("copy-files")).map_err(Failure::Fatal)?;
    let ports = portspec::parse_port_mappings(&parsed.values("ports")).map_err(Failure::Fatal)?;
    // Without `--name`, ignite has already generated a name at this point
    // (`metadata.SetNameAndUID` runs before the flags are applied), so
    // `--require-name` only fails for an explicitly empty `--name ""`.
    let name = parsed.value("name").map(str::to_string);
    if parsed.flag("require-name") && name.as_deref() == Some("") {
        return Err(Failure::fatal("must set VM name, flag --require-name set"));
    }
    let mut errors = name
        .as_deref()
        .map(k8s::validate_vm_name)
        .unwrap_or_default();
    if image.is_none() {
        errors.push(k8s::FieldError::Required {
            path: ".spec.image.oci".to_string(),
            detail: "the OCI reference is mandatory".to_string(),
        });
    }
    if let Some(message) = k8s::aggregate(&errors) {
        return Err(Failure::Fatal(message));
    }
    let size = |flag: &str, default: u64| -> Result<u64, Failure> {
        parsed
            .value(flag)
            .map_or(Ok(default), |v| sizes::parse(v).map_err(Failure::Fatal))
    };
    let cpus = match parsed.value("cpus") {
        Some(v) => goparse::parse_uint(v, 0, 64).map_err(Failure::Fatal)?,
        None => vm::DEFAULT_CPUS,
    };
    let ssh = parsed.value("ssh").filter(|v| !v.is_empty()).map(|v| {
        if v == "<path>" {
            Ssh::Generate
        } else {
            Ssh::PublicKey(public_key_path(v))
        }
    });
    let oci_flag = |flag: &str, default: &str| -> Result<String, Failure> {
        reference::parse_oci_image_ref(parsed.value(flag).unwrap_or(default))
            .map_err(Failure::Fatal)
    };
    Ok(Request {
        image: image.unwrap_or_default(),
        name,
        cpus,
        memory: size("memory", vm::DEFAULT_MEMORY)?,
        disk_size: size("size", vm::DEFAULT_DISK)?,
        ports,
        copy_files,
        ssh,
        labels: parsed.values("label"),
        kernel: oci_flag("kernel-image", vm::DEFAULT_KERNEL)?,
        kernel_args: parsed
            .value("kernel-args")
            .unwrap_or(vm::DEFAULT_KERNEL_ARGS)
            .to_string(),
        sandbox: oci_flag("sandbox-image", vm::DEFAULT_SANDBOX)?,
        runtime: parsed
            .value("runtime")
            .unwrap_or(vm::DEFAULT_RUNTIME)
            .to_string(),
        network_plugin: parsed
            .value("network-plugin")
            .unwrap_or(vm::DEFAULT_NETWORK_PLUGIN)
            .to_string(),
    })
}

/// `parseFileMappings` (`run/create.go`).
fn parse_file_mappings(input: &[String]) -> Result<Vec<FileMapping>, String> {
    input
        .iter()
        .map(|mapping| {
            let parts: Vec<&str> = mapping.split(':').collect();
            let [host, vm] = parts.as_slice() else {
                return Err("--copy-files requires the /host/path:/vm/path form".to_string());
            };
            if !host.starts_with('/') || !vm.starts_with('/') {
                return Err("--copy-files path arguments must be absolute".to_string());
            }
            Ok(FileMapping {
                host_path: host.to_string(),
                vm_path: vm.to_string(),
            })
        })
        .collect()
}

/// `metadata.SetLabels` (`pkg/metadata/metadata.go`): each value split once
/// on `=`, the key non-empty. Nothing else is checked: ignite does not apply
/// Kubernetes' label-key or label-value rules, so any value (commas, `_`,
/// upper case, any length) is kept as given.
fn parse_labels(input: &[String]) -> Result<BTreeMap<String, String>, String> {
    let mut labels = BTreeMap::new();
    for label in input {
        let Some((key, value)) = label.split_once('=') else {
            return Err(format!(
                "invalid label value {}: supported syntax: --label <key>=<value>",
                go_quote(label)
            ));
        };
        if key.is_empty() {
            return Err(format!("invalid label {}, name empty", go_quote(label)));
        }
        labels.insert(key.to_string(), value.to_string());
    }
    Ok(labels)
}

/// Fake-only knobs read from the environment.
struct Settings {
    /// How long `run` waits before the VM's server starts.
    boot_delay: Duration,
    /// The port every VM serves HTTP on.
    port: u16,
    /// The served directory inside the VM.
    serve_dir: String,
}

impl Settings {
    /// `FAKE_IGNITE_BOOT_DELAY_MS`, `FAKE_IGNITE_HTTP_PORT`, `FAKE_IGNITE_SERVE_DIR`.
    fn from_env() -> Result<Settings, Failure> {
        fn number<T: std::str::FromStr>(name: &str, default: T) -> Result<T, Failure> {
            match std::env::var(name) {
                Ok(text) if !text.trim().is_empty() => text
                    .trim()
                    .parse()
                    .map_err(|_| Failure::fatal(format!("fake ignite: invalid {name}={text:?}"))),
                _ => Ok(default),
            }
        }
        let serve_dir = std::env::var("FAKE_IGNITE_SERVE_DIR")
            .ok()
            .filter(|d| !d.is_empty());
        Ok(Settings {
            boot_delay: Duration::from_millis(number("FAKE_IGNITE_BOOT_DELAY_MS", 0u64)?),
            port: number("FAKE_IGNITE_HTTP_PORT", 8080u16)?,
            serve_dir: serve_dir.unwrap_or_else(|| "/workspace".to_string()),
        })
    }
}

/// `Create` (`cmd/ignite/run/create.go`): names the VM (`SetNameAndUID`:
/// name format, then uniqueness), applies the labels (`SetLabels`),
/// records the VM (not running), allocates its disk and copies
/// `--copy-files` into its file system.
fn create(ctx: &Context, store: &Store, request: Request) -> Result<Vm, Failure> {
    let lock = store.lock()?;
    let existing = store.load_all(&lock);
    let taken = |name: &str| existing.iter().any(|vm| vm.name == name);
    let name = match request.name {
        Some(name) => name,
        None => loop {
            let candidate = random_name();
            if !taken(&candidate) {
                break candidate;
            }
        },
    };
    if !valid_name(&name) {
        return Err(Failure::fatal(format!(
            "invalid name {}: does not match required format ^[a-z-_0-9.:/@]*$",
            go_quote(&name)
        )));
    }
    if taken(&name) {
        return Err(Failure::fatal(format!(
            "invalid VM id/name {}: already exists",
            go_quote(&name)
        )));
    }
    let labels = parse_labels(&request.labels).map_err(Failure::Fatal)?;
    let id = loop {
        let candidate = ids::new_vm_id();
        if !existing
            .iter()
            .any(|vm| vm.id == candidate || vm.name == candidate)
        {
            break candidate;
        }
    };
    let vm = Vm {
        id,
        name,
        created: timefmt::now_unix(),
        image: request.image,
        kernel: request.kernel,
        kernel_args: request.kernel_args,
        sandbox: request.sandbox,
        cpus: request.cpus,
        memory: request.memory,
        disk_size: request.disk_size,
        ports: request.ports,
        copy_files: request.copy_files,
        ssh: request.ssh,
        labels,
        running: false,
        ip: None,
        container_id: String::new(),
        start_time: None,
        pid: None,
        runtime: request.runtime,
        network_plugin: request.network_plugin,
    };
    if vm.disk_size > i64::MAX as u64 {
        // `dmlegacy.AllocateAndPopulateOverlay` fails after the VM object was
        // saved; the deferred `metadata.Cleanup` reports and deletes it.
        if ctx.quiet {
            println!("{}", vm.id);
        } else {
            ctx.log.info(&format!(
                "Removed VM with name {} and ID {}",
                go_quote(&vm.name),
                go_quote(&vm.id)
            ));
        }
        return Err(Failure::fatal(format!(
            "requested size {} too large, cannot truncate",
            vm.disk_size
        )));
    }
    let root = store.vm_root(&vm.id);
    fs::create_dir_all(&root).map_err(|e| {
        Failure::fatal(format!(
            "failed to create directory for ID {:?}: {e}",
            vm.id
        ))
    })?;
    for mapping in &vm.copy_files {
        if let Err(error) = copy::host_to_vm(
            &copy::clean(&mapping.host_path),
            &root,
            &copy::clean(&mapping.vm_path),
        ) {
            let _ = store.delete(&lock, &vm.id);
            return Err(Failure::fatal(format!(
                "failed to copy files into the VM: {error}"
            )));
        }
    }
    store.save(&lock, &vm)?;
    Ok(vm)
}

/// `StartVM`: address, container ID, log lines, boot delay, server.
fn start(ctx: &Context, store: &Store, vm: &mut Vm, settings: &Settings) -> Outcome {
    {
        let lock = store.lock()?;
        let used: Vec<_> = store
            .load_all(&lock)
            .iter()
            .filter_map(|other| other.ip)
            .collect();
        let ip = netalloc::allocate(&used)
            .ok_or_else(|| Failure::fatal("failed to allocate an IP: 127.61.0.0/16 is full"))?;
        vm.ip = Some(ip);
        vm.container_id = ids::new_container_id();
        store.save(&lock, vm)?;
    }
    if !ctx.quiet {
        ctx.log.info(&format!(
            "Networking is handled by {}",
            go_quote(&vm.network_plugin)
        ));
        ctx.log.info(&format!(
            "Started Firecracker VM {} in a container with ID {}",
            go_quote(&vm.id),
            go_quote(&vm.container_id)
        ));
    }
    std::thread::sleep(settings.boot_delay);
    let lock = store.lock()?;
    let release = |vm: &mut Vm, message: String| -> Failure {
        vm.ip = None;
        let _ = store.save(&lock, vm);
        Failure::Fatal(message)
    };
    let Some(current) = store
        .load_all(&lock)
        .into_iter()
        .find(|other| other.id == vm.id)
    else {
        return Err(Failure::fatal("timeout waiting for ignite-spawn startup"));
    };
    *vm = current;
    let Some(ip) = vm.ip else {
        return Err(Failure::fatal("timeout waiting for ignite-spawn startup"));
    };
    let site = Site {
        root: store.vm_root(&vm.id),
        serve_dir: settings.serve_dir.clone(),
        vm_name: vm.name.clone(),
    };
    let pid = match server::spawn(
        store.root(),
        &store.vm_dir(&vm.id),
        ip,
        settings.port,
        &site,
    ) {
        Ok(pid) => pid,
        Err(error) => {
            let message = format!(
                "failed to start container for VM {}: {error}",
                go_quote(&vm.id)
            );
            return Err(release(vm, message));
        }
    };
    vm.pid = Some(pid);
    vm.running = true;
    vm.start_time = Some(timefmt::now_unix());
    store.save(&lock, vm)
}

/// A random `adjective-noun` name like ignite's namegenerator
/// (`rough-water`, `crimson-river`).
fn random_name() -> String {
    const ADJECTIVES: &[&str] = &[
        "autumn",
        "hidden",
        "bitter",
        "misty",
        "silent",
        "empty",
        "dry",
        "dark",
        "summer",
        "icy",
        "delicate",
        "quiet",
        "white",
        "cool",
        "spring",
        "winter",
        "patient",
        "twilight",
        "dawn",
        "crimson",
        "wispy",
        "weathered",
        "blue",
        "billowing",
        "broken",
        "cold",
        "damp",
        "falling",
        "frosty",
        "green",
        "long",
        "late",
        "lingering",
        "bold",
        "little",
        "morning",
        "muddy",
        "old",
        "red",
        "rough",
        "still",
        "small",
        "sparkling",
        "wandering",
        "withered",
        "wild",
        "black",
        "young",
        "holy",
        "solitary",
        "fragrant",
        "aged",
        "snowy",
        "proud",
        "floral",
        "restless",
    ];
    const NOUNS: &[&str] = &[
        "waterfall",
        "river",
        "breeze",
        "moon",
        "rain",
        "wind",
        "sea",
        "morning",
        "snow",
        "lake",
        "sunset",
        "pine",
        "shadow",
        "leaf",
        "dawn",
        "glitter",
        "forest",
        "hill",
        "cloud",
        "meadow",
        "sun",
        "glade",
        "bird",
        "brook",
        "butterfly",
        "bush",
        "dew",
        "dust",
        "field",
        "fire",
        "flower",
        "firefly",
        "feather",
        "grass",
        "haze",
        "mountain",
        "night",
        "pond",
        "darkness",
        "snowflake",
        "silence",
        "sound",
        "sky",
        "shape",
        "surf",
        "thunder",
        "violet",
        "water",
        "wildflower",
        "wave",
        "resonance",
        "dream",
        "cherry",
        "tree",
        "fog",
        "frost",
        "voice",
    ];
    let random = ids::random_hex(4);
    let bits = u32::from_str_radix(&random, 16).unwrap_or(0) as usize;
    format!(
        "{}-{}",
        ADJECTIVES[bits % ADJECTIVES.len()],
        NOUNS[(bits / ADJECTIVES.len()) % NOUNS.len()]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn validates_names_like_ignite() {
        assert!(valid_name("user-alice-session"));
        assert!(valid_name("a.b:c/d@e_f"));
        assert!(!valid_name("User-A"));
        assert!(!valid_name("has space"));
        for _ in 0..50 {
            let name = random_name();
            assert!(
                valid_name(&name) && k8s::validate_vm_name(&name).is_empty(),
                "{name}"
            );
        }
    }

    #[test]
    fn parses_files_and_labels() {
        assert_eq!(
            parse_file_mappings(&strings(&["a:/b"])),
            Err("--copy-files path arguments must be absolute".into())
        );
        assert_eq!(
            parse_file_mappings(&strings(&["/a"])),
            Err("--copy-files requires the /host/path:/vm/path form".into())
        );
        assert_eq!(
            parse_labels(&strings(&["a=b=c"])).map(|l| l["a"].clone()),
            Ok("b=c".into())
        );
        assert_eq!(
            parse_labels(&strings(&["=x"])),
            Err("invalid label \"=x\", name empty".into())
        );
        assert_eq!(
            parse_labels(&strings(&["novalue"])),
            Err("invalid label value \"novalue\": supported syntax: --label <key>=<value>".into())
        );
        let labels = parse_labels(&strings(&[
            "vessel.ports=8080,9000",
            "vessel.user=Alice_-",
            "Weird Key!=",
        ]))
        .expect("ignite applies no label-syntax rules");
        assert_eq!(labels["vessel.ports"], "8080,9000");
        assert_eq!(labels["vessel.user"], "Alice_-");
        assert_eq!(labels["Weird Key!"], "");
    }
}
