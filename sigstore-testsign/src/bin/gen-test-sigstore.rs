//! Generates sigstore-testsign's TEST Sigstore key set and trust files.
//!
//! Usage: `cargo run -p sigstore-testsign --bin gen-test-sigstore [-- OUT_DIR]`
//! (default: the crate's `keys/` directory). Every run makes new keys, so every file
//! in the directory changes together; commit the result. `keys/README.md` describes
//! the files and is not touched.
//!
//! These are TEST keys for a TEST Sigstore instance. Production never trusts them.

use std::path::{Path, PathBuf};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use rcgen::{
    BasicConstraints, Certificate, CertificateParams, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose, SerialNumber,
};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use sigstore_testsign::instance;
use sigstore_testsign::keys::{files, pem_to_der};
use time::OffsetDateTime;

type Res<T> = Result<T, Box<dyn std::error::Error>>;

const ORGANIZATION: &str = "Provenant TEST Sigstore - never trust in production";

fn ca_params(cn: &str, path_len: u8, serial: u8) -> Res<CertificateParams> {
    let mut p = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, ORGANIZATION);
    dn.push(DnType::CommonName, cn);
    p.distinguished_name = dn;
    p.serial_number = Some(SerialNumber::from_slice(&[serial]));
    p.not_before = OffsetDateTime::from_unix_timestamp(instance::VALID_FROM_UNIX)?;
    p.not_after = OffsetDateTime::from_unix_timestamp(instance::VALID_UNTIL_UNIX)?;
    p.is_ca = IsCa::Ca(BasicConstraints::Constrained(path_len));
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    Ok(p)
}

fn write(dir: &Path, name: &str, contents: &[u8]) -> Res<()> {
    std::fs::write(dir.join(name), contents)?;
    println!("wrote {}", dir.join(name).display());
    Ok(())
}

fn rfc3339(unix: i64) -> Res<String> {
    Ok(OffsetDateTime::from_unix_timestamp(unix)?
        .format(&time::format_description::well_known::Rfc3339)?)
}

/// A `TransparencyLogInstance` (used for both `tlogs` and `ctlogs`).
fn log_instance(url: &str, spki_der: &[u8]) -> Res<Value> {
    Ok(json!({
        "baseUrl": url,
        "hashAlgorithm": "SHA2_256",
        "publicKey": {
            "rawBytes": B64.encode(spki_der),
            "keyDetails": "PKIX_ECDSA_P256_SHA_256",
            "validFor": {"start": rfc3339(instance::VALID_FROM_UNIX)?},
        },
        "logId": {"keyId": B64.encode(Sha256::digest(spki_der))},
    }))
}

fn service(url: &str) -> Res<Value> {
    Ok(json!({
        "url": url,
        "majorApiVersion": 1,
        "validFor": {"start": rfc3339(instance::VALID_FROM_UNIX)?},
        "operator": instance::OPERATOR,
    }))
}

fn main() -> Res<()> {
    let dir = std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(sigstore_testsign::keys::dir);
    std::fs::create_dir_all(&dir)?;

    // Fulcio: a P-384 root and intermediate, like the public-good instance's.
    let root_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384)?;
    let root = ca_params("provenant-test-fulcio-root", 1, 1)?.self_signed(&root_key)?;
    let mut inter_params = ca_params("provenant-test-fulcio-intermediate", 0, 2)?;
    inter_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::CodeSigning];
    inter_params.use_authority_key_identifier_extension = true;
    let inter_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384)?;
    let inter: Certificate = inter_params.signed_by(&inter_key, &root, &root_key)?;

    // Rekor and CT log keys: P-256.
    let rekor_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let ct_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;

    write(&dir, files::FULCIO_ROOT_PEM, root.pem().as_bytes())?;
    write(
        &dir,
        files::FULCIO_ROOT_KEY,
        root_key.serialize_pem().as_bytes(),
    )?;
    write(&dir, files::FULCIO_INTERMEDIATE_PEM, inter.pem().as_bytes())?;
    write(
        &dir,
        files::FULCIO_INTERMEDIATE_KEY,
        inter_key.serialize_pem().as_bytes(),
    )?;
    write(
        &dir,
        files::REKOR_PUB,
        rekor_key.public_key_pem().as_bytes(),
    )?;
    write(&dir, files::REKOR_KEY, rekor_key.serialize_pem().as_bytes())?;
    write(&dir, files::CTLOG_PUB, ct_key.public_key_pem().as_bytes())?;
    write(&dir, files::CTLOG_KEY, ct_key.serialize_pem().as_bytes())?;

    let rekor_spki = pem_to_der(&rekor_key.public_key_pem(), "PUBLIC KEY")?;
    let ct_spki = pem_to_der(&ct_key.public_key_pem(), "PUBLIC KEY")?;
    let trusted_root = json!({
        "mediaType": "application/vnd.dev.sigstore.trustedroot+json;version=0.1",
        "tlogs": [log_instance(instance::REKOR_URL, &rekor_spki)?],
        "certificateAuthorities": [{
            "subject": {
                "organization": ORGANIZATION,
                "commonName": "provenant-test-fulcio-root",
            },
            "uri": instance::FULCIO_URL,
            "certChain": {"certificates": [
                {"rawBytes": B64.encode(inter.der())},
                {"rawBytes": B64.encode(root.der())},
            ]},
            "validFor": {"start": rfc3339(instance::VALID_FROM_UNIX)?},
        }],
        "ctlogs": [log_instance(instance::CTLOG_URL, &ct_spki)?],
        "timestampAuthorities": [],
    });
    let mut root_json = serde_json::to_string_pretty(&trusted_root)?;
    root_json.push('\n');
    write(&dir, files::TRUSTED_ROOT_JSON, root_json.as_bytes())?;

    let trust_config = json!({
        "mediaType": "application/vnd.dev.sigstore.clienttrustconfig.v0.1+json",
        "trustedRoot": trusted_root,
        "signingConfig": {
            "mediaType": "application/vnd.dev.sigstore.signingconfig.v0.2+json",
            "caUrls": [service(instance::FULCIO_URL)?],
            "oidcUrls": [service(instance::OIDC_URL)?],
            "rekorTlogUrls": [service(instance::REKOR_URL)?],
            "tsaUrls": [],
            "rekorTlogConfig": {"selector": "ANY"},
            "tsaConfig": {"selector": "ANY"},
        },
    });
    let mut config_json = serde_json::to_string_pretty(&trust_config)?;
    config_json.push('\n');
    write(&dir, files::TRUST_CONFIG_JSON, config_json.as_bytes())?;
    Ok(())
}
