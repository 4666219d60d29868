//! Collateral read from a directory (`collateral_dir`) or the shared cache, for
//! air-gapped control planes and restarts.

use super::*;

/// Offline collateral: operator-provided QuoteCollateralV3 JSON files, or
/// directories of raw PCS/PCCS responses ([`super::RawCollateral::read_dir`]).
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct OfflineConfig {
    /// A directory of `<fmspc>-<ca>.json` or `<fmspc>.json` files (FMSPC in lowercase
    /// hex, CA `platform` or `processor`), tried in that order. A PCS source's cache
    /// directory has this layout, so it can be copied to an offline host. In place of
    /// each file, a directory of the same name without `.json` may hold the raw
    /// responses (`tcb-info`, `tcb-info-chain`, `qe-identity`, `qe-identity-chain`,
    /// `pck-crl`, `pck-crl-chain`, `root-ca-crl`; see `cp-verifier collateral
    /// import`); DCAP checks their signatures at use, as a JSON file's.
    pub dir: Option<PathBuf>,
    /// One file used for any FMSPC not found in `dir` (its FMSPC must still match).
    pub file: Option<PathBuf>,
}

impl OfflineConfig {
    /// Offline collateral from `dir` and/or `file` (see the fields).
    pub fn new(dir: Option<PathBuf>, file: Option<PathBuf>) -> Self {
        OfflineConfig { dir, file }
    }
}

/// Parses cached collateral for `fmspc` (a file's bytes or a shared-cache entry).
pub(super) fn parse_cached(
    bytes: &[u8],
    fmspc: Fmspc,
    shown: &str,
) -> Result<FetchedCollateral, CollateralError> {
    let c = parse_collateral(bytes).map_err(|e| CollateralError::OfflineMalformed {
        path: shown.to_string(),
        detail: e.to_string(),
    })?;
    let fc = FetchedCollateral::from_collateral(c).map_err(|e| match e {
        CollateralError::MalformedBody { endpoint, detail } => CollateralError::OfflineMalformed {
            path: shown.to_string(),
            detail: format!("{endpoint}: {detail}"),
        },
        e => e,
    })?;
    if fc.fmspc != fmspc {
        return Err(CollateralError::FmspcMismatch {
            want: fmspc,
            got: fc.fmspc,
        });
    }
    Ok(fc)
}

/// Reads and checks one collateral file. `Ok(None)` if it does not exist.
pub(super) fn read_collateral_file(
    path: &Path,
    fmspc: Fmspc,
) -> Result<Option<FetchedCollateral>, CollateralError> {
    use provenant_base::fsutil::{read_bounded, ReadError};
    let shown = path.display().to_string();
    let max = u64::try_from(MAX_COLLATERAL_BYTES).unwrap_or(u64::MAX);
    let bytes = match read_bounded(path, max) {
        Ok(b) => b,
        Err(ReadError::Io(e)) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(CollateralError::OfflineUnreadable {
                path: shown,
                detail: e.to_string(),
            })
        }
    };
    parse_cached(&bytes, fmspc, &shown).map(Some)
}

/// Reads and checks one directory of raw responses. `Ok(None)` if it does not exist.
fn read_raw_dir(dir: &Path, fmspc: Fmspc) -> Result<Option<FetchedCollateral>, CollateralError> {
    let Some(raw) = super::RawCollateral::read_dir(dir)? else {
        return Ok(None);
    };
    let fc = super::assemble(&raw).map_err(|e| CollateralError::OfflineMalformed {
        path: dir.display().to_string(),
        detail: format!("{}: {e}", e.kind()),
    })?;
    if fc.fmspc != fmspc {
        return Err(CollateralError::FmspcMismatch {
            want: fmspc,
            got: fc.fmspc,
        });
    }
    Ok(Some(fc))
}

pub(super) fn offline_get(
    cfg: &OfflineConfig,
    fmspc: Fmspc,
    ca: PckCa,
) -> Result<Arc<FetchedCollateral>, CollateralError> {
    let mut candidates = Vec::new();
    if let Some(dir) = &cfg.dir {
        let keyed = cache_file_name(fmspc, ca);
        let keyed_raw = keyed.strip_suffix(".json").unwrap_or(&keyed).to_string();
        candidates.push((dir.join(&keyed), false));
        candidates.push((dir.join(keyed_raw), true));
        candidates.push((dir.join(format!("{fmspc}.json")), false));
        candidates.push((dir.join(fmspc.to_hex()), true));
    }
    candidates.extend(cfg.file.iter().map(|f| (f.clone(), false)));
    for (path, raw) in &candidates {
        let found = if *raw {
            read_raw_dir(path, fmspc)?
        } else {
            read_collateral_file(path, fmspc)?
        };
        if let Some(fc) = found {
            return Ok(Arc::new(fc));
        }
    }
    Err(CollateralError::OfflineNotFound {
        fmspc,
        ca,
        searched: candidates
            .iter()
            .map(|(p, _)| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", "),
    })
}
