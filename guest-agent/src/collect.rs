//! Collectors: what the agent measures.
//!
//! Hashing is the agent's main cost, so files are re-hashed only when their metadata
//! (device, inode, size, mtime, ctime) changes. ctime cannot be set from user space,
//! so a rewrite that restores the mtime is still noticed.

use std::collections::HashMap;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use evidence::report::HexBytes;
use evidence::{Digest32, FileMeasurement, Measurements, Platform, PolicyMeasurement, TeeKind};
use sha2::{Digest, Sha256};

/// Read size for hashing. 1 MiB keeps syscalls rare enough that SHA-256 itself is the
/// bottleneck (see the `agent` benchmark against `sha256sum`).
const HASH_CHUNK: usize = 1 << 20;

/// SHA-256 of a file, read in large chunks.
pub fn hash_file(path: &Path) -> std::io::Result<[u8; 32]> {
    let mut f = std::fs::File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; HASH_CHUNK];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize().into())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct MetaKey {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl MetaKey {
    fn of(m: &std::fs::Metadata) -> MetaKey {
        MetaKey {
            dev: m.dev(),
            ino: m.ino(),
            size: m.size(),
            mtime: (m.mtime(), m.mtime_nsec()),
            ctime: (m.ctime(), m.ctime_nsec()),
        }
    }
}

/// Why a file could not be measured. A missing policy file is measured as the
/// all-zero digest under its path, so its absence is itself a visible change.
#[derive(Debug, thiserror::Error)]
#[error("cannot measure {path}: {source}")]
pub struct CollectError {
    /// The file that could not be read.
    pub path: String,
    /// The I/O error.
    pub source: std::io::Error,
}

/// A hasher that remembers digests by file metadata.
#[derive(Debug, Default)]
pub struct FileHasher {
    cache: HashMap<PathBuf, (MetaKey, [u8; 32])>,
    /// Files actually read on the last call (for tests and metrics).
    pub rehashed: usize,
}

impl FileHasher {
    /// SHA-256 of the file at `path`; served from the cache while its metadata (device,
    /// inode, size, mtime, ctime) is unchanged, otherwise read and hashed again.
    pub fn hash(&mut self, path: &Path) -> std::io::Result<[u8; 32]> {
        let meta = std::fs::metadata(path)?;
        let key = MetaKey::of(&meta);
        if let Some((k, d)) = self.cache.get(path) {
            if *k == key {
                return Ok(*d);
            }
        }
        let d = hash_file(path)?;
        self.rehashed += 1;
        // Re-stat: if the file changed while we read it, do not cache the digest.
        if std::fs::metadata(path).map(|m| MetaKey::of(&m)).ok() == Some(key) {
            self.cache.insert(path.to_path_buf(), (key, d));
        }
        Ok(d)
    }
}

/// Where the platform facts are read from. Configurable so tests can use a fake tree.
#[derive(Debug, Clone)]
pub struct PlatformPaths {
    /// Where procfs is mounted (`/proc`).
    pub proc_root: PathBuf,
    /// Where sysfs is mounted (`/sys`).
    pub sys_root: PathBuf,
    /// The device directory (`/dev`).
    pub dev_root: PathBuf,
}

impl Default for PlatformPaths {
    fn default() -> Self {
        PlatformPaths {
            proc_root: "/proc".into(),
            sys_root: "/sys".into(),
            dev_root: "/dev".into(),
        }
    }
}

/// All collectors of this agent.
#[derive(Debug)]
pub struct Collector {
    /// The agent's own binary, hashed as its self measurement (`/proc/self/exe`).
    pub self_exe: PathBuf,
    /// Policy files hashed into the measurements, in this order.
    pub policy_files: Vec<PathBuf>,
    /// Where the platform facts are read from.
    pub paths: PlatformPaths,
    /// The TEE the selected quote provider talks to, which outranks detection under
    /// `paths` (a provider may be configured at a non-default path).
    pub tee: Option<TeeKind>,
    /// The eBPF collector, when configured.
    pub ebpf: Option<crate::ebpf::EbpfCollector>,
    hasher: FileHasher,
}

impl Collector {
    /// A collector of `policy_files` with the default paths, no TEE override and no
    /// eBPF collector.
    pub fn new(policy_files: Vec<PathBuf>) -> Collector {
        Collector {
            self_exe: "/proc/self/exe".into(),
            policy_files,
            paths: PlatformPaths::default(),
            tee: None,
            ebpf: None,
            hasher: FileHasher::default(),
        }
    }

    /// Files read (not served from cache) by the last [`Collector::collect`].
    pub fn rehashed_last(&self) -> usize {
        self.hasher.rehashed
    }

    /// Measures everything. The agent binary must be measurable; a policy file that
    /// cannot be read is recorded with the all-zero digest (and logged), so the
    /// control plane sees the change instead of the agent going silent.
    pub fn collect(&mut self) -> Result<Measurements, CollectError> {
        self.hasher.rehashed = 0;
        let agent_binary = self
            .hasher
            .hash(&self.self_exe)
            .map_err(|source| CollectError {
                path: self.self_exe.display().to_string(),
                source,
            })?;
        let mut files = Vec::with_capacity(self.policy_files.len());
        for p in &self.policy_files {
            let d = match self.hasher.hash(p) {
                Ok(d) => d,
                Err(e) => {
                    tracing::warn!(path = %p.display(), error = %e, "policy file unreadable; measuring it as absent");
                    [0u8; 32]
                }
            };
            files.push(FileMeasurement {
                path: p.display().to_string(),
                sha256: HexBytes(d),
            });
        }
        Ok(Measurements {
            agent_binary: HexBytes(agent_binary),
            policy: PolicyMeasurement::from_files(files),
            platform: self.platform(),
            workloads: None,
            ebpf: self.ebpf.as_mut().map(|e| e.collect()),
        })
    }

    fn platform(&self) -> Platform {
        let p = &self.paths;
        let tee = if let Some(t) = self.tee {
            t
        } else if p.sys_root.join("kernel/config/tsm/report").is_dir()
            || p.dev_root.join("tdx_guest").exists()
        {
            TeeKind::Tdx
        } else {
            TeeKind::None
        };
        let tpm_present = p.dev_root.join("tpmrm0").exists() || p.dev_root.join("tpm0").exists();
        let kernel_cmdline_sha256: Option<Digest32> = std::fs::read(p.proc_root.join("cmdline"))
            .ok()
            .map(|b| HexBytes(Sha256::digest(&b).into()));
        let lockdown = std::fs::read_to_string(p.sys_root.join("kernel/security/lockdown"))
            .ok()
            .and_then(|s| parse_lockdown(&s));
        Platform {
            tee,
            tpm_present,
            kernel_cmdline_sha256,
            lockdown,
        }
    }
}

/// `none [integrity] confidentiality` -> `integrity`.
fn parse_lockdown(s: &str) -> Option<String> {
    let start = s.find('[')?;
    let end = s[start..].find(']')? + start;
    Some(s[start + 1..end].to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn hash_file_matches_sha256sum_semantics() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, b"abc").unwrap();
        assert_eq!(
            hex::encode(hash_file(&p).unwrap()),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        // Spans several read chunks.
        let big = vec![0x61u8; HASH_CHUNK * 2 + 17];
        std::fs::write(&p, &big).unwrap();
        assert_eq!(
            hash_file(&p).unwrap(),
            <[u8; 32]>::from(Sha256::digest(&big))
        );
    }

    #[test]
    fn rehashes_only_what_changed() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.toml");
        let b = dir.path().join("b.toml");
        std::fs::write(&a, "x = 1").unwrap();
        std::fs::write(&b, "y = 2").unwrap();
        let mut c = Collector::new(vec![a.clone(), b.clone()]);
        let m1 = c.collect().unwrap();
        assert_eq!(c.rehashed_last(), 3); // self + two files
        let m2 = c.collect().unwrap();
        assert_eq!(c.rehashed_last(), 0);
        assert_eq!(m1, m2);
        std::fs::OpenOptions::new()
            .append(true)
            .open(&b)
            .unwrap()
            .write_all(b"\n")
            .unwrap();
        let m3 = c.collect().unwrap();
        assert_eq!(c.rehashed_last(), 1);
        assert_ne!(m3.policy.digest, m1.policy.digest);
        assert_eq!(m3.agent_binary, m1.agent_binary);
    }

    #[test]
    fn same_size_rewrite_with_restored_mtime_is_noticed() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a");
        std::fs::write(&a, "aaaa").unwrap();
        let mut h = FileHasher::default();
        let d1 = h.hash(&a).unwrap();
        let mtime = std::fs::metadata(&a).unwrap().modified().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(&a, "bbbb").unwrap();
        std::fs::File::options()
            .write(true)
            .open(&a)
            .unwrap()
            .set_modified(mtime)
            .unwrap();
        assert_ne!(h.hash(&a).unwrap(), d1);
    }

    #[test]
    fn missing_policy_file_is_measured_as_zero_not_skipped() {
        let mut c = Collector::new(vec!["/nonexistent/provenant.toml".into()]);
        let m = c.collect().unwrap();
        assert_eq!(m.policy.files.len(), 1);
        assert_eq!(m.policy.files[0].sha256, HexBytes([0; 32]));
    }

    #[test]
    fn platform_facts_from_a_fake_tree() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("proc")).unwrap();
        std::fs::create_dir_all(root.join("sys/kernel/config/tsm/report")).unwrap();
        std::fs::create_dir_all(root.join("sys/kernel/security")).unwrap();
        std::fs::create_dir_all(root.join("dev")).unwrap();
        std::fs::write(root.join("proc/cmdline"), "console=ttyS0\n").unwrap();
        std::fs::write(
            root.join("sys/kernel/security/lockdown"),
            "none [integrity] confidentiality\n",
        )
        .unwrap();
        std::fs::write(root.join("dev/tpmrm0"), "").unwrap();
        let mut c = Collector::new(vec![]);
        c.paths = PlatformPaths {
            proc_root: root.join("proc"),
            sys_root: root.join("sys"),
            dev_root: root.join("dev"),
        };
        let p = c.collect().unwrap().platform;
        assert_eq!(p.tee, TeeKind::Tdx);
        assert!(p.tpm_present);
        assert_eq!(p.lockdown.as_deref(), Some("integrity"));
        assert_eq!(
            p.kernel_cmdline_sha256.unwrap().0,
            <[u8; 32]>::from(Sha256::digest(b"console=ttyS0\n"))
        );
    }
}
