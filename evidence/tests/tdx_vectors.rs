//! The quote parser against real quotes, field by field, and against every truncation
//! and a sweep of corruptions.

use evidence::tdx::{BodyKind, Quote, QuoteError};
use serde_json::Value;

fn data(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/tests/data/tdx/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

fn expected(file: &str) -> Value {
    let all: Value = serde_json::from_slice(&data("expected.json")).unwrap();
    all["quotes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["file"] == format!("dcap-qvl/{file}"))
        .unwrap()
        .clone()
}

fn check(file: &str) -> Quote {
    let raw = data(file);
    let e = expected(file);
    let q = Quote::parse(&raw).unwrap();
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
    assert_eq!(kind, e["body"].as_str().unwrap());
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
        assert_eq!(b.tee_tcb_svn2.unwrap().to_hex(), s);
        assert_eq!(
            b.mrservicetd.unwrap().to_hex(),
            td["mrservicetd"].as_str().unwrap()
        );
    } else {
        assert!(b.tee_tcb_svn2.is_none());
    }
    assert_eq!(
        u64::try_from(q.trailing_bytes).unwrap(),
        e["trailing_bytes_after_signature_data"].as_u64().unwrap(),
        "{file}: trailing bytes"
    );
    let chain = String::from_utf8(q.signature.pck_chain_pem.clone()).unwrap();
    assert_eq!(
        chain.matches("-----BEGIN CERTIFICATE-----").count(),
        3,
        "{file}"
    );
    q
}

#[test]
fn v4_td10_quote_fields() {
    let q = check("tdx_quote");
    assert_eq!(q.signed_len, 48 + 584);
    assert!(!q.body.debug());
}

#[test]
fn v5_td15_quote_fields() {
    let q = check("tdx_quote_outdated");
    assert_eq!(q.signed_len, 48 + 6 + 648);
}

#[test]
fn every_truncation_is_a_typed_error() {
    for file in ["tdx_quote", "tdx_quote_outdated"] {
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
        assert_eq!(Quote::parse(&longer).unwrap().body, q.body);
    }
}

#[test]
fn corrupted_lengths_and_bytes_never_panic() {
    let raw = data("tdx_quote");
    for i in 0..raw.len() {
        for flip in [0x01u8, 0x80, 0xff] {
            let mut c = raw.clone();
            c[i] ^= flip;
            let _ = Quote::parse(&c);
        }
    }
}
