//! The Rekor SET of a simple-signing signature (`dev.sigstore.cosign/bundle`) and the
//! entry body it signs.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use provenant_base::clock::UnixSecs;

use super::chain::Leaf;
use super::keys::pem_blocks;
use super::{truncate, ImageSigError, ImageTrust};
use crate::oci::Sha256Digest;

/// Verifies the `dev.sigstore.cosign/bundle` annotation; returns the integrated time.
pub(super) fn verify_set(
    bundle: &str,
    payload: &[u8],
    sig: &[u8],
    logged_der: &[u8],
    leaf: Option<&Leaf>,
    trust: &ImageTrust,
    now: UnixSecs,
) -> Result<(i64, u64), ImageSigError> {
    #[derive(serde::Deserialize)]
    struct SetPayload {
        body: serde_json::Value,
        #[serde(rename = "integratedTime")]
        integrated_time: i64,
        #[serde(rename = "logIndex")]
        log_index: i64,
        #[serde(rename = "logID")]
        log_id: String,
    }
    #[derive(serde::Deserialize)]
    struct RekorBundle {
        #[serde(rename = "SignedEntryTimestamp")]
        set: String,
        #[serde(rename = "Payload")]
        payload: SetPayload,
    }
    let bad = |d: String| ImageSigError::InvalidRekorSet(d);
    let rb: RekorBundle = serde_json::from_str(bundle).map_err(|e| bad(e.to_string()))?;
    let p = &rb.payload;
    let body_b64 = p
        .body
        .as_str()
        .ok_or_else(|| bad("Payload.body is not a string".into()))?;
    if p.integrated_time < 0 || p.log_index < 0 {
        return Err(bad("negative integratedTime or logIndex".into()));
    }
    let log_id = hex::decode(&p.log_id)
        .ok()
        .filter(|b| b.len() == 32)
        .ok_or_else(|| {
            bad(format!(
                "logID {:?} is not 32 hex bytes",
                truncate(&p.log_id)
            ))
        })?;
    let key = trust
        .rekor_keys
        .iter()
        .find(|k| k.log_id()[..] == log_id[..])
        .ok_or_else(|| ImageSigError::UnknownRekorLog(hex::encode(&log_id)))?;
    if !key.valid_at(p.integrated_time) {
        return Err(bad(format!(
            "the Rekor key {} is not valid at {}",
            key.fingerprint, p.integrated_time
        )));
    }
    let set = B64
        .decode(rb.set.as_bytes())
        .map_err(|e| bad(format!("SignedEntryTimestamp is not base64: {e}")))?;
    // Rekor signs the canonical JSON of the entry: keys sorted, no whitespace.
    let canonical = format!(
        "{{\"body\":{},\"integratedTime\":{},\"logID\":{},\"logIndex\":{}}}",
        serde_json::Value::String(body_b64.to_owned()),
        p.integrated_time,
        serde_json::Value::String(p.log_id.clone()),
        p.log_index
    );
    if !key.verify(canonical.as_bytes(), &set) {
        return Err(bad("the SET does not verify with the log's key".into()));
    }
    if p.integrated_time > now.get() {
        return Err(ImageSigError::SignedAfterNow {
            signed_at: p.integrated_time,
            now: now.get(),
        });
    }
    check_rekor_body(body_b64, payload, sig, logged_der, leaf)?;
    // Both were checked non-negative above.
    Ok((p.integrated_time, u64::try_from(p.log_index).unwrap_or(0)))
}

/// The entry body must be `hashedrekord` 0.0.1 for sha256(payload), this signature
/// and this key (or certificate).
fn check_rekor_body(
    body_b64: &str,
    payload: &[u8],
    sig: &[u8],
    logged_der: &[u8],
    leaf: Option<&Leaf>,
) -> Result<(), ImageSigError> {
    let bad = |d: &str| ImageSigError::RekorEntryMismatch(d.to_owned());
    let body = B64
        .decode(body_b64.as_bytes())
        .map_err(|_| bad("body is not base64"))?;
    let v: serde_json::Value =
        serde_json::from_slice(&body).map_err(|_| bad("body is not JSON"))?;
    let kind = v["kind"].as_str().unwrap_or_default();
    let api = v["apiVersion"].as_str().unwrap_or_default();
    if kind != "hashedrekord" || api != "0.0.1" {
        return Err(ImageSigError::RekorEntryMismatch(format!(
            "entry kind {:?} {:?}, expected hashedrekord 0.0.1",
            truncate(kind),
            truncate(api)
        )));
    }
    let spec = &v["spec"];
    if spec["data"]["hash"]["algorithm"].as_str() != Some("sha256") {
        return Err(bad("entry hash is not sha256"));
    }
    let want = Sha256Digest::of(payload);
    if spec["data"]["hash"]["value"]
        .as_str()
        .map(str::to_ascii_lowercase)
        .as_deref()
        != Some(want.hex())
    {
        return Err(bad("entry hash is not sha256 of the payload"));
    }
    let logged_sig = spec["signature"]["content"]
        .as_str()
        .and_then(|s| B64.decode(s.as_bytes()).ok())
        .ok_or_else(|| bad("entry has no base64 signature"))?;
    if logged_sig != sig {
        return Err(bad("entry records another signature"));
    }
    let logged_pem = spec["signature"]["publicKey"]["content"]
        .as_str()
        .and_then(|s| B64.decode(s.as_bytes()).ok())
        .ok_or_else(|| bad("entry has no base64 public key"))?;
    let label = if leaf.is_some() {
        "CERTIFICATE"
    } else {
        "PUBLIC KEY"
    };
    // A parse failure is "not the same signer" here, so the bare-key form below is
    // still tried.
    let ders = pem_blocks(&logged_pem, label).unwrap_or_default();
    let same = ders.first().is_some_and(|d| d == logged_der)
        // A keyless signature logged with the leaf's bare key is the same signer.
        || leaf.is_some_and(|l| {
            pem_blocks(&logged_pem, "PUBLIC KEY")
                .ok()
                .and_then(|d| d.into_iter().next())
                .is_some_and(|d| d == l.spki_der)
        });
    if !same {
        return Err(bad("entry records another key or certificate"));
    }
    Ok(())
}
