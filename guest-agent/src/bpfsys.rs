//! The raw `bpf()` calls aya 0.14 does not offer: the translated (xlated) instructions
//! of a program (`BPF_OBJ_GET_INFO_BY_FD` with `xlated_prog_insns`), and opening a
//! pinned object (`BPF_OBJ_GET`) so its kind can be checked before it is read as a
//! program. The only unsafe code of the eBPF collector lives here.
#![allow(unsafe_code)]

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// `enum bpf_cmd` values (linux/bpf.h, stable ABI).
const BPF_OBJ_GET: libc::c_long = 7;
const BPF_OBJ_GET_INFO_BY_FD: libc::c_long = 15;

/// The leading fields of `struct bpf_prog_info` (linux/bpf.h), up to and including
/// `xlated_prog_insns`. The kernel accepts a shorter `info_len` and copies only that
/// many bytes each way.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct ProgInfoHead {
    /// `enum bpf_prog_type` of the program.
    pub prog_type: u32,
    /// The kernel's program id.
    pub id: u32,
    /// The kernel's tag: a hash of the program's instructions.
    pub tag: [u8; 8],
    /// Length of the JIT-compiled image, bytes.
    pub jited_prog_len: u32,
    /// Length of the translated instructions, bytes.
    pub xlated_prog_len: u32,
    /// User-space address of a buffer for the JIT-compiled image (0: none).
    pub jited_prog_insns: u64,
    /// User-space address of a buffer for the translated instructions (0: none).
    pub xlated_prog_insns: u64,
}

/// `union bpf_attr`'s `info` member for `BPF_OBJ_GET_INFO_BY_FD`.
#[repr(C)]
struct InfoAttr {
    bpf_fd: u32,
    info_len: u32,
    info: u64,
}

/// `union bpf_attr`'s member for `BPF_OBJ_GET`.
#[repr(C)]
struct ObjAttr {
    pathname: u64,
    bpf_fd: u32,
    file_flags: u32,
}

/// A user-space address as the kernel's `__aligned_u64` (exposing its provenance: the
/// kernel writes through it).
fn addr<T>(p: *const T) -> u64 {
    u64::try_from(p.expose_provenance()).unwrap_or(0)
}

fn get_info(fd: BorrowedFd<'_>, head: &mut ProgInfoHead) -> io::Result<()> {
    let raw =
        u32::try_from(fd.as_raw_fd()).map_err(|_| io::Error::from_raw_os_error(libc::EBADF))?;
    let mut attr = InfoAttr {
        bpf_fd: raw,
        info_len: u32::try_from(std::mem::size_of::<ProgInfoHead>()).unwrap_or(0),
        info: addr(std::ptr::from_mut(head)),
    };
    // SAFETY: `attr` is a valid, initialised `bpf_attr` prefix for
    // BPF_OBJ_GET_INFO_BY_FD and we pass its exact size. `attr.info` points to `head`,
    // which is writable for `info_len` bytes and outlives the call. If
    // `head.xlated_prog_insns` is non-zero, the caller (`xlated_insns`) set it to a
    // buffer writable for `head.xlated_prog_len` bytes that outlives the call; the
    // kernel writes at most that many bytes there. Every other pointer field is 0.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_OBJ_GET_INFO_BY_FD,
            std::ptr::from_mut(&mut attr),
            std::mem::size_of::<InfoAttr>(),
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// The program's info header (type, id, tag, lengths).
pub fn prog_info(fd: BorrowedFd<'_>) -> io::Result<ProgInfoHead> {
    let mut head = ProgInfoHead::default();
    get_info(fd, &mut head)?;
    Ok(head)
}

/// The program's translated instructions, at most `max_len` bytes. Two calls: the
/// length, then the buffer. Without the privilege to read them the kernel reports a
/// length of 0: that is `PermissionDenied`, never an empty program.
pub fn xlated_insns(fd: BorrowedFd<'_>, max_len: usize) -> io::Result<Vec<u8>> {
    let head = prog_info(fd)?;
    let len = usize::try_from(head.xlated_prog_len).unwrap_or(usize::MAX);
    if len == 0 {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            "the kernel hides translated instructions (needs CAP_SYS_ADMIN, or CAP_BPF with CAP_PERFMON)",
        ));
    }
    if len > max_len {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("translated program is {len} bytes, over the limit of {max_len}"),
        ));
    }
    let mut buf = vec![0u8; len];
    let mut head = ProgInfoHead {
        xlated_prog_len: head.xlated_prog_len,
        xlated_prog_insns: addr(buf.as_mut_ptr()),
        ..ProgInfoHead::default()
    };
    get_info(fd, &mut head)?;
    // A loaded program's instructions do not change; a different length means the
    // answer cannot be trusted.
    if usize::try_from(head.xlated_prog_len).ok() != Some(len) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "translated length changed between calls ({len} then {})",
                head.xlated_prog_len
            ),
        ));
    }
    Ok(buf)
}

/// Opens a pinned bpffs object (program, map or link) read-only.
pub fn obj_get(path: &Path) -> io::Result<OwnedFd> {
    let c = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains NUL"))?;
    let attr = ObjAttr {
        pathname: addr(c.as_ptr()),
        bpf_fd: 0,
        file_flags: u32::try_from(libc::O_RDONLY).unwrap_or(0),
    };
    // SAFETY: `attr` is a valid `bpf_attr` prefix for BPF_OBJ_GET of its exact size;
    // `pathname` points to the NUL-terminated `c`, which outlives the call. The kernel
    // only reads from it.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_OBJ_GET,
            std::ptr::from_ref(&attr),
            std::mem::size_of::<ObjAttr>(),
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    let fd = i32::try_from(r).map_err(|_| io::Error::from_raw_os_error(libc::EBADF))?;
    // SAFETY: on success BPF_OBJ_GET returns a new file descriptor that nothing else
    // owns; `OwnedFd` takes sole ownership and closes it on drop.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Whether `fd` refers to a BPF program (not a map or link), from the anon inode's
/// name in `/proc/self/fd`.
pub fn is_prog_fd(fd: BorrowedFd<'_>) -> bool {
    std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd()))
        .is_ok_and(|t| t.as_os_str() == "anon_inode:bpf-prog")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn abi_layouts() {
        assert_eq!(std::mem::size_of::<ProgInfoHead>(), 40);
        assert_eq!(std::mem::size_of::<InfoAttr>(), 16);
        assert_eq!(std::mem::size_of::<ObjAttr>(), 16);
    }

    #[test]
    fn a_file_that_is_not_bpf_is_refused() {
        let f = std::fs::File::open("/proc/self/exe").unwrap();
        use std::os::fd::AsFd;
        assert!(prog_info(f.as_fd()).is_err());
        assert!(!is_prog_fd(f.as_fd()));
        assert!(obj_get(Path::new("/proc/self/exe")).is_err());
    }
}
