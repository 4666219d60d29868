//! Supervised background tasks: the sweeper, the webhook senders and the image
//! workers. A task that panics is logged and started again after a short backoff
//! (doubling up to [`MAX_BACKOFF`], reset after a long healthy run); its restarts
//! are counted and shown in `/healthz`. A task that returns ends for good.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::task::JoinHandle;

/// First wait before a restart.
pub const MIN_BACKOFF: Duration = Duration::from_millis(100);
/// Longest wait before a restart.
pub const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// A run this long resets the backoff to [`MIN_BACKOFF`].
const HEALTHY_RUN: Duration = Duration::from_secs(60);

#[derive(Default)]
struct TaskState {
    running: AtomicBool,
    restarts: AtomicU64,
    last_panic: Mutex<Option<String>>,
}

/// One task as `/healthz` shows it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct TaskView {
    /// The name it was spawned under.
    pub name: String,
    /// Whether it is running now (false while it waits to restart, or once ended).
    pub running: bool,
    /// How many times it panicked and was restarted.
    pub restarts: u64,
    /// The message of its last panic, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_panic: Option<String>,
}

/// The supervised tasks of one control plane.
#[derive(Default)]
pub struct Tasks {
    states: Mutex<BTreeMap<String, Arc<TaskState>>>,
    handles: Mutex<Vec<JoinHandle<()>>>,
}

/// Aborts the task when dropped, so aborting a supervisor also stops its child.
struct AbortOnDrop(JoinHandle<()>);
impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".into()
    }
}

impl Tasks {
    /// An empty set of tasks.
    pub fn new() -> Arc<Tasks> {
        Arc::new(Tasks::default())
    }

    /// Runs `make()` as task `name`, and again after each panic. Needs a Tokio
    /// runtime.
    pub fn spawn<F, Fut>(&self, name: &str, make: F)
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let state = Arc::new(TaskState::default());
        self.states
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name.to_string(), state.clone());
        let name = name.to_string();
        let h = tokio::spawn(async move {
            let mut backoff = MIN_BACKOFF;
            loop {
                state.running.store(true, Ordering::SeqCst);
                let started = Instant::now();
                let mut child = AbortOnDrop(tokio::spawn(make()));
                let r = (&mut child.0).await;
                state.running.store(false, Ordering::SeqCst);
                match r {
                    Ok(()) => {
                        tracing::info!(task = %name, "background task ended");
                        return;
                    }
                    Err(e) if e.is_panic() => {
                        let msg = panic_message(e.into_panic().as_ref());
                        let n = state.restarts.fetch_add(1, Ordering::SeqCst) + 1;
                        if started.elapsed() >= HEALTHY_RUN {
                            backoff = MIN_BACKOFF;
                        }
                        tracing::error!(task = %name, panic = %msg, restarts = n, backoff_ms = u64::try_from(backoff.as_millis()).unwrap_or(u64::MAX), "background task panicked; restarting");
                        *state.last_panic.lock().unwrap_or_else(|e| e.into_inner()) = Some(msg);
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(MAX_BACKOFF);
                    }
                    Err(_) => return,
                }
            }
        });
        self.handles
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(h);
    }

    /// Every task, by name.
    pub fn snapshot(&self) -> Vec<TaskView> {
        self.states
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(name, s)| TaskView {
                name: name.clone(),
                running: s.running.load(Ordering::SeqCst),
                restarts: s.restarts.load(Ordering::SeqCst),
                last_panic: s
                    .last_panic
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .clone(),
            })
            .collect()
    }

    /// Stops every task (and its supervisor).
    pub fn shutdown(&self) {
        for h in self
            .handles
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain(..)
        {
            h.abort();
        }
    }
}

impl Drop for Tasks {
    fn drop(&mut self) {
        self.shutdown();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU32;

    /// A task that panics twice is started again each time (with backoff) and then
    /// runs; the restarts are counted. The webhook senders and image workers are
    /// supervised by this same code.
    #[tokio::test]
    async fn supervised_task_restarts_after_panic_with_backoff() {
        let tasks = Tasks::new();
        let runs = Arc::new(AtomicU32::new(0));
        let r = runs.clone();
        let t0 = Instant::now();
        tasks.spawn("flaky", move || {
            let r = r.clone();
            async move {
                if r.fetch_add(1, Ordering::SeqCst) < 2 {
                    panic!("injected failure");
                }
                std::future::pending::<()>().await
            }
        });
        for _ in 0..100 {
            if runs.load(Ordering::SeqCst) >= 3 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(runs.load(Ordering::SeqCst), 3);
        // 100 ms then 200 ms of backoff.
        assert!(t0.elapsed() >= Duration::from_millis(300));
        let v = tasks.snapshot();
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].restarts, 2);
        assert!(v[0].running);
        assert_eq!(v[0].last_panic.as_deref(), Some("injected failure"));
        tasks.shutdown();
    }
}
