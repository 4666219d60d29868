use super::keys::pem_blocks;
use super::*;

#[test]
fn trust_and_results_cross_threads() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<ImageTrust>();
    send_sync::<VerifiedImageSignature>();
    send_sync::<ImageSigError>();
}

#[test]
fn references_and_scopes() {
    assert_eq!(reference_repository("a.b:5000/x/y:tag"), "a.b:5000/x/y");
    assert_eq!(reference_repository("a.b:5000/x/y"), "a.b:5000/x/y");
    assert_eq!(
        reference_repository("a.b:5000/x/y@sha256:00"),
        "a.b:5000/x/y"
    );
    assert_eq!(
        reference_repository("a.b:5000/x/y:t@sha256:00"),
        "a.b:5000/x/y"
    );
    assert!(policy::image::scope_covers("a.b:5000/x", "a.b:5000/x/y"));
    assert!(policy::image::scope_covers("a.b:5000/x", "a.b:5000/x"));
    assert!(!policy::image::scope_covers("a.b:5000/x", "a.b:5000/xy"));
    assert!(!policy::image::scope_covers("a.b:5000/x", "a.b:5000"));
}

#[test]
fn digests_are_strict() {
    let h = "AB".repeat(32);
    assert_eq!(
        normalise_digest(&format!("sha256:{h}")).unwrap(),
        format!("sha256:{}", h.to_ascii_lowercase())
    );
    for bad in [
        "",
        "sha256:",
        "sha512:00",
        "sha256:zz",
        &format!("sha256:{h}0"),
    ] {
        assert_eq!(normalise_digest(bad).unwrap_err().kind(), "InvalidDigest");
    }
}

#[test]
fn pem_blocks_are_bounded() {
    assert!(pem_blocks(b"", "CERTIFICATE").is_err());
    assert!(pem_blocks(b"-----BEGIN CERTIFICATE-----\nAAAA", "CERTIFICATE").is_err());
    let one = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
    assert_eq!(
        pem_blocks(one.as_bytes(), "CERTIFICATE").unwrap(),
        vec![vec![0, 0, 0]]
    );
    let many = one.repeat(MAX_CHAIN_CERTS + 1);
    assert!(pem_blocks(many.as_bytes(), "CERTIFICATE").is_err());
}
