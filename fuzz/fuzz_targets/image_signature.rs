//! `signatures::cosign::parse_signature_file` then `verify_image_signature` on
//! arbitrary bytes, under a key-based trust (the containers/image vector's key and
//! Rekor key) and a keyless one (its Fulcio root): must never panic, and never verify
//! (a valid signature for the fuzzed digest cannot be forged by the fuzzer).
#![no_main]
use std::sync::OnceLock;

use signatures::cosign::{
    parse_signature_file, verify_image_signature, ImageTrust, ImageTrustParts, KeylessIdentity,
};

const DIGEST: &str = "sha256:0489474da8ea22426ece86ace6c1c0026ab2fd3cdfbbd62b7e94650266c37d9a";
// Before either vector's Rekor time: a replayed real signature cannot pass either.
const NOW: provenant_base::clock::UnixSecs = provenant_base::clock::UnixSecs(1_674_000_000);

static TRUSTS: OnceLock<[ImageTrust; 2]> = OnceLock::new();

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let trusts = TRUSTS.get_or_init(|| {
        let rekor = include_bytes!("../../signatures/tests/data/cosign/containers-image/rekor.pub").to_vec();
        let key = ImageTrust::from_parts(ImageTrustParts {
            keys: vec![include_bytes!("../../signatures/tests/data/cosign/containers-image/cosign2.pub").to_vec()],
            rekor_keys: vec![rekor.clone()],
            require_rekor: true,
            ..Default::default()
        })
        .expect("key trust");
        let keyless = ImageTrust::from_parts(ImageTrustParts {
            keyless: Some(KeylessIdentity {
                issuer: "https://github.com/login/oauth".into(),
                subject_email: Some("mitr@redhat.com".into()),
                ..Default::default()
            }),
            fulcio_ca: Some(include_bytes!("../../signatures/tests/data/cosign/containers-image/fulcio_v1.crt.pem").to_vec()),
            rekor_keys: vec![rekor],
            require_rekor: true,
            ..Default::default()
        })
        .expect("keyless trust");
        [key, keyless]
    });
    if let Ok(sig) = parse_signature_file(data) {
        for t in trusts {
            assert!(
                verify_image_signature(&sig, DIGEST, t, NOW).is_err(),
                "fuzzed bytes verified"
            );
        }
    }
});
