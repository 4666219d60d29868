//! `evidence::Envelope::from_json` (the body of every `/api/v1/heartbeat`) on arbitrary
//! bytes: must return, never panic. What it accepts must round-trip through
//! `to_json`, decode as a pulse or report without panicking, and never verify under
//! a key whose secret the fuzzer does not have.
#![no_main]
use std::sync::OnceLock;

use evidence::{Envelope, Pulse, PublicKey, Report};

static KEY: OnceLock<PublicKey> = OnceLock::new();

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let key = KEY.get_or_init(|| {
        // An ed25519 key from a seed the fuzzer never sees.
        let sk = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
        let mut der = vec![
            0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
        ];
        der.extend_from_slice(sk.verifying_key().as_bytes());
        PublicKey::from_spki_der(&der).expect("ed25519 SPKI")
    });
    let Ok(env) = Envelope::from_json(data) else {
        return;
    };
    let again = Envelope::from_json(&env.to_json()).expect("an accepted envelope re-parses");
    assert_eq!(again.to_json(), env.to_json(), "envelope does not round-trip");
    let _ = evidence::report_data(&env);
    if let Ok(p) = env.decode::<Pulse>() {
        assert!(p.verify(key).is_err(), "a fuzzed pulse verified");
    }
    if let Ok(r) = env.decode::<Report>() {
        assert!(r.verify(key).is_err(), "a fuzzed report verified");
    }
});
