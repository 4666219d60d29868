//! Reading files whose size an attacker or a mistake may control.

use std::io::Read;
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("larger than {max} bytes")]
    TooLarge { max: u64 },
}

/// Reads a file of at most `max` bytes. The bound is enforced on the bytes actually
/// read, not on a size checked beforehand, so a file that grows between the check
/// and the read cannot slip past it.
pub fn read_bounded(path: &Path, max: u64) -> Result<Vec<u8>, ReadError> {
    let f = std::fs::File::open(path)?;
    let mut buf = Vec::new();
    f.take(max.saturating_add(1)).read_to_end(&mut buf)?;
    if u64::try_from(buf.len()).unwrap_or(u64::MAX) > max {
        return Err(ReadError::TooLarge { max });
    }
    Ok(buf)
}

/// [`read_bounded`] for UTF-8 text.
pub fn read_text_bounded(path: &Path, max: u64) -> Result<String, ReadError> {
    String::from_utf8(read_bounded(path, max)?)
        .map_err(|e| ReadError::Io(std::io::Error::new(std::io::ErrorKind::InvalidData, e)))
}

/// Splits a PEM bundle into its `CERTIFICATE` blocks (text between them is ignored).
/// A block without its END line is an error, not silently dropped.
pub fn split_pem_certificates(text: &str) -> Result<Vec<String>, String> {
    const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
    const END: &str = "-----END CERTIFICATE-----";
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(s) = rest.find(BEGIN) {
        let e = rest[s..]
            .find(END)
            .ok_or_else(|| format!("certificate {} has no END line", out.len() + 1))?;
        out.push(format!("{}\n", &rest[s..s + e + END.len()]));
        rest = &rest[s + e + END.len()..];
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bound_is_exact() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, "12345").unwrap();
        assert_eq!(read_text_bounded(&p, 5).unwrap(), "12345");
        assert!(matches!(
            read_text_bounded(&p, 4),
            Err(ReadError::TooLarge { max: 4 })
        ));
        assert!(matches!(
            read_text_bounded(&dir.path().join("missing"), 4),
            Err(ReadError::Io(_))
        ));
    }
}
