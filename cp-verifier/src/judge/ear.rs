//! EAT Attestation Results (EAR, draft-ietf-rats-ear-04) for relying parties: an
//! agent's verdict and its workloads' badges as a signed JWT (ES256), one `submods`
//! entry per attester (`node`, then `workload:<name>`), each with its AR4SI status
//! (green affirming, yellow warning, red contraindicated, unknown none), a partial
//! AR4SI trustworthiness vector derived from the reason codes, and the reasons
//! themselves under `ear_verifier_claims.provenant`. Short-lived (`[ear] ttl`) and,
//! when the relying party sends one, bound to its nonce (`eat_nonce`).
//!
//! Veraison's `ear` crate models the same claims, but its serialiser validates `exp`
//! against the system clock (`SystemTime::now`), so a token could not be issued at a
//! `now` the caller chooses, and its JWT signing pulls in jsonwebtoken with aws-lc.
//! The claims are a small JSON object, signed here with the `p256` crate already in
//! the tree; `tests/ear.rs` checks the tokens with an independent JWT implementation.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine;
use evidence::api::WorkloadBadge;
use evidence::Tier;
use p256::ecdsa::{signature::Signer, Signature, SigningKey};
use p256::pkcs8::DecodePrivateKey;
use policy::{Reason, ReasonCode, Status, Verdict};
use provenant_base::clock::UnixNanos;
use serde::Deserialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// The EAT profile of draft-ietf-rats-ear-04.
pub const EAR_PROFILE: &str = "tag:ietf.org,2026:rats/ear#04";
/// Longest `[ear] ttl`: a result outliving its evidence is a fail-open path.
pub const MAX_TTL: Duration = Duration::from_secs(3600);
/// Largest EAR signing key file read.
const MAX_KEY_BYTES: u64 = 64 * 1024;

/// `[ear]` in the control plane's config.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EarConfig {
    /// PEM P-256 private key (PKCS#8), mode 0600: signs the tokens (ES256).
    pub signing_key_file: PathBuf,
    /// How long a token is valid after it is issued (`exp - iat`), 1s to 1h.
    #[serde(default = "default_ttl", with = "humantime_serde")]
    pub ttl: Duration,
}

fn default_ttl() -> Duration {
    Duration::from_secs(300)
}

impl EarConfig {
    /// Checks the ttl's range.
    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.ttl >= Duration::from_secs(1) && self.ttl <= MAX_TTL,
            "[ear] ttl must be 1s to 1h, not {}",
            humantime::format_duration(self.ttl)
        );
        Ok(())
    }
}

/// A relying party's nonce: base64url text of 8 to 64 bytes (EAT's `eat_nonce`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EarNonce(String);

impl EarNonce {
    /// Parses `?nonce=`: base64url (padding optional) of 8 to 64 bytes.
    pub fn parse(s: &str) -> Result<EarNonce, String> {
        if s.len() > 88 {
            return Err(format!("nonce is {} characters, limit 88", s.len()));
        }
        let bytes = B64URL
            .decode(s.trim_end_matches('='))
            .map_err(|e| format!("nonce must be base64url: {e}"))?;
        if !(8..=64).contains(&bytes.len()) {
            return Err(format!(
                "nonce decodes to {} bytes; EAT nonces are 8 to 64 bytes",
                bytes.len()
            ));
        }
        Ok(EarNonce(B64URL.encode(bytes)))
    }
}

/// One attester's appraisal.
#[derive(Debug, Clone)]
pub struct Submod {
    /// AR4SI tier: `affirming`, `warning`, `contraindicated` or `none`.
    pub status: &'static str,
    /// AR4SI trustworthiness claims set from the reasons (name to value).
    pub vector: BTreeMap<&'static str, i8>,
    /// Provenant's own claims about this attester (reasons, ids).
    pub claims: Value,
}

/// AR4SI tier of a badge colour.
pub fn tier(status: Status) -> &'static str {
    match status {
        Status::Pass => "affirming",
        Status::Warn => "warning",
        Status::Fail => "contraindicated",
        Status::Unknown => "none",
    }
}

fn severity(tier: &str) -> u8 {
    match tier {
        "affirming" => 1,
        "warning" => 2,
        "contraindicated" => 3,
        _ => 0,
    }
}

fn reasons_json(reasons: &[Reason]) -> Value {
    Value::Array(
        reasons
            .iter()
            .map(|r| json!({"code": r.code.as_str(), "status": r.status, "detail": r.detail}))
            .collect(),
    )
}

/// The worst AR4SI value the reasons give for each claim (higher is worse within
/// the affirming, warning and contraindicated bands), starting from `base`.
fn vector(
    base: &[(&'static str, i8)],
    reasons: &[Reason],
    rule: impl Fn(ReasonCode) -> Option<(&'static str, i8)>,
) -> BTreeMap<&'static str, i8> {
    let mut v: BTreeMap<&'static str, i8> = base.iter().copied().collect();
    for r in reasons {
        if let Some((claim, value)) = rule(r.code) {
            let e = v.entry(claim).or_insert(value);
            *e = (*e).max(value);
        }
    }
    v
}

/// The node's appraisal: its verdict at `tier`.
pub fn node_submod(agent_id: &str, tier_: Tier, verdict: &Verdict) -> Submod {
    use ReasonCode as C;
    // Hardware claims only where hardware vouches (a verified TDX quote).
    let tdx = tier_ == Tier::Tdx;
    let mut base = vec![
        ("instance-identity", 2),
        ("executables", 2),
        ("configuration", 2),
    ];
    if tdx {
        base.extend([("hardware", 2), ("runtime-opaque", 2)]);
    }
    let v = vector(&base, &verdict.reasons, |c| match c {
        C::Compromised | C::Revoked => Some(("instance-identity", 96)),
        C::BinaryChanged
        | C::EbpfChanged
        | C::MrtdNotAttested
        | C::MeasurementNotAllowed
        | C::Rtmr3Mismatch
        | C::Withdrawn
        | C::RequiredProgramMissing
        | C::RequiredProgramUnpinned
        | C::RequiredProgramChanged => Some(("executables", 96)),
        C::MrtdUnpinned | C::RtmrsUnpinned => Some(("executables", 33)),
        C::PolicyChanged => Some(("configuration", 96)),
        C::LsmInactive | C::MigratableTd | C::ServTdExt | C::ServiceTdBound => {
            Some(("configuration", 32))
        }
        C::DebugTd if tdx => Some(("runtime-opaque", 96)),
        C::TcbStatus | C::CollateralExpired | C::PckExpired | C::QuoteStale if tdx => {
            Some(("hardware", 32))
        }
        _ => None,
    });
    Submod {
        status: tier(verdict.status),
        vector: v,
        claims: json!({"agent_id": agent_id, "tier": tier_.as_str(), "reasons": reasons_json(&verdict.reasons)}),
    }
}

/// A workload's appraisal: its badge (which already carries the node's standing).
pub fn workload_submod(b: &WorkloadBadge) -> Submod {
    use ReasonCode as C;
    let base: &[(&'static str, i8)] = if b.status == Status::Pass {
        &[("executables", 2)]
    } else {
        &[]
    };
    let v = vector(base, &b.reasons, |c| match c {
        C::ImageUnsigned
        | C::ImageSignatureInvalid
        | C::ImageDigestMismatch
        | C::ImageIdentityMismatch
        | C::ImageNotCovered => Some(("executables", 96)),
        C::ImageNoDigest | C::ImageUnverifiable | C::ImageKeySigned => Some(("executables", 33)),
        _ => None,
    });
    Submod {
        status: tier(b.status),
        vector: v,
        claims: json!({
            "container_id": b.id,
            "image": b.image,
            "image_digest": b.image_digest,
            "signer": b.signer,
            "reasons": reasons_json(&b.reasons),
        }),
    }
}

/// Signs EARs with the `[ear]` key.
pub struct EarIssuer {
    key: SigningKey,
    kid: String,
    jwk: Value,
    ttl: Duration,
}

impl std::fmt::Debug for EarIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        f.debug_struct("EarIssuer")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl EarIssuer {
    /// Loads `[ear] signing_key_file` (PKCS#8 PEM, P-256, mode 0600).
    pub fn load(cfg: &EarConfig) -> anyhow::Result<EarIssuer> {
        let shown = cfg.signing_key_file.display();
        let pem = provenant_base::fsutil::read_secret(&cfg.signing_key_file, MAX_KEY_BYTES)
            .map_err(|e| anyhow::anyhow!("[ear] signing_key_file: {e}"))?;
        let pem = std::str::from_utf8(&pem)
            .map_err(|_| anyhow::anyhow!("[ear] signing_key_file {shown}: not PEM text"))?;
        let key = SigningKey::from_pkcs8_pem(pem).map_err(|e| {
            anyhow::anyhow!("[ear] signing_key_file {shown}: not a PKCS#8 P-256 private key ({e})")
        })?;
        Ok(EarIssuer::new(key, cfg.ttl))
    }

    /// An issuer for `key`, whose tokens live `ttl`.
    pub fn new(key: SigningKey, ttl: Duration) -> EarIssuer {
        let point = key.verifying_key().to_encoded_point(false);
        // An uncompressed point of a valid key has both coordinates.
        let (x, y) = (
            point.x().map(|c| B64URL.encode(c)).unwrap_or_default(),
            point.y().map(|c| B64URL.encode(c)).unwrap_or_default(),
        );
        // RFC 7638 thumbprint: the required members, lexicographic, no spaces.
        let canonical = format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#);
        let kid = B64URL.encode(Sha256::digest(canonical.as_bytes()));
        let jwk = json!({"kty": "EC", "crv": "P-256", "x": x, "y": y, "alg": "ES256", "use": "sig", "kid": kid});
        EarIssuer { key, kid, jwk, ttl }
    }

    /// `/.well-known/jwks.json`.
    pub fn jwks(&self) -> Value {
        json!({ "keys": [self.jwk] })
    }

    /// The key id tokens name (the JWK thumbprint).
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// A signed EAR (compact JWS) issued at `now` over `submods`, naming the trust
    /// policy (`policy_id`) and echoing the relying party's nonce.
    pub fn issue(
        &self,
        now: UnixNanos,
        nonce: Option<&EarNonce>,
        policy_id: &str,
        submods: &[(String, Submod)],
    ) -> String {
        let iat = now.secs().0;
        let exp = iat.saturating_add(i64::try_from(self.ttl.as_secs()).unwrap_or(i64::MAX));
        let worst = submods
            .iter()
            .map(|(_, s)| s.status)
            .max_by_key(|s| severity(s))
            .unwrap_or("none");
        let mut subs = serde_json::Map::new();
        for (name, s) in submods {
            let mut a = json!({
                "ear_status": s.status,
                "ear_appraisal_policy_ids": [policy_id],
                "ear_verifier_claims": { "provenant": s.claims },
            });
            if !s.vector.is_empty() {
                a["ear_trustworthiness_vector"] = json!(s.vector);
            }
            subs.insert(name.clone(), a);
        }
        let mut claims = json!({
            "eat_profile": EAR_PROFILE,
            "iat": iat,
            "exp": exp,
            "ear_verifier_id": {
                "developer": "https://provenant.dev",
                "build": concat!("provenant cp-verifier ", env!("CARGO_PKG_VERSION")),
            },
            "ear_status": worst,
            "submods": subs,
        });
        if let Some(n) = nonce {
            claims["eat_nonce"] = json!(n.0);
        }
        let header = json!({"alg": "ES256", "typ": "JWT", "kid": self.kid});
        let input = format!(
            "{}.{}",
            B64URL.encode(header.to_string()),
            B64URL.encode(claims.to_string())
        );
        let sig: Signature = self.key.sign(input.as_bytes());
        format!("{input}.{}", B64URL.encode(sig.to_bytes()))
    }
}

/// `sha256:<hex>` of the trust policy as the control plane applies it: the
/// `ear_appraisal_policy_ids` entry, so a relying party can tell which policy judged.
pub fn policy_id(policy: &impl serde::Serialize) -> String {
    let bytes = serde_json::to_vec(policy).unwrap_or_default();
    format!(
        "provenant:policy:sha256:{}",
        hex::encode(Sha256::digest(bytes))
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::ecdsa::{signature::Verifier, VerifyingKey};

    fn issuer() -> EarIssuer {
        EarIssuer::new(
            SigningKey::from_slice(&[7; 32]).unwrap(),
            Duration::from_secs(300),
        )
    }

    fn part(tok: &str, i: usize) -> Value {
        serde_json::from_slice(&B64URL.decode(tok.split('.').nth(i).unwrap()).unwrap()).unwrap()
    }

    #[test]
    fn nonces_are_base64url_of_8_to_64_bytes() {
        assert!(EarNonce::parse("AAAAAAAAAAA").is_ok()); // 8 bytes
        assert!(EarNonce::parse("AAAAAAAAAAA=").is_ok());
        assert!(EarNonce::parse("AAAAAAAAAA").is_err()); // 7 bytes
        assert!(EarNonce::parse(&"A".repeat(86)).is_ok()); // 64 bytes
        assert!(EarNonce::parse(&"A".repeat(88)).is_err()); // 66 bytes
        assert!(EarNonce::parse("not base64!").is_err());
        assert!(EarNonce::parse(&"A".repeat(10_000)).is_err());
    }

    #[test]
    fn a_token_is_signed_bounded_in_time_and_worst_status_wins() {
        let i = issuer();
        let verdict = Verdict::from_reasons(vec![Reason::new(
            ReasonCode::SoftwareTier,
            Status::Warn,
            "software",
        )]);
        let node = node_submod("n1", Tier::Software, &verdict);
        let n = EarNonce::parse("AAECAwQFBgc").unwrap();
        let tok = i.issue(
            UnixNanos(1_700_000_000_000_000_000),
            Some(&n),
            "p",
            &[("node".into(), node)],
        );
        let h = part(&tok, 0);
        assert_eq!(h["alg"], "ES256");
        assert_eq!(h["kid"], i.kid());
        let c = part(&tok, 1);
        assert_eq!(c["iat"], 1_700_000_000);
        assert_eq!(c["exp"], 1_700_000_300);
        assert_eq!(c["eat_nonce"], "AAECAwQFBgc");
        assert_eq!(c["ear_status"], "warning");
        assert_eq!(c["submods"]["node"]["ear_status"], "warning");
        // Software tier: no hardware claim is made.
        assert!(c["submods"]["node"]["ear_trustworthiness_vector"]
            .get("hardware")
            .is_none());
        assert_eq!(
            c["submods"]["node"]["ear_verifier_claims"]["provenant"]["reasons"][0]["code"],
            "SoftwareTier"
        );
        // The signature verifies under the JWKS key, and not after a byte changes.
        let (input, sig) = tok.rsplit_once('.').unwrap();
        let sig = Signature::from_slice(&B64URL.decode(sig).unwrap()).unwrap();
        let vk: VerifyingKey = *i.key.verifying_key();
        vk.verify(input.as_bytes(), &sig).unwrap();
        let mut bad = input.as_bytes().to_vec();
        bad[5] ^= 1;
        assert!(vk.verify(&bad, &sig).is_err());
    }

    #[test]
    fn config_is_bounded_and_the_key_file_must_be_private() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("ear.key");
        let cfg = |ttl| EarConfig {
            signing_key_file: f.clone(),
            ttl,
        };
        assert!(cfg(Duration::from_secs(0)).validate().is_err());
        assert!(cfg(Duration::from_secs(7200)).validate().is_err());
        assert!(cfg(Duration::from_secs(300)).validate().is_ok());
        std::fs::write(&f, "not a key").unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = EarIssuer::load(&cfg(Duration::from_secs(300))).unwrap_err();
        assert!(e.to_string().contains("signing_key_file"), "{e}");
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).unwrap();
        let e = EarIssuer::load(&cfg(Duration::from_secs(300))).unwrap_err();
        assert!(e.to_string().contains("not a PKCS#8 P-256"), "{e}");
    }

    #[test]
    fn reasons_set_the_trust_vector() {
        let verdict = Verdict::from_reasons(vec![
            Reason::new(ReasonCode::BinaryChanged, Status::Fail, "x"),
            Reason::new(ReasonCode::TcbStatus, Status::Warn, "y"),
        ]);
        let s = node_submod("n1", Tier::Tdx, &verdict);
        assert_eq!(s.status, "contraindicated");
        assert_eq!(s.vector["executables"], 96);
        assert_eq!(s.vector["hardware"], 32);
        assert_eq!(s.vector["runtime-opaque"], 2);
        assert_eq!(s.vector["instance-identity"], 2);
    }
}
