//! What CI publishes for a guest image, shared by the end-to-end tests that need a
//! verifiable build provenance: the measurement manifest of an MRTD, attested with
//! the checked-in TEST Sigstore key set exactly as `actions/attest` attests it, and
//! served by the local GitHub attestations API.

use cp_verifier::attest::provenance::{ProvenanceChecker, MEASUREMENT_PREDICATE};
use serde_json::json;
use sigstore_testsign::github_api::GithubApi;
use sigstore_testsign::{Attestation, Identity, Subject, TestSigstore};
use tdx_sim::TdReport;

/// Publishes in `repo` the manifest for `mrtd` (with the simulator's default
/// RTMR1/RTMR2), signed a minute ago by `identity`.
pub(crate) fn publish(api: &GithubApi, repo: &str, mrtd: &[u8; 48], identity: &Identity) {
    let digest = ProvenanceChecker::subject_digest(mrtd);
    let att = Attestation::new(
        vec![Subject::sha256_hex(
            "tdx-mrtd",
            digest.strip_prefix("sha256:").unwrap(),
        )],
        MEASUREMENT_PREDICATE,
        json!({"mrtd": hex::encode(mrtd), "rtmr0": null,
               "rtmr1": hex::encode(TdReport::default().rtmrs[1]),
               "rtmr2": hex::encode(TdReport::default().rtmrs[2]),
               "layout": "single-pass"}),
    );
    // Signed a minute ago, like a release shortly before the fleet boots it.
    let signed_at = i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs(),
    )
    .unwrap()
        - 60;
    let bundle = TestSigstore::load()
        .unwrap()
        .sign_attestation(&att, identity, signed_at)
        .unwrap();
    api.publish(repo, &digest, bundle);
}
