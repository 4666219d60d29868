//! Collateral sources against a local server playing a PCCS / Intel PCS (v4), which
//! serves the real collateral of evidence/tests/data/tdx split into the responses the
//! real service gives (issuer chains URL-encoded in headers, CRLs as DER or hex).

use provenant_base::clock::UnixSecs;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use cp_verifier::attest::collateral::{
    quote_collateral_key, CollateralError, CollateralSource, Endpoint, Fmspc, OfflineConfig, PckCa,
    PcsConfig, RootCaCrl, MAX_CRL_BODY_BYTES, MAX_JSON_BODY_BYTES,
};
use cp_verifier::attest::dcap::{parse_collateral, verify_quote, TcbStatus};
use serde_json::Value;

fn data(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/../evidence/tests/data/tdx/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

/// The recorded time at which the real quote is UpToDate with its collateral.
const NOW: u64 = 1_752_919_234;
/// Latest issue date of the collateral's parts (QE identity issueDate).
const ISSUED: u64 = 1_750_329_147;
/// Earliest nextUpdate of the collateral's parts (PCK CRL nextUpdate).
const EXPIRES: u64 = 1_752_919_235;
/// nextUpdate of the "stale" TCB info variant below.
const STALE_EXPIRES: u64 = 1_751_328_000; // 2025-07-01T00:00:00Z

fn fmspc() -> Fmspc {
    Fmspc::from_hex("B0C06F000000").unwrap()
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    Ok,
    /// TCB info with an earlier nextUpdate, signed again (only for a server holding
    /// the TCB signing key: the TEST PKI's).
    StaleTcb,
    /// TCB info whose status was altered without a signature: a forgery.
    ForgedTcb,
    Fail500,
    GarbageJson,
    NoChainHeader,
    BadChainHeader,
    Oversized,
}

struct Pccs {
    mode: Mutex<Mode>,
    delay: Mutex<Duration>,
    api_key: Option<String>,
    hits: HashMap<&'static str, AtomicUsize>,
    key_sent_to_root_url: AtomicBool,
    tcb_info: String,
    tcb_sig: String,
    tcb_chain: String,
    qe_identity: String,
    qe_sig: String,
    qe_chain: String,
    pck_crl: Vec<u8>,
    pck_chain: String,
    root_crl: Vec<u8>,
    /// The FMSPC served, upper-case hex.
    fmspc: String,
    /// The TCB info's nextUpdate, as written in it.
    next_update: String,
    /// The TCB signing key (PKCS#8 PEM), where the test holds it.
    tcb_key: Option<String>,
}

const ENDPOINTS: [&str; 5] = ["tcb", "qe", "pckcrl", "rootcacrl", "rooturl"];

impl Pccs {
    fn new(api_key: Option<&str>) -> Pccs {
        Pccs::serving(
            &data("tdx_quote_collateral.json"),
            "B0C06F000000",
            "2025-07-19T10:16:03Z",
            None,
        )
        .with_key(api_key)
    }
    /// The TEST platform's collateral (tdx-sim), with its TCB signing key.
    fn sim() -> Pccs {
        Pccs::serving(
            tdx_sim::TestPki::collateral_json(),
            "7E5700000001",
            "2049-12-31T23:59:59Z",
            Some(tdx_sim::TestPki::tcb_signing_key_pem()),
        )
    }
    fn with_key(mut self, api_key: Option<&str>) -> Pccs {
        self.api_key = api_key.map(str::to_string);
        self
    }
    fn serving(json: &[u8], fmspc: &str, next_update: &str, tcb_key: Option<&str>) -> Pccs {
        let c: Value = serde_json::from_slice(json).unwrap();
        let s = |k: &str| c[k].as_str().unwrap().to_string();
        Pccs {
            mode: Mutex::new(Mode::Ok),
            delay: Mutex::new(Duration::ZERO),
            api_key: None,
            hits: ENDPOINTS
                .iter()
                .map(|e| (*e, AtomicUsize::new(0)))
                .collect(),
            key_sent_to_root_url: AtomicBool::new(false),
            tcb_info: s("tcb_info"),
            tcb_sig: s("tcb_info_signature"),
            tcb_chain: s("tcb_info_issuer_chain"),
            qe_identity: s("qe_identity"),
            qe_sig: s("qe_identity_signature"),
            qe_chain: s("qe_identity_issuer_chain"),
            pck_crl: hex::decode(s("pck_crl")).unwrap(),
            pck_chain: s("pck_crl_issuer_chain"),
            root_crl: hex::decode(s("root_ca_crl")).unwrap(),
            fmspc: fmspc.to_string(),
            next_update: next_update.to_string(),
            tcb_key: tcb_key.map(str::to_string),
        }
    }
    fn hits(&self, e: &str) -> usize {
        self.hits[e].load(Ordering::SeqCst)
    }
    fn all_hits(&self) -> [usize; 5] {
        ENDPOINTS.map(|e| self.hits(e))
    }
    fn set(&self, m: Mode) {
        *self.mode.lock().unwrap() = m;
    }
    fn mode(&self) -> Mode {
        *self.mode.lock().unwrap()
    }
    /// Counts the request and applies the delay and the API key check.
    async fn enter(&self, e: &'static str, h: &HeaderMap) -> Result<(), Response> {
        self.hits[e].fetch_add(1, Ordering::SeqCst);
        let d = *self.delay.lock().unwrap();
        tokio::time::sleep(d).await;
        if let Some(k) = &self.api_key {
            let sent = h.get("Ocp-Apim-Subscription-Key").map(|v| v.as_bytes());
            if sent != Some(k.as_bytes()) {
                return Err(StatusCode::UNAUTHORIZED.into_response());
            }
        }
        Ok(())
    }
}

/// Percent-encodes everything but unreserved characters, as Intel does.
fn pct(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn with_chain(name: &'static str, chain: &str, body: impl IntoResponse) -> Response {
    ([(name, pct(chain))], body).into_response()
}

async fn tcb(
    State(p): State<Arc<Pccs>>,
    h: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if let Err(r) = p.enter("tcb", &h).await {
        return r;
    }
    if !q
        .get("fmspc")
        .is_some_and(|f| f.eq_ignore_ascii_case(&p.fmspc))
    {
        return (StatusCode::NOT_FOUND, "").into_response();
    }
    let (info, sig) = match p.mode() {
        Mode::StaleTcb => {
            let info = p.tcb_info.replace(
                &format!(r#""nextUpdate":"{}""#, p.next_update),
                r#""nextUpdate":"2025-07-01T00:00:00Z""#,
            );
            let sig = p.tcb_key.as_deref().map_or(p.tcb_sig.clone(), |k| {
                use p256::ecdsa::signature::Signer;
                use p256::pkcs8::DecodePrivateKey;
                let key = p256::ecdsa::SigningKey::from_pkcs8_pem(k).unwrap();
                let sig: p256::ecdsa::Signature = key.sign(info.as_bytes());
                hex::encode(sig.to_bytes())
            });
            (info, sig)
        }
        Mode::ForgedTcb => (
            p.tcb_info
                .replacen(r#""tcbStatus":"OutOfDate""#, r#""tcbStatus":"UpToDate""#, 1),
            p.tcb_sig.clone(),
        ),
        _ => (p.tcb_info.clone(), p.tcb_sig.clone()),
    };
    // Spaces outside the signed object: only the object's own bytes are signed.
    let body = format!(r#"{{"tcbInfo": {info}, "signature": "{sig}"}}"#);
    match p.mode() {
        Mode::Fail500 => (StatusCode::INTERNAL_SERVER_ERROR, "boom").into_response(),
        Mode::GarbageJson => with_chain("TCB-Info-Issuer-Chain", &p.tcb_chain, "{\"tcbInfo\":"),
        Mode::NoChainHeader => body.into_response(),
        Mode::BadChainHeader => ([("TCB-Info-Issuer-Chain", "%E")], body).into_response(),
        Mode::Oversized => with_chain(
            "TCB-Info-Issuer-Chain",
            &p.tcb_chain,
            " ".repeat(MAX_JSON_BODY_BYTES + 1),
        ),
        Mode::Ok | Mode::StaleTcb | Mode::ForgedTcb => {
            with_chain("TCB-Info-Issuer-Chain", &p.tcb_chain, body)
        }
    }
}

async fn qe(State(p): State<Arc<Pccs>>, h: HeaderMap) -> Response {
    if let Err(r) = p.enter("qe", &h).await {
        return r;
    }
    let body = format!(
        r#"{{"enclaveIdentity":{},"signature":"{}"}}"#,
        p.qe_identity, p.qe_sig
    );
    with_chain("SGX-Enclave-Identity-Issuer-Chain", &p.qe_chain, body)
}

async fn pckcrl(
    State(p): State<Arc<Pccs>>,
    h: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if let Err(r) = p.enter("pckcrl", &h).await {
        return r;
    }
    if q.get("ca").map(String::as_str) != Some("platform")
        || q.get("encoding").map(String::as_str) != Some("der")
    {
        return (StatusCode::BAD_REQUEST, "").into_response();
    }
    with_chain("SGX-PCK-CRL-Issuer-Chain", &p.pck_chain, p.pck_crl.clone())
}

/// PCCS: the root CA CRL as hex text.
async fn rootcacrl(State(p): State<Arc<Pccs>>, h: HeaderMap) -> Response {
    if let Err(r) = p.enter("rootcacrl", &h).await {
        return r;
    }
    hex::encode(&p.root_crl).into_response()
}

/// Intel's distribution point: DER, no API key expected.
async fn rooturl(State(p): State<Arc<Pccs>>, h: HeaderMap) -> Response {
    p.hits["rooturl"].fetch_add(1, Ordering::SeqCst);
    if h.contains_key("Ocp-Apim-Subscription-Key") {
        p.key_sent_to_root_url.store(true, Ordering::SeqCst);
    }
    p.root_crl.clone().into_response()
}

async fn serve(p: Arc<Pccs>) -> String {
    let app = axum::Router::new()
        .route("/tdx/certification/v4/tcb", get(tcb))
        .route("/tdx/certification/v4/qe/identity", get(qe))
        .route("/sgx/certification/v4/pckcrl", get(pckcrl))
        .route("/sgx/certification/v4/rootcacrl", get(rootcacrl))
        .route("/IntelSGXRootCA.der", get(rooturl))
        .with_state(p);
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", l.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(l, app).await });
    base
}

fn pccs_source(base: &str, cache: Option<&std::path::Path>) -> CollateralSource {
    let mut cfg = PcsConfig::pccs(base);
    cfg.cache_dir = cache.map(|p| p.to_path_buf());
    cfg.timeout = Duration::from_secs(5);
    CollateralSource::pcs(cfg).unwrap()
}

#[tokio::test]
async fn fetched_collateral_verifies_the_real_quote_and_is_cached_in_memory_and_on_disk() {
    let p = Arc::new(Pccs::new(None));
    let base = serve(p.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let src = pccs_source(&base, Some(dir.path()));

    let fc = src
        .get(fmspc(), PckCa::Platform, UnixSecs::from_unsigned(NOW))
        .await
        .unwrap();
    assert_eq!(p.all_hits(), [1, 1, 1, 1, 0]);
    assert_eq!((fc.issued_at(), fc.expires_at()), (ISSUED, EXPIRES));
    assert_eq!(fc.fmspc(), fmspc());
    let v = verify_quote(
        &data("tdx_quote"),
        fc.collateral(),
        UnixSecs::from_unsigned(NOW),
        None,
    )
    .unwrap();
    assert_eq!(v.tcb_status(), &TcbStatus::UpToDate);
    // Byte for byte what the offline file holds, though the server's JSON differed.
    let offline = parse_collateral(&data("tdx_quote_collateral.json")).unwrap();
    assert_eq!(fc.collateral(), &offline);

    // Memory cache.
    let again = src
        .get(fmspc(), PckCa::Platform, UnixSecs::from_unsigned(NOW))
        .await
        .unwrap();
    assert!(Arc::ptr_eq(&fc, &again));
    assert_eq!(p.all_hits(), [1, 1, 1, 1, 0]);

    // Disk cache: readable by parse_collateral, used by a new instance.
    let file = dir.path().join("b0c06f000000-platform.json");
    let on_disk = parse_collateral(&std::fs::read(&file).unwrap()).unwrap();
    assert_eq!(&on_disk, fc.collateral());
    let src2 = pccs_source(&base, Some(dir.path()));
    let fc2 = src2
        .get(fmspc(), PckCa::Platform, UnixSecs::from_unsigned(NOW))
        .await
        .unwrap();
    assert_eq!(fc2.collateral(), fc.collateral());
    assert_eq!(p.all_hits(), [1, 1, 1, 1, 0]);
    // The same directory serves as offline collateral.
    let off = CollateralSource::offline(OfflineConfig::new(Some(dir.path().into()), None)).unwrap();
    off.get(fmspc(), PckCa::Platform, UnixSecs::from_unsigned(NOW))
        .await
        .unwrap();

    // At the expiry, neither cache is used: the source refetches, and since the
    // service only has this collateral, the answer is Expired, not a stale pass.
    let e = src
        .get(fmspc(), PckCa::Platform, UnixSecs::from_unsigned(EXPIRES))
        .await
        .unwrap_err();
    assert_eq!(
        e,
        CollateralError::Expired {
            fmspc: fmspc(),
            expires_at: EXPIRES,
            now: EXPIRES
        }
    );
    assert_eq!(e.kind(), "CollateralExpired");
    assert_eq!(p.all_hits(), [2, 2, 2, 2, 0]);
    let e = pccs_source(&base, Some(dir.path()))
        .get(fmspc(), PckCa::Platform, UnixSecs::from_unsigned(EXPIRES))
        .await
        .unwrap_err();
    assert!(matches!(e, CollateralError::Expired { .. }), "{e}");
    assert_eq!(p.all_hits(), [3, 3, 3, 3, 0]);
}

#[tokio::test]
async fn past_expiry_it_refetches_and_a_failed_refetch_is_an_error_not_stale_collateral() {
    // The TEST platform's collateral, whose TCB info the test can sign again with an
    // earlier nextUpdate (Intel's cannot be: only verified collateral is cached).
    use tdx_sim::{platform, TdReport, TestPki};
    let p = Arc::new(Pccs::sim());
    let base = serve(p.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let src = sim_source(&base, Some(dir.path()));
    let sim_fmspc = Fmspc(platform::FMSPC);
    let sim_expires = cp_verifier::attest::collateral::FetchedCollateral::from_collateral(
        parse_collateral(TestPki::collateral_json()).unwrap(),
    )
    .unwrap()
    .expires_at();

    p.set(Mode::StaleTcb);
    let t0 = 1_751_000_000;
    let fc = src
        .get(sim_fmspc, PckCa::Platform, UnixSecs::from_unsigned(t0))
        .await
        .unwrap();
    assert_eq!(fc.expires_at(), STALE_EXPIRES);
    src.get(
        sim_fmspc,
        PckCa::Platform,
        UnixSecs::from_unsigned(STALE_EXPIRES - 1),
    )
    .await
    .unwrap();
    assert_eq!(p.hits("tcb"), 1);

    // Expired: refetched, and the new collateral is served and cached.
    p.set(Mode::Ok);
    let fc = src
        .get(
            sim_fmspc,
            PckCa::Platform,
            UnixSecs::from_unsigned(STALE_EXPIRES),
        )
        .await
        .unwrap();
    assert_eq!(fc.expires_at(), sim_expires);
    assert_eq!(p.hits("tcb"), 2);
    let fc = src
        .get(sim_fmspc, PckCa::Platform, UnixSecs::from_unsigned(NOW))
        .await
        .unwrap();
    assert_eq!(p.hits("tcb"), 2);
    let quote = TdReport::default().quote_v4();
    let v = verify_quote(
        &quote,
        fc.collateral(),
        UnixSecs::from_unsigned(NOW),
        Some(TestPki::root_ca_der()),
    )
    .unwrap();
    assert_eq!(v.tcb_status(), &TcbStatus::UpToDate);

    // Expired again and the service fails: the typed error, in memory and from disk.
    p.set(Mode::Fail500);
    for s in [&src, &sim_source(&base, Some(dir.path()))] {
        let e = s
            .get(
                sim_fmspc,
                PckCa::Platform,
                UnixSecs::from_unsigned(sim_expires),
            )
            .await
            .unwrap_err();
        assert_eq!(
            e,
            CollateralError::HttpStatus {
                endpoint: Endpoint::TcbInfo,
                status: 500
            }
        );
    }
    assert_eq!(p.hits("tcb"), 4);
}

fn sim_source(base: &str, cache: Option<&std::path::Path>) -> CollateralSource {
    let mut cfg = PcsConfig::pccs(base);
    cfg.cache_dir = cache.map(|p| p.to_path_buf());
    cfg.timeout = Duration::from_secs(5);
    cfg.root_ca_der = Some(tdx_sim::TestPki::root_ca_der().to_vec());
    CollateralSource::pcs(cfg).unwrap()
}

#[tokio::test]
async fn finding09_collateral_cached_only_after_verification() {
    use cp_verifier::store::{sqlite::SqliteStore, Store, StoreCollateralCache};
    let p = Arc::new(Pccs::new(None));
    let base = serve(p.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let db = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(db.path()).await.unwrap());
    let shared_key = format!("collateral:{}-platform", fmspc());
    let src = pccs_source(&base, Some(dir.path()))
        .with_shared_cache(Arc::new(StoreCollateralCache(store.clone())));
    let file = dir.path().join("b0c06f000000-platform.json");

    // A forged TCB info (a level's status changed, the signature left as it was): refused
    // before anything is kept, in memory, on disk or in the shared store.
    p.set(Mode::ForgedTcb);
    let e = src
        .get(fmspc(), PckCa::Platform, UnixSecs::from_unsigned(NOW))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), "CollateralInvalid", "{e}");
    assert!(e.to_string().contains("TCB info"), "{e}");
    assert!(
        !file.exists(),
        "a forged answer was written to the disk cache"
    );
    assert!(store.get_cached(&shared_key).await.unwrap().is_none());
    // Not in memory either: the next get asks the service again.
    p.set(Mode::Ok);
    src.get(fmspc(), PckCa::Platform, UnixSecs::from_unsigned(NOW))
        .await
        .unwrap();
    assert_eq!(p.hits("tcb"), 2);
    assert!(file.exists() && store.get_cached(&shared_key).await.unwrap().is_some());

    // A cache file or store entry that fails verification (tampered on disk, or by a
    // replica) is evicted and fetched again, never served.
    let good = std::fs::read(&file).unwrap();
    let mut c: Value = serde_json::from_slice(&good).unwrap();
    let forged = c["tcb_info"].as_str().unwrap().replacen(
        r#""tcbStatus":"OutOfDate""#,
        r#""tcbStatus":"UpToDate""#,
        1,
    );
    assert_ne!(forged, c["tcb_info"].as_str().unwrap());
    c["tcb_info"] = forged.into();
    let forged = serde_json::to_vec(&c).unwrap();
    std::fs::write(&file, &forged).unwrap();
    store
        .put_cached(&shared_key, &forged, UnixSecs::from_unsigned(EXPIRES))
        .await
        .unwrap();
    let fresh = pccs_source(&base, Some(dir.path()))
        .with_shared_cache(Arc::new(StoreCollateralCache(store.clone())));
    let fc = fresh
        .get(fmspc(), PckCa::Platform, UnixSecs::from_unsigned(NOW))
        .await
        .unwrap();
    assert_eq!(p.hits("tcb"), 3, "the forged caches were not used");
    assert_eq!(fc.collateral(), &parse_collateral(&good).unwrap());
    assert_eq!(
        std::fs::read(&file).unwrap(),
        good,
        "the forged file was replaced"
    );
    // Collateral for another root (a configured test root) is refused as well.
    let mut cfg = PcsConfig::pccs(base.as_str());
    cfg.root_ca_der = Some(tdx_sim::TestPki::root_ca_der().to_vec());
    let e = CollateralSource::pcs(cfg)
        .unwrap()
        .get(fmspc(), PckCa::Platform, UnixSecs::from_unsigned(NOW))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("trusted root"), "{e}");
}

#[tokio::test]
async fn collateral_not_yet_valid_is_an_error_and_stays_cached_for_later() {
    let p = Arc::new(Pccs::new(None));
    let base = serve(p.clone()).await;
    let src = pccs_source(&base, None);
    let e = src
        .get(
            fmspc(),
            PckCa::Platform,
            UnixSecs::from_unsigned(ISSUED - 1),
        )
        .await
        .unwrap_err();
    assert_eq!(
        e,
        CollateralError::NotYetValid {
            fmspc: fmspc(),
            issued_at: ISSUED,
            now: ISSUED - 1
        }
    );
    src.get(fmspc(), PckCa::Platform, UnixSecs::from_unsigned(ISSUED))
        .await
        .unwrap();
    assert_eq!(p.hits("tcb"), 1);
}

#[tokio::test]
async fn concurrent_gets_share_one_fetch_and_its_failure() {
    let p = Arc::new(Pccs::new(None));
    let base = serve(p.clone()).await;
    *p.delay.lock().unwrap() = Duration::from_millis(300);

    let src = Arc::new(pccs_source(&base, None));
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let s = src.clone();
            tokio::spawn(async move {
                s.get(fmspc(), PckCa::Platform, UnixSecs::from_unsigned(NOW))
                    .await
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    assert_eq!(p.all_hits(), [1, 1, 1, 1, 0]);

    p.set(Mode::Fail500);
    let src = Arc::new(pccs_source(&base, None));
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let s = src.clone();
            tokio::spawn(async move {
                s.get(fmspc(), PckCa::Platform, UnixSecs::from_unsigned(NOW))
                    .await
            })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap().unwrap_err().kind(), "CollateralHttpStatus");
    }
    assert_eq!(p.hits("tcb"), 2);
    // A get after the failed attempt tries again.
    p.set(Mode::Ok);
    *p.delay.lock().unwrap() = Duration::ZERO;
    src.get(fmspc(), PckCa::Platform, UnixSecs::from_unsigned(NOW))
        .await
        .unwrap();
    assert_eq!(p.hits("tcb"), 3);
}

#[tokio::test]
async fn each_server_fault_has_its_typed_error() {
    let p = Arc::new(Pccs::new(None));
    let base = serve(p.clone()).await;
    let get = |f: Fmspc| {
        let base = base.clone();
        async move {
            pccs_source(&base, None)
                .get(f, PckCa::Platform, UnixSecs::from_unsigned(NOW))
                .await
                .unwrap_err()
        }
    };

    let unknown = Fmspc::from_hex("00606a000000").unwrap();
    assert_eq!(
        get(unknown).await,
        CollateralError::UnknownFmspc {
            endpoint: Endpoint::TcbInfo,
            fmspc: unknown
        }
    );
    p.set(Mode::Fail500);
    assert_eq!(
        get(fmspc()).await,
        CollateralError::HttpStatus {
            endpoint: Endpoint::TcbInfo,
            status: 500
        }
    );
    p.set(Mode::GarbageJson);
    let e = get(fmspc()).await;
    assert!(
        matches!(
            e,
            CollateralError::MalformedBody {
                endpoint: Endpoint::TcbInfo,
                ..
            }
        ),
        "{e}"
    );
    p.set(Mode::NoChainHeader);
    assert_eq!(
        get(fmspc()).await,
        CollateralError::MissingHeader {
            endpoint: Endpoint::TcbInfo,
            header: "TCB-Info-Issuer-Chain"
        }
    );
    p.set(Mode::BadChainHeader);
    let e = get(fmspc()).await;
    assert!(
        matches!(
            e,
            CollateralError::MalformedHeader {
                endpoint: Endpoint::TcbInfo,
                header: "TCB-Info-Issuer-Chain",
                ..
            }
        ),
        "{e}"
    );
    p.set(Mode::Oversized);
    assert_eq!(
        get(fmspc()).await,
        CollateralError::Oversized {
            endpoint: Endpoint::TcbInfo,
            limit: MAX_JSON_BODY_BYTES
        }
    );
    p.set(Mode::Ok);
    let e = pccs_source(&base, None)
        .get(fmspc(), PckCa::Processor, UnixSecs::from_unsigned(NOW))
        .await
        .unwrap_err();
    assert_eq!(
        e,
        CollateralError::HttpStatus {
            endpoint: Endpoint::PckCrl,
            status: 400
        }
    );
}

/// Accepts connections and never answers.
async fn silent_server() -> String {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", l.local_addr().unwrap());
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = l.accept().await {
            held.push(s);
        }
    });
    base
}

/// Answers every request with a chunked body (no Content-Length) larger than any
/// bound.
async fn endless_chunked_server() -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", l.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut req = Vec::new();
                let mut buf = [0u8; 1024];
                while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => req.extend_from_slice(&buf[..n]),
                    }
                }
                let head = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTCB-Info-Issuer-Chain: x\r\nSGX-Enclave-Identity-Issuer-Chain: x\r\nSGX-PCK-CRL-Issuer-Chain: x\r\n\r\n";
                if s.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                let chunk = format!("2000\r\n{}\r\n", "0".repeat(0x2000));
                for _ in 0..(4 * MAX_CRL_BODY_BYTES / 0x2000) {
                    if s.write_all(chunk.as_bytes()).await.is_err() {
                        return;
                    }
                }
                let _ = s.write_all(b"0\r\n\r\n").await;
            });
        }
    });
    base
}

#[tokio::test]
async fn a_server_that_never_answers_times_out() {
    let base = silent_server().await;
    let mut cfg = PcsConfig::pccs(&base);
    cfg.timeout = Duration::from_millis(400);
    let src = CollateralSource::pcs(cfg).unwrap();
    let t = std::time::Instant::now();
    let e = src
        .get(fmspc(), PckCa::Platform, UnixSecs::from_unsigned(NOW))
        .await
        .unwrap_err();
    assert!(
        matches!(e, CollateralError::Timeout { timeout, .. } if timeout == Duration::from_millis(400)),
        "{e}"
    );
    assert_eq!(e.kind(), "CollateralTimeout");
    assert!(t.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn an_oversized_chunked_body_is_cut_off() {
    let base = endless_chunked_server().await;
    let e = pccs_source(&base, None)
        .get(fmspc(), PckCa::Platform, UnixSecs::from_unsigned(NOW))
        .await
        .unwrap_err();
    assert!(matches!(e, CollateralError::Oversized { .. }), "{e}");
}

#[tokio::test]
async fn a_refused_connection_is_a_transport_error() {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", l.local_addr().unwrap());
    drop(l);
    let e = pccs_source(&base, None)
        .get(fmspc(), PckCa::Platform, UnixSecs::from_unsigned(NOW))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), "CollateralUnreachable", "{e}");
}

#[tokio::test]
async fn intel_pcs_shape_api_key_and_root_crl_from_its_distribution_point() {
    let p = Arc::new(Pccs::new(Some("s3cret")));
    let base = serve(p.clone()).await;
    let mut cfg = PcsConfig::intel(Some("s3cret".into()));
    cfg.base_url = format!("{base}/sgx/certification/v4/");
    cfg.root_ca_crl = RootCaCrl::Url(format!("{base}/IntelSGXRootCA.der"));
    let fc = CollateralSource::pcs(cfg)
        .unwrap()
        .get(fmspc(), PckCa::Platform, UnixSecs::from_unsigned(NOW))
        .await
        .unwrap();
    assert_eq!(p.all_hits(), [1, 1, 1, 0, 1]);
    assert!(!p.key_sent_to_root_url.load(Ordering::SeqCst));
    let v = verify_quote(
        &data("tdx_quote"),
        fc.collateral(),
        UnixSecs::from_unsigned(NOW),
        None,
    )
    .unwrap();
    assert_eq!(v.tcb_status(), &TcbStatus::UpToDate);

    // Without the key the service refuses.
    let mut cfg = PcsConfig::intel(None);
    cfg.base_url = base.clone();
    cfg.root_ca_crl = RootCaCrl::Url(format!("{base}/IntelSGXRootCA.der"));
    let e = CollateralSource::pcs(cfg)
        .unwrap()
        .get(fmspc(), PckCa::Platform, UnixSecs::from_unsigned(NOW))
        .await
        .unwrap_err();
    assert!(
        matches!(e, CollateralError::HttpStatus { status: 401, .. }),
        "{e}"
    );
}

#[tokio::test]
async fn a_garbage_disk_cache_file_is_ignored_and_replaced() {
    let p = Arc::new(Pccs::new(None));
    let base = serve(p.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("b0c06f000000-platform.json");
    std::fs::write(&file, "not json").unwrap();
    pccs_source(&base, Some(dir.path()))
        .get(fmspc(), PckCa::Platform, UnixSecs::from_unsigned(NOW))
        .await
        .unwrap();
    assert_eq!(p.hits("tcb"), 1);
    parse_collateral(&std::fs::read(&file).unwrap()).unwrap();
}

#[tokio::test]
async fn offline_directory_and_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("b0c06f000000.json"),
        data("tdx_quote_collateral.json"),
    )
    .unwrap();
    std::fs::write(dir.path().join("90c06f000000.json"), "{garbage").unwrap();
    let src = CollateralSource::offline(OfflineConfig::new(Some(dir.path().into()), None)).unwrap();

    // Found, and it verifies the real quote.
    let fc = src
        .get(fmspc(), PckCa::Platform, UnixSecs::from_unsigned(NOW))
        .await
        .unwrap();
    assert_eq!((fc.issued_at(), fc.expires_at()), (ISSUED, EXPIRES));
    let v = verify_quote(
        &data("tdx_quote"),
        fc.collateral(),
        UnixSecs::from_unsigned(NOW),
        None,
    )
    .unwrap();
    assert_eq!(v.tcb_status(), &TcbStatus::UpToDate);

    // Expired offline collateral is an error, not something to verify against.
    let e = src
        .get(fmspc(), PckCa::Platform, UnixSecs::from_unsigned(EXPIRES))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), "CollateralExpired");

    // Not found.
    let other = Fmspc::from_hex("00606a000000").unwrap();
    let e = src
        .get(other, PckCa::Platform, UnixSecs::from_unsigned(NOW))
        .await
        .unwrap_err();
    assert!(
        matches!(e, CollateralError::OfflineNotFound { fmspc, ca: PckCa::Platform, .. } if fmspc == other),
        "{e}"
    );

    // Garbage.
    let garbage = Fmspc::from_hex("90c06f000000").unwrap();
    let e = src
        .get(garbage, PckCa::Platform, UnixSecs::from_unsigned(NOW))
        .await
        .unwrap_err();
    assert!(matches!(e, CollateralError::OfflineMalformed { .. }), "{e}");

    // One file for every FMSPC: used, but only for the FMSPC it is for.
    let file = dir.path().join("all.json");
    std::fs::write(&file, data("tdx_quote_collateral.json")).unwrap();
    let src = CollateralSource::offline(OfflineConfig::new(None, Some(file))).unwrap();
    src.get(fmspc(), PckCa::Processor, UnixSecs::from_unsigned(NOW))
        .await
        .unwrap();
    let e = src
        .get(other, PckCa::Platform, UnixSecs::from_unsigned(NOW))
        .await
        .unwrap_err();
    assert_eq!(
        e,
        CollateralError::FmspcMismatch {
            want: other,
            got: fmspc()
        }
    );

    // Oversized file.
    let big = dir.path().join("big.json");
    std::fs::write(
        &big,
        vec![b' '; cp_verifier::attest::dcap::MAX_COLLATERAL_BYTES + 1],
    )
    .unwrap();
    let e = CollateralSource::offline(OfflineConfig::new(None, Some(big)))
        .unwrap()
        .get(fmspc(), PckCa::Platform, UnixSecs::from_unsigned(NOW))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), "CollateralUnreadable", "{e}");

    assert_eq!(
        CollateralSource::offline(OfflineConfig::default())
            .unwrap_err()
            .kind(),
        "CollateralConfig"
    );
}

#[test]
fn the_quote_names_its_collateral() {
    assert_eq!(
        quote_collateral_key(&data("tdx_quote")).unwrap(),
        (fmspc(), PckCa::Platform)
    );
    let e = quote_collateral_key(&data("tdx_quote")[..600]).unwrap_err();
    assert_eq!(e.kind(), "MalformedQuote");
}

#[test]
fn sources_are_shareable() {
    fn check<T: Send + Sync>() {}
    check::<CollateralSource>();
}

/// The control plane's store as the shared cache: a second source (another replica, or
/// a restart without the disk cache) uses what the first fetched, and does not fetch.
#[tokio::test]
async fn the_store_is_a_shared_cache_between_sources() {
    use cp_verifier::store::{sqlite::SqliteStore, Store, StoreCollateralCache};
    let p = Arc::new(Pccs::new(None));
    let base = serve(p.clone()).await;
    let db = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(db.path()).await.unwrap());
    let shared = || Arc::new(StoreCollateralCache(store.clone()));

    let first = pccs_source(&base, None).with_shared_cache(shared());
    let fc = first
        .get(fmspc(), PckCa::Platform, UnixSecs::from_unsigned(NOW))
        .await
        .unwrap();
    assert_eq!(p.all_hits(), [1, 1, 1, 1, 0]);
    let (_, exp) = store
        .get_cached(&format!("collateral:{}-platform", fmspc()))
        .await
        .unwrap()
        .expect("stored");
    assert_eq!(exp, UnixSecs::from_unsigned(EXPIRES));

    let second = pccs_source(&base, None).with_shared_cache(shared());
    let fc2 = second
        .get(fmspc(), PckCa::Platform, UnixSecs::from_unsigned(NOW))
        .await
        .unwrap();
    assert_eq!(fc2.collateral(), fc.collateral());
    assert_eq!(p.all_hits(), [1, 1, 1, 1, 0], "served from the store");

    // An expired store entry is not used: the third source fetches.
    let third = pccs_source(&base, None).with_shared_cache(shared());
    assert!(third
        .get(fmspc(), PckCa::Platform, UnixSecs::from_unsigned(EXPIRES))
        .await
        .is_err());
    assert_eq!(p.all_hits(), [2, 2, 2, 2, 0]);

    // A garbage entry is ignored, and replaced by the next fetch.
    store
        .put_cached(
            &format!("collateral:{}-platform", fmspc()),
            b"garbage",
            UnixSecs::from_unsigned(NOW + 10),
        )
        .await
        .unwrap();
    let fourth = pccs_source(&base, None).with_shared_cache(shared());
    fourth
        .get(fmspc(), PckCa::Platform, UnixSecs::from_unsigned(NOW))
        .await
        .unwrap();
    assert_eq!(p.all_hits(), [3, 3, 3, 3, 0]);
    let (json, _) = store
        .get_cached(&format!("collateral:{}-platform", fmspc()))
        .await
        .unwrap()
        .unwrap();
    assert!(parse_collateral(&json).is_ok());
}
