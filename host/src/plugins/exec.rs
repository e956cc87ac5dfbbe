//! The `process` capability: running allowlisted programs for a plugin,
//! without a shell, with a clean environment, a time limit and capped output.
//!
//! A program that runs past its limit, or whose call is cancelled (the
//! plugin's own time limit, a request that went away), is ended with its
//! whole process group: first `SIGTERM`, then, after [`KILL_GRACE`],
//! `SIGKILL`. The `SIGTERM` matters when the program is `sudo`: a host that
//! does not run as root cannot signal the root program sudo starts, and
//! sudo does not pass `SIGKILL` on (nothing can), but it relays `SIGTERM`.
//! For a program that ignores `SIGTERM`, put `timeout -k` inside the sudo
//! rule (see the README's "Running on ignite"), so that root itself ends it.

use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;

/// How long a program (and what it started) has between `SIGTERM` and
/// `SIGKILL` when it is ended early.
pub const KILL_GRACE: Duration = Duration::from_secs(3);

use super::arg_policy::ArgPolicy;
use crate::config::ExecGrant;

/// Why a program was not run to completion.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExecError {
    /// The program is not on the plugin's allowlist.
    #[error("exec of {0:?} is not allowed: it is not on this plugin's exec allowlist")]
    Denied(String),
    /// The arguments match none of the grant's allowed forms.
    #[error("exec of {program:?} with these arguments is not allowed by its grant: {}", crate::redact::log_text(&args.join(" ")))]
    ArgumentsDenied {
        /// The program.
        program: String,
        /// The arguments asked for.
        args: Vec<String>,
    },
    /// The program ran past its time limit and was killed.
    #[error("{program} did not finish within {limit:?} and was killed")]
    TimedOut {
        /// The program that was killed.
        program: String,
        /// The limit it ran into.
        limit: Duration,
    },
    /// The program could not be started or its output not read.
    #[error("cannot run {program}: {reason}")]
    Failed {
        /// The program.
        program: String,
        /// The operating system's reason.
        reason: String,
    },
}

/// What a finished program left.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecOutcome {
    /// The exit code, `None` if a signal ended the program.
    pub exit_code: Option<i32>,
    /// Standard output, up to the cap.
    pub stdout: Vec<u8>,
    /// Standard error, up to the cap.
    pub stderr: Vec<u8>,
    /// Whether either stream was cut at the cap.
    pub truncated: bool,
}

/// One program run a plugin asked for.
#[derive(Debug, Clone, Default)]
pub struct ExecRequest {
    /// The allowlist entry's name, or its exact program path.
    pub program: String,
    /// Arguments appended to the entry's fixed command.
    pub args: Vec<String>,
    /// The time limit the plugin asked for; `None` means the entry's limit.
    pub timeout: Option<Duration>,
    /// Bytes for standard input.
    pub stdin: Option<Vec<u8>>,
}

/// A plugin's exec allowlist, built from its `grants.exec` entries.
#[derive(Debug, Clone, Default)]
pub struct ExecAllowlist {
    entries: Vec<AllowedProgram>,
}

#[derive(Debug, Clone)]
struct AllowedProgram {
    name: String,
    command: Vec<String>,
    policy: ArgPolicy,
    env: BTreeMap<String, String>,
    max_timeout: Duration,
    max_output_bytes: usize,
}

impl ExecAllowlist {
    /// The allowlist for `grants`; `expand` resolves `{data_dir}` in their
    /// argument policies. Each grant's command must be non-empty (the
    /// config validation guarantees it).
    pub fn new(
        grants: &[ExecGrant],
        expand: &dyn Fn(&std::path::Path) -> std::path::PathBuf,
    ) -> Result<ExecAllowlist, String> {
        let entries = grants
            .iter()
            .filter(|grant| !grant.command.is_empty())
            .map(|grant| {
                Ok(AllowedProgram {
                    name: grant
                        .name
                        .clone()
                        .unwrap_or_else(|| grant.command[0].clone()),
                    command: grant.command.clone(),
                    policy: ArgPolicy::new(&grant.allow, expand)?,
                    env: grant.env.clone(),
                    max_timeout: grant.max_timeout,
                    max_output_bytes: grant.max_output_bytes,
                })
            })
            .collect::<Result<_, String>>()?;
        Ok(ExecAllowlist { entries })
    }

    /// The programs whose grant lets the plugin append any arguments.
    pub fn open_programs(&self) -> impl Iterator<Item = &str> {
        self.entries
            .iter()
            .filter(|entry| entry.policy.is_open())
            .map(|entry| entry.name.as_str())
    }

    /// Runs `request` if the allowlist has its program: the entry's command
    /// followed by the request's arguments, with only the entry's
    /// environment, killed (with its process group) at the time limit.
    pub async fn run(&self, request: ExecRequest) -> Result<ExecOutcome, ExecError> {
        let entry = self
            .entries
            .iter()
            .find(|entry| entry.name == request.program || entry.command[0] == request.program)
            .ok_or_else(|| ExecError::Denied(request.program.clone()))?;
        if !entry.policy.allows(&request.args) {
            return Err(ExecError::ArgumentsDenied {
                program: request.program,
                args: request.args,
            });
        }
        let limit = request
            .timeout
            .map_or(entry.max_timeout, |asked| asked.min(entry.max_timeout));
        let program = entry.command[0].clone();
        let failed = |reason: std::io::Error| ExecError::Failed {
            program: program.clone(),
            reason: reason.to_string(),
        };

        let mut command = Command::new(&program);
        command
            .args(&entry.command[1..])
            .args(&request.args)
            .env_clear()
            .envs(&entry.env)
            .stdin(if request.stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own process group, so ending it ends what it started too.
            .process_group(0);
        let mut child = command.spawn().map_err(failed)?;
        // Ends the group if this call is dropped before the program exits.
        let mut group = GroupGuard(child.id().and_then(|pid| i32::try_from(pid).ok()));

        let stdin = child.stdin.take();
        let input = request.stdin.unwrap_or_default();
        let feed = async move {
            if let Some(mut stdin) = stdin {
                // A program that exits without reading its input is not an error.
                let _ = stdin.write_all(&input).await;
            }
        };
        let stdout = child.stdout.take();
        let stderr = child.stderr.take();
        let cap = entry.max_output_bytes;
        let run = async {
            let ((), out, err, status) = tokio::join!(
                feed,
                read_capped(stdout, cap),
                read_capped(stderr, cap),
                child.wait()
            );
            Ok::<_, std::io::Error>((out?, err?, status?))
        };
        match tokio::time::timeout(limit, run).await {
            Ok(Ok(((stdout, out_cut), (stderr, err_cut), status))) => {
                // It exited by itself: nothing to end.
                group.disarm();
                Ok(ExecOutcome {
                    exit_code: status.code(),
                    stdout,
                    stderr,
                    truncated: out_cut || err_cut,
                })
            }
            Ok(Err(e)) => Err(failed(e)),
            Err(_) => Err(ExecError::TimedOut {
                program: program.clone(),
                limit,
            }),
        }
    }
}

/// The process group of a running program, ended (`SIGTERM`, then
/// `SIGKILL` after [`KILL_GRACE`]) when the guard is dropped or
/// [`GroupGuard::end`] is called.
struct GroupGuard(Option<i32>);

impl GroupGuard {
    fn disarm(&mut self) {
        self.0 = None;
    }

    fn end(&mut self) {
        let Some(group) = self.0.take() else { return };
        signal_group(group, libc::SIGTERM);
        let kill = move || signal_group(group, libc::SIGKILL);
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(async move {
                    tokio::time::sleep(KILL_GRACE).await;
                    kill();
                });
            }
            Err(_) => {
                std::thread::spawn(move || {
                    std::thread::sleep(KILL_GRACE);
                    kill();
                });
            }
        }
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        self.end();
    }
}

fn signal_group(group: i32, signal: libc::c_int) {
    // SAFETY: killpg has no memory-safety preconditions. The group was made
    // for this program by `process_group(0)` and is still running when it
    // is ended (a program that exited by itself disarms its guard); a
    // signal to a group whose members all exited meanwhile reaches nobody
    // (ESRCH). A group id is only reused after the kernel's pids wrap
    // around, which does not happen within the grace.
    unsafe {
        libc::killpg(group, signal);
    }
}

/// Reads a stream to its end, keeping at most `cap` bytes; the rest is read
/// and dropped so that the program never blocks on a full pipe.
async fn read_capped(
    stream: Option<impl AsyncRead + Unpin>,
    cap: usize,
) -> std::io::Result<(Vec<u8>, bool)> {
    let Some(mut stream) = stream else {
        return Ok((Vec::new(), false));
    };
    let mut kept = Vec::new();
    let mut truncated = false;
    let mut chunk = vec![0u8; 16 * 1024];
    loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok((kept, truncated));
        }
        let room = cap.saturating_sub(kept.len());
        kept.extend_from_slice(&chunk[..n.min(room)]);
        truncated |= n > room;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(name: Option<&str>, command: &[&str]) -> ExecGrant {
        ExecGrant {
            allow: Vec::new(),
            name: name.map(str::to_string),
            command: command.iter().map(|s| s.to_string()).collect(),
            env: BTreeMap::new(),
            max_timeout: Duration::from_secs(10),
            max_output_bytes: 1024,
        }
    }

    fn allowlist(grants: &[ExecGrant]) -> ExecAllowlist {
        ExecAllowlist::new(grants, &|path| path.to_path_buf()).unwrap()
    }

    fn request(program: &str, args: &[&str]) -> ExecRequest {
        ExecRequest {
            program: program.into(),
            args: args.iter().map(|s| s.to_string()).collect(),
            ..ExecRequest::default()
        }
    }

    #[tokio::test]
    async fn runs_an_allowlisted_program_by_name_or_path_without_a_shell() {
        let list = allowlist(&[grant(Some("echo"), &["/bin/echo", "fixed"])]);
        let by_name = list.run(request("echo", &["$HOME", "a;b"])).await.unwrap();
        assert_eq!(by_name.exit_code, Some(0));
        // No shell: the variable and the semicolon arrive as they were written.
        assert_eq!(by_name.stdout, b"fixed $HOME a;b\n");
        let by_path = list.run(request("/bin/echo", &["x"])).await.unwrap();
        assert_eq!(by_path.stdout, b"fixed x\n");
    }

    #[tokio::test]
    async fn refuses_programs_not_on_the_allowlist() {
        let list = allowlist(&[grant(Some("echo"), &["/bin/echo"])]);
        for program in ["/bin/sh", "sh", "/bin/echo2", "ECHO", ""] {
            assert_eq!(
                list.run(request(program, &[])).await,
                Err(ExecError::Denied(program.into()))
            );
        }
    }

    #[tokio::test]
    async fn the_environment_is_only_what_the_operator_granted() {
        let mut with_env = grant(None, &["/usr/bin/env"]);
        with_env.env.insert("ONLY".into(), "this".into());
        let list = allowlist(&[with_env]);
        let out = list.run(request("/usr/bin/env", &[])).await.unwrap();
        assert_eq!(String::from_utf8(out.stdout).unwrap(), "ONLY=this\n");
    }

    #[tokio::test]
    async fn a_program_past_its_limit_is_killed_with_its_children() {
        let mut slow = grant(Some("sh"), &["/bin/sh", "-c"]);
        slow.max_timeout = Duration::from_millis(300);
        let list = allowlist(&[slow]);
        let marker = std::env::temp_dir().join(format!("vessel-exec-{}", std::process::id()));
        let _ = std::fs::remove_file(&marker);
        let script = format!("(sleep 1; touch {}) & sleep 30", marker.display());
        let err = list.run(request("sh", &[&script])).await.unwrap_err();
        assert!(matches!(err, ExecError::TimedOut { .. }), "{err:?}");
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert!(!marker.exists(), "the background child survived the kill");
    }

    #[tokio::test]
    async fn output_is_capped_and_marked_truncated() {
        let list = allowlist(&[grant(Some("head"), &["/usr/bin/head", "-c", "100000"])]);
        let mut req = request("head", &["/dev/zero"]);
        req.timeout = Some(Duration::from_secs(5));
        let out = list.run(req).await.unwrap();
        assert_eq!(out.stdout.len(), 1024);
        assert!(out.truncated);
    }

    #[tokio::test]
    async fn stdin_is_fed_and_exit_codes_are_reported() {
        let list = allowlist(&[grant(Some("cat"), &["/bin/cat"])]);
        let mut req = request("cat", &[]);
        req.stdin = Some(b"hello".to_vec());
        let out = list.run(req).await.unwrap();
        assert_eq!(out.stdout, b"hello");
        let list = allowlist(&[grant(Some("false"), &["/bin/false"])]);
        assert_eq!(
            list.run(request("false", &[])).await.unwrap().exit_code,
            Some(1)
        );
    }

    #[tokio::test]
    async fn arguments_outside_the_grants_forms_are_denied_without_running_anything() {
        let mut echo = grant(Some("echo"), &["/bin/echo"]);
        echo.allow = vec![crate::config::ArgForm {
            args: vec!["-n".into(), "re:[a-z]+".into()],
            options: Default::default(),
        }];
        let list = allowlist(&[echo]);
        assert_eq!(
            list.run(request("echo", &["-n", "hi"]))
                .await
                .unwrap()
                .stdout,
            b"hi"
        );
        for bad in [&["hi"][..], &["-n", "HI"], &["-n", "hi", "more"], &[]] {
            let denied = list.run(request("echo", bad)).await;
            assert!(
                matches!(denied, Err(ExecError::ArgumentsDenied { .. })),
                "{bad:?}: {denied:?}"
            );
        }
        assert_eq!(list.open_programs().count(), 0);
    }
}
