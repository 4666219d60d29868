//! The composition root: reads the config's files (operator token, trust roots,
//! enrollment CA and CRL), builds each verifier and the alert sink, and assembles the
//! [`ControlPlane`]; then opens the store, binds the listener and hands the router to
//! the transport. Nothing else in the crate reads a file at start-up or builds a
//! subsystem from config.

use crate::act::alerts::AlertSink;
use crate::attest::TdxVerifier;
use crate::config::CpConfig;
use crate::judge::images::{ImageChecker, ImageService};
use crate::plane::ControlPlane;
use crate::register::enroll::Enroller;
use crate::store::Store;
use crate::supervise::Tasks;
use provenant_base::clock::Clock;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

impl ControlPlane {
    /// Builds the control plane from `cfg` (checked first), with the image checker the
    /// config implies: a registry verifier for `[images]`, else the fail-closed
    /// [`crate::judge::images::PolicyChecker`].
    pub fn new(
        cfg: CpConfig,
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
    ) -> anyhow::Result<ControlPlane> {
        ControlPlane::with_image_checker(cfg, store, clock, None)
    }

    /// [`ControlPlane::new`] with the image signature verifier to use. `None`: the
    /// fail-closed [`crate::judge::images::PolicyChecker`] (no registry access).
    pub fn with_image_checker(
        cfg: CpConfig,
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        checker: Option<Arc<dyn ImageChecker>>,
    ) -> anyhow::Result<ControlPlane> {
        cfg.check()?;
        let image_policy = cfg.images.as_ref().map(|i| i.policy()).unwrap_or_default();
        let checker: Arc<dyn ImageChecker> = match (checker, &cfg.images) {
            (Some(c), _) => c,
            // An image policy: verify against the registries it names. Keys and roots
            // are loaded now, so a bad file stops start-up rather than a workload.
            (None, Some(i)) => Arc::new(crate::judge::images::RegistryChecker(
                signatures::verifier::ImageVerifier::new(
                    &i.policy(),
                    std::path::Path::new(""),
                    &i.registry,
                )
                .map_err(|e| anyhow::anyhow!("[images]: {e}"))?,
            )),
            (None, None) => Arc::new(crate::judge::images::PolicyChecker::new(None)),
        };
        let tasks = Tasks::default();
        let images = ImageService::start_supervised(
            cfg.images.as_ref().map(|i| i.service()).unwrap_or_default(),
            checker,
            Some(store.clone()),
            clock.clone(),
            &tasks,
        );
        let enroller = Enroller::new(&cfg.enrollment)?;
        let ear = cfg
            .ear
            .as_ref()
            .map(crate::judge::ear::EarIssuer::load)
            .transpose()?;
        let mut tdx = TdxVerifier::from_config(
            &cfg.tdx,
            &cfg.data_dir,
            cfg.policy.tdx.clone(),
            Some(Arc::new(crate::store::StoreCollateralCache(store.clone()))),
        )?;
        if let Some(p) = &cfg.provenance {
            tdx = tdx.with_provenance(crate::attest::provenance::ProvenanceChecker::new(
                p.clone(),
                Some(store.clone()),
            )?);
        }
        let alerts = AlertSink::new(
            cfg.audit_log.clone(),
            cfg.webhooks.clone(),
            store.clone(),
            clock.clone(),
            &tasks,
        )?;
        let operator_token = match &cfg.operator_token_file {
            Some(p) => {
                let t = crate::http::auth::read_token(p, "operator_token_file")?;
                anyhow::ensure!(
                    t.len() >= 16,
                    "operator token in {} must be at least 16 characters",
                    p.display()
                );
                Some(t)
            }
            None => None,
        };
        let revocation = crate::register::revoke::Revocations::new(&cfg)?;
        Ok(ControlPlane {
            revocation,
            cfg,
            store,
            clock,
            enroller,
            tdx,
            alerts,
            operator_token,
            cache: Mutex::new(HashMap::new()),
            cooldowns: Mutex::new(HashMap::new()),
            unstored: Mutex::new(HashMap::new()),
            unrecorded_seen: Mutex::new(HashMap::new()),
            image_policy,
            images,
            unenrolled: Mutex::new(HashMap::new()),
            stale_pending: Mutex::new(HashMap::new()),
            pulses: Default::default(),
            pulses_flushed_ns: AtomicU64::new(0),
            corrupt_seen: Mutex::new(HashSet::new()),
            last_sweep_ns: AtomicU64::new(0),
            probe: Mutex::new(None),
            tasks,
            last_reattest_scan: std::sync::atomic::AtomicU64::new(0),
            ear,
            metrics: crate::http::metrics::Metrics::new(),
            events: crate::http::events::Events::new(),
        })
    }
}

/// Opens the store the config names: the PostgreSQL database of `store =
/// "postgres://..."` (migrated to the current schema), else the embedded SQLite
/// database in `data_dir`.
pub async fn open_store(cfg: &crate::config::CpConfig) -> anyhow::Result<Arc<dyn Store>> {
    Ok(match cfg.store_target()? {
        Some(t) => {
            let s = crate::store::postgres::PgStore::connect(&t).await?;
            tracing::info!(store = %t, "fleet state in PostgreSQL (shared by replicas)");
            Arc::new(s)
        }
        None => Arc::new(crate::store::sqlite::SqliteStore::open(&cfg.data_dir).await?),
    })
}

/// `cp-verifier migrate-store`: applies the PostgreSQL schema migrations and returns.
pub async fn migrate_store(cfg: &crate::config::CpConfig) -> anyhow::Result<()> {
    let t = cfg
        .store_target()?
        .ok_or_else(|| anyhow::anyhow!("the config names no store = \"postgres://...\"; the embedded SQLite store needs no migration"))?;
    let s = crate::store::postgres::PgStore::connect_only(&t).await?;
    s.migrate().await?;
    tracing::info!(store = %t, "store schema up to date");
    Ok(())
}

/// `cp-verifier migrate`: moves the fleet in SQLite database `from` to PostgreSQL
/// `to` (see [`crate::store::migrate`]). Returns the exit code and the JSON to print:
/// the summary, or `{"error": kind, "detail": why}`. Passwords never appear in it.
pub async fn migrate_fleet(
    from: &str,
    to: &str,
    to_password_file: Option<&std::path::Path>,
    replace: bool,
) -> (i32, serde_json::Value) {
    use crate::store::migrate::{migrate, parse_source};
    use crate::store::postgres::target::{read_password_file, PgTarget};
    let fail =
        |kind: &str, detail: String| (1, serde_json::json!({"error": kind, "detail": detail}));
    let src = match parse_source(from) {
        Ok(p) => p,
        Err(e) => return fail("BadSource", e.to_string()),
    };
    let password = match to_password_file.map(read_password_file).transpose() {
        Ok(p) => p,
        Err(e) => return fail("BadTarget", e.to_string()),
    };
    let target = match PgTarget::parse(to, password) {
        Ok(t) => t,
        Err(e) => return fail("BadTarget", e.to_string()),
    };
    if to_password_file.is_none()
        && (target.to_string().contains(":***@") || to.contains("password="))
    {
        tracing::warn!(to = %target, "the target URL carries a password, visible in the process list; prefer --to-password-file");
    }
    let now = provenant_base::clock::Clock::now(&provenant_base::clock::SystemClock);
    match migrate(&src, &target, replace, now).await {
        Ok(s) => (0, serde_json::to_value(&s).unwrap_or_default()),
        Err(e) => fail(e.kind(), target.redact(&e.to_string())),
    }
}

/// Opens the store, builds the control plane and starts its (supervised) sweeper.
pub async fn start(
    cfg: crate::config::CpConfig,
    clock: Arc<dyn Clock>,
) -> anyhow::Result<(Arc<crate::plane::ControlPlane>, axum::Router)> {
    let store = open_store(&cfg).await?;
    let cp = Arc::new(crate::plane::ControlPlane::new(cfg, store, clock)?);
    cp.load_revocations().await?;
    cp.spawn_sweeper();
    let router = crate::http::router::router(cp.clone())?;
    Ok((cp, router))
}

/// A control plane bound to its address, ready to [`Bound::serve`].
pub struct Bound {
    /// The control plane.
    pub cp: Arc<crate::plane::ControlPlane>,
    /// The address actually bound (port 0 resolved).
    pub addr: std::net::SocketAddr,
    /// The loaded `[tls]` section (its `pin` is what agents may pin).
    pub tls: Option<Arc<crate::http::transport::Tls>>,
    listener: tokio::net::TcpListener,
    router: axum::Router,
}

/// Plain HTTP is served on loopback only, unless the config says `insecure_http`.
pub fn check_listen(cfg: &crate::config::CpConfig) -> anyhow::Result<()> {
    anyhow::ensure!(
        cfg.tls.is_some() || cfg.insecure_http || cfg.listen.ip().is_loopback(),
        "refusing to serve plain HTTP on {}: pulses, tokens and the dashboard would travel \
         in clear. Configure [tls] cert_file and key_file, listen on a loopback address, or \
         set insecure_http = true (only behind a TLS-terminating proxy)",
        cfg.listen
    );
    Ok(())
}

/// Checks the listening rules, loads `[tls]`, starts the control plane and binds
/// `cfg.listen`. Nothing is served until [`Bound::serve`].
pub async fn bind(cfg: crate::config::CpConfig, clock: Arc<dyn Clock>) -> anyhow::Result<Bound> {
    use anyhow::Context;
    check_listen(&cfg)?;
    let tls = cfg
        .tls
        .as_ref()
        .map(crate::http::transport::Tls::load)
        .transpose()?
        .map(Arc::new);
    let listen = cfg.listen;
    let (cp, router) = start(cfg, clock).await?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    let addr = listener.local_addr()?;
    Ok(Bound {
        cp,
        addr,
        tls,
        listener,
        router,
    })
}

impl Bound {
    /// Serves until `shutdown` completes.
    pub async fn serve(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send,
    ) -> std::io::Result<()> {
        let limits = self.cp.cfg.limits.clone();
        crate::http::transport::serve(self.listener, self.router, self.tls, limits, shutdown).await
    }
}
