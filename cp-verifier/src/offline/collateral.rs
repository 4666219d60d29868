//! `cp-verifier collateral import`: raw Intel PCS / PCCS responses in, the collateral
//! JSON that `verify quote --collateral` and `[tdx] collateral_dir` read out.
//!
//! Contract (stable): every signature is checked to the trusted root (Intel's SGX
//! Root CA, or `--root-ca`) before anything is written. Exit 0: without `--out` the
//! collateral JSON is stdout; with `--out` it is written to that file and stdout is
//! `{"written","fmspc","ca","file_name","issued_at","expires_at","usable_at_now"}`
//! (`file_name` is the name `collateral_dir` looks for). Exit 1:
//! `{"error":{"kind","detail","part"}}`, nothing written; `kind` is
//! `CollateralMalformed`, `CollateralTooLarge` or `CollateralUnverified`, `part` the
//! option naming the file at fault. Exit 2: usage errors (unreadable files).

use std::path::{Path, PathBuf};

use provenant_base::clock::UnixSecs;
use serde_json::json;

use crate::attest::collateral::{import, pck_crl_ca, RawCollateral, RawPart};
use crate::attest::dcap::INTEL_SGX_ROOT_CA_DER;
use crate::offline::verify::Outcome;

/// `cp-verifier collateral import` arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct ImportArgs {
    /// The TDX TCB info response body, `{"tcbInfo":{..},"signature":".."}`, as served.
    #[arg(long)]
    pub tcb_info: PathBuf,
    /// Its `TCB-Info-Issuer-Chain` header: URL-encoded PEM, or plain PEM.
    #[arg(long)]
    pub tcb_info_chain: PathBuf,
    /// The TD QE identity response body, `{"enclaveIdentity":{..},"signature":".."}`.
    #[arg(long)]
    pub qe_identity: PathBuf,
    /// Its `SGX-Enclave-Identity-Issuer-Chain` header: URL-encoded or plain PEM.
    #[arg(long)]
    pub qe_identity_chain: PathBuf,
    /// The PCK CRL: DER, PEM or hex.
    #[arg(long)]
    pub pck_crl: PathBuf,
    /// Its `SGX-PCK-CRL-Issuer-Chain` header: URL-encoded or plain PEM.
    #[arg(long)]
    pub pck_crl_chain: PathBuf,
    /// The root CA CRL: DER, PEM or hex.
    #[arg(long)]
    pub root_ca_crl: PathBuf,
    /// Write the collateral JSON here instead of stdout.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Trust this root CA (DER or PEM) instead of Intel's SGX Root CA.
    #[arg(long)]
    pub root_ca: Option<PathBuf>,
    /// The time `usable_at_now` is judged at, Unix seconds (default: now).
    #[arg(long)]
    pub at: Option<u64>,
}

fn error(code: i32, kind: &str, detail: impl Into<String>, part: Option<RawPart>) -> Outcome {
    let mut e = json!({"kind": kind, "detail": detail.into()});
    if let Some(p) = part {
        e["part"] = p.name().into();
    }
    Outcome {
        code,
        json: json!({ "error": e }),
    }
}

fn read(path: &Path, max: usize, part: Option<RawPart>) -> Result<Vec<u8>, Outcome> {
    use provenant_base::fsutil::{read_bounded, ReadError};
    let what = part.map_or("--root-ca".to_string(), |p| format!("--{p}"));
    read_bounded(path, u64::try_from(max).unwrap_or(u64::MAX)).map_err(|e| match e {
        ReadError::TooLarge { max } => error(
            1,
            "CollateralTooLarge",
            format!("{what}: over {max} bytes"),
            part,
        ),
        ReadError::Io(e) => error(
            2,
            "Usage",
            format!("cannot read {what} {}: {e}", path.display()),
            part,
        ),
    })
}

/// `cp-verifier collateral import`, judging `usable_at_now` at `args.at` or `now`.
pub fn import_cmd(args: &ImportArgs, now: UnixSecs) -> Outcome {
    match run(args, args.at.map_or(now, UnixSecs::from_unsigned)) {
        Ok(o) | Err(o) => o,
    }
}

fn run(args: &ImportArgs, now: UnixSecs) -> Result<Outcome, Outcome> {
    let root = match &args.root_ca {
        Some(p) => {
            let bytes = read(p, 64 * 1024, None)?;
            if bytes.starts_with(b"-----BEGIN") {
                x509_cert::der::pem::decode_vec(&bytes)
                    .map_err(|e| error(2, "Usage", format!("--root-ca: {e}"), None))?
                    .1
            } else {
                bytes
            }
        }
        None => INTEL_SGX_ROOT_CA_DER.to_vec(),
    };
    let paths = [
        (RawPart::TcbInfo, &args.tcb_info),
        (RawPart::TcbInfoChain, &args.tcb_info_chain),
        (RawPart::QeIdentity, &args.qe_identity),
        (RawPart::QeIdentityChain, &args.qe_identity_chain),
        (RawPart::PckCrl, &args.pck_crl),
        (RawPart::PckCrlChain, &args.pck_crl_chain),
        (RawPart::RootCaCrl, &args.root_ca_crl),
    ];
    let mut raw = RawCollateral::default();
    for (part, path) in paths {
        *raw.part_mut(part) = read(path, part.max_bytes(), Some(part))?;
    }
    let fc = import(&raw, &root).map_err(|e| error(1, e.kind(), e.to_string(), Some(e.part())))?;
    let json = serde_json::to_vec(fc.collateral())
        .map_err(|e| error(1, "Internal", e.to_string(), None))?;
    let Some(out) = &args.out else {
        let value =
            serde_json::from_slice(&json).map_err(|e| error(1, "Internal", e.to_string(), None))?;
        return Ok(Outcome {
            code: 0,
            json: value,
        });
    };
    write_atomic(out, &json).map_err(|e| {
        error(
            2,
            "Usage",
            format!("cannot write {}: {e}", out.display()),
            None,
        )
    })?;
    let ca = pck_crl_ca(&fc);
    let now = now.unsigned();
    Ok(Outcome {
        code: 0,
        json: json!({
            "written": out.display().to_string(),
            "fmspc": fc.fmspc().to_hex(),
            "ca": ca.map(|c| c.as_str()),
            "file_name": match ca {
                Some(c) => format!("{}-{c}.json", fc.fmspc()),
                None => format!("{}.json", fc.fmspc()),
            },
            "issued_at": fc.issued_at(),
            "expires_at": fc.expires_at(),
            "usable_at_now": fc.issued_at() <= now && now < fc.expires_at(),
        }),
    })
}

/// A temporary file beside `path`, renamed over it: a reader never sees half a file.
fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}
