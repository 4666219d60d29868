//! Build provenance for MRTD (`cp_verifier::attest::provenance`): a local server plays the
//! GitHub attestations API and serves bundles made by the TEST Sigstore instance
//! (sigstore-testsign), verified under its checked-in trusted root.

use provenant_base::clock::UnixSecs;
use std::sync::Arc;

use cp_verifier::attest::provenance::{ProvenanceChecker, ProvenanceConfig, MEASUREMENT_PREDICATE};
use cp_verifier::http::error::ApiError;
use cp_verifier::store::{sqlite::SqliteStore, Store};
use serde_json::json;
use sigstore_testsign::github_api::GithubApi;
use sigstore_testsign::{Attestation, Identity, Subject, TestSigstore};

const REPO: &str = "acme/guest-image";
const WORKFLOW: &str = ".github/workflows/release.yml";
/// 2026-11-01, when the TEST bundles say they were signed.
const SIGNED_AT: i64 = 1_793_491_200;
const NOW: u64 = 1_793_491_200 + 3600;

fn config(api: &str) -> ProvenanceConfig {
    toml::from_str(&format!(
        r#"repository = "{REPO}"
signer_workflow = "{REPO}/{WORKFLOW}"
source_ref = "refs/heads/main"
trusted_root_file = "{root}"
github_api = "{api}"
"#,
        root = sigstore_testsign::keys::trusted_root_path().display()
    ))
    .unwrap()
}

/// CI's attestation of a measurement manifest, signed as `identity`.
fn attest(api: &GithubApi, mrtd: &[u8; 48], predicate_mrtd: &[u8; 48], identity: &Identity) {
    let digest = ProvenanceChecker::subject_digest(mrtd);
    let hex_digest = digest.strip_prefix("sha256:").unwrap();
    let manifest = json!({
        "mrtd": hex::encode(predicate_mrtd),
        "rtmr0": null,
        "rtmr1": hex::encode([1u8; 48]),
        "rtmr2": hex::encode([2u8; 48]),
        "layout": "single-pass",
    });
    let att = Attestation::new(
        vec![Subject::sha256_hex("tdx-mrtd", hex_digest)],
        MEASUREMENT_PREDICATE,
        manifest,
    );
    let bundle = TestSigstore::load()
        .unwrap()
        .sign_attestation(&att, identity, SIGNED_AT)
        .unwrap();
    api.publish(REPO, &digest, bundle);
}

fn good() -> Identity {
    Identity::github(REPO, WORKFLOW, "refs/heads/main")
}

/// The refusal's kind and text, as the wire shows it (403).
fn kind(
    r: Result<cp_verifier::model::MrtdProvenance, cp_verifier::attest::AttestError>,
) -> (String, String) {
    let e = ApiError::from(r.unwrap_err());
    assert_eq!(e.status(), 403, "{e}");
    (e.kind().to_string(), e.to_string())
}

const RTMRS: [[u8; 48]; 4] = [[0; 48], [1; 48], [2; 48], [0; 48]];

#[tokio::test]
async fn an_attested_mrtd_is_found_verified_and_cached() {
    let api = GithubApi::start().await.unwrap();
    let base = api.base().to_string();
    let mrtd = [0x42; 48];
    attest(&api, &mrtd, &mrtd, &good());
    let db = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(db.path()).await.unwrap());
    let checker = ProvenanceChecker::new(config(&base), Some(store.clone())).unwrap();

    let p = checker
        .check(&mrtd, &RTMRS, UnixSecs::from_unsigned(NOW))
        .await
        .unwrap();
    assert_eq!(p.repository, REPO);
    assert_eq!(
        p.san,
        format!("https://github.com/{REPO}/{WORKFLOW}@refs/heads/main")
    );
    assert_eq!(p.source_ref.as_deref(), Some("refs/heads/main"));
    assert_eq!(api.hits(), 1);

    // A fleet of identical VMs costs one lookup: memory, then the store.
    checker
        .check(&mrtd, &RTMRS, UnixSecs::from_unsigned(NOW + 60))
        .await
        .unwrap();
    let restarted = ProvenanceChecker::new(config(&base), Some(store.clone())).unwrap();
    assert_eq!(
        restarted
            .check(&mrtd, &RTMRS, UnixSecs::from_unsigned(NOW + 60))
            .await
            .unwrap(),
        p
    );
    assert_eq!(api.hits(), 1);
    // Past the cache's life it is looked up again.
    restarted
        .check(&mrtd, &RTMRS, UnixSecs::from_unsigned(p.cached_until + 1))
        .await
        .unwrap();
    assert_eq!(api.hits(), 2);

    // A stricter policy (RTMRs too) never reuses the cached answer, and refuses:
    // the quoted RTMR1 differs from the attested one.
    let mut strict = config(&base);
    strict.match_rtmrs = vec![1, 2];
    let strict = ProvenanceChecker::new(strict, Some(store)).unwrap();
    let mut rtmrs = RTMRS;
    rtmrs[1][0] ^= 1;
    let (k, d) = kind(
        strict
            .check(&mrtd, &rtmrs, UnixSecs::from_unsigned(NOW))
            .await,
    );
    assert_eq!(k, "RtmrNotAttested");
    assert!(d.contains("rtmr1"), "{d}");
    assert!(strict
        .check(&mrtd, &RTMRS, UnixSecs::from_unsigned(NOW))
        .await
        .is_ok());
    // RTMR0 is never in the manifest (not computable offline): requiring it refuses.
    let mut rtmr0 = config(&base);
    rtmr0.match_rtmrs = vec![0];
    let rtmr0 = ProvenanceChecker::new(rtmr0, None).unwrap();
    let (_, d) = kind(
        rtmr0
            .check(&mrtd, &RTMRS, UnixSecs::from_unsigned(NOW))
            .await,
    );
    assert!(d.contains("rtmr0"), "{d}");
    let mut bad = config(&base);
    bad.match_rtmrs = vec![3];
    assert!(ProvenanceChecker::new(bad, None).is_err());
}

#[tokio::test]
async fn unattested_wrongly_signed_or_lying_attestations_are_refused() {
    let api = GithubApi::start().await.unwrap();
    let base = api.base().to_string();
    let checker = ProvenanceChecker::new(config(&base), None).unwrap();

    // Nothing published for this MRTD.
    let (k, d) = kind(
        checker
            .check(&[1; 48], &RTMRS, UnixSecs::from_unsigned(NOW))
            .await,
    );
    assert_eq!(k, "MrtdNotAttested");
    assert!(d.contains("no attestation") && d.contains(REPO), "{d}");

    // Attested, but by another workflow of the repository.
    let mrtd = [2; 48];
    attest(
        &api,
        &mrtd,
        &mrtd,
        &Identity::github(REPO, ".github/workflows/nightly.yml", "refs/heads/main"),
    );
    let (k, d) = kind(
        checker
            .check(&mrtd, &RTMRS, UnixSecs::from_unsigned(NOW))
            .await,
    );
    assert_eq!(k, "MrtdNotAttested");
    assert!(d.contains("signer_workflow"), "{d}");

    // Attested from another ref.
    let mrtd = [3; 48];
    attest(
        &api,
        &mrtd,
        &mrtd,
        &Identity::github(REPO, WORKFLOW, "refs/heads/experiment"),
    );
    let (_, d) = kind(
        checker
            .check(&mrtd, &RTMRS, UnixSecs::from_unsigned(NOW))
            .await,
    );
    assert!(d.contains("source_ref"), "{d}");

    // A bundle filed under this MRTD's digest whose predicate names another MRTD.
    let mrtd = [4; 48];
    attest(&api, &mrtd, &[5; 48], &good());
    let (_, d) = kind(
        checker
            .check(&mrtd, &RTMRS, UnixSecs::from_unsigned(NOW))
            .await,
    );
    assert!(d.contains("predicate attests MRTD"), "{d}");

    // A good bundle next to bad ones is found.
    attest(&api, &mrtd, &mrtd, &good());
    checker
        .check(&mrtd, &RTMRS, UnixSecs::from_unsigned(NOW))
        .await
        .unwrap();

    // Signed after `now`: not yet.
    let mrtd = [6; 48];
    attest(&api, &mrtd, &mrtd, &good());
    let (_, d) = kind(
        checker
            .check(
                &mrtd,
                &RTMRS,
                UnixSecs::from_unsigned(u64::try_from(SIGNED_AT).unwrap() - 10),
            )
            .await,
    );
    assert!(d.contains("bundle 0"), "{d}");

    // GitHub unavailable: could not decide, refused (never "attested").
    api.set_down(true);
    let (k, _) = kind(
        checker
            .check(&[7; 48], &RTMRS, UnixSecs::from_unsigned(NOW))
            .await,
    );
    assert_eq!(k, "ProvenanceUnavailable");
}

/// A checker that also pins RTMR1 and RTMR2 to the attested manifest.
fn pinning(base: &str) -> ProvenanceConfig {
    let mut c = config(base);
    c.match_rtmrs = vec![1, 2];
    c
}

#[tokio::test]
async fn finding01_provenance_cache_checks_rtmrs() {
    let api = GithubApi::start().await.unwrap();
    let base = api.base().to_string();
    let mrtd = [0x61; 48];
    attest(&api, &mrtd, &mrtd, &good());
    let checker = ProvenanceChecker::new(pinning(&base), None).unwrap();
    // An honest TD (the attested kernel, initrd and command line) registers.
    let p = checker
        .check(&mrtd, &RTMRS, UnixSecs::from_unsigned(NOW))
        .await
        .unwrap();
    assert_eq!(p.rtmrs[1].as_ref().map(|m| m.0), Some([1; 48]));
    assert_eq!(api.hits(), 1);
    // Same firmware, another kernel (RTMR1) or command line/initrd (RTMR2): refused,
    // even though the MRTD's answer is cached.
    for i in [1usize, 2] {
        let mut evil = RTMRS;
        evil[i][7] ^= 0x80;
        let (k, d) = kind(
            checker
                .check(&mrtd, &evil, UnixSecs::from_unsigned(NOW + 1))
                .await,
        );
        assert_eq!(k, "RtmrNotAttested", "{d}");
        assert!(d.contains(&format!("rtmr{i}")), "{d}");
    }
    // The honest TD still passes from the cache.
    assert_eq!(
        checker
            .check(&mrtd, &RTMRS, UnixSecs::from_unsigned(NOW + 2))
            .await
            .unwrap(),
        p
    );
}

#[tokio::test]
async fn finding01_provenance_cache_checks_rtmrs_after_a_restart() {
    let api = GithubApi::start().await.unwrap();
    let base = api.base().to_string();
    let mrtd = [0x62; 48];
    attest(&api, &mrtd, &mrtd, &good());
    let db = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(db.path()).await.unwrap());
    let first = ProvenanceChecker::new(pinning(&base), Some(store.clone())).unwrap();
    first
        .check(&mrtd, &RTMRS, UnixSecs::from_unsigned(NOW))
        .await
        .unwrap();
    // A new control plane on the shared store: the answer comes from the store...
    let restarted = ProvenanceChecker::new(pinning(&base), Some(store.clone())).unwrap();
    restarted
        .check(&mrtd, &RTMRS, UnixSecs::from_unsigned(NOW + 1))
        .await
        .unwrap();
    assert_eq!(api.hits(), 1);
    // ...and still binds the RTMRs it was verified for.
    let mut evil = RTMRS;
    evil[2][0] ^= 1;
    let (k, d) = kind(
        restarted
            .check(&mrtd, &evil, UnixSecs::from_unsigned(NOW + 2))
            .await,
    );
    assert_eq!(k, "RtmrNotAttested", "{d}");
    assert!(d.contains("rtmr2"), "{d}");
    // GitHub down: a cached honest answer still serves, an unmatched TD is never green.
    api.set_down(true);
    restarted
        .check(&mrtd, &RTMRS, UnixSecs::from_unsigned(NOW + 3))
        .await
        .unwrap();
    assert!(restarted
        .check(&mrtd, &evil, UnixSecs::from_unsigned(NOW + 3))
        .await
        .is_err());
}

#[test]
fn finding09_provenance_needs_an_identity_pin() {
    let base = "data_dir = \"/tmp/x\"\n[provenance]\nrepository = \"acme/guest-image\"\n";
    // A repository alone: any workflow of it (a pull request's included) would do.
    let cfg: cp_verifier::config::CpConfig = toml::from_str(base).unwrap();
    let e = cfg.check().unwrap_err().to_string();
    assert!(
        e.contains("[provenance]") && e.contains("signer_workflow") && e.contains("source_ref"),
        "{e}"
    );
    // Each identity pin on its own is enough.
    for pin in [
        "signer_workflow = \"acme/guest-image/.github/workflows/release.yml\"",
        "san = \"https://github.com/acme/guest-image/.github/workflows/release.yml@refs/heads/main\"",
        "san_regex = \"https://github\\\\.com/acme/guest-image/\\\\.github/workflows/release\\\\.yml@refs/tags/v.*\"",
        "source_ref = \"refs/heads/main\"",
    ] {
        let cfg: cp_verifier::config::CpConfig =
            toml::from_str(&format!("{base}{pin}\n")).unwrap();
        cfg.check().unwrap_or_else(|e| panic!("{pin}: {e}"));
        // ...and the checker builds on it.
        let mut p = cfg.provenance.clone().unwrap();
        p.trusted_root_file = Some(sigstore_testsign::keys::trusted_root_path());
        ProvenanceChecker::new(p, None).unwrap_or_else(|e| panic!("{pin}: {e:#}"));
    }
    // The checker refuses the bare repository too (for callers that skip the config).
    let cfg: cp_verifier::config::CpConfig = toml::from_str(base).unwrap();
    assert!(ProvenanceChecker::new(cfg.provenance.unwrap(), None).is_err());
}
