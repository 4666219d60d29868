//! EAT Attestation Results as a relying party sees them: tokens from a real control
//! plane (real store, real HTTP), checked by an independent JWT implementation
//! (PyJWT with `cryptography`, from the sigstore-python venv that
//! `ci/install-sigstore-python.sh` installs): signature under the JWKS key, claims,
//! nonce, expiry; and refused when tampered with or expired.

mod harness;

use std::process::Command;
use std::sync::atomic::Ordering;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine;
use cp_verifier::judge::ear::EarConfig;
use harness::{measurements, start_with, TestAgent, SEC, VIEWER_TOKEN};
use p256::pkcs8::EncodePrivateKey;
use serde_json::Value;

/// PyJWT, verifying as a relying party would: the key from the JWKS by `kid`, ES256
/// only, `exp` and `iat` required. Prints the claims, or the exception's class.
const VERIFY_PY: &str = r#"
import json, sys
import jwt
jwks, token = json.load(open(sys.argv[1])), sys.argv[2]
try:
    kid = jwt.get_unverified_header(token)["kid"]
    key = jwt.PyJWKSet.from_dict(jwks)[kid]
    claims = jwt.decode(token, key=key, algorithms=["ES256"],
                        options={"require": ["exp", "iat"]})
    print(json.dumps({"ok": True, "claims": claims}))
except Exception as e:
    print(json.dumps({"ok": False, "error": type(e).__name__, "detail": str(e)}))
"#;

fn python() -> std::path::PathBuf {
    let p = std::env::var_os("EAR_PYTHON").map_or_else(
        || {
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../target/sigstore-python/bin/python3")
        },
        Into::into,
    );
    assert!(
        p.exists(),
        "{} is missing: run ci/install-sigstore-python.sh (its venv carries PyJWT), or set \
         EAR_PYTHON to a python with PyJWT and cryptography",
        p.display()
    );
    p
}

/// PyJWT's verdict on `token` under `jwks`.
fn pyjwt(dir: &std::path::Path, jwks: &Value, token: &str) -> Value {
    let (script, keys) = (dir.join("verify.py"), dir.join("jwks.json"));
    std::fs::write(&script, VERIFY_PY).unwrap();
    std::fs::write(&keys, jwks.to_string()).unwrap();
    let out = Command::new(python())
        .arg(&script)
        .arg(&keys)
        .arg(token)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn real_now_ns() -> u64 {
    u64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos(),
    )
    .unwrap()
}

async fn get(cp: &harness::Cp, path: &str, token: Option<&str>) -> (u16, String, String) {
    let mut r = cp.http.get(format!("{}{path}", cp.base));
    if let Some(t) = token {
        r = r.bearer_auth(t);
    }
    let r = r.send().await.unwrap();
    let ct = r
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (r.status().as_u16(), ct, r.text().await.unwrap())
}

#[tokio::test]
async fn ear_tokens_verify_with_pyjwt_and_carry_the_verdict() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("ear.key");
    let sk = p256::ecdsa::SigningKey::from_slice(&rand::random::<[u8; 32]>()).unwrap();
    let pem = sk.to_pkcs8_pem(p256::pkcs8::LineEnding::LF).unwrap();
    provenant_base::fsutil::write_private(&key, pem.as_bytes()).unwrap();
    let work = tempfile::tempdir().unwrap();
    let mut a = TestAgent::new("node-1");
    let enrolled = a.enroll();
    let cp = start_with(dir, None, |cfg| {
        cfg.enrollment.keys.push(enrolled);
        cfg.ear = Some(EarConfig {
            signing_key_file: key.clone(),
            ttl: Duration::from_secs(300),
        });
    })
    .await;
    // PyJWT checks iat and exp against the real clock.
    let now = real_now_ns();
    cp.clock.0.store(now, Ordering::SeqCst);
    assert_eq!(cp.register(&mut a, measurements(1, 1)).await.0, 200);

    // The JWKS is public; the tokens need read access.
    let (st, _, body) = get(&cp, "/.well-known/jwks.json", None).await;
    assert_eq!(st, 200, "{body}");
    let jwks: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(jwks["keys"][0]["alg"], "ES256");
    assert_eq!(get(&cp, "/api/v1/agents/node-1/ear", None).await.0, 401);

    let nonce = B64URL.encode(rand::random::<[u8; 16]>());
    let (st, ct, token) = get(
        &cp,
        &format!("/api/v1/agents/node-1/ear?nonce={nonce}"),
        Some(VIEWER_TOKEN),
    )
    .await;
    assert_eq!(st, 200, "{token}");
    assert_eq!(ct, "application/jwt");
    let v = pyjwt(work.path(), &jwks, &token);
    assert_eq!(v["ok"], true, "{v}");
    let c = &v["claims"];
    assert_eq!(c["eat_profile"], "tag:ietf.org,2026:rats/ear#04");
    assert_eq!(c["eat_nonce"], nonce.as_str());
    assert_eq!(c["exp"].as_u64().unwrap() - c["iat"].as_u64().unwrap(), 300);
    // A software-tier agent: warning, and the reason says why.
    assert_eq!(c["ear_status"], "warning");
    let node = &c["submods"]["node"];
    assert_eq!(node["ear_status"], "warning");
    assert_eq!(
        node["ear_verifier_claims"]["provenant"]["reasons"][0]["code"],
        "SoftwareTier"
    );
    assert_eq!(node["ear_trustworthiness_vector"]["executables"], 2);
    assert!(node["ear_appraisal_policy_ids"][0]
        .as_str()
        .unwrap()
        .starts_with("provenant:policy:sha256:"));

    // Tampered: one character of the claims changed.
    let mut parts: Vec<String> = token.split('.').map(str::to_string).collect();
    let mut claims: Value = serde_json::from_slice(&B64URL.decode(&parts[1]).unwrap()).unwrap();
    claims["ear_status"] = "affirming".into();
    parts[1] = B64URL.encode(claims.to_string());
    let v = pyjwt(work.path(), &jwks, &parts.join("."));
    assert_eq!(v["error"], "InvalidSignatureError", "{v}");

    // The agent turns red (its binary changed): contraindicated, with the reason.
    let p = a.next_pulse(now, measurements(2, 1));
    assert_eq!(cp.pulse(&p).await.0, 200);
    a.accepted(&p);
    let (_, _, token) = get(&cp, "/api/v1/agents/node-1/ear", Some(VIEWER_TOKEN)).await;
    let v = pyjwt(work.path(), &jwks, &token);
    assert_eq!(v["claims"]["ear_status"], "contraindicated", "{v}");
    assert_eq!(
        v["claims"]["submods"]["node"]["ear_trustworthiness_vector"]["executables"],
        96
    );
    assert!(v["claims"].get("eat_nonce").is_none());

    // A token issued ten minutes ago (ttl five) has expired for the relying party.
    cp.clock.0.store(now - 600 * SEC, Ordering::SeqCst);
    let (_, _, old) = get(&cp, "/api/v1/agents/node-1/ear", Some(VIEWER_TOKEN)).await;
    let v = pyjwt(work.path(), &jwks, &old);
    assert_eq!(v["error"], "ExpiredSignatureError", "{v}");
    cp.clock.0.store(now, Ordering::SeqCst);

    // Refusals with their reasons.
    for (path, status, kind) in [
        ("/api/v1/agents/node-1/ear?nonce=short", 400, "BadNonce"),
        (
            "/api/v1/agents/node-1/ear?nonce=!!!!!!!!!!!!",
            400,
            "BadNonce",
        ),
        ("/api/v1/agents/nobody/ear", 404, "NotFound"),
        ("/api/v1/agents/node-1/workloads/web/ear", 404, "NotFound"),
    ] {
        let (st, _, body) = get(&cp, path, Some(VIEWER_TOKEN)).await;
        assert_eq!(st, status, "{path}: {body}");
        let e: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(e["error"]["kind"], kind, "{path}: {body}");
    }
}

#[tokio::test]
async fn without_an_ear_key_the_endpoints_say_so() {
    let cp = start_with(tempfile::tempdir().unwrap(), None, |_| {}).await;
    let (st, _, body) = get(&cp, "/.well-known/jwks.json", None).await;
    assert_eq!(st, 404);
    assert!(body.contains("[ear] signing_key_file"), "{body}");
}
