//! Background work at a lower CPU priority than the requests the host
//! serves.
//!
//! A Reaper sweep over a million sessions parses every record it reads: on
//! a busy host that competes for the CPU with request handling and, on a
//! machine it shares with Redis, with Redis itself, and every other Redis
//! client then waits for a core. [`spawn_niced`] runs such work on a thread
//! of its own whose scheduling priority is lowered (Linux `nice`): when
//! anything else wants the CPU, the scheduler lets it go first; on an idle
//! machine the work runs at full speed.
//!
//! What the work spawns runs on one more thread ([`IO_THREAD`]) that keeps
//! the host's priority. That is where a Redis connection's reader lands
//! when background work is the first to use (or to reconnect) it, and a
//! connection the requests share must never be read at the background's
//! priority.

use std::future::Future;

use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The highest nice value Linux has (the lowest priority).
pub const MAX_NICE: i32 = 19;

/// The name of the threads that run what background work spawns, at the
/// host's priority.
pub const IO_THREAD: &str = "vessel-bg-io";

/// Runs `task` on a new thread named `name`, whose nice value is raised by
/// `nice` (clamped to [`MAX_NICE`]; 0 keeps the host's priority), on a
/// tokio runtime of its own whose one worker thread ([`IO_THREAD`], for
/// the tasks `task` spawns) keeps the host's priority. Returns a handle on the
/// caller's runtime: awaiting it waits for the task to end, and aborting
/// it drops the task (as `tokio::spawn`'s handle would). A task with a
/// result sends it out itself (a channel).
///
/// When the thread cannot be started, the task runs on the caller's
/// runtime instead (logged): background work is not lost over its
/// priority. (Only when not even a single-threaded runtime can be built on
/// the new thread, which needs nothing but an epoll descriptor, is the
/// task dropped, logged as an error.)
pub fn spawn_niced<F>(name: &str, nice: i32, task: F) -> JoinHandle<()>
where
    F: Future<Output = ()> + Send + 'static,
{
    let (done_tx, done_rx) = oneshot::channel::<()>();
    let (cancel_tx, cancel_rx) = oneshot::channel::<()>();
    let (task_tx, task_rx) = std::sync::mpsc::sync_channel::<F>(1);
    let thread_name = name.to_string();
    let started = std::thread::Builder::new()
        .name(thread_name.clone())
        .spawn(move || {
            let Ok(task) = task_rx.recv() else { return };
            // The task runs on this thread; what it spawns (a Redis
            // connection's reader) on one more, started before this one's
            // priority is lowered, so that it keeps the host's.
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .thread_name(IO_THREAD)
                .build()
                .or_else(|error| {
                    tracing::warn!(thread = %thread_name, %error, "cannot start the background runtime's thread; what background work spawns runs at its priority");
                    tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                });
            let runtime = match runtime {
                Ok(runtime) => runtime,
                Err(error) => {
                    tracing::error!(thread = %thread_name, %error, "cannot start a runtime for background work: it does not run");
                    return;
                }
            };
            lower_priority(&thread_name, nice);
            runtime.block_on(async move {
                tokio::select! {
                    () = task => {}
                    // The handle was aborted.
                    _ = cancel_rx => {}
                }
            });
            let _ = done_tx.send(());
        });
    match started {
        Ok(_) => {
            // The thread owns the task from here.
            if let Err(std::sync::mpsc::SendError(task)) = task_tx.send(task) {
                return tokio::spawn(task);
            }
            tokio::spawn(async move {
                // Held until the task ends or this one is aborted.
                let _cancel_on_drop = cancel_tx;
                let _ = done_rx.await;
            })
        }
        Err(error) => {
            tracing::warn!(thread = name, %error, "cannot start a thread for background work; it runs with the requests' priority");
            tokio::spawn(task)
        }
    }
}

/// Raises the calling thread's nice value by `nice`, up to [`MAX_NICE`].
/// Lowering priority needs no privilege; a failure is logged and the work
/// runs at the priority it has.
#[cfg(target_os = "linux")]
fn lower_priority(thread: &str, nice: i32) {
    if nice <= 0 {
        return;
    }
    let Some(current) = own_nice() else {
        tracing::warn!(
            thread,
            "cannot read the background thread's priority; left as it is"
        );
        return;
    };
    let target = current.saturating_add(nice).min(MAX_NICE);
    // SAFETY: setpriority on this thread's own id (Linux applies
    // PRIO_PROCESS to one thread) touches no memory of ours.
    let set = unsafe { libc::setpriority(libc::PRIO_PROCESS, own_tid(), target) };
    if set != 0 {
        let error = std::io::Error::last_os_error();
        tracing::warn!(thread, %error, "cannot lower the background thread's priority; it runs with the requests' priority");
    }
}

#[cfg(not(target_os = "linux"))]
fn lower_priority(_thread: &str, _nice: i32) {}

/// The calling thread's kernel id.
#[cfg(target_os = "linux")]
fn own_tid() -> libc::id_t {
    // SAFETY: gettid has no preconditions.
    let tid = unsafe { libc::gettid() };
    libc::id_t::try_from(tid).unwrap_or(0)
}

/// The calling thread's nice value (Linux: per thread), if it can be read.
#[cfg(target_os = "linux")]
pub fn own_nice() -> Option<i32> {
    // getpriority may return -1 as a value: errno tells an error apart.
    // SAFETY: errno is thread-local; writing it and calling getpriority on
    // our own id have no other effect.
    unsafe {
        *libc::__errno_location() = 0;
        let value = libc::getpriority(libc::PRIO_PROCESS, own_tid());
        (*libc::__errno_location() == 0).then_some(value)
    }
}

/// The calling thread's nice value: not read on this platform.
#[cfg(not(target_os = "linux"))]
pub fn own_nice() -> Option<i32> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    #[tokio::test]
    async fn the_task_runs_on_its_own_thread_at_a_lower_priority() {
        let here = own_nice().expect("this thread's nice value");
        let (seen_tx, seen_rx) = oneshot::channel();
        spawn_niced("vessel-test-bg", 5, async move {
            let _ = seen_tx.send((
                std::thread::current().name().map(str::to_string),
                own_nice(),
            ));
        })
        .await
        .expect("the handle");
        let (thread, nice) = seen_rx.await.expect("the task ran");
        assert_eq!(thread.as_deref(), Some("vessel-test-bg"));
        assert_eq!(nice, Some((here + 5).min(MAX_NICE)));
        // What it spawns keeps the caller's priority.
        let (spawned_tx, spawned_rx) = oneshot::channel();
        spawn_niced("vessel-test-bg", 5, async move {
            let spawned = tokio::spawn(async {
                (
                    std::thread::current().name().map(str::to_string),
                    own_nice(),
                )
            });
            let _ = spawned_tx.send(spawned.await.expect("the spawned task"));
        })
        .await
        .expect("the handle");
        let (io_thread, io_nice) = spawned_rx.await.expect("the task ran");
        assert_eq!(io_thread.as_deref(), Some(IO_THREAD));
        assert_eq!(io_nice, Some(here));
        // The caller's own priority is untouched.
        assert_eq!(own_nice(), Some(here));
    }

    #[tokio::test]
    async fn a_nice_of_zero_keeps_the_priority_and_the_top_is_clamped() {
        let here = own_nice().expect("this thread's nice value");
        let nice_with = |increment| async move {
            let (seen_tx, seen_rx) = oneshot::channel();
            spawn_niced("vessel-test-bg", increment, async move {
                let _ = seen_tx.send(own_nice());
            })
            .await
            .expect("the handle");
            seen_rx.await.expect("the task ran")
        };
        assert_eq!(nice_with(0).await, Some(here));
        assert_eq!(nice_with(100).await, Some(MAX_NICE));
    }

    #[tokio::test]
    async fn aborting_the_handle_drops_the_task() {
        struct SetOnDrop(Arc<AtomicBool>);
        impl Drop for SetOnDrop {
            fn drop(&mut self) {
                self.0.store(true, Ordering::SeqCst);
            }
        }
        let dropped = Arc::new(AtomicBool::new(false));
        let guard = SetOnDrop(dropped.clone());
        let (running_tx, running_rx) = oneshot::channel();
        let handle = spawn_niced("vessel-test-bg", 1, async move {
            let _guard = guard;
            let _ = running_tx.send(());
            std::future::pending::<()>().await
        });
        running_rx.await.expect("the task started");
        handle.abort();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !dropped.load(Ordering::SeqCst) {
            assert!(
                std::time::Instant::now() < deadline,
                "the task outlived its handle"
            );
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    }
}
