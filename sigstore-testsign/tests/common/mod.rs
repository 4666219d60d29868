//! Fixtures shared by the verifier tests: identities, attestations, times, tampering.
#![allow(dead_code, unreachable_pub)]

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use serde_json::{json, Value};
use sigstore_testsign::{Attestation, Identity, SignerWorkflow, Subject};

pub const MEASUREMENT_PREDICATE: &str = "https://provenant.dev/attestations/tdx-measurement/v1";
pub const SLSA_PREDICATE: &str = "https://slsa.dev/provenance/v1";
/// 2025-06-01T12:00:00Z: a fixed signing time in the past.
pub const FIXED_TIME: i64 = 1_748_779_200;

/// A minute ago: bundles made "now" must verify at the real current time.
pub fn recent() -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    i64::try_from(now).unwrap() - 60
}

/// An MRTD-style attestation: subject `tdx-mrtd` with the SHA-256 of 48 bytes.
pub fn mrtd_attestation(mrtd: &[u8; 48]) -> (Attestation, String) {
    let subject = Subject::sha256_of("tdx-mrtd", mrtd);
    let digest = subject.digests[0].1.clone();
    (
        Attestation::new(
            vec![subject],
            MEASUREMENT_PREDICATE,
            json!({"mrtd": hex::encode(mrtd), "rtmr0": "00".repeat(48)}),
        ),
        digest,
    )
}

/// A binary's build provenance (two subjects; the artifact is the second one).
pub fn binary_attestation(artifact: &[u8]) -> (Attestation, String) {
    let subject = Subject::sha256_of("cp-verifier", artifact);
    let digest = subject.digests[0].1.clone();
    (
        Attestation::new(
            vec![Subject::sha256_of("other.tar.gz", b"other"), subject],
            SLSA_PREDICATE,
            json!({"buildDefinition": {"buildType": "https://actions.github.io/buildtypes/workflow/v1"}}),
        ),
        digest,
    )
}

pub fn release_identity() -> Identity {
    Identity::github(
        "provenant/guest-image",
        ".github/workflows/release.yml",
        "refs/heads/main",
    )
}

/// Like the real vector: a caller workflow using a reusable signing workflow.
pub fn reusable_identity() -> Identity {
    let mut id = Identity::github(
        "acme/attest-demo",
        ".github/workflows/shared.yml",
        "refs/tags/v1.2.3",
    );
    id.event_name = "workflow_dispatch".into();
    id.signer = Some(SignerWorkflow {
        repository: "github/artifact-attestations-workflows".into(),
        workflow_path: ".github/workflows/attest.yml".into(),
        git_ref: "09b495c3f12c7881b3cc17209a327792065c1a1d".into(),
        sha: "09b495c3f12c7881b3cc17209a327792065c1a1d".into(),
    });
    id
}

pub fn parse(bundle: &[u8]) -> Value {
    serde_json::from_slice(bundle).unwrap()
}

/// Flips one bit of a base64 field's decoded bytes at `index`.
pub fn flip_b64(v: &mut Value, index: usize) {
    let mut bytes = B64.decode(v.as_str().unwrap()).unwrap();
    let i = index.min(bytes.len() - 1);
    bytes[i] ^= 0x01;
    *v = Value::String(B64.encode(bytes));
}

/// Tampered copies of a good bundle, each named.
pub fn tampered(bundle: &[u8]) -> Vec<(&'static str, Vec<u8>)> {
    let good = parse(bundle);
    let mut out = Vec::new();
    let mut push = |name: &'static str, f: &dyn Fn(&mut Value)| {
        let mut v = good.clone();
        f(&mut v);
        out.push((name, serde_json::to_vec(&v).unwrap()));
    };
    push("payload byte", &|v| {
        flip_b64(&mut v["dsseEnvelope"]["payload"], 40)
    });
    push("DSSE signature", &|v| {
        flip_b64(&mut v["dsseEnvelope"]["signatures"][0]["sig"], 20)
    });
    push("certificate signature", &|v| {
        let n = B64
            .decode(
                v["verificationMaterial"]["certificate"]["rawBytes"]
                    .as_str()
                    .unwrap(),
            )
            .unwrap()
            .len();
        flip_b64(
            &mut v["verificationMaterial"]["certificate"]["rawBytes"],
            n - 10,
        )
    });
    push("SET", &|v| {
        flip_b64(
            &mut v["verificationMaterial"]["tlogEntries"][0]["inclusionPromise"]
                ["signedEntryTimestamp"],
            20,
        )
    });
    push("integrated time", &|v| {
        let t: i64 = v["verificationMaterial"]["tlogEntries"][0]["integratedTime"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        v["verificationMaterial"]["tlogEntries"][0]["integratedTime"] = json!((t - 1).to_string());
    });
    push("inclusion proof hash", &|v| {
        flip_b64(
            &mut v["verificationMaterial"]["tlogEntries"][0]["inclusionProof"]["hashes"][1],
            3,
        )
    });
    push("log index", &|v| {
        let e = &mut v["verificationMaterial"]["tlogEntries"][0];
        e["logIndex"] = json!("8");
        e["inclusionProof"]["logIndex"] = json!("8");
    });
    push("checkpoint signature", &|v| {
        let cp = &mut v["verificationMaterial"]["tlogEntries"][0]["inclusionProof"]["checkpoint"]
            ["envelope"];
        let text = cp.as_str().unwrap().to_string();
        let (head, sig) = text.rsplit_once(' ').unwrap();
        let mut sig_bytes = B64.decode(sig.trim_end()).unwrap();
        let last = sig_bytes.len() - 3;
        sig_bytes[last] ^= 1;
        *cp = Value::String(format!("{head} {}\n", B64.encode(sig_bytes)));
    });
    push("log id", &|v| {
        flip_b64(
            &mut v["verificationMaterial"]["tlogEntries"][0]["logId"]["keyId"],
            5,
        )
    });
    out
}

/// A fresh P-256 PKCS#8 PEM (made with ring): a key nobody trusts.
pub fn ring_p256_pkcs8_pem() -> String {
    let rng = ring::rand::SystemRandom::new();
    let doc = ring::signature::EcdsaKeyPair::generate_pkcs8(
        &ring::signature::ECDSA_P256_SHA256_ASN1_SIGNING,
        &rng,
    )
    .unwrap();
    sigstore_testsign::keys::der_to_pem(doc.as_ref(), "PRIVATE KEY")
}
