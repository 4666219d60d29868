//! Generates tdx-sim's TEST PKI and collateral (like rustls's test-ca script).
//!
//! Usage: `cargo run -p tdx-sim --bin gen-test-pki [-- OUT_DIR]` (default: the
//! crate's `pki/` directory). Every run makes new keys, so everything in the directory
//! changes together; commit the result. `pki/README.md` describes the files.
//!
//! These are TEST keys for a TEST root CA that is not Intel's. Production never trusts
//! them: a verifier accepts this root only when a test passes or configures it.

use std::path::{Path, PathBuf};

use p256::ecdsa::signature::Signer;
use p256::pkcs8::DecodePrivateKey;
use rcgen::{
    BasicConstraints, Certificate, CertificateParams, CertificateRevocationListParams,
    CustomExtension, DistinguishedName, DnType, IsCa, KeyIdMethod, KeyPair, KeyUsagePurpose,
    SerialNumber, PKCS_ECDSA_P256_SHA256,
};
use serde::Serialize;
use tdx_sim::pki::files;
use tdx_sim::platform;
use time::macros::datetime;
use time::OffsetDateTime;

type Res<T> = Result<T, Box<dyn std::error::Error>>;

const NOT_BEFORE: OffsetDateTime = datetime!(2025-01-01 00:00:00 UTC);
const NOT_AFTER: OffsetDateTime = datetime!(2049-12-31 23:59:59 UTC);
const TCB_EVALUATION_DATA_NUMBER: u32 = 1;
const OLD_TCB_DATE: &str = "2024-01-01T00:00:00Z";

// ---------------------------------------------------------------------------------
// A minimal DER writer for Intel's SGX extension.

fn der_len(len: usize) -> Vec<u8> {
    if let Ok(short) = u8::try_from(len) {
        if short < 0x80 {
            return vec![short];
        }
    }
    let bytes: Vec<u8> = len
        .to_be_bytes()
        .iter()
        .copied()
        .skip_while(|&b| b == 0)
        .collect();
    let mut out = vec![0x80 | u8::try_from(bytes.len()).unwrap_or(0)];
    out.extend(bytes);
    out
}

fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    out.extend(der_len(content.len()));
    out.extend_from_slice(content);
    out
}

fn seq(items: &[Vec<u8>]) -> Vec<u8> {
    tlv(0x30, &items.concat())
}

/// A non-negative INTEGER (minimal, with a leading zero when the top bit is set).
fn uint(v: u16) -> Vec<u8> {
    let mut b: Vec<u8> = v
        .to_be_bytes()
        .iter()
        .copied()
        .skip_while(|&b| b == 0)
        .collect();
    if b.first().is_none_or(|&f| f & 0x80 != 0) {
        b.insert(0, 0);
    }
    tlv(0x02, &b)
}

/// OID 1.2.840.113741.1.13.1 followed by `suffix` (each arc < 128).
fn sgx_oid(suffix: &[u8]) -> Vec<u8> {
    let mut c = vec![0x2a, 0x86, 0x48, 0x86, 0xf8, 0x4d, 0x01, 0x0d, 0x01];
    c.extend_from_slice(suffix);
    tlv(0x06, &c)
}

fn entry(suffix: &[u8], value: Vec<u8>) -> Vec<u8> {
    seq(&[sgx_oid(suffix), value])
}

/// Intel's SGX extension (OID 1.2.840.113741.1.13.1) as a Platform CA PCK
/// certificate carries it: PPID, TCB (sgxtcbcomp01..16, pcesvn, cpusvn), PCE-ID,
/// FMSPC, SGX type, platform instance id and configuration.
fn sgx_extension() -> Vec<u8> {
    let mut tcb: Vec<Vec<u8>> = (1u8..)
        .zip(platform::CPU_SVN)
        .map(|(i, svn)| entry(&[2, i], uint(u16::from(svn))))
        .collect();
    tcb.push(entry(&[2, 17], uint(platform::PCE_SVN)));
    tcb.push(entry(&[2, 18], tlv(0x04, &platform::CPU_SVN)));
    seq(&[
        entry(&[1], tlv(0x04, &platform::ppid())),
        entry(&[2], seq(&tcb)),
        entry(&[3], tlv(0x04, &platform::PCE_ID)),
        entry(&[4], tlv(0x04, &platform::FMSPC)),
        entry(&[5], tlv(0x0a, &[platform::SGX_TYPE])),
        entry(&[6], tlv(0x04, &platform::platform_instance_id())),
        entry(
            &[7],
            seq(&[
                entry(&[7, 1], tlv(0x01, &[0x00])), // dynamicPlatform
                entry(&[7, 2], tlv(0x01, &[0xff])), // cachedKeys
                entry(&[7, 3], tlv(0x01, &[0xff])), // smtEnabled
            ]),
        ),
    ])
}

// ---------------------------------------------------------------------------------
// Certificates and CRLs.

fn params(cn: &str, is_ca: IsCa, usages: Vec<KeyUsagePurpose>) -> CertificateParams {
    let mut p = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    dn.push(
        DnType::OrganizationName,
        "Provenant TEST PKI - not Intel Corporation",
    );
    p.distinguished_name = dn;
    p.not_before = NOT_BEFORE;
    p.not_after = NOT_AFTER;
    p.is_ca = is_ca;
    p.key_usages = usages;
    p.use_authority_key_identifier_extension = true;
    p
}

fn crl(issuer: &Certificate, key: &KeyPair) -> Res<Vec<u8>> {
    let crl = CertificateRevocationListParams {
        this_update: NOT_BEFORE,
        next_update: NOT_AFTER,
        crl_number: SerialNumber::from_slice(&[1]),
        issuing_distribution_point: None,
        revoked_certs: Vec::new(),
        key_identifier_method: KeyIdMethod::Sha256,
    }
    .signed_by(issuer, key)?;
    Ok(crl.der().to_vec())
}

// ---------------------------------------------------------------------------------
// Collateral documents, fields in Intel's order.

#[derive(Serialize)]
struct Svn {
    svn: u8,
}

fn svns(v: &[u8]) -> Vec<Svn> {
    v.iter().map(|&svn| Svn { svn }).collect()
}

#[derive(Serialize)]
struct Tcb {
    sgxtcbcomponents: Vec<Svn>,
    pcesvn: u16,
    tdxtcbcomponents: Vec<Svn>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct TcbLevel {
    tcb: Tcb,
    tcb_date: &'static str,
    tcb_status: &'static str,
    #[serde(rename = "advisoryIDs", skip_serializing_if = "Vec::is_empty")]
    advisory_ids: Vec<&'static str>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct TdxModule {
    mrsigner: String,
    attributes: String,
    attributes_mask: String,
}

#[derive(Serialize)]
struct IsvSvn {
    isvsvn: u16,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SvnLevel {
    tcb: IsvSvn,
    tcb_date: &'static str,
    tcb_status: &'static str,
    #[serde(rename = "advisoryIDs", skip_serializing_if = "Vec::is_empty")]
    advisory_ids: Vec<&'static str>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct TdxModuleIdentity {
    id: String,
    mrsigner: String,
    attributes: String,
    attributes_mask: String,
    tcb_levels: Vec<SvnLevel>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct TcbInfo {
    id: &'static str,
    version: u8,
    issue_date: &'static str,
    next_update: &'static str,
    fmspc: String,
    pce_id: String,
    tcb_type: u32,
    tcb_evaluation_data_number: u32,
    tdx_module: TdxModule,
    tdx_module_identities: Vec<TdxModuleIdentity>,
    tcb_levels: Vec<TcbLevel>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct QeIdentity {
    id: &'static str,
    version: u8,
    issue_date: &'static str,
    next_update: &'static str,
    tcb_evaluation_data_number: u32,
    miscselect: String,
    miscselect_mask: String,
    attributes: String,
    attributes_mask: String,
    mrsigner: String,
    isvprodid: u16,
    tcb_levels: Vec<SvnLevel>,
}

fn up(b: &[u8]) -> String {
    hex::encode_upper(b)
}

fn tcb_info() -> TcbInfo {
    let up_to_date = platform::UP_TO_DATE_TEE_TCB_SVN;
    let module_version = up_to_date[1];
    let module = || TdxModule {
        mrsigner: up(&platform::MRSIGNERSEAM),
        attributes: up(&platform::SEAM_ATTRIBUTES),
        attributes_mask: up(&[0xff; 8]),
    };
    TcbInfo {
        id: "TDX",
        version: 3,
        issue_date: platform::ISSUE_DATE,
        next_update: platform::NEXT_UPDATE,
        fmspc: up(&platform::FMSPC),
        pce_id: up(&platform::PCE_ID),
        tcb_type: 0,
        tcb_evaluation_data_number: TCB_EVALUATION_DATA_NUMBER,
        tdx_module: module(),
        tdx_module_identities: vec![TdxModuleIdentity {
            id: format!("TDX_{module_version:02X}"),
            mrsigner: module().mrsigner,
            attributes: module().attributes,
            attributes_mask: module().attributes_mask,
            tcb_levels: vec![
                SvnLevel {
                    tcb: IsvSvn {
                        isvsvn: u16::from(up_to_date[0]),
                    },
                    tcb_date: platform::ISSUE_DATE,
                    tcb_status: "UpToDate",
                    advisory_ids: vec![],
                },
                SvnLevel {
                    tcb: IsvSvn {
                        isvsvn: u16::from(platform::OUT_OF_DATE_MODULE_TEE_TCB_SVN[0]),
                    },
                    tcb_date: OLD_TCB_DATE,
                    tcb_status: "OutOfDate",
                    advisory_ids: vec![platform::OUT_OF_DATE_MODULE_ADVISORY],
                },
            ],
        }],
        tcb_levels: vec![
            TcbLevel {
                tcb: Tcb {
                    sgxtcbcomponents: svns(&platform::CPU_SVN),
                    pcesvn: platform::PCE_SVN,
                    tdxtcbcomponents: svns(&up_to_date),
                },
                tcb_date: platform::ISSUE_DATE,
                tcb_status: "UpToDate",
                advisory_ids: vec![],
            },
            TcbLevel {
                tcb: Tcb {
                    sgxtcbcomponents: svns(&platform::CPU_SVN),
                    pcesvn: platform::PCE_SVN,
                    tdxtcbcomponents: svns(&[0; 16]),
                },
                tcb_date: OLD_TCB_DATE,
                tcb_status: "OutOfDate",
                advisory_ids: vec![platform::OUT_OF_DATE_ADVISORY],
            },
        ],
    }
}

fn qe_identity() -> QeIdentity {
    QeIdentity {
        id: "TD_QE",
        version: 2,
        issue_date: platform::ISSUE_DATE,
        next_update: platform::NEXT_UPDATE,
        tcb_evaluation_data_number: TCB_EVALUATION_DATA_NUMBER,
        miscselect: up(&platform::QE_MISCSELECT.to_le_bytes()),
        miscselect_mask: up(&[0xff; 4]),
        attributes: up(&platform::QE_ATTRIBUTES),
        attributes_mask: "FBFFFFFFFFFFFFFF0000000000000000".into(),
        mrsigner: up(&platform::qe_mrsigner()),
        isvprodid: platform::QE_ISV_PROD_ID,
        tcb_levels: vec![
            SvnLevel {
                tcb: IsvSvn {
                    isvsvn: platform::QE_ISV_SVN,
                },
                tcb_date: platform::ISSUE_DATE,
                tcb_status: "UpToDate",
                advisory_ids: vec![],
            },
            SvnLevel {
                tcb: IsvSvn { isvsvn: 1 },
                tcb_date: OLD_TCB_DATE,
                tcb_status: "OutOfDate",
                advisory_ids: vec![platform::OUT_OF_DATE_ADVISORY],
            },
        ],
    }
}

/// Raw r‖s over the exact bytes of `doc`, as Intel signs TCB info and QE identity.
fn sign_raw(key_pem: &str, doc: &str) -> Res<Vec<u8>> {
    let key = p256::ecdsa::SigningKey::from_pkcs8_pem(key_pem)?;
    let sig: p256::ecdsa::Signature = key.sign(doc.as_bytes());
    Ok(sig.to_bytes().to_vec())
}

fn write(dir: &Path, name: &str, data: &[u8]) -> Res<()> {
    let path = dir.join(name);
    std::fs::write(&path, data).map_err(|e| format!("{}: {e}", path.display()))?;
    println!("wrote {}", path.display());
    Ok(())
}

fn main() -> Res<()> {
    let dir = std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("pki"));
    std::fs::create_dir_all(&dir)?;

    let new_key = || KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256);
    let (root_key, ca_key, leaf_key, tcb_key, att_key) =
        (new_key()?, new_key()?, new_key()?, new_key()?, new_key()?);

    let mut root_params = params(
        "Provenant TEST SGX Root CA - NOT Intel, never trust in production",
        IsCa::Ca(BasicConstraints::Unconstrained),
        vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign],
    );
    root_params.use_authority_key_identifier_extension = false;
    let root = root_params.self_signed(&root_key)?;

    let platform_ca = params(
        "Provenant TEST SGX PCK Platform CA",
        IsCa::Ca(BasicConstraints::Constrained(0)),
        vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign],
    )
    .signed_by(&ca_key, &root, &root_key)?;

    let mut leaf_params = params(
        "Provenant TEST SGX PCK Certificate",
        IsCa::ExplicitNoCa,
        vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::ContentCommitment,
        ],
    );
    leaf_params
        .custom_extensions
        .push(CustomExtension::from_oid_content(
            &[1, 2, 840, 113741, 1, 13, 1],
            sgx_extension(),
        ));
    let leaf = leaf_params.signed_by(&leaf_key, &platform_ca, &ca_key)?;

    let tcb_signer = params(
        "Provenant TEST SGX TCB Signing",
        IsCa::ExplicitNoCa,
        vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::ContentCommitment,
        ],
    )
    .signed_by(&tcb_key, &root, &root_key)?;

    let root_crl = crl(&root, &root_key)?;
    let pck_crl = crl(&platform_ca, &ca_key)?;

    let tcb_info = serde_json::to_string(&tcb_info())?;
    let qe_identity = serde_json::to_string(&qe_identity())?;
    let tcb_key_pem = tcb_key.serialize_pem();
    let tcb_info_signature = sign_raw(&tcb_key_pem, &tcb_info)?;
    let qe_identity_signature = sign_raw(&tcb_key_pem, &qe_identity)?;

    let tcb_chain = format!("{}{}", tcb_signer.pem(), root.pem());
    let collateral = dcap_qvl::QuoteCollateralV3 {
        pck_crl_issuer_chain: format!("{}{}", platform_ca.pem(), root.pem()),
        root_ca_crl: root_crl.clone(),
        pck_crl: pck_crl.clone(),
        tcb_info_issuer_chain: tcb_chain.clone(),
        tcb_info: tcb_info.clone(),
        tcb_info_signature,
        qe_identity_issuer_chain: tcb_chain,
        qe_identity: qe_identity.clone(),
        qe_identity_signature,
        // Absent: the verifier takes the PCK chain from the quote.
        pck_certificate_chain: None,
    };
    let mut collateral_json = serde_json::to_string_pretty(&collateral)?;
    collateral_json.push('\n');

    write(&dir, files::ROOT_CA_DER, root.der())?;
    write(&dir, files::ROOT_CA_PEM, root.pem().as_bytes())?;
    write(
        &dir,
        files::PCK_PLATFORM_CA_PEM,
        platform_ca.pem().as_bytes(),
    )?;
    write(&dir, files::PCK_LEAF_PEM, leaf.pem().as_bytes())?;
    let chain = format!("{}{}{}", leaf.pem(), platform_ca.pem(), root.pem());
    write(&dir, files::PCK_CHAIN_PEM, chain.as_bytes())?;
    write(&dir, files::TCB_SIGNING_PEM, tcb_signer.pem().as_bytes())?;
    write(&dir, files::ROOT_CA_CRL_DER, &root_crl)?;
    write(&dir, files::PCK_CRL_DER, &pck_crl)?;
    write(
        &dir,
        files::PCK_LEAF_KEY,
        leaf_key.serialize_pem().as_bytes(),
    )?;
    write(&dir, files::TCB_SIGNING_KEY, tcb_key_pem.as_bytes())?;
    write(
        &dir,
        files::QE_ATTESTATION_KEY,
        att_key.serialize_pem().as_bytes(),
    )?;
    write(&dir, files::TCB_INFO_JSON, tcb_info.as_bytes())?;
    write(&dir, files::QE_IDENTITY_JSON, qe_identity.as_bytes())?;
    write(&dir, files::COLLATERAL_JSON, collateral_json.as_bytes())?;
    println!("done; now run: cargo test -p tdx-sim -p cp-verifier");
    Ok(())
}
