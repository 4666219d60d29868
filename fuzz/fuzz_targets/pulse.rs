//! A heartbeat pulse's payload (`Pulse`: serde plus `Payload::validate`) on
//! arbitrary bytes, reached as the control plane reaches it: through a DSSE
//! envelope and `peek`/`decode`. Must return, never panic; an accepted pulse must
//! re-serialise into a payload that decodes to the same value.
#![no_main]
use evidence::{Envelope, Pulse, PULSE_PAYLOAD_TYPE};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let env = Envelope::sign(PULSE_PAYLOAD_TYPE, data.to_vec(), "fuzz", |_| {
        Ok::<_, ()>(vec![0; 64])
    })
    .expect("infallible signer");
    let Ok(r) = env.peek::<Pulse>() else {
        return;
    };
    let again = Envelope::sign(
        PULSE_PAYLOAD_TYPE,
        serde_json::to_vec(&r).expect("a decoded pulse serialises"),
        "fuzz",
        |_| Ok::<_, ()>(vec![0; 64]),
    )
    .expect("infallible signer");
    let r2 = again
        .peek::<Pulse>()
        .expect("a re-serialised pulse decodes");
    assert_eq!(
        serde_json::to_vec(&r2).unwrap(),
        serde_json::to_vec(&r).unwrap(),
        "pulse does not round-trip"
    );
});
