//! `signatures::oci::Reference::parse` on arbitrary strings: never panics, and what
//! it accepts prints back to a reference that parses to the same thing.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(r) = signatures::oci::Reference::parse(s) {
        let again = signatures::oci::Reference::parse(&r.to_string()).expect("round trip");
        assert_eq!(again.to_string(), r.to_string());
        assert_eq!(again.repository(), r.repository());
    }
});
