//! Collateral read from a directory (`collateral_dir`) or the shared cache, for
//! air-gapped control planes and restarts.

use super::*;

/// Offline collateral: operator-provided QuoteCollateralV3 JSON files.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct OfflineConfig {
    /// A directory of `<fmspc>-<ca>.json` or `<fmspc>.json` files (FMSPC in lowercase
    /// hex, CA `platform` or `processor`), tried in that order. A PCS source's cache
    /// directory has this layout, so it can be copied to an offline host.
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

pub(super) fn offline_get(
    cfg: &OfflineConfig,
    fmspc: Fmspc,
    ca: PckCa,
) -> Result<Arc<FetchedCollateral>, CollateralError> {
    let mut candidates = Vec::new();
    if let Some(dir) = &cfg.dir {
        candidates.push(dir.join(cache_file_name(fmspc, ca)));
        candidates.push(dir.join(format!("{fmspc}.json")));
    }
    candidates.extend(cfg.file.iter().cloned());
    for path in &candidates {
        if let Some(fc) = read_collateral_file(path, fmspc)? {
            return Ok(Arc::new(fc));
        }
    }
    Err(CollateralError::OfflineNotFound {
        fmspc,
        ca,
        searched: candidates
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", "),
    })
}
