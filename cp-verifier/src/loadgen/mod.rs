//! `cp-verifier loadgen`: a load generator an operator points at a control plane
//! (theirs, or the benchmark's) to learn how many verified pulses per second it takes
//! and at what latency.
//!
//! It plays `agents` software-tier agents. Their ed25519 keys are derived from a
//! seed, so the same `--seed` gives the same keys on every run: print their
//! `[[enrollment.keys]]` once (`--print-enrollment`), add them to the control plane's
//! config (SIGHUP reloads it), and every later run registers the same agents. Each
//! agent registers through the public API (`/api/v1/challenge`, `/api/v1/register`),
//! then its whole chain of pulses is signed ahead (so the generator's own signing
//! does not share the clock with the measurement) and sent, one at a time per agent,
//! every agent concurrently. Several control-plane URLs are replicas: agent `i`
//! talks to URL `i mod n` (a sticky balancer) and moves to the next URL when a
//! request fails in transport (see [`fire`]).
//!
//! Pulses carry the time they were signed; keep a run shorter than the control
//! plane's `max_clock_skew` (the generator refuses plans over
//! [`MAX_PULSES`] pulses in all, a few minutes at any rate this code reaches).
//!
//! The generator is a client like any agent: it needs no access to the control
//! plane's store or config, only `allow_software_tier = true` and the enrollment.

mod fire;

pub use fire::{fire, Latencies, LoadReport, Outcome, MAX_ATTEMPTS};

use std::time::Duration;

use ed25519_dalek::pkcs8::EncodePublicKey;
use ed25519_dalek::Signer as _;
use evidence::api::{Challenge, RegisterEvidence, RegisterRequest, RegisterResponse};
use evidence::report::HexBytes;
use evidence::{
    Digest32, Envelope, FileMeasurement, Measurements, Platform, PolicyMeasurement, PublicKey,
    Pulse, Report, TeeKind, Tier, PULSE_PAYLOAD_TYPE, REPORT_PAYLOAD_TYPE,
};
use sha2::{Digest, Sha256};

/// Most pulses one run signs ahead (about 600 MB of bodies at the smallest size).
pub const MAX_PULSES: usize = 1_000_000;
/// Most agents one run plays.
pub const MAX_AGENTS: usize = 100_000;

/// Why a load run could not start or finish.
#[derive(Debug, thiserror::Error)]
pub enum LoadgenError {
    /// The plan is outside the generator's bounds.
    #[error("bad plan: {0}")]
    Plan(String),
    /// A request failed in transport (connection refused, TLS, timeout).
    #[error("{url}: {detail}")]
    Transport {
        /// Where.
        url: String,
        /// What failed.
        detail: String,
    },
    /// The control plane refused a registration or challenge.
    #[error("{url} answered {status}: {body}")]
    Refused {
        /// Where.
        url: String,
        /// HTTP status.
        status: u16,
        /// The error body, truncated.
        body: String,
    },
    /// Signing or encoding failed.
    #[error("cannot sign: {0}")]
    Sign(String),
}

/// One simulated agent: its id and its seed-derived key.
pub struct LoadAgent {
    /// `"{prefix}-{index}"`.
    pub id: String,
    /// The heartbeat interval its report declares (the control plane's
    /// `heartbeat_interval` is the most it allows); 30 s unless changed.
    pub interval_ms: u64,
    key: ed25519_dalek::SigningKey,
    public: PublicKey,
}

impl std::fmt::Debug for LoadAgent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the secret key.
        f.debug_struct("LoadAgent")
            .field("id", &self.id)
            .field("fingerprint", &self.public.fingerprint_str())
            .finish()
    }
}

impl LoadAgent {
    /// Agent `index` of the fleet `seed` names: key = SHA-256 of a label, the seed
    /// and the index (a test key, public by construction: never use it elsewhere).
    pub fn derive(seed: &str, prefix: &str, index: usize) -> Result<LoadAgent, LoadgenError> {
        let mut h = Sha256::new();
        h.update(b"provenant-loadgen/v1\0");
        h.update(seed.as_bytes());
        h.update([0]);
        h.update(index.to_be_bytes());
        let key = ed25519_dalek::SigningKey::from_bytes(&h.finalize().into());
        let der = key
            .verifying_key()
            .to_public_key_der()
            .map_err(|e| LoadgenError::Sign(e.to_string()))?;
        let public = PublicKey::from_spki_der(der.as_bytes())
            .map_err(|e| LoadgenError::Sign(e.to_string()))?;
        Ok(LoadAgent {
            id: format!("{prefix}-{index}"),
            interval_ms: 30_000,
            key,
            public,
        })
    }

    /// The agents of a plan.
    pub fn fleet(seed: &str, prefix: &str, n: usize) -> Result<Vec<LoadAgent>, LoadgenError> {
        if n == 0 || n > MAX_AGENTS {
            return Err(LoadgenError::Plan(format!(
                "agents must be 1..={MAX_AGENTS}, not {n}"
            )));
        }
        (0..n).map(|i| LoadAgent::derive(seed, prefix, i)).collect()
    }

    /// The heartbeat (and report) key.
    pub fn public_key(&self) -> &PublicKey {
        &self.public
    }

    /// Signs `value` as a DSSE envelope of `payload_type`.
    pub fn sign<T: serde::Serialize>(
        &self,
        payload_type: &str,
        value: &T,
    ) -> Result<Envelope, LoadgenError> {
        let payload = serde_json::to_vec(value).map_err(|e| LoadgenError::Sign(e.to_string()))?;
        let keyid = self.public.fingerprint();
        Envelope::sign(payload_type, payload, &keyid, |m| {
            Ok::<_, std::convert::Infallible>(self.key.sign(m).to_bytes().to_vec())
        })
        .map_err(|e| LoadgenError::Sign(e.to_string()))
    }

    /// The report registering this agent against challenge `nonce`.
    pub fn report(&self, nonce: Digest32, now_ns: u64) -> Result<Envelope, LoadgenError> {
        let report = Report {
            version: 1,
            agent_id: self.id.clone(),
            partition: "default".into(),
            tier: Tier::Software,
            issued_at_ns: now_ns,
            nonce,
            sequence: 0,
            previous_pulse: None,
            heartbeat_key: self.public.clone(),
            heartbeat_interval_ms: self.interval_ms,
            agent_version: "loadgen".into(),
            measurements: measurements(),
        };
        self.sign(REPORT_PAYLOAD_TYPE, &report)
    }

    /// `n` pulses continuing the chain at `head` (the registration's `chain_head`),
    /// sequence 1..=n, each naming the digest of the one before, as JSON bodies.
    /// The first carries the full measurements, the rest only their digest, as an
    /// agent at steady state sends them.
    pub fn chain(
        &self,
        head: Digest32,
        n: usize,
        now_ns: u64,
    ) -> Result<Vec<Vec<u8>>, LoadgenError> {
        let m = measurements();
        let digest = m.digest().map_err(|e| LoadgenError::Sign(e.to_string()))?;
        let mut prev = head;
        let mut out = Vec::with_capacity(n);
        for seq in 1..=u64::try_from(n).unwrap_or(u64::MAX) {
            let p = Pulse {
                version: 1,
                agent_id: self.id.clone(),
                partition: "default".into(),
                sequence: seq,
                issued_at_ns: now_ns,
                nonce: HexBytes(rand::random()),
                previous: prev,
                measurements: (seq == 1).then(|| m.clone()),
                measurements_digest: (seq != 1).then_some(digest),
                health: None,
            };
            let env = self.sign(PULSE_PAYLOAD_TYPE, &p)?;
            prev = HexBytes(env.digest());
            out.push(env.to_json());
        }
        Ok(out)
    }

    /// Registers through the public API at `base`; returns the chain head.
    pub async fn register(
        &self,
        client: &reqwest::Client,
        base: &str,
        now_ns: u64,
    ) -> Result<Digest32, LoadgenError> {
        let url = format!("{base}/api/v1/challenge");
        let ch: Challenge = read_json(client.get(&url), &url).await?;
        let req = RegisterRequest {
            envelope: self.report(ch.nonce, now_ns)?,
            evidence: RegisterEvidence::default(),
        };
        let url = format!("{base}/api/v1/register");
        let body = serde_json::to_vec(&req).map_err(|e| LoadgenError::Sign(e.to_string()))?;
        let r: RegisterResponse = read_json(
            client
                .post(&url)
                .header("content-type", "application/json")
                .body(body),
            &url,
        )
        .await?;
        Ok(r.chain_head)
    }
}

/// An in-process control plane's config (benchmarks, tests) with its data in `dir`,
/// enrolling `agents` by key and without registration rate limits (every simulated
/// agent registers from one address at once).
pub fn in_process_config(dir: &std::path::Path, agents: &[LoadAgent]) -> crate::config::CpConfig {
    let mut cfg = crate::config::CpConfig::with_data_dir(dir);
    cfg.limits.challenge_rate = 1e9;
    cfg.limits.challenge_burst = u32::MAX;
    cfg.limits.register_rate = 1e9;
    cfg.limits.register_burst = u32::MAX;
    cfg.enrollment.keys = agents
        .iter()
        .map(|a| crate::config::EnrolledKey {
            agent_id: a.id.clone(),
            fingerprint: a.public.fingerprint(),
        })
        .collect();
    cfg
}

/// The TOML enrolling `agents` by key fingerprint.
pub fn enrollment_toml(agents: &[LoadAgent]) -> String {
    let mut s = String::new();
    for a in agents {
        s.push_str(&format!(
            "[[enrollment.keys]]\nagent_id = \"{}\"\nfingerprint = \"{}\"\n\n",
            a.id,
            a.public.fingerprint_str()
        ));
    }
    s
}

/// What every simulated agent reports: a small software-tier measurement set.
pub fn measurements() -> Measurements {
    Measurements {
        agent_binary: HexBytes([1; 32]),
        policy: PolicyMeasurement::from_files(
            (0..4u8)
                .map(|i| FileMeasurement {
                    path: format!("/etc/provenant/policy-{i}.toml"),
                    sha256: HexBytes([i; 32]),
                })
                .collect(),
        ),
        platform: Platform {
            tee: TeeKind::None,
            tpm_present: false,
            kernel_cmdline_sha256: Some(HexBytes([9; 32])),
            lockdown: None,
        },
        workloads: None,
        ebpf: None,
    }
}

/// Most bytes of an error body quoted back.
const MAX_ERROR_QUOTE: usize = 512;
/// Most bytes of a challenge or registration answer read.
const MAX_ANSWER: usize = 64 * 1024;

async fn read_json<T: serde::de::DeserializeOwned>(
    req: reqwest::RequestBuilder,
    url: &str,
) -> Result<T, LoadgenError> {
    let transport = |e: reqwest::Error| LoadgenError::Transport {
        url: url.to_string(),
        detail: e.to_string(),
    };
    let r = req.send().await.map_err(transport)?;
    let status = r.status().as_u16();
    let body = r.bytes().await.map_err(transport)?;
    let quoted = || String::from_utf8_lossy(&body[..body.len().min(MAX_ERROR_QUOTE)]).into_owned();
    if status != 200 || body.len() > MAX_ANSWER {
        return Err(LoadgenError::Refused {
            url: url.to_string(),
            status,
            body: quoted(),
        });
    }
    serde_json::from_slice(&body).map_err(|e| LoadgenError::Refused {
        url: url.to_string(),
        status,
        body: format!("{e}: {}", quoted()),
    })
}

/// A client for the generator: connection pool sized to the agents, bounded
/// timeouts, and an extra trusted root for a control plane with its own CA.
pub fn client(agents: usize, ca_pem: Option<&[u8]>) -> Result<reqwest::Client, LoadgenError> {
    let mut b = reqwest::Client::builder()
        .pool_max_idle_per_host(agents)
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(30));
    if let Some(pem) = ca_pem {
        let cert = reqwest::Certificate::from_pem(pem)
            .map_err(|e| LoadgenError::Plan(format!("CA file: {e}")))?;
        b = b.add_root_certificate(cert);
    }
    b.build().map_err(|e| LoadgenError::Plan(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_follow_the_seed_and_index() {
        let a = LoadAgent::derive("s", "lg", 0).unwrap();
        let b = LoadAgent::derive("s", "lg", 0).unwrap();
        let c = LoadAgent::derive("s", "lg", 1).unwrap();
        let d = LoadAgent::derive("t", "lg", 0).unwrap();
        assert_eq!(a.public_key().fingerprint(), b.public_key().fingerprint());
        assert_ne!(a.public_key().fingerprint(), c.public_key().fingerprint());
        assert_ne!(a.public_key().fingerprint(), d.public_key().fingerprint());
        assert!(!format!("{a:?}").contains("key:"), "{a:?}");
        assert!(LoadAgent::fleet("s", "lg", 0).is_err());
    }

    #[test]
    fn a_chain_verifies_and_links() {
        let a = LoadAgent::derive("s", "lg", 3).unwrap();
        let head = HexBytes([7; 32]);
        let chain = a.chain(head, 3, 1).unwrap();
        let mut prev = head;
        for (seq, b) in (1u64..).zip(&chain) {
            let env = Envelope::from_json(b).unwrap();
            let p = env.open::<Pulse>(a.public_key()).unwrap().into_value();
            assert_eq!(p.sequence, seq);
            assert_eq!(p.previous, prev);
            assert_eq!(p.measurements.is_some(), seq == 1);
            prev = HexBytes(env.digest());
        }
        let toml = enrollment_toml(std::slice::from_ref(&a));
        assert!(toml.contains("agent_id = \"lg-3\""), "{toml}");
    }
}
