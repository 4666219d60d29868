//! Reading files whose size an attacker or a mistake may control.

use std::io::Read;
use std::path::Path;

#[derive(Debug, thiserror::Error)]
/// Why a bounded read failed.
pub enum ReadError {
    /// The file could not be opened or read.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The file holds more than `max` bytes.
    #[error("larger than {max} bytes")]
    TooLarge {
        /// The bound that was exceeded.
        max: u64,
    },
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

/// Why a secret file (a private key, a token) was not read.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// The file could not be opened or read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file, as given.
        path: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The file holds more than `max` bytes.
    #[error("{path} is larger than {max} bytes")]
    TooLarge {
        /// The file, as given.
        path: String,
        /// The bound that was exceeded.
        max: u64,
    },
    /// Group or others may read it: whoever else can read the file has the secret.
    #[error(
        "{path} is readable by group or others (mode {mode:04o}); a secret must be private to its owner: chmod 600 {path}"
    )]
    Exposed {
        /// The file, as given.
        path: String,
        /// Its permission bits.
        mode: u32,
    },
}

/// Reads a secret file of at most `max` bytes, refusing one that group or others
/// may read or write (mode & 0o077 != 0). The mode is checked on the open file, so
/// a file swapped between the check and the read is not read unchecked.
pub fn read_secret(path: &Path, max: u64) -> Result<Vec<u8>, SecretError> {
    use std::os::unix::fs::PermissionsExt;
    let shown = path.display().to_string();
    let io = |source| SecretError::Io {
        path: shown.clone(),
        source,
    };
    let f = std::fs::File::open(path).map_err(io)?;
    let mode = f.metadata().map_err(io)?.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(SecretError::Exposed { path: shown, mode });
    }
    let mut buf = Vec::new();
    f.take(max.saturating_add(1))
        .read_to_end(&mut buf)
        .map_err(io)?;
    if u64::try_from(buf.len()).unwrap_or(u64::MAX) > max {
        return Err(SecretError::TooLarge { path: shown, max });
    }
    Ok(buf)
}

/// Creates (or truncates) `path` with mode 0600 and writes `bytes`; an existing
/// file's mode is tightened to 0600 first.
pub fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    f.write_all(bytes)?;
    f.sync_all()
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

    #[test]
    fn read_secret_refuses_group_or_world_access() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("node.key");
        write_private(&p, b"secret").unwrap();
        assert_eq!(read_secret(&p, 64).unwrap(), b"secret");
        for mode in [0o644, 0o640, 0o604, 0o660, 0o602] {
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
            let e = read_secret(&p, 64).unwrap_err().to_string();
            assert!(
                e.contains(&p.display().to_string())
                    && e.contains(&format!("{mode:04o}"))
                    && e.contains("chmod 600"),
                "{e}"
            );
        }
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o400)).unwrap();
        assert!(read_secret(&p, 64).is_ok());
        assert!(matches!(
            read_secret(&p, 3),
            Err(SecretError::TooLarge { max: 3, .. })
        ));
        // write_private tightens an existing file.
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        write_private(&p, b"x").unwrap();
        let m = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(m, 0o600);
    }
}
