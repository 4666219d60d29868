//! Image signature verification for reported workloads, as a background service.
//!
//! A heartbeat never waits for a registry. Each `(repository, digest)` an agent
//! reports is looked up in memory; without a fresh result it is queued for
//! verification (bounded queue, one job in flight per digest, bounded concurrency)
//! and its badge is `unknown` ([`ImageCheck::Pending`]) meanwhile. Verified and
//! refused results are kept for `cache_ttl`, in memory and in the store's shared
//! `cache` table (so replicas share them and they survive restarts); undecided
//! results are retried after `retry_after`. An expired result is verified again,
//! and shows `unknown` until it is: a stale green is never shown.
//!
//! The control plane asks only about repositories an `[[images.trust]]` rule covers
//! (an uncovered one is `ImageNotCovered` at once), so an agent cannot make it
//! contact registries of the agent's choosing.
//!
//! [`ImageChecker`] is the seam to the verifier. [`PolicyChecker`] is the fail-closed
//! implementation that needs no registry: a repository no `[images]` rule covers is
//! refused (`ImageNotCovered`); a covered one is undecided until a registry-backed
//! verifier is configured.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use evidence::verdict::ReasonCode;
use policy::image::{ImageCheck, ImagePolicy};
use provenant_base::clock::{Clock, UnixNanos};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, Semaphore};

use crate::store::Store;

/// Verifies one image digest's signature.
#[async_trait::async_trait]
pub trait ImageChecker: Send + Sync + 'static {
    /// Verifies the signature of `digest` ("sha256:<hex>") in `repository`
    /// (`registry[:port]/path`, from the workload's image reference) at `now`.
    async fn check(&self, repository: &str, digest: &str, now: UnixNanos) -> ImageCheck;
}

/// The checker available without a registry client: it applies the policy's
/// coverage rule and fails closed. Uncovered: `Refused{ImageNotCovered}`. Covered:
/// `Undecided` (no signature can be fetched, so nothing is verified), never green.
pub struct PolicyChecker {
    policy: Option<ImagePolicy>,
}

impl PolicyChecker {
    /// `None`: no `[images]` section, so no repository is covered.
    pub fn new(policy: Option<ImagePolicy>) -> PolicyChecker {
        PolicyChecker { policy }
    }
}

#[async_trait::async_trait]
impl ImageChecker for PolicyChecker {
    async fn check(&self, repository: &str, _digest: &str, _now: UnixNanos) -> ImageCheck {
        if let Some(refused) = policy::image::uncovered(self.policy.as_ref(), repository) {
            return refused;
        }
        let scope = self
            .policy
            .as_ref()
            .and_then(|p| p.rule_for(repository))
            .map(|r| r.scope.clone())
            .unwrap_or_default();
        ImageCheck::Undecided {
            detail: format!(
                "{repository} is covered by rule {scope:?}, but no registry verifier is configured to fetch its signature"
            ),
        }
    }
}

/// The registry-backed checker: `signatures`' [`ImageVerifier`] (the rule covering
/// the repository, the signatures the registry holds, cosign legacy and Sigstore
/// bundles). A registry that cannot be asked gives `Undecided`, never a verdict.
///
/// [`ImageVerifier`]: signatures::verifier::ImageVerifier
pub struct RegistryChecker(pub signatures::verifier::ImageVerifier);

#[async_trait::async_trait]
impl ImageChecker for RegistryChecker {
    async fn check(&self, repository: &str, digest: &str, now: UnixNanos) -> ImageCheck {
        self.0.check(repository, digest, now).await
    }
}

/// The repository (`registry[:port]/path`) of an image reference, without tag or
/// digest, normalised as podman does for short Docker Hub names
/// (`alpine` -> `docker.io/library/alpine`). `None` for a reference that names no
/// repository.
pub fn repository_of(image: &str) -> Option<String> {
    // The registry client's reference grammar, so the repository judged is the one
    // the verifier will ask about.
    signatures::oci::Reference::parse(image)
        .ok()
        .map(|r| r.repository())
}

/// `[images]` service knobs.
#[derive(Debug, Clone)]
pub struct ImageServiceConfig {
    /// How long verified and refused results are kept.
    pub cache_ttl: Duration,
    /// When an undecided result is tried again.
    pub retry_after: Duration,
    /// Verifications running at once.
    pub max_concurrent: usize,
    /// Digests waiting for verification at most; past it they are queued again at
    /// a later heartbeat.
    pub queue: usize,
    /// Longest one verification may take before it counts as undecided.
    pub check_timeout: Duration,
    /// Names the image policy and its trust material: stored results are keyed by
    /// it, so a narrowed policy or a removed key never reuses an older answer (from
    /// before a restart, or from a replica still on the old policy).
    pub policy_fingerprint: String,
}

impl Default for ImageServiceConfig {
    fn default() -> Self {
        ImageServiceConfig {
            cache_ttl: Duration::from_secs(3600),
            retry_after: Duration::from_secs(30),
            max_concurrent: 4,
            queue: 1024,
            check_timeout: Duration::from_secs(60),
            policy_fingerprint: String::new(),
        }
    }
}

/// Results remembered in memory at most; past it expired results go, then the half
/// that expires soonest (they are reloaded from the store, or verified again). An
/// agent reporting floods of new digests thus evicts least-fresh answers first
/// instead of wiping every answer at once.
const MAX_ENTRIES: usize = 100_000;

type Key = (String, String);

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Entry {
    check: ImageCheck,
    /// UTC nanoseconds after which the result is stale.
    expires_at_ns: u64,
}

struct Inner {
    cfg: ImageServiceConfig,
    checker: Arc<dyn ImageChecker>,
    store: Option<Arc<dyn Store>>,
    clock: Arc<dyn Clock>,
    results: Mutex<HashMap<Key, Entry>>,
    inflight: Mutex<HashSet<Key>>,
    /// Verifications started (not served from a cache): for metrics and tests.
    started: std::sync::atomic::AtomicU64,
    /// Lookups that found the queue full.
    dropped: std::sync::atomic::AtomicU64,
    /// Bounds the verifications running at once (shared by worker restarts).
    sem: Arc<Semaphore>,
}

/// The image verification service. Cheap to call from request handlers: lookups
/// never await.
pub struct ImageService {
    inner: Arc<Inner>,
    tx: mpsc::Sender<Key>,
    /// The worker's supervisor when the service owns it ([`ImageService::start`]).
    _tasks: Option<crate::supervise::Tasks>,
}

fn store_key(fingerprint: &str, repo: &str, digest: &str) -> String {
    format!("image:{fingerprint}:{repo}@{digest}")
}

/// Removes the in-flight mark when a job ends, even if the checker panicked.
struct InflightGuard(Arc<Inner>, Key);
impl Drop for InflightGuard {
    fn drop(&mut self) {
        self.0
            .inflight
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.1);
    }
}

impl ImageService {
    /// Starts the background verifier (needs a Tokio runtime), supervised by a task
    /// set of its own.
    pub fn start(
        cfg: ImageServiceConfig,
        checker: Arc<dyn ImageChecker>,
        store: Option<Arc<dyn Store>>,
        clock: Arc<dyn Clock>,
    ) -> ImageService {
        let tasks = crate::supervise::Tasks::default();
        let mut s = ImageService::start_supervised(cfg, checker, store, clock, &tasks);
        s._tasks = Some(tasks);
        s
    }

    /// Starts the background verifier as task `image-worker` of `tasks`: restarted
    /// after a panic, with the queue kept.
    pub fn start_supervised(
        cfg: ImageServiceConfig,
        checker: Arc<dyn ImageChecker>,
        store: Option<Arc<dyn Store>>,
        clock: Arc<dyn Clock>,
        tasks: &crate::supervise::Tasks,
    ) -> ImageService {
        let (tx, rx) = mpsc::channel(cfg.queue.max(1));
        let sem = Arc::new(Semaphore::new(cfg.max_concurrent.max(1)));
        let inner = Arc::new(Inner {
            cfg,
            checker,
            store,
            clock,
            results: Mutex::new(HashMap::new()),
            inflight: Mutex::new(HashSet::new()),
            started: Default::default(),
            dropped: Default::default(),
            sem,
        });
        let rx = Arc::new(tokio::sync::Mutex::new(rx));
        let w = inner.clone();
        tasks.spawn("image-worker", move || worker(w.clone(), rx.clone()));
        ImageService {
            inner,
            tx,
            _tasks: None,
        }
    }

    /// Digests waiting in the verification queue.
    pub fn queue_depth(&self) -> usize {
        self.tx.max_capacity() - self.tx.capacity()
    }

    /// The current result for `digest` in `repository`. Without a fresh one it
    /// queues a verification and answers `Pending`. Never awaits.
    pub fn lookup(&self, repository: &str, digest: &str) -> ImageCheck {
        if signatures::oci::Sha256Digest::parse(digest).is_err() {
            return ImageCheck::Refused {
                code: ReasonCode::ImageNoDigest,
                detail: "the reported image digest is not sha256:<64 hex digits>".into(),
            };
        }
        let now = self.inner.clock.now().get();
        let key = (repository.to_string(), digest.to_string());
        if let Some(e) = self
            .inner
            .results
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
        {
            if now < e.expires_at_ns {
                return e.check.clone();
            }
        }
        self.enqueue(key);
        ImageCheck::Pending
    }

    fn enqueue(&self, key: Key) {
        {
            let mut inflight = self
                .inner
                .inflight
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            if !inflight.insert(key.clone()) {
                return;
            }
        }
        if let Err(e) = self.tx.try_send(key) {
            let key = match e {
                mpsc::error::TrySendError::Full(k) | mpsc::error::TrySendError::Closed(k) => k,
            };
            // Not an error: the digest is queued again at its next lookup. Logged at
            // debug so a burst cannot flood the log; counted for metrics.
            self.inner
                .dropped
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            tracing::debug!(repository = %key.0, digest = %key.1, "image verification queue full; queued again at a later lookup");
            self.inner
                .inflight
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&key);
        }
    }

    /// How many lookups found the verification queue full (they are queued again
    /// at a later lookup).
    pub fn queue_full_count(&self) -> u64 {
        self.inner
            .dropped
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// How many verifications were started (cache misses in memory and store).
    pub fn verifications_started(&self) -> u64 {
        self.inner.started.load(std::sync::atomic::Ordering::SeqCst)
    }
}

async fn worker(inner: Arc<Inner>, rx: Arc<tokio::sync::Mutex<mpsc::Receiver<Key>>>) {
    let mut rx = rx.lock().await;
    while let Some(key) = rx.recv().await {
        let Ok(permit) = inner.sem.clone().acquire_owned().await else {
            return;
        };
        let inner = inner.clone();
        tokio::spawn(async move {
            let _guard = InflightGuard(inner.clone(), key.clone());
            inner.verify(key).await;
            drop(permit);
        });
    }
}

/// Makes room for one more entry when `map` holds `max`: drops expired entries,
/// then, if still full, the half that expires soonest.
fn evict(map: &mut HashMap<Key, Entry>, now_ns: u64, max: usize) {
    if map.len() < max {
        return;
    }
    map.retain(|_, e| e.expires_at_ns > now_ns);
    if map.len() < max {
        return;
    }
    let mut exp: Vec<u64> = map.values().map(|e| e.expires_at_ns).collect();
    exp.sort_unstable();
    let cut = exp.get(exp.len() / 2).copied().unwrap_or(u64::MAX);
    map.retain(|_, e| e.expires_at_ns > cut);
    if map.len() >= max {
        // All expire at the same time: no order to prefer.
        map.clear();
    }
}

impl Inner {
    fn remember(&self, key: Key, e: Entry) {
        let mut r = self.results.lock().unwrap_or_else(|e| e.into_inner());
        evict(&mut r, self.clock.now().get(), MAX_ENTRIES);
        r.insert(key, e);
    }

    async fn verify(&self, key: Key) {
        let (repo, digest) = (&key.0, &key.1);
        // Another replica (or this one, before a restart) may have the answer.
        if let Some(store) = &self.store {
            match store
                .get_cached(&store_key(&self.cfg.policy_fingerprint, repo, digest))
                .await
            {
                Ok(Some((json, _))) => match serde_json::from_slice::<Entry>(&json) {
                    Ok(e) if self.clock.now().get() < e.expires_at_ns => {
                        self.remember(key, e);
                        return;
                    }
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(%repo, %digest, error = %e, "unreadable cached image result; verifying again")
                    }
                },
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(%repo, %digest, error = %e, "image cache read failed; verifying")
                }
            }
        }
        self.started
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let now = self.clock.now();
        // Its own task, so a checker that panics yields an undecided result (retried
        // later) instead of taking the worker down.
        let checker = self.checker.clone();
        let (r, d) = (repo.clone(), digest.clone());
        let mut task = tokio::spawn(async move { checker.check(&r, &d, now).await });
        let check = match tokio::time::timeout(self.cfg.check_timeout, &mut task).await {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => {
                tracing::error!(%repo, %digest, error = %e, "image checker failed");
                ImageCheck::Undecided {
                    detail: "the signature verifier failed internally".into(),
                }
            }
            Err(_) => {
                task.abort();
                ImageCheck::Undecided {
                    detail: format!(
                        "signature verification took longer than {}s",
                        self.cfg.check_timeout.as_secs()
                    ),
                }
            }
        };
        // A checker that answers Pending has not decided: retry like undecided.
        let (ttl, shared) = match &check {
            ImageCheck::Verified { .. } | ImageCheck::Refused { .. } => (self.cfg.cache_ttl, true),
            ImageCheck::Undecided { .. } | ImageCheck::Pending => (self.cfg.retry_after, false),
        };
        let e = Entry {
            check,
            expires_at_ns: now.saturating_add(ttl).get(),
        };
        match &e.check {
            ImageCheck::Refused { code, detail } => {
                tracing::info!(%repo, %digest, code = code.as_str(), %detail, "image refused")
            }
            ImageCheck::Undecided { detail } => {
                tracing::info!(%repo, %digest, %detail, "image undecided")
            }
            _ => tracing::info!(%repo, %digest, "image verified"),
        }
        if shared {
            if let Some(store) = &self.store {
                let exp = UnixNanos(e.expires_at_ns).secs();
                match serde_json::to_vec(&e) {
                    Ok(json) => {
                        if let Err(err) = store
                            .put_cached(
                                &store_key(&self.cfg.policy_fingerprint, repo, digest),
                                &json,
                                exp,
                            )
                            .await
                        {
                            tracing::warn!(%repo, %digest, error = %err, "image cache write failed");
                        }
                    }
                    Err(err) => tracing::warn!(error = %err, "cannot encode an image result"),
                }
            }
        }
        self.remember(key, e);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repositories_of_references() {
        for (r, want) in [
            (
                "127.0.0.1:5000/provenant/web:1",
                Some("127.0.0.1:5000/provenant/web"),
            ),
            (
                "127.0.0.1:5000/provenant/web",
                Some("127.0.0.1:5000/provenant/web"),
            ),
            (
                &format!("ghcr.io/a/b@sha256:{}", "0".repeat(64)),
                Some("ghcr.io/a/b"),
            ),
            (
                &format!("ghcr.io/a/b:v1@sha256:{}", "0".repeat(64)),
                Some("ghcr.io/a/b"),
            ),
            ("localhost/app:latest", Some("localhost/app")),
            ("alpine", Some("docker.io/library/alpine")),
            ("alpine:3", Some("docker.io/library/alpine")),
            ("user/app:3", Some("docker.io/user/app")),
            ("", None),
            ("a//b", None),
            ("a b/c", None),
            ("<script>/x", None),
        ] {
            assert_eq!(repository_of(r).as_deref(), want, "{r}");
        }
    }

    /// Never answers.
    struct Never;
    #[async_trait::async_trait]
    impl ImageChecker for Never {
        async fn check(&self, _: &str, _: &str, _: UnixNanos) -> ImageCheck {
            std::future::pending().await
        }
    }

    /// Counts concurrent calls; answers Verified.
    #[derive(Default)]
    struct Counting {
        running: std::sync::atomic::AtomicUsize,
        max: std::sync::atomic::AtomicUsize,
        calls: std::sync::atomic::AtomicUsize,
    }
    #[async_trait::async_trait]
    impl ImageChecker for Counting {
        async fn check(&self, _: &str, _: &str, _: UnixNanos) -> ImageCheck {
            use std::sync::atomic::Ordering::SeqCst;
            let n = self.running.fetch_add(1, SeqCst) + 1;
            self.max.fetch_max(n, SeqCst);
            self.calls.fetch_add(1, SeqCst);
            tokio::time::sleep(Duration::from_millis(5)).await;
            self.running.fetch_sub(1, SeqCst);
            ImageCheck::Verified {
                keyless: true,
                signer: "s".into(),
                verified_at_ns: 1,
                rekor_log_index: None,
            }
        }
    }

    async fn until(svc: &ImageService, repo: &str, d: &str, pred: impl Fn(&ImageCheck) -> bool) {
        for _ in 0..1000 {
            if pred(&svc.lookup(repo, d)) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("{repo}@{d}: no result");
    }

    #[test]
    fn eviction_drops_expired_then_the_soonest_to_expire() {
        let e = |exp| Entry {
            check: ImageCheck::Pending,
            expires_at_ns: exp,
        };
        let k = |i: u64| (format!("r/{i}"), format!("d{i}"));
        let mut m: HashMap<Key, Entry> = (0..8).map(|i| (k(i), e(100 + i))).collect();
        // Not full: untouched.
        evict(&mut m, 1000, 9);
        assert_eq!(m.len(), 8);
        // Full, three expired at now=102: only those go.
        evict(&mut m, 102, 8);
        assert_eq!(m.len(), 5);
        assert!(!m.contains_key(&k(0)) && !m.contains_key(&k(2)) && m.contains_key(&k(3)));
        // Full, none expired: the half expiring soonest goes, the freshest stay.
        evict(&mut m, 0, 5);
        assert_eq!(m.len(), 2);
        assert!(m.contains_key(&k(7)));
        assert!(!m.contains_key(&k(3)));
    }

    #[tokio::test]
    async fn a_checker_that_never_answers_is_undecided() {
        let clock = Arc::new(provenant_base::clock::FixedClock(UnixNanos(
            1_800_000_000_000_000_000,
        )));
        let cfg = ImageServiceConfig {
            check_timeout: Duration::from_millis(50),
            ..Default::default()
        };
        let svc = ImageService::start(cfg, Arc::new(Never), None, clock);
        let d = format!("sha256:{}", "ab".repeat(32));
        assert_eq!(svc.lookup("r.example/a", &d), ImageCheck::Pending);
        until(
            &svc,
            "r.example/a",
            &d,
            |c| matches!(c, ImageCheck::Undecided { detail } if detail.contains("longer than")),
        )
        .await;
        // A malformed digest is refused without asking the checker.
        assert!(matches!(
            svc.lookup("r.example/a", "sha256:xyz"),
            ImageCheck::Refused {
                code: ReasonCode::ImageNoDigest,
                ..
            }
        ));
        assert_eq!(svc.verifications_started(), 1);
    }

    #[tokio::test]
    async fn concurrency_is_bounded_and_a_full_queue_loses_nothing() {
        let clock = Arc::new(provenant_base::clock::FixedClock(UnixNanos(
            1_800_000_000_000_000_000,
        )));
        let cfg = ImageServiceConfig {
            max_concurrent: 2,
            queue: 2,
            ..Default::default()
        };
        let checker = Arc::new(Counting::default());
        let svc = ImageService::start(cfg, checker.clone(), None, clock);
        let digests: Vec<String> = (0..20u8)
            .map(|i| format!("sha256:{}", hex::encode([i; 32])))
            .collect();
        // Many lookups at once: some do not fit the queue; they are queued again
        // by later lookups, and every digest is verified exactly once.
        for d in &digests {
            assert_eq!(svc.lookup("r.example/a", d), ImageCheck::Pending);
            assert_eq!(svc.lookup("r.example/a", d), ImageCheck::Pending);
        }
        // (The test runtime is single-threaded and lookups never yield, so the
        // worker has taken nothing yet: of the 40 lookups, the first two digests
        // were queued once and then found in flight; the other 36 found it full.)
        assert_eq!(svc.queue_full_count(), 36);
        for d in &digests {
            until(&svc, "r.example/a", d, |c| {
                matches!(c, ImageCheck::Verified { .. })
            })
            .await;
        }
        use std::sync::atomic::Ordering::SeqCst;
        assert_eq!(checker.calls.load(SeqCst), 20);
        assert!(checker.max.load(SeqCst) <= 2);
    }

    #[tokio::test]
    async fn policy_checker_fails_closed() {
        let none = PolicyChecker::new(None);
        let d = format!("sha256:{}", "ab".repeat(32));
        assert!(matches!(
            none.check("r.example/x", &d, UnixNanos(0)).await,
            ImageCheck::Refused {
                code: ReasonCode::ImageNotCovered,
                ..
            }
        ));
        let p: ImagePolicy = toml::from_str(
            "[[trust]]\nscope = \"r.example/team\"\nkeys = [\"k.pub\"]\nrequire_rekor = false\n",
        )
        .unwrap();
        let c = PolicyChecker::new(Some(p));
        assert!(matches!(
            c.check("r.example/other", &d, UnixNanos(0)).await,
            ImageCheck::Refused {
                code: ReasonCode::ImageNotCovered,
                ..
            }
        ));
        assert!(matches!(
            c.check("r.example/team/app", &d, UnixNanos(0)).await,
            ImageCheck::Undecided { .. }
        ));
    }
}
