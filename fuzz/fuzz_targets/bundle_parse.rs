//! `signatures::verify_bundle` and `verify_bundle_with_key` on arbitrary bytes (media
//! type, JSON, protobuf-JSON base64, verification material, log entries, DSSE): must
//! return an error, never panic or pass. The bytes are also parsed as a managed key.
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
    let key = signatures::ManagedKey::from_pem(include_bytes!(
        "../../signatures/tests/data/sigstore-conformance/bundle-verify/managed-key-happy-path/key.pub"
    ))
    .expect("conformance key");
    let r = signatures::verify_bundle_with_key(
        data,
        signatures::Artifact::StatementSubjects,
        root,
        &key,
        provenant_base::clock::UnixSecs(4_000_000_000),
    );
    assert!(r.is_err(), "random bytes verified with a key");
    let _ = signatures::ManagedKey::from_pem(data);
});
