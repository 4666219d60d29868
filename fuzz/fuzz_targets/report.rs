//! A registration report's payload (`Report`: serde plus `Payload::validate`) on
//! arbitrary bytes, reached as the control plane reaches it: through a DSSE
//! envelope and `peek`/`decode`. Must return, never panic; an accepted report must
//! re-serialise into a payload that decodes to the same value.
#![no_main]
use evidence::{Envelope, Report, REPORT_PAYLOAD_TYPE};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let env = Envelope::sign(REPORT_PAYLOAD_TYPE, data.to_vec(), "fuzz", |_| {
        Ok::<_, ()>(vec![0; 64])
    })
    .expect("infallible signer");
    let Ok(r) = env.peek::<Report>() else {
        return;
    };
    let again = Envelope::sign(
        REPORT_PAYLOAD_TYPE,
        serde_json::to_vec(&r).expect("a decoded report serialises"),
        "fuzz",
        |_| Ok::<_, ()>(vec![0; 64]),
    )
    .expect("infallible signer");
    let r2 = again
        .peek::<Report>()
        .expect("a re-serialised report decodes");
    assert_eq!(
        serde_json::to_vec(&r2).unwrap(),
        serde_json::to_vec(&r).unwrap(),
        "report does not round-trip"
    );
});
