//! The quote parser against every real quote in the shared vector set, field by field
//! (expected.json, and trustee's claims for its quote), and against every truncation,
//! a table of malformed lengths and types, and a sweep of corruptions.

use evidence::tdx::{BodyKind, Quote, QuoteError, MAX_PCK_CHAIN_BYTES, MAX_QUOTE_BYTES};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// Every quote in expected.json, by its name there.
const QUOTES: [&str; 5] = [
    "dcap-qvl/tdx_quote",
    "dcap-qvl/tdx_quote_outdated",
    "go-tdx-guest/quote_v5_sample.dat",
    "go-tdx-guest/ccel/cos-113-tdx-quote.dat",
    "trustee/tdx_quote_4.dat",
];

/// A file of the test data by its expected.json name (the dcap-qvl files sit at the
/// top level, see tests/data/tdx/README.md).
fn data(name: &str) -> Vec<u8> {
    let local = name.strip_prefix("dcap-qvl/").unwrap_or(name);
    let path = format!("{}/tests/data/tdx/{local}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn expected(file: &str) -> Value {
    let all: Value = serde_json::from_slice(&data("expected.json")).unwrap();
    all["quotes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["file"] == file)
        .unwrap_or_else(|| panic!("{file} not in expected.json"))
        .clone()
}

#[test]
fn expected_json_lists_exactly_these_quotes() {
    let all: Value = serde_json::from_slice(&data("expected.json")).unwrap();
    let files: Vec<&str> = all["quotes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|q| q["file"].as_str().unwrap())
        .collect();
    assert_eq!(files, QUOTES);
}

fn check(file: &str) -> Quote {
    let raw = data(file);
    let e = expected(file);
    assert_eq!(
        hex::encode(Sha256::digest(&raw)),
        e["sha256"].as_str().unwrap(),
        "{file}: not the vector's bytes"
    );
    let q = Quote::parse(&raw).unwrap_or_else(|err| panic!("{file}: {err}"));
    assert_eq!(
        u64::from(q.header.version),
        e["quote_version"].as_u64().unwrap()
    );
    assert_eq!(
        u64::from(q.header.att_key_type),
        e["att_key_type"].as_u64().unwrap()
    );
    assert_eq!(
        format!("{:#x}", q.header.tee_type),
        e["tee_type"].as_str().unwrap()
    );
    assert_eq!(
        q.header.qe_vendor_id.to_hex(),
        e["qe_vendor_id"].as_str().unwrap()
    );
    let kind = match q.body.kind {
        BodyKind::Td10 => "TD10",
        BodyKind::Td15 => "TD15",
    };
    assert_eq!(kind, e["body"].as_str().unwrap(), "{file}");
    let td = &e["td"];
    let b = &q.body;
    let fields: Vec<(&str, String)> = vec![
        ("tee_tcb_svn", b.tee_tcb_svn.to_hex()),
        ("mrseam", b.mrseam.to_hex()),
        ("mrsignerseam", b.mrsignerseam.to_hex()),
        ("seam_attributes", b.seam_attributes.to_hex()),
        ("td_attributes", b.td_attributes.to_hex()),
        ("xfam", b.xfam.to_hex()),
        ("mrtd", b.mrtd.to_hex()),
        ("mrconfigid", b.mrconfigid.to_hex()),
        ("mrowner", b.mrowner.to_hex()),
        ("mrownerconfig", b.mrownerconfig.to_hex()),
        ("rtmr0", b.rtmrs[0].to_hex()),
        ("rtmr1", b.rtmrs[1].to_hex()),
        ("rtmr2", b.rtmrs[2].to_hex()),
        ("rtmr3", b.rtmrs[3].to_hex()),
        ("reportdata", b.report_data.to_hex()),
    ];
    for (name, got) in fields {
        assert_eq!(got, td[name].as_str().unwrap(), "{file}: {name}");
    }
    if let Some(s) = td["tee_tcb_svn2"].as_str() {
        assert_eq!(b.tee_tcb_svn2.unwrap().to_hex(), s, "{file}");
        assert_eq!(
            b.mrservicetd.unwrap().to_hex(),
            td["mrservicetd"].as_str().unwrap(),
            "{file}"
        );
    } else {
        assert!(
            b.tee_tcb_svn2.is_none() && b.mrservicetd.is_none(),
            "{file}"
        );
    }
    assert_eq!(
        u64::try_from(q.trailing_bytes).unwrap(),
        e["trailing_bytes_after_signature_data"].as_u64().unwrap(),
        "{file}: trailing bytes"
    );
    // ISVSVN of the QE's SGX report (offset 258 of the report).
    let qe_isvsvn = u16::from_le_bytes([q.signature.qe_report[258], q.signature.qe_report[259]]);
    assert_eq!(
        u64::from(qe_isvsvn),
        e["qe_isvsvn"].as_u64().unwrap(),
        "{file}"
    );
    let expected_signed = match (q.header.version, q.body.kind) {
        (4, BodyKind::Td10) => 48 + 584,
        (5, BodyKind::Td10) => 48 + 6 + 584,
        (5, BodyKind::Td15) => 48 + 6 + 648,
        other => panic!("{file}: unexpected {other:?}"),
    };
    assert_eq!(q.signed_len, expected_signed, "{file}");
    let chain = String::from_utf8(q.signature.pck_chain_pem.clone()).unwrap();
    assert_eq!(
        chain.matches("-----BEGIN CERTIFICATE-----").count(),
        e["pck_chain"].as_array().unwrap().len(),
        "{file}"
    );
    q
}

#[test]
fn every_quote_parses_to_its_expected_fields() {
    for file in QUOTES {
        check(file);
    }
}

/// trustee's `parse_tdx_claims` output for its quote, mapped onto our parse. Claim
/// names are trustee's; `tcb_svn` is our `tee_tcb_svn`, `init_data` our MRCONFIGID,
/// header `reserved` the QE and PCE SVNs; header integers are little-endian hex.
/// `uefi_event_logs` come from a CCEL log trustee's test reads and that is not part of
/// the vector set, so they are not compared. `platform_instance_id` is not a quote
/// field but comes from the PCK leaf's SGX extension, which trustee prints
/// byte-reversed.
#[test]
fn trustee_quote_matches_trustees_claims() {
    let q = check("trustee/tdx_quote_4.dat");
    let claims: Value =
        serde_json::from_slice(&data("trustee/parse_tdx_claims_expected.json")).unwrap();
    let mut keys: Vec<&str> = claims
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "init_data",
            "platform_instance_id",
            "quote",
            "report_data",
            "td_attributes",
            "uefi_event_logs"
        ],
        "a claim appeared or went away: map it"
    );

    let h = &q.header;
    let mut reserved = h.qe_svn.to_le_bytes().to_vec();
    reserved.extend_from_slice(&h.pce_svn.to_le_bytes());
    let header: [(&str, String); 6] = [
        ("version", hex::encode(h.version.to_le_bytes())),
        ("att_key_type", hex::encode(h.att_key_type.to_le_bytes())),
        ("tee_type", hex::encode(h.tee_type.to_le_bytes())),
        ("reserved", hex::encode(&reserved)),
        ("vendor_id", h.qe_vendor_id.to_hex()),
        ("user_data", h.user_data.to_hex()),
    ];
    let theirs = claims["quote"]["header"].as_object().unwrap();
    assert_eq!(theirs.len(), header.len());
    for (k, ours) in header {
        assert_eq!(theirs[k].as_str().unwrap(), ours, "header.{k}");
    }

    let b = &q.body;
    let body: [(&str, String); 15] = [
        ("tcb_svn", b.tee_tcb_svn.to_hex()),
        ("mr_seam", b.mrseam.to_hex()),
        ("mrsigner_seam", b.mrsignerseam.to_hex()),
        ("seam_attributes", b.seam_attributes.to_hex()),
        ("td_attributes", b.td_attributes.to_hex()),
        ("xfam", b.xfam.to_hex()),
        ("mr_td", b.mrtd.to_hex()),
        ("mr_config_id", b.mrconfigid.to_hex()),
        ("mr_owner", b.mrowner.to_hex()),
        ("mr_owner_config", b.mrownerconfig.to_hex()),
        ("rtmr_0", b.rtmrs[0].to_hex()),
        ("rtmr_1", b.rtmrs[1].to_hex()),
        ("rtmr_2", b.rtmrs[2].to_hex()),
        ("rtmr_3", b.rtmrs[3].to_hex()),
        ("report_data", b.report_data.to_hex()),
    ];
    let theirs = claims["quote"]["body"].as_object().unwrap();
    assert_eq!(theirs.len(), body.len());
    for (k, ours) in body {
        assert_eq!(theirs[k].as_str().unwrap(), ours, "body.{k}");
    }
    assert_eq!(claims["report_data"], b.report_data.to_hex());
    assert_eq!(claims["init_data"], b.mrconfigid.to_hex());

    // TDATTRIBUTES bits as trustee names them.
    let attrs = u64::from_le_bytes(b.td_attributes.0);
    let flags: [(&str, u32); 5] = [
        ("debug", 0),
        ("septve_disable", 28),
        ("protection_keys", 30),
        ("key_locker", 31),
        ("perfmon", 63),
    ];
    let theirs = claims["td_attributes"].as_object().unwrap();
    assert_eq!(theirs.len(), flags.len());
    for (k, bit) in flags {
        assert_eq!(theirs[k].as_bool().unwrap(), attrs >> bit & 1 == 1, "{k}");
    }
    assert!(b.debug(), "trustee's sample TD is a debug TD");

    // PlatformInstanceID (OID 1.2.840.113741.1.13.1.6, OCTET STRING of 16) in the
    // PCK leaf.
    let pem = String::from_utf8(q.signature.pck_chain_pem.clone()).unwrap();
    let b64: String = pem
        .split("-----BEGIN CERTIFICATE-----")
        .nth(1)
        .and_then(|s| s.split("-----END CERTIFICATE-----").next())
        .unwrap()
        .split_whitespace()
        .collect();
    use base64::Engine;
    let der = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap();
    const OID: [u8; 14] = [
        0x06, 0x0a, 0x2a, 0x86, 0x48, 0x86, 0xf8, 0x4d, 0x01, 0x0d, 0x01, 0x06, 0x04, 0x10,
    ];
    let at = der.windows(OID.len()).position(|w| w == OID).unwrap() + OID.len();
    let mut id = der[at..at + 16].to_vec();
    id.reverse();
    assert_eq!(claims["platform_instance_id"], hex::encode(id));
}

#[test]
fn every_truncation_is_a_typed_error() {
    for file in QUOTES {
        let raw = data(file);
        let q = Quote::parse(&raw).unwrap();
        // Everything up to the end of the signature data is required.
        let needed = raw.len() - q.trailing_bytes;
        for n in 0..needed {
            let e = Quote::parse(&raw[..n]).unwrap_err();
            assert!(
                matches!(e, QuoteError::Truncated { .. } | QuoteError::Length { .. }),
                "{file}[..{n}]: {e:?}"
            );
        }
        // Trailing bytes beyond it are tolerated.
        let mut longer = raw.clone();
        longer.extend_from_slice(&[0u8; 100]);
        assert_eq!(Quote::parse(&longer).unwrap().body, q.body, "{file}");
    }
}

/// Offsets of the length and type fields of a parsed quote's signature data.
struct Layout {
    sig_len: usize,
    cert_type: usize,
    cert_len: usize,
    auth_len: usize,
    pck_type: usize,
    chain_len: usize,
}

fn layout(q: &Quote) -> Layout {
    let sig_len = q.signed_len;
    let sig = sig_len + 4;
    let auth_len = sig + 128 + 6 + 384 + 64;
    let pck_type = auth_len + 2 + q.signature.qe_auth_data.len();
    Layout {
        sig_len,
        cert_type: sig + 128,
        cert_len: sig + 130,
        auth_len,
        pck_type,
        chain_len: pck_type + 2,
    }
}

fn put(b: &mut [u8], at: usize, v: &[u8]) {
    b[at..at + v.len()].copy_from_slice(v);
}

fn add_u32(b: &mut [u8], at: usize, delta: u32) {
    let v = u32::from_le_bytes(b[at..at + 4].try_into().unwrap());
    put(b, at, &(v + delta).to_le_bytes());
}

type Mutation = (
    &'static str,
    fn(&mut Vec<u8>, &Layout),
    fn(&QuoteError) -> bool,
);

#[test]
fn malformed_headers_lengths_and_types_are_typed_errors() {
    let table: &[Mutation] = &[
        (
            "TEE type SGX",
            |b, _| put(b, 4, &0u32.to_le_bytes()),
            |e| matches!(e, QuoteError::NotTdx(0)),
        ),
        (
            "TEE type SEV",
            |b, _| put(b, 4, &0x82u32.to_le_bytes()),
            |e| matches!(e, QuoteError::NotTdx(0x82)),
        ),
        (
            "version 3",
            |b, _| put(b, 0, &3u16.to_le_bytes()),
            |e| matches!(e, QuoteError::UnsupportedVersion(3)),
        ),
        (
            "attestation key type 3",
            |b, _| put(b, 2, &3u16.to_le_bytes()),
            |e| matches!(e, QuoteError::UnsupportedKeyType(3)),
        ),
        (
            "signature data length u32::MAX",
            |b, l| put(b, l.sig_len, &u32::MAX.to_le_bytes()),
            |e| {
                matches!(
                    e,
                    QuoteError::Length {
                        field: "signature_data",
                        ..
                    }
                )
            },
        ),
        (
            "signature data one byte longer than its fields",
            |b, l| {
                add_u32(b, l.sig_len, 1);
                b.push(0);
            },
            |e| {
                matches!(
                    e,
                    QuoteError::Unconsumed {
                        field: "signature_data",
                        extra: 1
                    }
                )
            },
        ),
        (
            "certification data type 5 at the outer level",
            |b, l| put(b, l.cert_type, &5u16.to_le_bytes()),
            |e| {
                matches!(
                    e,
                    QuoteError::CertDataType {
                        expected: 6,
                        got: 5
                    }
                )
            },
        ),
        (
            "certification data length u32::MAX",
            |b, l| put(b, l.cert_len, &u32::MAX.to_le_bytes()),
            |e| {
                matches!(
                    e,
                    QuoteError::Length {
                        field: "certification_data",
                        ..
                    }
                )
            },
        ),
        (
            "QE auth data length 0xFFFF",
            |b, l| put(b, l.auth_len, &u16::MAX.to_le_bytes()),
            |e| {
                matches!(
                    e,
                    QuoteError::Length {
                        field: "qe_auth_data",
                        ..
                    }
                )
            },
        ),
        (
            "PCK certification data type 4",
            |b, l| put(b, l.pck_type, &4u16.to_le_bytes()),
            |e| {
                matches!(
                    e,
                    QuoteError::CertDataType {
                        expected: 5,
                        got: 4
                    }
                )
            },
        ),
        (
            "PCK chain length beyond the bound",
            |b, l| {
                put(
                    b,
                    l.chain_len,
                    &u32::try_from(MAX_PCK_CHAIN_BYTES + 1)
                        .unwrap()
                        .to_le_bytes(),
                )
            },
            |e| {
                matches!(
                    e,
                    QuoteError::TooLong {
                        field: "pck_chain",
                        ..
                    }
                )
            },
        ),
        (
            "PCK chain length at the bound, beyond the data",
            |b, l| {
                put(
                    b,
                    l.chain_len,
                    &u32::try_from(MAX_PCK_CHAIN_BYTES).unwrap().to_le_bytes(),
                )
            },
            |e| {
                matches!(
                    e,
                    QuoteError::Length {
                        field: "pck_chain",
                        ..
                    }
                )
            },
        ),
        (
            "PCK chain shorter than its certification data",
            |b, l| {
                let v = u32::from_le_bytes(b[l.chain_len..l.chain_len + 4].try_into().unwrap());
                put(b, l.chain_len, &(v - 2).to_le_bytes());
            },
            |e| {
                matches!(
                    e,
                    QuoteError::Unconsumed {
                        field: "certification_data",
                        extra: 2
                    }
                )
            },
        ),
        (
            "a genuine oversized chain: every length grown past the bound",
            |b, l| {
                let grow = u32::try_from(MAX_PCK_CHAIN_BYTES).unwrap();
                add_u32(b, l.sig_len, grow);
                add_u32(b, l.cert_len, grow);
                add_u32(b, l.chain_len, grow);
                // The chain is the last field: appending to the exact quote grows it.
                b.extend(std::iter::repeat_n(b'A', MAX_PCK_CHAIN_BYTES));
            },
            |e| {
                matches!(
                    e,
                    QuoteError::TooLong {
                        field: "pck_chain",
                        ..
                    }
                )
            },
        ),
        (
            "quote over the size limit",
            |b, _| b.resize(MAX_QUOTE_BYTES + 1, 0),
            |e| matches!(e, QuoteError::TooLarge { .. }),
        ),
    ];
    let v5_table: &[Mutation] = &[
        (
            "v5 body type 9",
            |b, _| put(b, 48, &9u16.to_le_bytes()),
            |e| matches!(e, QuoteError::UnsupportedBodyType(9)),
        ),
        (
            "v5 body size off by one",
            |b, _| add_u32(b, 50, 1),
            |e| matches!(e, QuoteError::BodySize { .. }),
        ),
        (
            "v5 TD 1.5 body declared as TD 1.0",
            |b, _| put(b, 48, &2u16.to_le_bytes()),
            |e| matches!(e, QuoteError::BodySize { .. }),
        ),
    ];
    for file in QUOTES {
        let raw = data(file);
        let q = Quote::parse(&raw).unwrap();
        let l = layout(&q);
        let v5 = if q.header.version == 5 { v5_table } else { &[] };
        for (what, mutate, ok) in table.iter().chain(v5) {
            let mut b = raw.clone();
            // Start from the exact quote, without padding, so length fields are tight.
            b.truncate(raw.len() - q.trailing_bytes);
            mutate(&mut b, &l);
            let e = Quote::parse(&b).expect_err(what);
            assert!(ok(&e), "{file}: {what}: {e:?}");
        }
    }
}

#[test]
fn corrupted_bytes_never_panic() {
    for file in QUOTES {
        let raw = data(file);
        let end = raw.len() - Quote::parse(&raw).unwrap().trailing_bytes;
        for i in 0..end {
            for flip in [0x01u8, 0x80, 0xff] {
                let mut c = raw.clone();
                c[i] ^= flip;
                let _ = Quote::parse(&c);
            }
        }
    }
}
