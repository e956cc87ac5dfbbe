//! The closed-loop load generator: N workers, each sending its next request
//! as soon as its last one is answered, for a fixed time after a warm-up.
//!
//! Closed loop means the offered load adapts to the server: throughput is
//! what N clients that never wait between requests get, and each latency
//! is one request's round trip (no queueing in the client is counted, since
//! a worker never has more than one request in flight).

use std::future::Future;
use std::time::{Duration, Instant};

use anyhow::Result;

use crate::stats::{Latencies, Summary};

/// One client of a row: it owns its connection and knows its request.
pub trait Worker: Send + 'static {
    /// Sends one request and checks its answer. Timed.
    fn call(&mut self) -> impl Future<Output = Result<()>> + Send;

    /// Undoes what [`Worker::call`] did, if the next call needs it (a cold
    /// start's session is stopped). Not timed.
    fn reset(&mut self) -> impl Future<Output = Result<()>> + Send {
        async { Ok(()) }
    }
}

/// How long a row runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// Requests answered in this time are not recorded (connections warm
    /// up, caches fill, the host's threads wake).
    pub warmup: Duration,
    /// Requests started in this time are recorded.
    pub duration: Duration,
}

/// What one row's workers did in the measured window.
#[derive(Debug, Clone)]
pub struct Load {
    /// Requests answered correctly.
    pub completed: u64,
    /// Requests that failed or were answered wrongly.
    pub errors: u64,
    /// What the first of them was.
    pub first_error: Option<String>,
    /// The measured window: the duration asked for, or longer when a
    /// worker's one counted request outlasted it.
    pub window: Duration,
    /// The latencies of the correct answers.
    pub latencies: Latencies,
}

impl Load {
    /// Correct answers per second of the window.
    pub fn throughput(&self) -> f64 {
        self.completed as f64 / self.window.as_secs_f64().max(f64::EPSILON)
    }

    /// The latencies' summary, `None` when nothing was answered.
    pub fn summary(&self) -> Option<Summary> {
        self.latencies.summary()
    }
}

/// What one worker recorded.
#[derive(Default)]
struct Tally {
    completed: u64,
    errors: u64,
    first_error: Option<String>,
    latencies: Latencies,
    /// When the last counted request was answered.
    last_answer: Option<Instant>,
}

impl Tally {
    fn failed(&mut self, error: anyhow::Error) {
        self.errors += 1;
        if self.first_error.is_none() {
            self.first_error = Some(format!("{error:#}"));
        }
    }
}

/// Runs `workers` concurrently for `window` and gathers what they recorded.
/// A request counts if it starts within the measured part of the window; a
/// failed request is counted as an error and the worker goes on. Each
/// worker makes at least one counted request, however slow (a cold start
/// on a loaded machine in a `--quick` run), and the window is then as long
/// as it took.
pub async fn run<W: Worker>(workers: Vec<W>, window: Window) -> Load {
    let began = Instant::now();
    let measure_from = began + window.warmup;
    let until = measure_from + window.duration;
    let tasks: Vec<_> = workers
        .into_iter()
        .map(|mut worker| {
            tokio::spawn(async move {
                let mut tally = Tally::default();
                loop {
                    let sent = Instant::now();
                    if sent >= until && tally.completed + tally.errors > 0 {
                        break;
                    }
                    let answered = worker.call().await;
                    let took = sent.elapsed();
                    let counted = sent >= measure_from;
                    if counted {
                        tally.last_answer = Some(sent + took);
                    }
                    match answered {
                        Ok(()) if counted => {
                            tally.completed += 1;
                            tally.latencies.record(took);
                        }
                        Ok(()) => {}
                        Err(error) if counted => tally.failed(error),
                        Err(_) => {}
                    }
                    if let Err(error) = worker.reset().await
                        && counted
                    {
                        tally.failed(error.context("undoing the request"));
                    }
                }
                tally
            })
        })
        .collect();
    let mut load = Load {
        completed: 0,
        errors: 0,
        first_error: None,
        window: window.duration,
        latencies: Latencies::default(),
    };
    for task in tasks {
        match task.await {
            Ok(tally) => {
                if let Some(last) = tally.last_answer {
                    load.window = load
                        .window
                        .max(last.saturating_duration_since(measure_from));
                }
                load.completed += tally.completed;
                load.errors += tally.errors;
                load.latencies.merge(&tally.latencies);
                if load.first_error.is_none() {
                    load.first_error = tally.first_error;
                }
            }
            Err(panicked) => {
                load.errors += 1;
                load.first_error
                    .get_or_insert_with(|| format!("a worker panicked: {panicked}"));
            }
        }
    }
    load
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};

    /// Answers after `delay`, fails every `fail_every`th call, and counts
    /// its resets.
    struct Fake {
        delay: Duration,
        calls: u64,
        fail_every: u64,
        resets: Arc<AtomicU64>,
    }

    impl Worker for Fake {
        async fn call(&mut self) -> Result<()> {
            tokio::time::sleep(self.delay).await;
            self.calls += 1;
            anyhow::ensure!(
                !self.calls.is_multiple_of(self.fail_every),
                "call {} failed",
                self.calls
            );
            Ok(())
        }

        async fn reset(&mut self) -> Result<()> {
            self.resets.fetch_add(1, Ordering::Relaxed);
            Ok(())
        }
    }

    #[tokio::test]
    async fn every_worker_is_counted_and_failures_are_reported() {
        let resets = Arc::new(AtomicU64::new(0));
        let workers: Vec<Fake> = (0..4)
            .map(|_| Fake {
                delay: Duration::from_millis(2),
                calls: 0,
                fail_every: 3,
                resets: resets.clone(),
            })
            .collect();
        let window = Window {
            warmup: Duration::from_millis(20),
            duration: Duration::from_millis(100),
        };
        let load = run(workers, window).await;
        assert!(load.completed > 0, "{load:?}");
        assert!(load.errors > 0, "{load:?}");
        assert!(load.first_error.as_deref().unwrap().contains("failed"));
        assert_eq!(load.summary().unwrap().count, load.completed);
        // Every call, warm-up included, was undone.
        assert!(resets.load(Ordering::Relaxed) >= load.completed + load.errors);
        let summary = load.summary().unwrap();
        assert!(
            summary.p50 <= summary.p99 && summary.p99 <= summary.max,
            "{summary:?}"
        );
        assert!(load.throughput() > 0.0);
    }

    #[tokio::test]
    async fn a_worker_slower_than_the_window_still_makes_one_counted_request() {
        let worker = Fake {
            delay: Duration::from_millis(30),
            calls: 0,
            fail_every: u64::MAX,
            resets: Arc::new(AtomicU64::new(0)),
        };
        let window = Window {
            warmup: Duration::from_millis(5),
            duration: Duration::from_millis(1),
        };
        let load = run(vec![worker], window).await;
        assert_eq!((load.completed, load.errors), (1, 0), "{load:?}");
        // The window stretched to the counted request's answer.
        assert!(load.window > Duration::from_millis(1), "{load:?}");
    }
}
