//! Bearer tokens: reading a token file (owner-only, bounded, header-safe) and
//! comparing a presented token in constant time.

use std::path::Path as FsPath;

/// Largest token file read.
pub(crate) const MAX_TOKEN_FILE_BYTES: u64 = 4096;
/// Shortest token accepted.
pub(crate) const MIN_TOKEN_LEN: usize = 16;

/// Reads a bearer token file: private to its owner (mode 0600), trimmed, at least
/// 16 characters of header-safe text.
pub fn read_token(path: &FsPath, what: &str) -> anyhow::Result<Vec<u8>> {
    let b = provenant_base::fsutil::read_secret(path, MAX_TOKEN_FILE_BYTES)
        .map_err(|e| anyhow::anyhow!("{what}: {e}"))?;
    let t = String::from_utf8(b)
        .map_err(|_| anyhow::anyhow!("{what} {} is not UTF-8", path.display()))?;
    let t = t.trim();
    anyhow::ensure!(
        t.len() >= MIN_TOKEN_LEN && t.bytes().all(|c| c.is_ascii_graphic()),
        "{what} {}: the token must be at least {MIN_TOKEN_LEN} printable ASCII characters without spaces",
        path.display()
    );
    Ok(t.as_bytes().to_vec())
}

/// Whether a presented bearer token is the configured one, compared in constant time
/// (the length is not secret: tokens are at least 16 characters).
pub fn token_eq(want: &[u8], got: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    want.len() == got.len() && bool::from(want.ct_eq(got))
}
