//! Named bounds on every length an attacker controls. Each says why it is what it is.

/// Largest DSSE envelope JSON accepted. A report with a few hundred measured files and
/// an X.509 chain is well under this; anything larger is not something we produced.
pub const MAX_ENVELOPE_BYTES: usize = 256 * 1024;

/// Largest decoded payload of an envelope. Base64 grows data by 4/3, so this fits in
/// [`MAX_ENVELOPE_BYTES`] with room for the signatures.
pub const MAX_PAYLOAD_BYTES: usize = 160 * 1024;

/// A pulse is sent every few seconds by every agent; keep its size tight (the design
/// promises a signed header well under 1 KiB plus the measurement digests).
pub const MAX_PULSE_PAYLOAD_BYTES: usize = 64 * 1024;

/// Signatures per envelope. We produce one; allow a few for key rotation.
pub const MAX_SIGNATURES: usize = 4;

/// Largest signature accepted: RSA-8192 is 1024 bytes, the biggest we verify.
pub const MAX_SIGNATURE_BYTES: usize = 1024;

/// Largest `keyid` string.
pub const MAX_KEYID_LEN: usize = 256;

/// Largest `payloadType` string.
pub const MAX_PAYLOAD_TYPE_LEN: usize = 128;

/// Largest SubjectPublicKeyInfo accepted (RSA-8192 SPKI is about 1.1 KiB).
pub const MAX_SPKI_BYTES: usize = 2048;

/// Agent ids and partitions: short printable identifiers.
pub const MAX_ID_LEN: usize = 128;

/// Measured policy/config files per report.
pub const MAX_POLICY_FILES: usize = 512;

/// Longest measured path.
pub const MAX_PATH_LEN: usize = 4096;

/// Longest free-text field (versions, lockdown mode, ...).
pub const MAX_TEXT_LEN: usize = 256;

/// Containers per report. A guest runs a handful; a thousand is a runaway host.
pub const MAX_WORKLOADS: usize = 1024;

/// Loaded BPF programs per report (systemd alone loads a dozen; allow plenty).
pub const MAX_BPF_PROGRAMS: usize = 4096;

/// Pin paths per BPF program.
pub const MAX_BPF_PINS: usize = 16;

/// Longest image reference (`registry/repo:tag@sha256:..`); distribution's own
/// limit on a repository name is 255 characters.
pub const MAX_IMAGE_REF_LEN: usize = 1024;
