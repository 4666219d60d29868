//! Offline TDX launch measurements: what MRTD (and, for direct kernel boot, RTMR1 and
//! RTMR2) a TD built by QEMU from given files will have. CI runs this at release
//! (`cp-verifier measure`) and attests the resulting manifest; the control plane
//! compares a quote's registers with the attested values.
//!
//! # What each register depends on
//!
//! - **MRTD**: the firmware image (its TDVF metadata and the bytes of every section
//!   with MR.EXTEND) and the page-add order ([`Layout`]). Nothing else: not the
//!   memory size, CPU count, kernel or command line.
//!   - [`Layout::SinglePass`] (the default): each page is added and then extended
//!     before the next (QEMU >= 9 with upstream KVM's `KVM_TDX_INIT_MEM_REGION`; TDX
//!     is upstream in QEMU 10.1 and Linux 6.16, so this is the current layout).
//!   - [`Layout::TwoPass`]: all pages of a section are added, then all are extended
//!     (QEMU 8.x with the pre-upstream TDX KVM patches).
//! - **RTMR0**: never computed. It holds the TD HOB QEMU builds (memory size and
//!   layout), the CFV variable store, Secure Boot variables, separators, the ACPI
//!   tables QEMU generates for the machine (CPUs, devices, options) and the boot
//!   order. Those are VMM outputs this tool does not take as inputs; printing a value
//!   anyway would be a guess. The manifest says so under `not_computed`.
//! - **RTMR1** (only with `--kernel`, i.e. QEMU direct boot): the Authenticode
//!   SHA-384 of the kernel as the firmware loads it ([`KernelSetup`]: with QEMU's
//!   setup-header patch by default, which itself depends on the initrd's *size*,
//!   the `--memory` size when there is an initrd, and a `vga=` in the command line),
//!   then OVMF's fixed boot events: "Calling EFI Application from Boot Option", the
//!   separator, "Exit Boot Services Invocation", "Exit Boot Services Returned with
//!   Success". The event list is the one dstack-mr and tdx-measure use for OVMF
//!   direct boot; a firmware that logs other events into RTMR1 gives another value.
//! - **RTMR2** (only with `--kernel`): the kernel's EFI stub measures its load
//!   options, the UTF-16LE command line OVMF builds (`cmdline`, plus
//!   `" initrd=initrd"` when there is an initrd, NUL-terminated), then the initrd's
//!   SHA-384. So it depends on the command line and the initrd's content, and needs
//!   a kernel whose EFI stub measures into the TD's RTMRs.
//!
//! Registers not computed are `null` in the manifest (present, never omitted), and
//! `register_inputs` lists, for each computed register, the inputs it depends on.
//!
//! # Untrusted input
//!
//! Firmware and kernel files are parsed with bounds-checked reads ([`Cursor`], over
//! [`evidence::codec::Reader`], returns a typed error, never panics), under size caps
//! ([`MAX_FIRMWARE_BYTES`], [`MAX_KERNEL_BYTES`], [`MAX_INITRD_BYTES`],
//! [`MAX_CMDLINE_BYTES`]), and every failure is a [`MeasureError`] naming the field.

mod kernel;
mod tdvf;

use std::io::Read;
use std::path::Path;

use evidence::codec::Reader;
use serde_json::{json, Value};
use sha2::{Digest, Sha256, Sha384};

pub use kernel::{
    authenticode_sha384, qemu_patch_setup_header, KernelSetup, MAX_INITRD_BYTES, MAX_KERNEL_BYTES,
    QEMU_ACPI_DATA_SIZE,
};
pub use tdvf::{
    Section, SectionKind, Tdvf, ATTR_MR_EXTEND, ATTR_PAGE_AUG, MAX_FIRMWARE_BYTES,
    MAX_MEASURED_MEMORY, MAX_SECTIONS, TABLE_FOOTER_GUID, TDX_METADATA_OFFSET_GUID,
};

use crate::offline::verify::Outcome;

/// Longest kernel command line accepted. x86 Linux's COMMAND_LINE_SIZE is 2 KiB by
/// default and rarely configured past a few KiB; 64 KiB leaves room without letting
/// an argument grow without bound.
pub const MAX_CMDLINE_BYTES: usize = 64 * 1024;

/// Why RTMR0 is not computed (printed in the manifest).
pub const RTMR0_NOT_COMPUTED: &str = "RTMR0 measures the TD HOB and ACPI tables QEMU builds \
(memory size, CPUs, devices, machine options), the CFV variable store, Secure Boot \
variables and the boot order; this tool takes none of those VMM outputs as inputs, so it \
cannot compute RTMR0 honestly";

/// The order in which QEMU/KVM add and extend a section's pages (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Layout {
    /// Add then extend each page in turn (QEMU >= 9, upstream KVM). The default.
    #[default]
    SinglePass,
    /// Add all pages of a section, then extend them (QEMU 8.x, pre-upstream KVM).
    TwoPass,
}

impl Layout {
    /// The `layout` string of the manifest and CLI (`single-pass`, `two-pass`).
    pub fn as_str(self) -> &'static str {
        match self {
            Layout::SinglePass => "single-pass",
            Layout::TwoPass => "two-pass",
        }
    }
}

/// Why a firmware, kernel or option cannot be measured. Each variant names the
/// input or field at fault; [`MeasureError::kind`] is its stable name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MeasureError {
    /// An input is over its size cap.
    #[error("{input} is larger than {max} bytes")]
    TooLarge {
        /// Which input (`firmware`, `kernel`, `initrd`).
        input: &'static str,
        /// The cap in bytes.
        max: u64,
    },
    /// A read at `offset` needs more bytes than the input has.
    #[error("{input}: {field} at offset {offset:#x} needs {need} bytes, the file has {len}")]
    Truncated {
        /// Which input (`firmware`, `kernel`).
        input: &'static str,
        /// The field being read.
        field: &'static str,
        /// Byte offset of the read in the input.
        offset: u64,
        /// Bytes the read needs.
        need: u64,
        /// Length of the input in bytes.
        len: u64,
    },
    /// The firmware does not end with OVMF's GUID table footer.
    #[error("firmware has no OVMF GUID table footer (96b582de-...) 32 bytes before its end")]
    NoGuidTable,
    /// OVMF's GUID table is malformed.
    #[error("firmware GUID table: {field} = {value:#x}: {reason}")]
    BadGuidTable {
        /// The table field at fault.
        field: &'static str,
        /// Its value.
        value: u64,
        /// Why it is refused.
        reason: &'static str,
    },
    /// The GUID table has no TDX metadata offset entry: not a TDX firmware.
    #[error("firmware GUID table has no TDX metadata entry (e47a6535-...): not a TDX build")]
    NoTdvfMetadata,
    /// The TDVF metadata descriptor is malformed.
    #[error("TDVF descriptor: {field} = {value:#x}: {reason}")]
    BadDescriptor {
        /// The descriptor field at fault.
        field: &'static str,
        /// Its value.
        value: u64,
        /// Why it is refused.
        reason: &'static str,
    },
    /// A TDVF section descriptor is malformed.
    #[error("TDVF section {index}: {field} = {value:#x}: {reason}")]
    BadSection {
        /// Index of the section in the descriptor.
        index: usize,
        /// The section field at fault.
        field: &'static str,
        /// Its value.
        value: u64,
        /// Why it is refused.
        reason: &'static str,
    },
    /// A TDVF section is well-formed but asks for something not measured here.
    #[error("TDVF section {index}: {reason}: not supported")]
    UnsupportedSection {
        /// Index of the section in the descriptor.
        index: usize,
        /// What is not supported.
        reason: &'static str,
    },
    /// The kernel's setup header or PE/COFF image is malformed.
    #[error("kernel: {field} = {value:#x}: {reason}")]
    BadKernel {
        /// The kernel field at fault.
        field: &'static str,
        /// Its value.
        value: u64,
        /// Why it is refused.
        reason: &'static str,
    },
    /// Computing `register` needs an input that was not given.
    #[error("{register} needs {input}")]
    MissingInput {
        /// The register (`rtmr1`, ...).
        register: &'static str,
        /// The missing input (a CLI option, with why).
        input: &'static str,
    },
    /// The `--memory` size cannot hold QEMU's layout.
    #[error("memory size {value}: {reason}")]
    BadMemory {
        /// The memory size in bytes.
        value: u64,
        /// Why it does not fit.
        reason: &'static str,
    },
    /// The initrd does not fit below the address QEMU would load it under.
    #[error("initrd of {size} bytes does not fit below QEMU's initrd limit {max:#x}")]
    InitrdTooLarge {
        /// Initrd size in bytes.
        size: u64,
        /// QEMU's initrd address limit (setup header `initrd_addr_max`, capped by RAM
        /// below 4 GiB); the initrd must be smaller.
        max: u64,
    },
    /// The kernel command line is refused.
    #[error("command line: {reason}")]
    BadCmdline {
        /// Why it is refused.
        reason: &'static str,
    },
    /// Reading an input failed.
    #[error("reading {input}: {detail}")]
    Io {
        /// Which input.
        input: &'static str,
        /// The I/O error.
        detail: String,
    },
}

impl MeasureError {
    /// The stable `error.kind` of the CLI's JSON.
    pub fn kind(&self) -> &'static str {
        match self {
            MeasureError::TooLarge { .. } => "TooLarge",
            MeasureError::Truncated { .. } => "Truncated",
            MeasureError::NoGuidTable => "NoGuidTable",
            MeasureError::BadGuidTable { .. } => "BadGuidTable",
            MeasureError::NoTdvfMetadata => "NoTdvfMetadata",
            MeasureError::BadDescriptor { .. } => "BadTdvfDescriptor",
            MeasureError::BadSection { .. } => "BadTdvfSection",
            MeasureError::UnsupportedSection { .. } => "UnsupportedTdvfSection",
            MeasureError::BadKernel { .. } => "BadKernel",
            MeasureError::MissingInput { .. } => "MissingInput",
            MeasureError::BadMemory { .. } => "BadMemory",
            MeasureError::InitrdTooLarge { .. } => "InitrdTooLarge",
            MeasureError::BadCmdline { .. } => "BadCmdline",
            MeasureError::Io { .. } => "Io",
        }
    }
}

pub(crate) fn to_u64(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

/// Bounds-checked little-endian reads at absolute offsets of an untrusted file: an
/// [`evidence::codec::Reader`] that names the file in its errors. Every read returns
/// [`MeasureError::Truncated`] naming the field instead of panicking.
#[derive(Debug, Clone, Copy)]
pub struct Cursor<'a> {
    reader: Reader<'a>,
    input: &'static str,
}

impl<'a> Cursor<'a> {
    /// A cursor over `buf`; errors name `input` (`firmware`, `kernel`).
    pub fn new(buf: &'a [u8], input: &'static str) -> Cursor<'a> {
        Cursor {
            reader: Reader::new(buf),
            input,
        }
    }

    /// Length of the input in bytes.
    pub fn len(&self) -> usize {
        self.reader.len()
    }

    /// Whether the input is empty.
    pub fn is_empty(&self) -> bool {
        self.reader.is_empty()
    }

    fn truncated(&self, field: &'static str, offset: usize, need: usize) -> MeasureError {
        MeasureError::Truncated {
            input: self.input,
            field,
            offset: to_u64(offset),
            need: to_u64(need),
            len: to_u64(self.reader.len()),
        }
    }

    /// `len` bytes at `offset`.
    pub fn bytes(
        &self,
        offset: usize,
        len: usize,
        field: &'static str,
    ) -> Result<&'a [u8], MeasureError> {
        self.reader
            .bytes_at(offset, len, field)
            .map_err(|_| self.truncated(field, offset, len))
    }

    /// The little-endian `u16` at `offset`.
    pub fn u16(&self, offset: usize, field: &'static str) -> Result<u16, MeasureError> {
        self.reader
            .u16_at(offset, field)
            .map_err(|_| self.truncated(field, offset, 2))
    }

    /// The little-endian `u32` at `offset`.
    pub fn u32(&self, offset: usize, field: &'static str) -> Result<u32, MeasureError> {
        self.reader
            .u32_at(offset, field)
            .map_err(|_| self.truncated(field, offset, 4))
    }

    /// The little-endian `u64` at `offset`.
    pub fn u64(&self, offset: usize, field: &'static str) -> Result<u64, MeasureError> {
        self.reader
            .u64_at(offset, field)
            .map_err(|_| self.truncated(field, offset, 8))
    }
}

/// An RTMR after replaying `events` (digests) from 48 zero bytes:
/// `rtmr = SHA-384(rtmr || digest)` per event.
pub fn replay(events: &[[u8; 48]]) -> [u8; 48] {
    events.iter().fold([0u8; 48], |acc, e| {
        let mut h = Sha384::new();
        h.update(acc);
        h.update(e);
        h.finalize().into()
    })
}

fn sha384(data: &[u8]) -> [u8; 48] {
    Sha384::digest(data).into()
}

/// RTMR1's event digests for OVMF direct boot, given the kernel's Authenticode digest.
pub fn rtmr1_events(kernel_authenticode: [u8; 48]) -> Vec<[u8; 48]> {
    vec![
        kernel_authenticode,
        sha384(b"Calling EFI Application from Boot Option"),
        sha384(&[0, 0, 0, 0]), // separator
        sha384(b"Exit Boot Services Invocation"),
        sha384(b"Exit Boot Services Returned with Success"),
    ]
}

/// The load options OVMF passes to a directly booted kernel: the command line, plus
/// `" initrd=initrd"` when QEMU supplies an initrd, in UTF-16LE with a NUL.
/// OVMF widens each byte to one UTF-16 unit, so only ASCII is accepted here.
pub fn load_options_utf16(cmdline: &str, has_initrd: bool) -> Result<Vec<u8>, MeasureError> {
    check_cmdline(cmdline)?;
    let full = if has_initrd {
        format!("{cmdline} initrd=initrd")
    } else {
        cmdline.to_string()
    };
    let mut out: Vec<u8> = full.encode_utf16().flat_map(u16::to_le_bytes).collect();
    out.extend([0, 0]);
    Ok(out)
}

fn check_cmdline(cmdline: &str) -> Result<(), MeasureError> {
    if cmdline.len() > MAX_CMDLINE_BYTES {
        return Err(MeasureError::BadCmdline {
            reason: "longer than 64 KiB",
        });
    }
    if !cmdline.is_ascii() {
        return Err(MeasureError::BadCmdline {
            reason: "not ASCII (OVMF widens bytes, not UTF-8, to UTF-16)",
        });
    }
    if cmdline.contains('\0') {
        return Err(MeasureError::BadCmdline {
            reason: "contains NUL, which would end it early",
        });
    }
    Ok(())
}

/// RTMR2's event digests: the load options, then the initrd (if any).
pub fn rtmr2_events(
    cmdline: &str,
    initrd_sha384: Option<[u8; 48]>,
) -> Result<Vec<[u8; 48]>, MeasureError> {
    let mut ev = vec![sha384(&load_options_utf16(
        cmdline,
        initrd_sha384.is_some(),
    )?)];
    ev.extend(initrd_sha384);
    Ok(ev)
}

/// `sha256:<hex>` of the 48 raw MRTD bytes: the subject digest under which CI attests
/// the manifest and the control plane looks it up.
pub fn mrtd_subject_digest(mrtd: &[u8; 48]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(mrtd)))
}

/// Size and digests of an initrd, streamed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct InitrdDigest {
    /// Bytes read.
    pub size: u64,
    /// SHA-256 of the content (recorded in the manifest).
    pub sha256: [u8; 32],
    /// SHA-384 of the content (RTMR2's initrd event).
    pub sha384: [u8; 48],
}

/// Hashes an initrd from `r` without holding it in memory, refusing more than
/// [`MAX_INITRD_BYTES`].
pub fn digest_initrd<R: Read>(mut r: R) -> Result<InitrdDigest, MeasureError> {
    let mut s256 = Sha256::new();
    let mut s384 = Sha384::new();
    let mut size: u64 = 0;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = match r.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                return Err(MeasureError::Io {
                    input: "initrd",
                    detail: e.to_string(),
                })
            }
        };
        size = size.saturating_add(to_u64(n));
        if size > MAX_INITRD_BYTES {
            return Err(MeasureError::TooLarge {
                input: "initrd",
                max: MAX_INITRD_BYTES,
            });
        }
        let chunk = buf.get(..n).unwrap_or(&[]);
        s256.update(chunk);
        s384.update(chunk);
    }
    Ok(InitrdDigest {
        size,
        sha256: s256.finalize().into(),
        sha384: s384.finalize().into(),
    })
}

/// A QEMU direct boot (`-kernel`, `-initrd`, `-append`, `-m`).
#[derive(Debug, Clone)]
pub struct DirectBoot<'a> {
    /// The kernel image as given to `-kernel` (bzImage).
    pub kernel: &'a [u8],
    /// Whether to apply QEMU's setup-header patch before hashing.
    pub kernel_setup: KernelSetup,
    /// The initrd's size and digests, if `-initrd` is given.
    pub initrd: Option<&'a InitrdDigest>,
    /// `-append`; QEMU's default is the empty string.
    pub cmdline: &'a str,
    /// Guest RAM in bytes (`-m`); needed when there is an initrd and the setup header
    /// is patched.
    pub memory: Option<u64>,
}

/// The computed registers. `rtmr0` is always `None` (see the module doc).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Measurements {
    /// MRTD.
    pub mrtd: [u8; 48],
    /// Always `None`: RTMR0 is not computed.
    pub rtmr0: Option<[u8; 48]>,
    /// RTMR1, with direct boot.
    pub rtmr1: Option<[u8; 48]>,
    /// RTMR2, with direct boot.
    pub rtmr2: Option<[u8; 48]>,
    /// The page-add order MRTD was computed for.
    pub layout: Layout,
    /// The firmware's TDVF sections, in metadata order.
    pub sections: Vec<Section>,
}

/// Computes MRTD from `firmware`, and RTMR1/RTMR2 when `boot` is given.
pub fn measure(
    firmware: &[u8],
    layout: Layout,
    boot: Option<&DirectBoot<'_>>,
) -> Result<Measurements, MeasureError> {
    let tdvf = Tdvf::parse(firmware)?;
    let mrtd = tdvf.mrtd(layout);
    let (rtmr1, rtmr2) = match boot {
        None => (None, None),
        Some(b) => {
            if to_u64(b.kernel.len()) > MAX_KERNEL_BYTES {
                return Err(MeasureError::TooLarge {
                    input: "kernel",
                    max: MAX_KERNEL_BYTES,
                });
            }
            check_cmdline(b.cmdline)?;
            let digest = match b.kernel_setup {
                KernelSetup::QemuPatched => {
                    let patched = qemu_patch_setup_header(
                        b.kernel,
                        b.initrd.map(|i| i.size),
                        b.memory,
                        b.cmdline,
                    )?;
                    authenticode_sha384(&patched)?
                }
                KernelSetup::Raw => authenticode_sha384(b.kernel)?,
            };
            let r1 = replay(&rtmr1_events(digest));
            let r2 = replay(&rtmr2_events(b.cmdline, b.initrd.map(|i| i.sha384))?);
            (Some(r1), Some(r2))
        }
    };
    Ok(Measurements {
        mrtd,
        rtmr0: None,
        rtmr1,
        rtmr2,
        layout,
        sections: tdvf.sections().to_vec(),
    })
}

/// One input file as the manifest records it. `path` is informational (as given on
/// the command line); `sha256` is what identifies the file.
#[derive(Debug, Clone, serde::Serialize)]
pub struct FileInput {
    /// The path as given (informational).
    pub path: String,
    /// Lowercase hex SHA-256 of the content.
    pub sha256: String,
    /// Size in bytes.
    pub size: u64,
}

impl FileInput {
    /// Records the file read from `path` with content `bytes`.
    pub fn of(path: &Path, bytes: &[u8]) -> FileInput {
        FileInput {
            path: path.display().to_string(),
            sha256: hex::encode(Sha256::digest(bytes)),
            size: to_u64(bytes.len()),
        }
    }
}

/// Everything the manifest records about its inputs.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ManifestInputs {
    /// The firmware image.
    pub firmware: Option<FileInput>,
    /// The kernel, with direct boot.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kernel: Option<FileInput>,
    /// How the kernel was hashed, with direct boot.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kernel_setup: Option<KernelSetup>,
    /// The initrd, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub initrd: Option<FileInput>,
    /// The kernel command line, with direct boot (empty when not given).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cmdline: Option<String>,
    /// Guest RAM in bytes (`--memory`), if given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory: Option<u64>,
}

/// The measurement manifest (the predicate CI attests):
/// `{"mrtd","rtmr0","rtmr1","rtmr2","layout","inputs","register_inputs",
/// "not_computed","tdvf_sections"}`; registers are lowercase hex or `null`.
pub fn manifest(m: &Measurements, inputs: &ManifestInputs) -> Value {
    let hex48 = |r: &Option<[u8; 48]>| r.as_ref().map(hex::encode);
    let mut register_inputs = serde_json::Map::new();
    register_inputs.insert("mrtd".into(), json!(["firmware", "layout"]));
    let mut not_computed = serde_json::Map::new();
    not_computed.insert("rtmr0".into(), json!(RTMR0_NOT_COMPUTED));
    if m.rtmr1.is_some() {
        let mut r1 = vec!["kernel", "kernel_setup"];
        if inputs.kernel_setup == Some(KernelSetup::QemuPatched) {
            if inputs.initrd.is_some() {
                r1.extend(["initrd.size", "memory"]);
            }
            if inputs
                .cmdline
                .as_deref()
                .is_some_and(|c| c.contains("vga="))
            {
                r1.push("cmdline (vga=)");
            }
        }
        register_inputs.insert("rtmr1".into(), json!(r1));
    } else {
        not_computed.insert(
            "rtmr1".into(),
            json!("no --kernel: RTMR1 is computed only for QEMU direct kernel boot"),
        );
    }
    if m.rtmr2.is_some() {
        let mut r2 = vec!["cmdline"];
        if inputs.initrd.is_some() {
            r2.push("initrd");
        }
        register_inputs.insert("rtmr2".into(), json!(r2));
    } else {
        not_computed.insert(
            "rtmr2".into(),
            json!("no --kernel: RTMR2 is computed only for QEMU direct kernel boot"),
        );
    }
    json!({
        "mrtd": hex::encode(m.mrtd),
        "rtmr0": hex48(&m.rtmr0),
        "rtmr1": hex48(&m.rtmr1),
        "rtmr2": hex48(&m.rtmr2),
        "layout": m.layout.as_str(),
        "inputs": inputs,
        "register_inputs": register_inputs,
        "not_computed": not_computed,
        "tdvf_sections": m.sections,
    })
}

/// Parses a memory size as QEMU's `-m` does: a number with an optional binary suffix
/// K, M, G or T (a bare number is MiB), or B for bytes.
pub fn parse_memory_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, suffix) = s.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("memory size {s:?}: expected a number with K, M, G or T"))?;
    let shift = match suffix.to_ascii_uppercase().as_str() {
        "B" => 0,
        "K" | "KB" | "KIB" => 10,
        "" | "M" | "MB" | "MIB" => 20,
        "G" | "GB" | "GIB" => 30,
        "T" | "TB" | "TIB" => 40,
        _ => return Err(format!("memory size {s:?}: unknown suffix {suffix:?}")),
    };
    n.checked_mul(1u64 << shift)
        .filter(|v| *v > 0)
        .ok_or_else(|| format!("memory size {s:?}: zero or too large"))
}

/// `cp-verifier measure` arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct MeasureArgs {
    /// The TDVF/OVMF firmware image (QEMU -bios), e.g. /usr/share/ovmf/OVMF.fd.
    #[arg(long)]
    pub firmware: std::path::PathBuf,
    /// The kernel for QEMU direct boot (-kernel): adds RTMR1 and RTMR2.
    #[arg(long)]
    pub kernel: Option<std::path::PathBuf>,
    /// The initrd (-initrd). Needs --kernel, and --memory unless
    /// --kernel-setup raw.
    #[arg(long, requires = "kernel")]
    pub initrd: Option<std::path::PathBuf>,
    /// The kernel command line (-append), ASCII; default empty, as QEMU's.
    #[arg(long, requires = "kernel")]
    pub cmdline: Option<String>,
    /// Guest RAM as QEMU's -m takes it: 4G, 2048M, 2048 (MiB). Decides where
    /// QEMU puts the initrd, which the patched kernel header records.
    #[arg(long)]
    pub memory: Option<String>,
    /// Page-add order: single-pass (QEMU >= 9, upstream KVM) or two-pass
    /// (QEMU 8.x).
    #[arg(long, value_enum, default_value_t = Layout::SinglePass)]
    pub layout: Layout,
    /// Which kernel bytes the firmware measures: qemu-patched (QEMU's
    /// setup-header edits) or raw (newer OVMF loading QEMU's unpatched copy).
    #[arg(long, value_enum, default_value_t = KernelSetup::QemuPatched)]
    pub kernel_setup: KernelSetup,
}

fn outcome_error(code: i32, kind: &str, detail: impl Into<String>) -> Outcome {
    Outcome {
        code,
        json: json!({"error": {"kind": kind, "detail": detail.into()}}),
    }
}

fn read_input(path: &Path, max: u64, what: &'static str) -> Result<Vec<u8>, Outcome> {
    use provenant_base::fsutil::ReadError;
    provenant_base::fsutil::read_bounded(path, max).map_err(|e| match e {
        ReadError::TooLarge { max } => {
            let e = MeasureError::TooLarge { input: what, max };
            outcome_error(1, e.kind(), e.to_string())
        }
        ReadError::Io(e) => outcome_error(
            2,
            "Usage",
            format!("cannot read {what} {}: {e}", path.display()),
        ),
    })
}

/// `cp-verifier measure`: exit 0 with the manifest, 1 with `{"error":{..}}` when an
/// input is malformed, 2 for usage errors (missing or unreadable inputs, an option
/// that needs another).
pub fn measure_cmd(args: &MeasureArgs) -> Outcome {
    match run_measure(args) {
        Ok(o) | Err(o) => o,
    }
}

fn run_measure(a: &MeasureArgs) -> Result<Outcome, Outcome> {
    let usage = |d: &str| outcome_error(2, "Usage", d);
    let fw_path = a.firmware.as_path();
    if a.kernel.is_none() && (a.initrd.is_some() || a.cmdline.is_some()) {
        return Err(usage(
            "--initrd and --cmdline describe a direct kernel boot and need --kernel",
        ));
    }
    let memory = a
        .memory
        .as_deref()
        .map(parse_memory_size)
        .transpose()
        .map_err(|e| usage(&e))?;
    let firmware = read_input(fw_path, MAX_FIRMWARE_BYTES, "firmware")?;
    let mut inputs = ManifestInputs {
        firmware: Some(FileInput::of(fw_path, &firmware)),
        memory,
        ..ManifestInputs::default()
    };
    let fail = |e: MeasureError| {
        let code = if matches!(e, MeasureError::MissingInput { .. }) {
            2
        } else {
            1
        };
        outcome_error(code, e.kind(), e.to_string())
    };
    let m = match a.kernel.as_deref() {
        None => measure(&firmware, a.layout, None).map_err(fail)?,
        Some(kp) => {
            let kernel = read_input(kp, MAX_KERNEL_BYTES, "kernel")?;
            let initrd = match a.initrd.as_deref() {
                None => None,
                Some(ip) => {
                    let f = std::fs::File::open(ip)
                        .map_err(|e| usage(&format!("cannot read initrd {}: {e}", ip.display())))?;
                    let d = digest_initrd(std::io::BufReader::new(f)).map_err(fail)?;
                    inputs.initrd = Some(FileInput {
                        path: ip.display().to_string(),
                        sha256: hex::encode(d.sha256),
                        size: d.size,
                    });
                    Some(d)
                }
            };
            let cmdline = a.cmdline.as_deref().unwrap_or("");
            inputs.kernel = Some(FileInput::of(kp, &kernel));
            inputs.kernel_setup = Some(a.kernel_setup);
            inputs.cmdline = Some(cmdline.to_string());
            let boot = DirectBoot {
                kernel: &kernel,
                kernel_setup: a.kernel_setup,
                initrd: initrd.as_ref(),
                cmdline,
                memory,
            };
            measure(&firmware, a.layout, Some(&boot)).map_err(fail)?
        }
    };
    Ok(Outcome {
        code: 0,
        json: manifest(&m, &inputs),
    })
}
