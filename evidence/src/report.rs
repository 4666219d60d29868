//! The two statements an agent makes: a [`Report`] (at registration, bound to the
//! platform) and a [`Pulse`] (every heartbeat, signed by the key the report names).

use serde::{Deserialize, Serialize};

use crate::dsse::Payload;
use crate::error::EvidenceError;
use crate::keys::PublicKey;
use crate::limits::*;

mod health;
mod inventory;
pub use health::{ClockSync, DiskFree, Health, MAX_HEALTH_MOUNTS, MAX_LAST_ERROR_LEN};
pub use inventory::{
    BpfProgram, CollectorState, Ebpf, EbpfExtra, Inventory, InventoryItem, Workload, Workloads,
};

/// The DSSE `payloadType` of a [`Report`].
pub const REPORT_PAYLOAD_TYPE: &str = "application/vnd.provenant.report.v1+json";
/// The DSSE `payloadType` of a [`Pulse`].
pub const PULSE_PAYLOAD_TYPE: &str = "application/vnd.provenant.pulse.v1+json";

/// Fixed-size bytes carried as lowercase hex.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HexBytes<const N: usize>(pub [u8; N]);

/// A SHA-256 digest.
pub type Digest32 = HexBytes<32>;
/// A 128-bit nonce.
pub type Nonce16 = HexBytes<16>;

impl<const N: usize> HexBytes<N> {
    /// Lowercase hex.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
    /// Exactly `2 * N` hex digits, optionally after `sha256:`.
    pub fn from_hex(s: &str) -> Result<Self, EvidenceError> {
        let s = s.strip_prefix("sha256:").unwrap_or(s);
        if s.len() != 2 * N {
            return Err(EvidenceError::InvalidField {
                field: "hex",
                detail: format!("expected {} hex digits, got {}", 2 * N, s.len()),
            });
        }
        let mut out = [0u8; N];
        hex::decode_to_slice(s, &mut out).map_err(|e| EvidenceError::InvalidField {
            field: "hex",
            detail: e.to_string(),
        })?;
        Ok(HexBytes(out))
    }
}

impl<const N: usize> std::fmt::Debug for HexBytes<N> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_hex())
    }
}
impl<const N: usize> std::fmt::Display for HexBytes<N> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_hex())
    }
}
impl<const N: usize> Serialize for HexBytes<N> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}
impl<'de, const N: usize> Deserialize<'de> for HexBytes<N> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        HexBytes::from_hex(&s).map_err(serde::de::Error::custom)
    }
}

/// How strongly the report is bound to the platform.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Tier {
    /// A DCAP quote whose REPORTDATA binds the report.
    Tdx,
    /// A TDREPORT only (no quote): weaker, verifiable only on the same platform.
    TdxReport,
    /// Signed by a TPM-resident key.
    Tpm,
    /// Signed by the node's software identity key. No hardware root of trust.
    Software,
}

impl Tier {
    /// The tier as it is spelled on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Tdx => "tdx",
            Tier::TdxReport => "tdx-report",
            Tier::Tpm => "tpm",
            Tier::Software => "software",
        }
    }
}

/// Which trusted execution environment the agent detected.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TeeKind {
    /// Intel TDX.
    Tdx,
    /// None detected.
    None,
}

/// SHA-256 of one measured file.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileMeasurement {
    /// The file's path.
    pub path: String,
    /// SHA-256 of its contents.
    pub sha256: Digest32,
}

/// The policy/config files, and one digest over the sorted (path, hash) list.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyMeasurement {
    /// [`PolicyMeasurement::digest_of`] the files.
    pub digest: Digest32,
    /// The files, sorted by path. A report always carries them; a pulse leaves them
    /// out (empty, and absent on the wire) when `digest` is the one it last sent in
    /// full, and the control plane restores them from its stored list
    /// ([`PolicyMeasurement::omitted`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<FileMeasurement>,
}

/// Facts about the platform the agent runs on.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Platform {
    /// The TEE the agent detected.
    pub tee: TeeKind,
    /// Whether a TPM device is present.
    pub tpm_present: bool,
    /// SHA-256 of /proc/cmdline; absent where it cannot be read.
    pub kernel_cmdline_sha256: Option<Digest32>,
    /// Kernel lockdown mode (`none`, `integrity`, `confidentiality`) where exposed.
    #[serde(default)]
    pub lockdown: Option<String>,
}

/// Everything the agent measured. New collectors add optional fields here.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Measurements {
    /// SHA-256 of the running agent binary (/proc/self/exe).
    pub agent_binary: Digest32,
    /// The measured policy and config files.
    pub policy: PolicyMeasurement,
    /// Facts about the platform.
    pub platform: Platform,
    /// Containers from podman; `None` when the collector is not configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workloads: Option<Workloads>,
    /// Loaded eBPF programs; `None` when the collector is not configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ebpf: Option<Ebpf>,
}

impl Measurements {
    /// SHA-256 of these measurements with every list reduced to its digest (the
    /// policy file list, the workloads and eBPF items left out), as JSON: it names the
    /// agent binary, the platform facts and each list's state, reason and digest, so
    /// equal digests mean equal measurements. A steady-state pulse carries this alone.
    /// New fields of `Measurements` are covered without further code. `Err` only if
    /// serialisation failed, which these types cannot do; callers treat it as
    /// "cannot compare", never as equal.
    pub fn digest(&self) -> Result<Digest32, EvidenceError> {
        use sha2::{Digest, Sha256};
        let mut summary = self.clone();
        summary.policy.files.clear();
        if let Some(w) = summary.workloads.as_mut() {
            w.items = None;
        }
        if let Some(e) = summary.ebpf.as_mut() {
            e.items = None;
        }
        // Deterministic: our own structs (no maps, no floats), fields in declaration
        // order.
        let json = serde_json::to_vec(&summary).map_err(|e| EvidenceError::Json {
            what: "measurements",
            detail: e.to_string(),
        })?;
        Ok(HexBytes(Sha256::digest(&json).into()))
    }

    fn validate(&self) -> Result<(), EvidenceError> {
        if self.policy.files.len() > MAX_POLICY_FILES {
            return Err(EvidenceError::InvalidField {
                field: "measurements.policy.files",
                detail: format!(
                    "{} files, limit {MAX_POLICY_FILES}",
                    self.policy.files.len()
                ),
            });
        }
        for f in &self.policy.files {
            check_text("measurements.policy.files.path", &f.path, MAX_PATH_LEN)?;
        }
        if let Some(l) = &self.platform.lockdown {
            check_text("measurements.platform.lockdown", l, MAX_TEXT_LEN)?;
        }
        if let Some(w) = &self.workloads {
            w.validate()?;
        }
        if let Some(e) = &self.ebpf {
            e.validate()?;
        }
        Ok(())
    }
}

/// The registration statement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    /// Format version; 1.
    pub version: u32,
    /// The agent's id, as enrolled.
    pub agent_id: String,
    /// The agent's partition (a grouping label, `default` unless configured).
    pub partition: String,
    /// How the report is bound to the platform.
    pub tier: Tier,
    /// When the agent made the report, UTC nanoseconds since the Unix epoch.
    pub issued_at_ns: u64,
    /// The control plane's challenge, echoed so a report cannot be replayed.
    pub nonce: Digest32,
    /// Sequence number of the last pulse the agent sent before this report (0 if none).
    pub sequence: u64,
    /// Digest of the last pulse the agent sent, if any: lets the control plane see
    /// that a re-registering agent continues the same history.
    pub previous_pulse: Option<Digest32>,
    /// The key that signs this agent's pulses. For the `tdx` tier the quote binds it.
    pub heartbeat_key: PublicKey,
    /// How often the agent will send pulses, in milliseconds.
    pub heartbeat_interval_ms: u64,
    /// The agent's software version.
    pub agent_version: String,
    /// Everything the agent measured, lists in full.
    pub measurements: Measurements,
}

/// A signed heartbeat.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pulse {
    /// Format version; 1. The signed payload type names it already
    /// ([`PULSE_PAYLOAD_TYPE`], `..pulse.v1+json`), so a version 1 pulse leaves the
    /// field out (16 bytes of every envelope); a pulse that carries it (agents before
    /// this wire change) must say 1.
    #[serde(default = "pulse_v1", skip_serializing_if = "is_pulse_v1")]
    pub version: u32,
    /// The agent's id, as registered.
    pub agent_id: String,
    /// The partition it registered in (the signed-heartbeat PRD names it among the
    /// pulse's data points). The control plane refuses a pulse that names another.
    pub partition: String,
    /// 1 for the first pulse after registration, then +1 each pulse.
    pub sequence: u64,
    /// When the agent made the pulse, UTC nanoseconds since the Unix epoch.
    pub issued_at_ns: u64,
    /// Fresh random 128 bits per pulse.
    pub nonce: Nonce16,
    /// Digest of the previous pulse envelope, or of the registration report envelope
    /// for the first pulse: a hash chain back to the registration.
    pub previous: Digest32,
    /// Everything the agent measured; lists the control plane has only by digest.
    /// Absent at steady state, when nothing changed since the last accepted pulse:
    /// `measurements_digest` then says what the control plane must already hold.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub measurements: Option<Measurements>,
    /// [`Measurements::digest`] of the full measurements, in place of them when
    /// nothing changed. When both are present the control plane checks they agree.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub measurements_digest: Option<Digest32>,
    /// The node's health (the agent sends it on the first pulse after a
    /// registration, then every few pulses and whenever its clock state or last
    /// error changed); absent: the last one stands.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<Health>,
}

fn pulse_v1() -> u32 {
    1
}

// serde's skip_serializing_if hands a reference.
#[allow(clippy::trivially_copy_pass_by_ref)]
fn is_pulse_v1(v: &u32) -> bool {
    *v == 1
}

pub(crate) fn check_id(field: &'static str, s: &str) -> Result<(), EvidenceError> {
    let ok = !s.is_empty()
        && s.len() <= MAX_ID_LEN
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b':'));
    if ok {
        Ok(())
    } else {
        Err(EvidenceError::InvalidField {
            field,
            detail: format!("must be 1..={MAX_ID_LEN} characters of [A-Za-z0-9._:-]"),
        })
    }
}

fn check_opt_text(field: &'static str, s: Option<&str>) -> Result<(), EvidenceError> {
    s.map_or(Ok(()), |s| check_text(field, s, MAX_TEXT_LEN))
}

fn too_many(field: &'static str, n: usize, max: usize) -> EvidenceError {
    EvidenceError::InvalidField {
        field,
        detail: format!("{n} entries, limit {max}"),
    }
}

fn check_text(field: &'static str, s: &str, max: usize) -> Result<(), EvidenceError> {
    if s.len() > max || s.chars().any(|c| c.is_control()) {
        return Err(EvidenceError::InvalidField {
            field,
            detail: format!("must be at most {max} bytes with no control characters"),
        });
    }
    Ok(())
}

impl Payload for Report {
    const PAYLOAD_TYPE: &'static str = REPORT_PAYLOAD_TYPE;
    const MAX_BYTES: usize = MAX_PAYLOAD_BYTES;
    fn validate(&self) -> Result<(), EvidenceError> {
        if self.version != 1 {
            return Err(EvidenceError::UnsupportedVersion {
                what: "report",
                got: self.version,
            });
        }
        check_id("agent_id", &self.agent_id)?;
        check_id("partition", &self.partition)?;
        check_text("agent_version", &self.agent_version, MAX_TEXT_LEN)?;
        self.measurements.validate()
    }
}

impl Payload for Pulse {
    const PAYLOAD_TYPE: &'static str = PULSE_PAYLOAD_TYPE;
    const MAX_BYTES: usize = MAX_PULSE_PAYLOAD_BYTES;
    fn validate(&self) -> Result<(), EvidenceError> {
        if self.version != 1 {
            return Err(EvidenceError::UnsupportedVersion {
                what: "pulse",
                got: self.version,
            });
        }
        check_id("agent_id", &self.agent_id)?;
        check_id("partition", &self.partition)?;
        if let Some(h) = &self.health {
            h.validate()?;
        }
        match &self.measurements {
            Some(m) => m.validate(),
            None if self.measurements_digest.is_some() => Ok(()),
            None => Err(EvidenceError::InvalidField {
                field: "measurements",
                detail: "a pulse carries its measurements or their measurements_digest".into(),
            }),
        }
    }
}

impl PolicyMeasurement {
    /// Builds the measurement from (path, hash) pairs: sorts them by path and digests
    /// the list as `path NUL hex(hash) LF` lines, so the digest names every file.
    pub fn from_files(mut files: Vec<FileMeasurement>) -> PolicyMeasurement {
        files.sort_by(|a, b| a.path.cmp(&b.path));
        PolicyMeasurement {
            digest: Self::digest_of(&files),
            files,
        }
    }

    /// SHA-256 over each file's path, NUL, hex SHA-256 and LF, in path order
    /// (whatever order `files` is in).
    pub fn digest_of(files: &[FileMeasurement]) -> Digest32 {
        use sha2::{Digest, Sha256};
        let mut sorted: Vec<&FileMeasurement> = files.iter().collect();
        sorted.sort_by(|a, b| a.path.cmp(&b.path));
        let mut h = Sha256::new();
        for f in sorted {
            h.update(f.path.as_bytes());
            h.update([0]);
            h.update(f.sha256.to_hex().as_bytes());
            h.update(b"\n");
        }
        HexBytes(h.finalize().into())
    }

    /// Whether the file list was left out (a pulse whose digest the control plane
    /// already has): no files, under a digest that is not the empty list's.
    pub fn omitted(&self) -> bool {
        self.files.is_empty() && self.digest != Self::digest_of(&[])
    }

    /// Whether the files hash to the digest.
    pub fn is_consistent(&self) -> bool {
        Self::digest_of(&self.files) == self.digest
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::dsse::Envelope;
    use ed25519_dalek::pkcs8::EncodePublicKey;
    use ed25519_dalek::Signer;

    pub(crate) fn measurements() -> Measurements {
        Measurements {
            agent_binary: HexBytes([1; 32]),
            policy: PolicyMeasurement::from_files(vec![
                FileMeasurement {
                    path: "/etc/b".into(),
                    sha256: HexBytes([2; 32]),
                },
                FileMeasurement {
                    path: "/etc/a".into(),
                    sha256: HexBytes([3; 32]),
                },
            ]),
            platform: Platform {
                tee: TeeKind::None,
                tpm_present: false,
                kernel_cmdline_sha256: Some(HexBytes([4; 32])),
                lockdown: None,
            },
            workloads: None,
            ebpf: None,
        }
    }

    fn pulse() -> Pulse {
        Pulse {
            version: 1,
            agent_id: "node-1".into(),
            partition: "default".into(),
            sequence: 1,
            issued_at_ns: 1_700_000_000_000_000_000,
            nonce: HexBytes([5; 16]),
            previous: HexBytes([6; 32]),
            measurements: Some(measurements()),
            measurements_digest: None,
            health: None,
        }
    }

    fn keypair(seed: u8) -> (ed25519_dalek::SigningKey, PublicKey) {
        let sk = ed25519_dalek::SigningKey::from_bytes(&[seed; 32]);
        let der = sk.verifying_key().to_public_key_der().unwrap();
        (sk, PublicKey::from_spki_der(der.as_bytes()).unwrap())
    }

    fn signed(p: &Pulse, sk: &ed25519_dalek::SigningKey) -> Envelope {
        Envelope::sign::<()>(
            PULSE_PAYLOAD_TYPE,
            serde_json::to_vec(p).unwrap(),
            "",
            |m| Ok(sk.sign(m).to_bytes().to_vec()),
        )
        .unwrap()
    }

    #[test]
    fn policy_digest_is_order_independent_and_path_sensitive() {
        let m = measurements();
        assert_eq!(m.policy.files[0].path, "/etc/a");
        let mut files = m.policy.files.clone();
        files.reverse();
        assert_eq!(
            PolicyMeasurement::from_files(files.clone()).digest,
            m.policy.digest
        );
        files[0].path = "/etc/c".into();
        assert_ne!(PolicyMeasurement::from_files(files).digest, m.policy.digest);
    }

    #[test]
    fn open_verifies_then_decodes() {
        let (sk, pk) = keypair(1);
        let env = signed(&pulse(), &sk);
        let v = env.open::<Pulse>(&pk).unwrap();
        assert_eq!(v.value(), &pulse());
        assert_eq!(v.digest(), env.digest());

        let (_, opk) = keypair(2);
        assert_eq!(env.open::<Pulse>(&opk).unwrap_err().kind(), "BadSignature");
        assert_eq!(
            env.open::<Report>(&pk).unwrap_err().kind(),
            "WrongPayloadType"
        );

        let mut tampered = env.clone();
        tampered.payload[10] ^= 1;
        assert_eq!(
            tampered.open::<Pulse>(&pk).unwrap_err().kind(),
            "BadSignature"
        );
    }

    #[test]
    fn decode_then_verify_binds_the_value_to_its_envelope() {
        let (sk, pk) = keypair(1);
        let (_, opk) = keypair(2);
        let env = signed(&pulse(), &sk);
        let u = env.decode::<Pulse>().unwrap();
        assert_eq!(u.claimed().agent_id, "node-1");
        assert_eq!(u.verify(&opk).unwrap_err().kind(), "BadSignature");
        let v = env.decode::<Pulse>().unwrap().verify(&pk).unwrap();
        assert_eq!(v.value(), &pulse());
        assert_eq!(v.digest(), env.digest());
        let mut tampered = env.clone();
        tampered.signatures[0].sig[0] ^= 1;
        assert_eq!(
            tampered
                .decode::<Pulse>()
                .unwrap()
                .verify(&pk)
                .unwrap_err()
                .kind(),
            "BadSignature"
        );
    }

    #[test]
    fn field_validation() {
        let (sk, pk) = keypair(1);
        let mut p = pulse();
        p.agent_id = "bad id/with slash".into();
        assert_eq!(
            signed(&p, &sk).open::<Pulse>(&pk).unwrap_err().kind(),
            "InvalidField"
        );
        let mut p = pulse();
        p.version = 2;
        assert_eq!(
            signed(&p, &sk).open::<Pulse>(&pk).unwrap_err().kind(),
            "UnsupportedVersion"
        );
        let mut p = pulse();
        if let Some(m) = p.measurements.as_mut() {
            m.policy.files[0].path = "a\nb".into();
        }
        assert_eq!(
            signed(&p, &sk).open::<Pulse>(&pk).unwrap_err().kind(),
            "InvalidField"
        );
        // Neither the measurements nor their digest: refused.
        let mut p = pulse();
        p.measurements = None;
        assert_eq!(
            signed(&p, &sk).open::<Pulse>(&pk).unwrap_err().kind(),
            "InvalidField"
        );
        // The digest alone (steady state): accepted.
        let mut p = pulse();
        p.measurements_digest = Some(p.measurements.take().unwrap().digest().unwrap());
        assert!(signed(&p, &sk).open::<Pulse>(&pk).is_ok());
    }

    /// Every truncated prefix of a valid envelope, and every single-byte corruption,
    /// is refused with a typed error and never panics.
    #[test]
    fn truncations_and_corruptions_never_panic_or_verify() {
        let (sk, pk) = keypair(1);
        let json = signed(&pulse(), &sk).to_json();
        for n in 0..json.len() {
            if let Ok(env) = Envelope::from_json(&json[..n]) {
                assert!(env.open::<Pulse>(&pk).is_err());
            }
        }
        let mut seen_ok = 0;
        for i in (0..json.len()).step_by(3) {
            let mut j = json.clone();
            j[i] = j[i].wrapping_add(1);
            if let Ok(env) = Envelope::from_json(&j) {
                if env.open::<Pulse>(&pk).is_ok() {
                    // Only changes outside the signed bytes (the keyid) may still verify.
                    seen_ok += 1;
                    assert_eq!(env.payload, signed(&pulse(), &sk).payload);
                }
            }
        }
        assert!(seen_ok < 10);
    }

    #[test]
    fn random_bytes_never_panic() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(42);
        for _ in 0..2000 {
            let n = rng.gen_range(0..300);
            let bytes: Vec<u8> = (0..n).map(|_| rng.gen()).collect();
            let _ = Envelope::from_json(&bytes);
        }
    }
}
