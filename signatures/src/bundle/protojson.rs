//! Bundle `bytes` fields decoded as protobuf-JSON decodes them.
//!
//! A Sigstore bundle is the protobuf-JSON form of `dev.sigstore.bundle.v1.Bundle`,
//! and protobuf-JSON `bytes` fields are base64 in the standard or the URL-safe
//! alphabet, with or without padding; Go's and Python's decoders (sigstore-go,
//! sigstore-python) also skip line breaks, so a line-wrapped RFC 3161 token is the
//! same bundle as an unwrapped one. `sigstore-types` 0.15.1 takes either alphabet
//! and optional padding, but refuses a line break inside a field, and then the whole
//! bundle fails to parse, before any check that matters has run.
//!
//! Gap wrapped: [`normalize`] re-encodes every `bytes` field of the bundle schema
//! as standard padded base64 before the bundle reaches `sigstore-types`, so both
//! decoders see the same bytes. Only the schema's `bytes` fields are touched (never
//! `string` fields such as the DSSE `keyid` or the public-key `hint`, and never the
//! checkpoint note, whose exact text is signed), and a field that is not base64
//! under these rules is refused here as [`VerifyError::MalformedBundle`], naming it.
//! A bundle whose fields are all already canonical is passed on byte for byte.

use std::borrow::Cow;

use base64::alphabet;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;
use serde_json::Value;

use super::VerifyError;

/// Decode base64 as protobuf-JSON does: standard or URL-safe alphabet (not mixed),
/// padding optional, CR and LF ignored. Any other character, including spaces and
/// misplaced padding, is an error.
pub(crate) fn decode(s: &str) -> Option<Vec<u8>> {
    let compact: String = s.chars().filter(|c| !matches!(c, '\r' | '\n')).collect();
    let url_safe = compact.contains(['-', '_']);
    if url_safe && compact.contains(['+', '/']) {
        return None;
    }
    let alphabet = if url_safe {
        &alphabet::URL_SAFE
    } else {
        &alphabet::STANDARD
    };
    GeneralPurpose::new(
        alphabet,
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
    )
    .decode(compact)
    .ok()
}

/// The `bytes` fields of `dev.sigstore.bundle.v1.Bundle` (and the messages it
/// embeds), as JSON paths. `*` is every element of an array.
const BYTES_FIELDS: &[&[&str]] = &[
    &["verificationMaterial", "certificate", "rawBytes"],
    &[
        "verificationMaterial",
        "x509CertificateChain",
        "certificates",
        "*",
        "rawBytes",
    ],
    &["verificationMaterial", "tlogEntries", "*", "logId", "keyId"],
    &[
        "verificationMaterial",
        "tlogEntries",
        "*",
        "inclusionPromise",
        "signedEntryTimestamp",
    ],
    &[
        "verificationMaterial",
        "tlogEntries",
        "*",
        "inclusionProof",
        "rootHash",
    ],
    &[
        "verificationMaterial",
        "tlogEntries",
        "*",
        "inclusionProof",
        "hashes",
        "*",
    ],
    &[
        "verificationMaterial",
        "tlogEntries",
        "*",
        "canonicalizedBody",
    ],
    &[
        "verificationMaterial",
        "timestampVerificationData",
        "rfc3161Timestamps",
        "*",
        "signedTimestamp",
    ],
    &["messageSignature", "messageDigest", "digest"],
    &["messageSignature", "signature"],
    &["dsseEnvelope", "payload"],
    &["dsseEnvelope", "signatures", "*", "sig"],
];

/// Re-encode every `bytes` field of `bundle` as standard padded base64; see the
/// module doc. Borrowed when nothing changes.
pub(crate) fn normalize(bundle: &[u8]) -> Result<Cow<'_, [u8]>, VerifyError> {
    let mut value: Value = serde_json::from_slice(bundle)
        .map_err(|e| VerifyError::MalformedBundle(format!("not a JSON bundle: {e}")))?;
    let mut changed = false;
    for path in BYTES_FIELDS {
        visit(&mut value, path, &mut |field: &mut Value| {
            let Value::String(s) = field else {
                // A non-string here is a schema error; sigstore-types names it.
                return Ok(());
            };
            let bytes = decode(s).ok_or_else(|| {
                VerifyError::MalformedBundle(format!(
                    "{} is not base64 (standard or URL-safe, padding optional)",
                    path.join(".")
                ))
            })?;
            let canonical = STANDARD.encode(bytes);
            if canonical != *s {
                *s = canonical;
                changed = true;
            }
            Ok(())
        })?;
    }
    if !changed {
        return Ok(Cow::Borrowed(bundle));
    }
    serde_json::to_vec(&value)
        .map(Cow::Owned)
        .map_err(|e| VerifyError::MalformedBundle(format!("cannot re-encode bundle: {e}")))
}

fn visit(
    v: &mut Value,
    path: &[&str],
    f: &mut dyn FnMut(&mut Value) -> Result<(), VerifyError>,
) -> Result<(), VerifyError> {
    let Some((head, rest)) = path.split_first() else {
        return f(v);
    };
    match (*head, v) {
        ("*", Value::Array(items)) => items.iter_mut().try_for_each(|i| visit(i, rest, f)),
        (key, Value::Object(map)) if key != "*" => match map.get_mut(key) {
            Some(next) => visit(next, rest, f),
            None => Ok(()),
        },
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protojson_base64_forms_decode_alike() {
        let bytes: Vec<u8> = (0u8..=255).collect();
        let std = STANDARD.encode(&bytes);
        let url = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&bytes);
        let wrapped: String = std
            .as_bytes()
            .chunks(64)
            .map(|c| std::str::from_utf8(c).unwrap())
            .collect::<Vec<_>>()
            .join("\r\n");
        for form in [
            std.clone(),
            std.trim_end_matches('=').to_string(),
            url.clone(),
            format!("{url}=="),
            wrapped,
        ] {
            assert_eq!(decode(&form).as_deref(), Some(&bytes[..]), "{form}");
        }
        for bad in ["a+b-", "ab cd", "ab=cd", "!!!!", "abcde"] {
            assert_eq!(decode(bad), None, "{bad}");
        }
    }

    #[test]
    fn only_bytes_fields_are_rewritten() {
        let b = br#"{"mediaType":"m","dsseEnvelope":{"payload":"YW\nJj","payloadType":"t","signatures":[{"sig":"_-8","keyid":"a-b\n"}]},"verificationMaterial":{"tlogEntries":[{"inclusionProof":{"hashes":["AA"],"checkpoint":{"envelope":"o\n1\nAA\n\n- x y\n"}}}]}}"#;
        let out: Value = serde_json::from_slice(&normalize(b).unwrap()).unwrap();
        assert_eq!(out["dsseEnvelope"]["payload"], "YWJj");
        assert_eq!(out["dsseEnvelope"]["signatures"][0]["sig"], "/+8=");
        assert_eq!(out["dsseEnvelope"]["signatures"][0]["keyid"], "a-b\n");
        let tl = &out["verificationMaterial"]["tlogEntries"][0]["inclusionProof"];
        assert_eq!(tl["hashes"][0], "AA==");
        assert_eq!(tl["checkpoint"]["envelope"], "o\n1\nAA\n\n- x y\n");
        let canonical = br#"{"messageSignature":{"signature":"YWJj"}}"#;
        assert!(matches!(normalize(canonical).unwrap(), Cow::Borrowed(_)));
        let e = normalize(br#"{"messageSignature":{"signature":"INVALID!!!"}}"#).unwrap_err();
        assert_eq!(e.kind(), "MalformedBundle");
        assert!(e.to_string().contains("messageSignature.signature"), "{e}");
    }
}
