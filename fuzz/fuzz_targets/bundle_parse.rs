//! `signatures::verify_bundle` on arbitrary bytes (media type, JSON, verification
//! material, log entries, DSSE): must return an error, never panic or pass.
#![no_main]
use std::sync::OnceLock;

static ROOT_AND_POLICY: OnceLock<(signatures::TrustRoot, policy::identity::IdentityPolicy)> =
    OnceLock::new();

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let (root, policy) = ROOT_AND_POLICY.get_or_init(|| {
        let root = signatures::TrustRoot::from_json(include_bytes!(
            "../../sigstore-testsign/keys/trusted_root.json"
        ))
        .expect("TEST trusted root");
        let policy = policy::identity::IdentityPolicy::builder()
            .source_repository("acme/guest-image")
            .build()
            .expect("policy");
        (root, policy)
    });
    let r = signatures::verify_bundle(
        data,
        signatures::Artifact::StatementSubjects,
        root,
        policy,
        provenant_base::clock::UnixSecs(4_000_000_000),
    );
    assert!(r.is_err(), "random bytes verified");
});
