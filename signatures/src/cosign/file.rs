//! Signature files: containers/image's stored `sigstore-json` file, a cosign layer JSON,
//! or a Sigstore bundle; and their bounds.

use std::collections::BTreeMap;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;

use super::{
    truncate, ImageSigError, MAX_ANNOTATIONS, MAX_ANNOTATION_BYTES, MAX_PAYLOAD_BYTES,
    MAX_SIGNATURE_FILE_BYTES, SIGSTORE_JSON_PREFIX, SIMPLE_SIGNING_MEDIA_TYPE,
};
use crate::image::ImageSignature;

/// Parses a signature as stored on disk or fetched: containers/image's stored
/// signature file (`0x00 "sigstore-json" LF {mimeType, payload, annotations}`), a
/// cosign layer JSON (the same object without the prefix), or a Sigstore bundle.
pub fn parse_signature_file(bytes: &[u8]) -> Result<ImageSignature, ImageSigError> {
    if bytes.len() > MAX_SIGNATURE_FILE_BYTES {
        return Err(ImageSigError::TooLarge {
            what: "signature file",
            max: MAX_SIGNATURE_FILE_BYTES,
        });
    }
    let (json, prefixed) = match bytes.strip_prefix(SIGSTORE_JSON_PREFIX) {
        Some(rest) => (rest, true),
        None => (bytes, false),
    };
    let value: serde_json::Value = serde_json::from_slice(json)
        .map_err(|e| ImageSigError::Malformed(format!("not JSON: {e}")))?;
    let obj = value
        .as_object()
        .ok_or_else(|| ImageSigError::Malformed("not a JSON object".into()))?;
    if !prefixed {
        if let Some(mt) = obj.get("mediaType").and_then(|m| m.as_str()) {
            if mt.starts_with("application/vnd.dev.sigstore.bundle") {
                return Ok(ImageSignature::Bundle(bytes.to_vec()));
            }
        }
    }
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Stored {
        #[serde(rename = "mimeType", default)]
        mime_type: Option<String>,
        payload: String,
        #[serde(default)]
        annotations: BTreeMap<String, String>,
    }
    let s: Stored = serde_json::from_value(value).map_err(|e| {
        ImageSigError::Malformed(format!(
            "neither a simple-signing signature nor a Sigstore bundle: {e}"
        ))
    })?;
    match s.mime_type.as_deref() {
        None | Some(SIMPLE_SIGNING_MEDIA_TYPE) => {}
        Some(other) => {
            return Err(ImageSigError::Unsupported(format!(
                "mimeType {:?}",
                truncate(other)
            )))
        }
    }
    let payload = B64
        .decode(s.payload.as_bytes())
        .map_err(|e| ImageSigError::Malformed(format!("payload is not base64: {e}")))?;
    let sig = ImageSignature::SimpleSigning {
        payload,
        annotations: s.annotations,
    };
    check_bounds(&sig)?;
    Ok(sig)
}

/// containers/image's stored signature file for a simple-signing signature (what
/// [`parse_signature_file`] reads); `None` for a bundle (store its bytes as they are).
pub fn encode_signature_file(sig: &ImageSignature) -> Option<Vec<u8>> {
    match sig {
        ImageSignature::SimpleSigning {
            payload,
            annotations,
        } => {
            let body = serde_json::json!({
                "mimeType": SIMPLE_SIGNING_MEDIA_TYPE,
                "payload": B64.encode(payload),
                "annotations": annotations,
            });
            let mut out = SIGSTORE_JSON_PREFIX.to_vec();
            out.extend(body.to_string().into_bytes());
            Some(out)
        }
        ImageSignature::Bundle(_) => None,
    }
}

pub(super) fn check_bounds(sig: &ImageSignature) -> Result<(), ImageSigError> {
    match sig {
        ImageSignature::SimpleSigning {
            payload,
            annotations,
        } => {
            if payload.len() > MAX_PAYLOAD_BYTES {
                return Err(ImageSigError::TooLarge {
                    what: "payload",
                    max: MAX_PAYLOAD_BYTES,
                });
            }
            if annotations.len() > MAX_ANNOTATIONS {
                return Err(ImageSigError::Malformed(format!(
                    "more than {MAX_ANNOTATIONS} annotations"
                )));
            }
            if annotations
                .iter()
                .any(|(k, v)| k.len() > 1024 || v.len() > MAX_ANNOTATION_BYTES)
            {
                return Err(ImageSigError::TooLarge {
                    what: "annotation",
                    max: MAX_ANNOTATION_BYTES,
                });
            }
            Ok(())
        }
        ImageSignature::Bundle(b) => {
            if b.len() > crate::MAX_BUNDLE_BYTES {
                return Err(ImageSigError::TooLarge {
                    what: "bundle",
                    max: crate::MAX_BUNDLE_BYTES,
                });
            }
            Ok(())
        }
    }
}
