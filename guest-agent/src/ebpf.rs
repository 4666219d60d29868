//! The eBPF collector: every loaded BPF program (id, name, type, kernel tag and the
//! SHA-256 of its translated instructions with map references normalised), where it
//! is pinned under the configured bpffs directories, and whether the BPF LSM is
//! active.
//!
//! Programs are listed with aya (`loaded_programs`); the translated instructions come
//! from `BPF_OBJ_GET_INFO_BY_FD` ([`crate::bpfsys`]). Hashing is cached by (id, tag):
//! a loaded program's instructions never change, so a pulse only hashes new programs.
//! Without the privilege or kernel support to look, the state is `unavailable` with
//! the reason; a list is never reported as complete when it is not.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use evidence::limits::{MAX_BPF_PINS, MAX_BPF_PROGRAMS, MAX_PATH_LEN, MAX_TEXT_LEN};
use evidence::report::HexBytes;
use evidence::{BpfProgram, CollectorState, Digest32, Ebpf, EbpfExtra};
use sha2::{Digest, Sha256};

use crate::bpfsys;
use provenant_base::fsutil::read_bounded;

/// Largest translated program read (the kernel's limit is 1M instructions of 8 bytes).
pub const MAX_XLATED_BYTES: usize = 8 << 20;
/// Deepest directory level walked under a bpffs directory.
pub const MAX_PIN_DEPTH: usize = 8;
/// Most bpffs entries looked at per collection.
pub const MAX_PIN_ENTRIES: usize = 4096;
/// Largest LSM list read.
const MAX_LSM_FILE: u64 = 4096;

/// `BPF_LD | BPF_IMM | BPF_DW`: the two-slot 64-bit immediate load.
const LD_IMM64: u8 = 0x18;
const PSEUDO_MAP_FD: u8 = 1;
const PSEUDO_MAP_VALUE: u8 = 2;
const PSEUDO_MAP_IDX: u8 = 5;
const PSEUDO_MAP_IDX_VALUE: u8 = 6;

/// Why a collection could not give a complete list.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EbpfError {
    /// Listing the loaded programs failed (other than for privilege).
    #[error("cannot list BPF programs: {0}")]
    List(String),
    /// No privilege (`EPERM`/`EACCES`) to list or read the programs.
    #[error("no privilege to read BPF programs: {0}")]
    Permission(String),
    /// One program could not be opened or its instructions read.
    #[error("program {id}: {detail}")]
    Program {
        /// The kernel's program id.
        id: u32,
        /// What failed.
        detail: String,
    },
    /// More than `MAX_BPF_PROGRAMS` programs are loaded.
    #[error("more than {MAX_BPF_PROGRAMS} BPF programs loaded")]
    TooMany,
}

impl EbpfError {
    /// A stable name for the error in logs (`EbpfList`, `EbpfPermission`, ...).
    pub fn kind(&self) -> &'static str {
        match self {
            EbpfError::List(_) => "EbpfList",
            EbpfError::Permission(_) => "EbpfPermission",
            EbpfError::Program { .. } => "EbpfProgram",
            EbpfError::TooMany => "EbpfTooMany",
        }
    }
}

/// Zeroes the map references embedded in `ld_imm64` instructions of a translated
/// program: the kernel dumps map ids there (which change on every load), so the hash
/// names the program's code, not the maps' ids. A `MAP_VALUE` load keeps its second
/// immediate (the offset into the value), which is part of the code. `insns` is a
/// whole number of 8-byte instructions (a trailing partial one is left as is).
pub fn normalise_map_refs(insns: &mut [u8]) {
    let n = insns.len() / 8;
    let mut i = 0;
    while i < n {
        let at = i * 8;
        if insns[at] == LD_IMM64 && i + 1 < n {
            let src = insns[at + 1] >> 4;
            if matches!(
                src,
                PSEUDO_MAP_FD | PSEUDO_MAP_VALUE | PSEUDO_MAP_IDX | PSEUDO_MAP_IDX_VALUE
            ) {
                insns[at + 4..at + 8].fill(0);
                if matches!(src, PSEUDO_MAP_FD | PSEUDO_MAP_IDX) {
                    insns[at + 12..at + 16].fill(0);
                }
            }
            i += 2;
        } else {
            i += 1;
        }
    }
}

/// SHA-256 of the normalised translated instructions.
pub fn program_hash(mut insns: Vec<u8>) -> Digest32 {
    normalise_map_refs(&mut insns);
    HexBytes(Sha256::digest(&insns).into())
}

/// `BPF_PROG_TYPE_SOCKET_FILTER` -> `socket_filter` (bpftool's names).
pub fn type_name(debug: &str) -> String {
    debug
        .strip_prefix("BPF_PROG_TYPE_")
        .unwrap_or(debug)
        .to_ascii_lowercase()
}

/// Whether `bpf` is among the active LSMs in the contents of `/sys/kernel/security/lsm`.
pub fn lsm_has_bpf(text: &str) -> bool {
    text.trim().split(',').any(|l| l.trim() == "bpf")
}

/// Printable, bounded text: control characters escaped, cut at `max` bytes on a
/// character boundary.
pub fn bounded_text(s: &str, max: usize) -> String {
    let mut out = String::with_capacity(s.len().min(max));
    for c in s.chars() {
        let piece: String = if c.is_control() {
            c.escape_default().collect()
        } else {
            c.to_string()
        };
        if out.len() + piece.len() > max {
            break;
        }
        out.push_str(&piece);
    }
    out
}

/// Measures the loaded eBPF programs: hash of each program's translated
/// instructions, cached by (id, tag), with its pin paths.
#[derive(Debug)]
pub struct EbpfCollector {
    /// bpffs directories walked for pinned programs.
    pub bpffs_dirs: Vec<PathBuf>,
    /// The active-LSM list (`/sys/kernel/security/lsm`), read to tell whether the
    /// BPF LSM is on.
    pub lsm_file: PathBuf,
    cache: HashMap<(u32, [u8; 8]), Digest32>,
    /// Programs hashed (not served from cache) by the last collection.
    pub hashed_last: usize,
}

impl EbpfCollector {
    /// A collector with an empty cache.
    pub fn new(bpffs_dirs: Vec<PathBuf>, lsm_file: PathBuf) -> EbpfCollector {
        EbpfCollector {
            bpffs_dirs,
            lsm_file,
            cache: HashMap::new(),
            hashed_last: 0,
        }
    }

    /// Measures the loaded programs. Never fails: a collection that cannot be
    /// complete is `unavailable` (privilege, kernel support) or `unknown` (anything
    /// else) with the reason.
    pub fn collect(&mut self) -> Ebpf {
        self.hashed_last = 0;
        let lsm_active = read_bounded(&self.lsm_file, MAX_LSM_FILE)
            .ok()
            .map(|b| lsm_has_bpf(&String::from_utf8_lossy(&b)));
        match self.programs() {
            Ok(items) => Ebpf::full(items, EbpfExtra { lsm_active }),
            Err(e) => {
                let state = match e {
                    EbpfError::Permission(_) => CollectorState::Unavailable,
                    EbpfError::List(_) => CollectorState::Unavailable,
                    _ => CollectorState::Unknown,
                };
                tracing::warn!(kind = e.kind(), error = %e, "eBPF programs not measured");
                Ebpf {
                    state,
                    reason: Some(bounded_text(&e.to_string(), MAX_TEXT_LEN)),
                    extra: EbpfExtra { lsm_active },
                    digest: None,
                    items: None,
                }
            }
        }
    }

    fn programs(&mut self) -> Result<Vec<BpfProgram>, EbpfError> {
        let mut pins = self.pins();
        let mut items = Vec::new();
        let mut seen = BTreeSet::new();
        for p in aya::programs::loaded_programs() {
            let info = match p {
                Ok(i) => i,
                Err(e) => match io_errno(&e) {
                    // Unloaded between listing and opening: it is gone, not hidden.
                    Some(libc::ENOENT) => continue,
                    Some(libc::EPERM) | Some(libc::EACCES) => {
                        return Err(EbpfError::Permission(provenant_base::errors::chain(&e)))
                    }
                    _ => return Err(EbpfError::List(provenant_base::errors::chain(&e))),
                },
            };
            if items.len() == MAX_BPF_PROGRAMS {
                return Err(EbpfError::TooMany);
            }
            let id = info.id();
            let tag_bytes = info.tag().to_be_bytes();
            let sha256 = match self.cache.get(&(id, tag_bytes)) {
                Some(d) => *d,
                None => {
                    let fd = match info.fd() {
                        Ok(fd) => fd,
                        Err(e) if io_errno(&e) == Some(libc::ENOENT) => continue,
                        Err(e) => {
                            return Err(EbpfError::Program {
                                id,
                                detail: provenant_base::errors::chain(&e),
                            })
                        }
                    };
                    let insns =
                        bpfsys::xlated_insns(fd.as_fd(), MAX_XLATED_BYTES).map_err(|e| match e
                            .kind()
                        {
                            std::io::ErrorKind::PermissionDenied => {
                                EbpfError::Permission(e.to_string())
                            }
                            _ => EbpfError::Program {
                                id,
                                detail: e.to_string(),
                            },
                        })?;
                    let d = program_hash(insns);
                    self.hashed_last += 1;
                    self.cache.insert((id, tag_bytes), d);
                    d
                }
            };
            seen.insert((id, tag_bytes));
            let name = match info.name_as_str() {
                Some(n) => n.to_string(),
                None => String::from_utf8_lossy(info.name()).into_owned(),
            };
            let mut pinned = pins.remove(&id).unwrap_or_default();
            if pinned.len() > MAX_BPF_PINS {
                tracing::warn!(
                    id,
                    pins = pinned.len(),
                    "program pinned at more paths than reported"
                );
                pinned.truncate(MAX_BPF_PINS);
            }
            items.push(BpfProgram {
                id,
                name: bounded_text(&name, MAX_TEXT_LEN),
                prog_type: type_name(&format!("{:?}", info.program_type())),
                tag: format!("{:016x}", info.tag()),
                sha256,
                pinned,
            });
        }
        self.cache.retain(|k, _| seen.contains(k));
        items.sort();
        Ok(items)
    }

    /// Program id -> pin paths (sorted) under the configured bpffs directories.
    /// Bounded in depth and entries; symlinks are not followed; pinned maps and links
    /// are skipped.
    fn pins(&self) -> BTreeMap<u32, Vec<String>> {
        let mut files = BTreeSet::new();
        let mut budget = MAX_PIN_ENTRIES;
        for d in &self.bpffs_dirs {
            walk(d, 0, &mut budget, &mut files);
        }
        let mut out: BTreeMap<u32, Vec<String>> = BTreeMap::new();
        for f in files {
            let Ok(fd) = bpfsys::obj_get(&f) else {
                continue;
            };
            if !bpfsys::is_prog_fd(fd.as_fd()) {
                continue;
            }
            let Ok(info) = bpfsys::prog_info(fd.as_fd()) else {
                continue;
            };
            let p = f.display().to_string();
            if p.len() <= MAX_PATH_LEN && !p.chars().any(char::is_control) {
                out.entry(info.id).or_default().push(p);
            }
        }
        out
    }
}

fn walk(dir: &Path, depth: usize, budget: &mut usize, out: &mut BTreeSet<PathBuf>) {
    if depth > MAX_PIN_DEPTH {
        return;
    }
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        if *budget == 0 {
            tracing::warn!(dir = %dir.display(), "bpffs walk stopped at {MAX_PIN_ENTRIES} entries");
            return;
        }
        *budget -= 1;
        let Ok(ft) = e.file_type() else { continue };
        if ft.is_dir() {
            walk(&e.path(), depth + 1, budget, out);
        } else if ft.is_file() {
            out.insert(e.path());
        }
    }
}

/// The OS error number inside an aya error, if any.
fn io_errno(e: &(dyn std::error::Error + 'static)) -> Option<i32> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cur {
        if let Some(io) = c.downcast_ref::<std::io::Error>() {
            return io.raw_os_error();
        }
        cur = c.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> [u8; 8] {
        let mut b = [0u8; 8];
        b[0] = code;
        b[1] = (src << 4) | (dst & 0x0f);
        b[2..4].copy_from_slice(&off.to_le_bytes());
        b[4..8].copy_from_slice(&imm.to_le_bytes());
        b
    }

    fn prog(map_id: i32, value_off: i32) -> Vec<u8> {
        [
            insn(0xb7, 0, 0, 0, 0),                         // r0 = 0
            insn(LD_IMM64, 1, PSEUDO_MAP_FD, 0, map_id),    // r1 = map[id]
            insn(0, 0, 0, 0, 0),                            //   (second slot)
            insn(LD_IMM64, 2, PSEUDO_MAP_VALUE, 0, map_id), // r2 = &map[id] + off
            insn(0, 0, 0, 0, value_off),                    //   (offset)
            insn(LD_IMM64, 3, 0, 0, 0x1234),                // r3 = 0x1234 (plain)
            insn(0, 0, 0, 0, 0),
            insn(0x95, 0, 0, 0, 0), // exit
        ]
        .concat()
    }

    #[test]
    fn map_ids_do_not_change_the_hash_but_code_does() {
        assert_eq!(program_hash(prog(7, 4)), program_hash(prog(91, 4)));
        // The value offset is code, not a map id.
        assert_ne!(program_hash(prog(7, 4)), program_hash(prog(7, 8)));
        // A plain 64-bit constant is code too.
        let mut p = prog(7, 4);
        p[5 * 8 + 4] = 0x35;
        assert_ne!(program_hash(p), program_hash(prog(7, 4)));
        let mut n = prog(7, 4);
        normalise_map_refs(&mut n);
        assert_eq!(&n[8 + 4..8 + 8], &[0; 4]);
        assert_eq!(&n[3 * 8 + 4..3 * 8 + 8], &[0; 4]);
        assert_eq!(&n[4 * 8 + 4..4 * 8 + 8], &4i32.to_le_bytes());
        assert_eq!(&n[5 * 8 + 4..5 * 8 + 8], &0x1234i32.to_le_bytes());
    }

    #[test]
    fn the_second_slot_of_ld_imm64_is_not_decoded_as_an_instruction() {
        // A second slot whose bytes look like another ld_imm64 with a map reference
        // must be left alone.
        let mut a = [
            insn(LD_IMM64, 1, 0, 0, 0),
            insn(LD_IMM64, 0, PSEUDO_MAP_FD, 0, 5),
            insn(0x95, 0, 0, 0, 0),
        ]
        .concat();
        let before = a.clone();
        normalise_map_refs(&mut a);
        assert_eq!(a, before);
        // A truncated buffer (ld_imm64 in the last slot, or a partial instruction)
        // does not panic.
        let mut t = insn(LD_IMM64, 1, PSEUDO_MAP_FD, 0, 5).to_vec();
        t.extend([1, 2, 3]);
        normalise_map_refs(&mut t);
        normalise_map_refs(&mut []);
    }

    #[test]
    fn names_and_lsm() {
        assert_eq!(type_name("BPF_PROG_TYPE_SOCKET_FILTER"), "socket_filter");
        assert_eq!(type_name("BPF_PROG_TYPE_CGROUP_SKB"), "cgroup_skb");
        assert!(lsm_has_bpf("lockdown,capability,landlock,bpf\n"));
        assert!(!lsm_has_bpf("lockdown,capability,bpfx,landlock"));
        assert!(!lsm_has_bpf(""));
        assert_eq!(bounded_text("a\nb", 10), "a\\nb");
        assert_eq!(bounded_text("héllo", 3), "hé");
    }

    #[test]
    fn unreadable_lsm_file_is_none_not_false() {
        let mut c = EbpfCollector::new(vec![], "/nonexistent/lsm".into());
        assert_eq!(c.collect().extra.lsm_active, None);
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("lsm");
        std::fs::write(&f, "capability,bpf").unwrap();
        c.lsm_file = f;
        assert_eq!(c.collect().extra.lsm_active, Some(true));
    }
}
