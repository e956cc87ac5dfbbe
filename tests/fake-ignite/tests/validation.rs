//! Integration tests of the argument rules the fake shares with ignite
//! v0.10.0 (FORMATS.md section 12): VM names (`ValidateVM`'s RFC 1123
//! subdomain check and its aggregated errors), labels, sizes, CPU counts,
//! ports, image references, `cp` flags and `ps` filters. Every refusal is
//! checked for its exact words, stream and exit code.

mod support;

use support::{Env, Run};

/// ignite's `IsDNS1123Subdomain` refusal of `name`, as `ValidateVM` words it.
fn not_subdomain(name: &str) -> String {
    format!(
        "metadata.name: Invalid value: \"{name}\": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
    )
}

/// Asserts `run` failed like a command error: exit 1, exactly one `fatal`
/// line on stdout with `message`, nothing on stderr.
fn assert_fatal(run: &Run, message: &str) {
    assert_eq!(
        (run.code, run.messages(), run.stderr.as_str()),
        (1, vec![("fatal".to_string(), message.to_string())], ""),
        "stdout: {}",
        run.stdout
    );
}

/// Asserts `run` failed like a cobra usage error: exit 1, nothing on stdout,
/// `Error: <message>` and the usage text on stderr.
fn assert_usage(run: &Run, message: &str, usage_line: &str) {
    assert_eq!(run.code, 1, "{run:?}");
    assert_eq!(run.stdout, "", "{run:?}");
    let expected = format!("Error: {message}\nUsage:\n  {usage_line}\n");
    assert!(run.stderr.starts_with(&expected), "{}", run.stderr);
}

/// The usage line of `ignite run`.
const RUN_USAGE: &str = "ignite run <OCI image> [flags]";

/// `inspect vm <name>` as JSON.
fn inspect(env: &Env, name: &str) -> serde_json::Value {
    serde_json::from_str(&env.ok(&["inspect", "vm", name]).stdout).expect("inspect prints JSON")
}

/// How many VMs `ps -a -q` lists.
fn vm_count(env: &Env) -> usize {
    env.ok(&["ps", "-a", "-q"]).stdout.lines().count()
}

#[test]
fn names_must_be_rfc_1123_subdomains() {
    let env = Env::new("names");
    let session = env.ignite(&["run", "img", "--name", "user-.user-.a-session"]);
    assert_fatal(&session, &not_subdomain("user-.user-.a-session"));
    // The raw logfmt line, as a driver reading stdout sees it.
    assert!(
        session.stdout.ends_with(
            " level=fatal msg=\"metadata.name: Invalid value: \\\"user-.user-.a-session\\\": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')\"\n"
        ),
        "{}",
        session.stdout
    );
    // Upper case: refused by ValidateVM before pkg/metadata's name regex
    // (whose "does not match required format" text `run` never reaches).
    assert_fatal(
        &env.ignite(&["run", "img", "--name", "User-A"]),
        &not_subdomain("User-A"),
    );
    // '_' passes the metadata regex but not RFC 1123.
    assert_fatal(
        &env.ignite(&["run", "img", "--name", "vessel_user_a"]),
        &not_subdomain("vessel_user_a"),
    );
    for name in [
        "alice-", "-alice", "a..b", "a.-b", "alice@x", "a:b", "a/b", "é",
    ] {
        assert_fatal(
            &env.ignite(&["run", "img", "--name", name]),
            &not_subdomain(name),
        );
    }
    // `--name ""` is validated too (no random name is generated).
    assert_fatal(
        &env.ignite(&["run", "img", "--name", ""]),
        &not_subdomain(""),
    );
    assert_eq!(vm_count(&env), 0, "nothing was created");
}

#[test]
fn long_names_get_the_253_character_message() {
    let env = Env::new("longnames");
    let long = "a".repeat(254);
    assert_fatal(
        &env.ignite(&["run", "img", "--name", &long]),
        &format!("metadata.name: Invalid value: \"{long}\": must be no more than 253 characters"),
    );
    // Both rules broken: ToAggregate joins the field errors in brackets.
    let long_upper = format!("A{}", "a".repeat(253));
    assert_fatal(
        &env.ignite(&["run", "img", "--name", &long_upper]),
        &format!(
            "[metadata.name: Invalid value: \"{long_upper}\": must be no more than 253 characters, {}]",
            not_subdomain(&long_upper)
        ),
    );
    let longest = format!("{}.{}", "b".repeat(126), "c".repeat(126));
    assert_eq!(longest.len(), 253);
    env.ok(&["run", "img", "--name", &longest, "-q"]);
    assert_eq!(
        inspect(&env, &longest)["metadata"]["name"],
        longest.as_str()
    );
}

#[test]
fn driver_style_names_are_accepted() {
    let env = Env::new("goodnames");
    let name = format!("vessel-user-{}xyz-21", "a1b2c3d4e5".repeat(5));
    assert_eq!(name.len(), 68);
    env.ok(&["run", "img", "--name", &name]);
    assert_eq!(inspect(&env, &name)["metadata"]["name"], name.as_str());
    env.ok(&["run", "img", "--name", "a.b-c.0"]);
    assert_eq!(vm_count(&env), 2);
}

#[test]
fn require_name_only_fails_for_an_empty_name() {
    let env = Env::new("requirename");
    assert_fatal(
        &env.ignite(&["run", "img", "--require-name", "--name", ""]),
        "must set VM name, flag --require-name set",
    );
    // ignite v0.10 generates the random name before this check, so a
    // missing --name passes.
    env.ok(&["run", "img", "--require-name"]);
    assert_eq!(vm_count(&env), 1);
}

#[test]
fn run_checks_in_ignites_order() {
    let env = Env::new("order");
    // No image: ValidateVM's Required error, aggregated with the name's.
    let required = ".spec.image.oci: Required value: the OCI reference is mandatory";
    assert_fatal(&env.ignite(&["run", "--name", "ok"]), required);
    assert_fatal(
        &env.ignite(&["run", "--name", "Bad"]),
        &format!("[{}, {required}]", not_subdomain("Bad")),
    );
    assert_usage(
        &env.ignite(&["run", "img", "other"]),
        "accepts between 0 and 1 arg(s), received 2",
        RUN_USAGE,
    );
    // The image is parsed first, then --copy-files, then --ports, then the
    // name; labels only after the name was found unused.
    assert_fatal(
        &env.ignite(&["run", "Ubuntu", "--name", "Bad", "-p", "x"]),
        "invalid reference format: repository name must be lowercase",
    );
    assert_fatal(
        &env.ignite(&["run", "img", "--name", "Bad", "-f", "rel:/x", "-p", "80"]),
        "--copy-files path arguments must be absolute",
    );
    assert_fatal(
        &env.ignite(&["run", "img", "--name", "Bad", "-p", "80", "-l", "x"]),
        "invalid host port: \"\"",
    );
    assert_fatal(
        &env.ignite(&["run", "img", "--name", "Bad", "-l", "x"]),
        &not_subdomain("Bad"),
    );
    env.ok(&["run", "img", "--name", "taken"]);
    assert_fatal(
        &env.ignite(&["run", "img", "--name", "taken", "-l", "x"]),
        "invalid VM id/name \"taken\": already exists",
    );
    assert_fatal(
        &env.ignite(&["run", "img", "--name", "fresh", "-l", "x"]),
        "invalid label value \"x\": supported syntax: --label <key>=<value>",
    );
    assert_eq!(vm_count(&env), 1);
}

#[test]
fn labels_take_any_key_and_value() {
    let env = Env::new("labels");
    let long_value = "v".repeat(100);
    env.ok(&[
        "run",
        "img",
        "--name",
        "labelled",
        "--label",
        "vessel.vm-id=0123456789abcdef",
        "--label",
        "vessel.ports=8080,9000",
        "-l",
        "vessel.user=Alice_-",
        "-l",
        &format!("long={long_value}"),
        "-l",
        "empty=",
        "-l",
        "Not A/Valid_Key=a=b",
    ]);
    let labels = &inspect(&env, "labelled")["metadata"]["labels"];
    assert_eq!(
        labels,
        &serde_json::json!({
            "Not A/Valid_Key": "a=b",
            "empty": "",
            "long": long_value,
            "vessel.ports": "8080,9000",
            "vessel.user": "Alice_-",
            "vessel.vm-id": "0123456789abcdef",
        })
    );
    assert_fatal(
        &env.ignite(&["run", "img", "--label", "=x"]),
        "invalid label \"=x\", name empty",
    );
    assert_fatal(
        &env.ignite(&["run", "img", "--label", "novalue"]),
        "invalid label value \"novalue\": supported syntax: --label <key>=<value>",
    );
    assert_eq!(vm_count(&env), 1);
}

#[test]
fn sizes_and_cpus_parse_like_pflag_and_datasize() {
    let env = Env::new("sizes");
    env.ok(&[
        "run", "img", "--name", "sized", "--memory", "1024MB", "--size", "4096MB", "--cpus", "0x2",
    ]);
    let spec = &inspect(&env, "sized")["spec"];
    assert_eq!(
        (&spec["memory"], &spec["diskSize"], &spec["cpus"]),
        (
            &serde_json::json!("1GB"),
            &serde_json::json!("4GB"),
            &serde_json::json!(2)
        )
    );
    env.ok(&["run", "img", "--name", "nosize", "--size", ""]);
    assert_eq!(inspect(&env, "nosize")["spec"]["diskSize"], "0B");
    let invalid = |flag: &str, value: &str, reason: &str| {
        assert_usage(
            &env.ignite(&["run", "img", flag, value]),
            &format!("invalid argument \"{value}\" for \"{flag}\" flag: {reason}"),
            RUN_USAGE,
        );
    };
    invalid(
        "--memory",
        "1.5GB",
        "strconv.UnmarshalText: parsing \"1.5GB\": invalid syntax",
    );
    invalid(
        "--memory",
        "1024Mb",
        "strconv.UnmarshalText: parsing \"1024Mb\": unit with capital unit prefix and lower case unit (b) - bits, not bytes ",
    );
    invalid(
        "--memory",
        "16EB",
        "strconv.UnmarshalText: parsing \"16EB\": value out of range",
    );
    invalid(
        "--cpus",
        "+2",
        "strconv.ParseUint: parsing \"+2\": invalid syntax",
    );
    invalid(
        "--cpus",
        "18446744073709551616",
        "strconv.ParseUint: parsing \"18446744073709551616\": value out of range",
    );
    assert_usage(
        &env.ignite(&["run", "img", "-s", "4 GiB x"]),
        "invalid argument \"4 GiB x\" for \"-s, --size\" flag: strconv.UnmarshalText: parsing \"4 GiB x\": invalid syntax",
        RUN_USAGE,
    );
    // A disk of 8 EiB or more cannot be truncated: the VM is saved, then
    // removed again by ignite's deferred cleanup.
    let huge = env.ignite(&["run", "img", "--name", "huge", "--size", "8EB"]);
    assert_eq!(huge.code, 1);
    let id = huge
        .messages()
        .first()
        .and_then(|(_, m)| m.strip_prefix("Removed VM with name \"huge\" and ID \""))
        .and_then(|rest| rest.strip_suffix('"'))
        .map(str::to_string)
        .expect("a Removed line first");
    assert_eq!(id.len(), 16, "{id}");
    assert_eq!(
        huge.messages()[1],
        (
            "fatal".to_string(),
            "requested size 9223372036854775808 too large, cannot truncate".to_string()
        )
    );
    assert_eq!(vm_count(&env), 2);
}

#[test]
fn ports_follow_dockers_port_specs() {
    let env = Env::new("ports");
    env.ok(&[
        "run",
        "img",
        "--name",
        "ported",
        "-p",
        "8080:80,127.0.0.1:5353:53/udp",
    ]);
    assert_eq!(
        inspect(&env, "ported")["spec"]["network"]["ports"],
        serde_json::json!([
            {"hostPort": 8080, "vmPort": 80, "protocol": "tcp"},
            {"bindAddress": "127.0.0.1", "hostPort": 5353, "vmPort": 53, "protocol": "udp"},
        ])
    );
    assert_eq!(
        env.ok(&["ps", "-t", "{{.Spec.Network.Ports}}"]).stdout,
        "0.0.0.0:8080->80/tcp, 127.0.0.1:5353->53/udp\n"
    );
    for (ports, message) in [
        ("8080", "invalid host port: \"\""),
        ("8080:80,", "No port specified: <empty>"),
        ("x:80", "Invalid hostPort: x"),
        ("80:80/sctp", "invalid protocol: \"sctp\""),
        (
            "8080:80,9090:80",
            "only one host binding per VM binding supported for now, received 2",
        ),
        (
            "8080:80,8080:81",
            "cannot use a port/protocol combination on the host twice",
        ),
    ] {
        assert_fatal(&env.ignite(&["run", "img", "-p", ports]), message);
    }
    assert_usage(
        &env.ignite(&["run", "img", "-p", "80\"80"]),
        "invalid argument \"80\\\"80\" for \"-p, --ports\" flag: parse error on line 1, column 2: bare \" in non-quoted-field",
        RUN_USAGE,
    );
    assert_eq!(vm_count(&env), 1);
}

#[test]
fn images_are_docker_references() {
    let env = Env::new("images");
    env.ok(&[
        "run",
        "docker.io/library/ubuntu",
        "--name",
        "official",
        "-k",
        "index.docker.io/weaveworks/ignite-kernel:5.4.108",
    ]);
    let spec = &inspect(&env, "official")["spec"];
    assert_eq!(spec["image"]["oci"], "ubuntu:latest");
    assert_eq!(spec["kernel"]["oci"], "weaveworks/ignite-kernel:5.4.108");
    assert_fatal(
        &env.ignite(&["run", "Weaveworks/Ubuntu"]),
        "invalid reference format: repository name must be lowercase",
    );
    assert_fatal(
        &env.ignite(&["run", "img:bad:tag"]),
        "invalid reference format",
    );
    let digest = format!("img@sha256:{}", "0".repeat(64));
    assert_fatal(
        &env.ignite(&["run", &digest]),
        &format!("could not parse image \"{digest}\" with a tag"),
    );
    assert_usage(
        &env.ignite(&["run", "img", "--kernel-image", "foo:bar:baz"]),
        "invalid argument \"foo:bar:baz\" for \"-k, --kernel-image\" flag: invalid reference format",
        RUN_USAGE,
    );
    assert_usage(
        &env.ignite(&["run", "img", "--sandbox-image", "Sandbox"]),
        "invalid argument \"Sandbox\" for \"--sandbox-image\" flag: invalid reference format: repository name must be lowercase",
        RUN_USAGE,
    );
    assert_usage(
        &env.ignite(&["run", "img", "--runtime", "podman"]),
        "invalid argument \"podman\" for \"--runtime\" flag: invalid runtime \"podman\", must be one of [docker containerd]",
        RUN_USAGE,
    );
    assert_eq!(vm_count(&env), 1);
}

#[test]
fn cp_and_ps_refuse_like_ignite() {
    let env = Env::new("cpps");
    assert_usage(
        &env.ignite(&["cp", "--timeout", "4294967296", "a", "vm:/b"]),
        "invalid argument \"4294967296\" for \"--timeout\" flag: strconv.ParseUint: parsing \"4294967296\": value out of range",
        "ignite cp <source> <dest> [flags]",
    );
    assert_fatal(
        &env.ignite(&["cp", "a", "b"]),
        "no VM reference found in source or destination",
    );
    // A malformed filter fails even with no VMs; a bad key only once a VM
    // is tested against it.
    assert_fatal(
        &env.ignite(&["ps", "-f", "{{ .Name }}=x,{{.Name}}=y"]),
        "failed to extract keys-values from filter list [{{ .Name }}=x {{.Name}}=y]",
    );
    let header = "VM ID\tIMAGE\tKERNEL\tSIZE\tCPUS\tMEMORY\tCREATED\tSTATUS\tIPS\tPORTS\tNAME\n";
    assert_eq!(env.ok(&["ps", "-f", "{{.Nope}}=x"]).stdout, header);
    env.ok(&["run", "img", "--name", "listed"]);
    assert_fatal(
        &env.ignite(&["ps", "-f", "{{.Nope}}=x"]),
        "failed to apply filtering on VM, the filter might be incorrect",
    );
    assert_fatal(
        &env.ignite(&["ps", "-f", "{{Name}}=x"]),
        "failed to configure filtering with following template: {{Name}}",
    );
    assert_eq!(
        env.ok(&[
            "ps",
            "-q",
            "-f",
            "{{.ObjectMeta.Name}}=listed,{{.Spec.Memory}}=~512"
        ])
        .stdout
        .lines()
        .count(),
        1
    );
}
