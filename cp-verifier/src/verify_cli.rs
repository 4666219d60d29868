//! `cp-verifier verify quote`: offline quote verification for operators.
//!
//! Contract (keep it stable; scripts depend on it): stdout carries one JSON object,
//! the quote's fields on success or `{"error":{"kind","detail"}}` on failure. Exit 0:
//! signatures and PCK chain valid at `--at`, and with collateral the TCB status is
//! allowed by the default policy (UpToDate). Exit 1: any verification failure.
//! Exit 2: usage errors (bad arguments, unreadable files).

use std::path::Path;

use serde_json::{json, Value};

use crate::tdx::{
    parse_collateral, verify_quote, verify_signatures, TcbStatus, MAX_COLLATERAL_BYTES,
};

/// Exit status and the JSON object to print.
pub struct Outcome {
    pub code: i32,
    pub json: Value,
}

fn error(code: i32, kind: &str, detail: impl Into<String>) -> Outcome {
    Outcome {
        code,
        json: json!({"error": {"kind": kind, "detail": detail.into()}}),
    }
}

/// Raw binary, or hex text with or without `0x` (whitespace ignored).
pub fn decode_quote_input(bytes: &[u8]) -> Vec<u8> {
    let text: Vec<u8> = bytes
        .iter()
        .copied()
        .filter(|b| !b.is_ascii_whitespace())
        .collect();
    let body = text
        .strip_prefix(b"0x")
        .or_else(|| text.strip_prefix(b"0X"))
        .unwrap_or(&text);
    if !body.is_empty() && body.len() % 2 == 0 && body.iter().all(u8::is_ascii_hexdigit) {
        if let Ok(v) = hex::decode(body) {
            return v;
        }
    }
    bytes.to_vec()
}

fn read_bounded(path: &Path, max: u64, what: &str) -> Result<Vec<u8>, Outcome> {
    use guest_agent::fsutil::ReadError;
    guest_agent::fsutil::read_bounded(path, max).map_err(|e| match e {
        ReadError::TooLarge { max } => {
            error(1, "TooLarge", format!("{what} is larger than {max} bytes"))
        }
        ReadError::Io(e) => error(
            2,
            "Usage",
            format!("cannot read {what} {}: {e}", path.display()),
        ),
    })
}

pub fn verify_quote_cmd(
    quote_path: &Path,
    collateral_path: Option<&Path>,
    at: u64,
    root_ca_path: Option<&Path>,
) -> Outcome {
    match run(quote_path, collateral_path, at, root_ca_path) {
        Ok(o) | Err(o) => o,
    }
}

fn run(
    quote_path: &Path,
    collateral_path: Option<&Path>,
    at: u64,
    root_ca_path: Option<&Path>,
) -> Result<Outcome, Outcome> {
    let max_quote = u64::try_from(evidence::tdx::MAX_QUOTE_BYTES * 2 + 64).unwrap_or(u64::MAX);
    let raw = decode_quote_input(&read_bounded(quote_path, max_quote, "quote")?);
    let root = match root_ca_path {
        Some(p) => Some(read_bounded(p, 64 * 1024, "root CA")?),
        None => None,
    };
    let collateral = match collateral_path {
        Some(p) => {
            let b = read_bounded(
                p,
                u64::try_from(MAX_COLLATERAL_BYTES).unwrap_or(u64::MAX),
                "collateral",
            )?;
            Some(parse_collateral(&b).map_err(|e| error(1, e.kind(), e.to_string()))?)
        }
        None => None,
    };
    let signed = verify_signatures(&raw, at, root.as_deref())
        .map_err(|e| error(1, e.kind(), e.to_string()))?;
    let (tcb_status, advisories) = match &collateral {
        Some(c) => {
            let v = verify_quote(&raw, c, at, root.as_deref())
                .map_err(|e| error(1, e.kind(), e.to_string()))?;
            (Some(v.tcb_status().clone()), v.advisory_ids().to_vec())
        }
        None => (None, Vec::new()),
    };
    let q = signed.quote();
    let b = &q.body;
    let out = json!({
        "version": q.header.version,
        "tee": "tdx",
        "body": b.kind,
        "mrtd": b.mrtd.to_hex(),
        "rtmrs": b.rtmrs.iter().map(|r| r.to_hex()).collect::<Vec<_>>(),
        "report_data": b.report_data.to_hex(),
        "td_attributes": b.td_attributes.to_hex(),
        "fmspc": signed.fmspc().map(hex::encode),
        "tcb_status": tcb_status.as_ref().map(|s| s.as_str().to_string()),
        "advisory_ids": advisories,
        "collateral": if collateral.is_some() { "verified" } else { "absent" },
    });
    match tcb_status {
        Some(TcbStatus::UpToDate) | None => Ok(Outcome { code: 0, json: out }),
        Some(other) => Err(error(
            1,
            "TcbStatusNotAllowed",
            format!(
                "TCB status {} is not allowed by the default policy (UpToDate); advisories: {:?}",
                other.as_str(),
                out["advisory_ids"]
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_detection() {
        assert_eq!(decode_quote_input(b"0x0400\n"), vec![4, 0]);
        assert_eq!(decode_quote_input(b"04 00"), vec![4, 0]);
        assert_eq!(decode_quote_input(&[4, 0, 2, 0]), vec![4, 0, 2, 0]);
        assert_eq!(decode_quote_input(b"abc"), b"abc".to_vec());
    }
}
