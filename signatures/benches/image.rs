//! Image signature verification throughput: `verify_image_signature` on the real
//! containers/image key-based cosign signature (payload JSON, signature, Rekor SET
//! over canonical JSON, the hashedrekord body matched to payload, signature and key,
//! digest and scope checks) against its cryptographic floor: two bare ring ECDSA
//! P-256 verifications of the same size (the payload signature and the SET), with
//! the key already parsed. The keyless vector (Fulcio chain with webpki in addition)
//! is measured too, against a floor of those two plus one bare ring ECDSA P-384
//! verification (the Fulcio v1 root is P-384: the certificate signature the chain
//! check cannot skip).
//! Interleaved batches in one process; figures printed, never asserted.
//!
//! PROVENANT_BENCH_ROUNDS (default 20) rounds of PROVENANT_BENCH_BATCH (default 200).
#![allow(clippy::as_conversions)] // bench arithmetic on counts and durations

use provenant_base::clock::UnixSecs;
use std::hint::black_box;
use std::time::{Duration, Instant};

use base64::Engine;
use signatures::cosign::{
    parse_signature_file, verify_image_signature, ImageTrust, ImageTrustParts, KeylessIdentity,
};
use signatures::ImageSignature;

const DIGEST: &str = "sha256:0489474da8ea22426ece86ace6c1c0026ab2fd3cdfbbd62b7e94650266c37d9a";

fn env_or(name: &str, d: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(d)
}

fn data(name: &str) -> Vec<u8> {
    let path = format!(
        "{}/tests/data/cosign/containers-image/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The payload, its signature and the signer's SEC1 point, for the floor.
fn floor_inputs(sig: &ImageSignature, spki_pem: &[u8]) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    let ImageSignature::SimpleSigning {
        payload,
        annotations,
    } = sig
    else {
        panic!("a simple-signing vector")
    };
    let der_sig = base64::engine::general_purpose::STANDARD
        .decode(&annotations["dev.cosignproject.cosign/signature"])
        .unwrap();
    let text = std::str::from_utf8(spki_pem).unwrap();
    let b64: String = text.lines().filter(|l| !l.starts_with("-----")).collect();
    let spki = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap();
    // P-256 SPKI: the 65-byte uncompressed point ends it.
    let point = spki[spki.len() - 65..].to_vec();
    (payload.clone(), der_sig, point)
}

fn main() {
    let rounds = env_or("PROVENANT_BENCH_ROUNDS", 20);
    let batch = env_or("PROVENANT_BENCH_BATCH", 200);
    let rekor = data("rekor.pub");
    let key_sig =
        parse_signature_file(&data("dir-img-cosign-key-rekor-valid/signature-1")).unwrap();
    let key_trust = ImageTrust::from_parts(ImageTrustParts {
        keys: vec![data("cosign2.pub")],
        rekor_keys: vec![rekor.clone()],
        require_rekor: true,
        ..Default::default()
    })
    .unwrap();
    let keyless_sig =
        parse_signature_file(&data("dir-img-cosign-fulcio-rekor-valid/signature-1")).unwrap();
    let keyless_trust = ImageTrust::from_parts(ImageTrustParts {
        keyless: Some(KeylessIdentity {
            issuer: "https://github.com/login/oauth".into(),
            subject_email: Some("mitr@redhat.com".into()),
            ..Default::default()
        }),
        fulcio_ca: Some(data("fulcio_v1.crt.pem")),
        rekor_keys: vec![rekor],
        require_rekor: true,
        ..Default::default()
    })
    .unwrap();
    let (payload, der_sig, point) = floor_inputs(&key_sig, &data("cosign2.pub"));
    let key =
        ring::signature::UnparsedPublicKey::new(&ring::signature::ECDSA_P256_SHA256_ASN1, point);

    let key_based = || {
        black_box(
            verify_image_signature(
                black_box(&key_sig),
                DIGEST,
                &key_trust,
                UnixSecs(1_674_251_859),
            )
            .unwrap(),
        );
    };
    let keyless = || {
        black_box(
            verify_image_signature(
                black_box(&keyless_sig),
                DIGEST,
                &keyless_trust,
                UnixSecs(1_674_247_893),
            )
            .unwrap(),
        );
    };
    let floor = |n: usize| {
        for _ in 0..n {
            key.verify(black_box(&payload), black_box(&der_sig))
                .unwrap();
        }
    };
    // A P-384 key of our own: the cost of one certificate signature check.
    let rng = ring::rand::SystemRandom::new();
    let alg = &ring::signature::ECDSA_P384_SHA384_ASN1_SIGNING;
    let pkcs8 = ring::signature::EcdsaKeyPair::generate_pkcs8(alg, &rng).unwrap();
    let kp = ring::signature::EcdsaKeyPair::from_pkcs8(alg, pkcs8.as_ref(), &rng).unwrap();
    let tbs = vec![0x5a_u8; 600];
    let p384_sig = kp.sign(&rng, &tbs).unwrap();
    let p384 = ring::signature::UnparsedPublicKey::new(
        &ring::signature::ECDSA_P384_SHA384_ASN1,
        ring::signature::KeyPair::public_key(&kp).as_ref().to_vec(),
    );
    let floor_keyless = || {
        floor(2);
        p384.verify(black_box(&tbs), black_box(p384_sig.as_ref()))
            .unwrap();
    };

    for _ in 0..20 {
        key_based();
        keyless();
        floor_keyless();
    }
    let (mut t_key, mut t_keyless, mut t_floor2, mut t_floor3) = (
        Duration::ZERO,
        Duration::ZERO,
        Duration::ZERO,
        Duration::ZERO,
    );
    for _ in 0..rounds {
        let t = Instant::now();
        for _ in 0..batch {
            key_based();
        }
        t_key += t.elapsed();
        let t = Instant::now();
        for _ in 0..batch {
            floor(2);
        }
        t_floor2 += t.elapsed();
        let t = Instant::now();
        for _ in 0..batch {
            keyless();
        }
        t_keyless += t.elapsed();
        let t = Instant::now();
        for _ in 0..batch {
            floor_keyless();
        }
        t_floor3 += t.elapsed();
    }
    let n = (rounds * batch) as f64;
    let rate = |d: Duration| n / d.as_secs_f64();
    println!(
        "key-based cosign signature: {:.0}/s; floor (2 bare ring P-256 verifies): {:.0}/s; ratio {:.3}",
        rate(t_key),
        rate(t_floor2),
        rate(t_key) / rate(t_floor2)
    );
    println!(
        "keyless cosign signature:   {:.0}/s; floor (2 bare ring P-256 + 1 P-384 verifies): {:.0}/s; ratio {:.3}",
        rate(t_keyless),
        rate(t_floor3),
        rate(t_keyless) / rate(t_floor3)
    );
}
