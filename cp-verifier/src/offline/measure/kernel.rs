//! The kernel as OVMF sees it on QEMU direct boot (`-kernel`), and its Authenticode
//! SHA-384, which OVMF measures into RTMR1 when it loads the kernel's EFI stub.
//!
//! QEMU (`hw/i386/x86.c`, `x86_load_linux`) edits the bzImage setup header before
//! handing it to the firmware over fw_cfg; OVMF reassembles setup + kernel into one
//! PE file and measures that. [`qemu_patch_setup_header`] applies the same edits.
//! Newer QEMU also offers the unpatched file (`etc/boot/kernel`), which newer OVMF
//! loads instead: that case is [`KernelSetup::Raw`].

use super::{to_u64, Cursor, MeasureError};

/// Largest kernel read. bzImages are 5–15 MiB and unified kernel images with an
/// embedded initrd reach ~100 MiB; the image is held in memory to be patched.
pub const MAX_KERNEL_BYTES: u64 = 256 * 1024 * 1024;

/// Largest initrd hashed. QEMU places the initrd below min(RAM, 2.75 GiB) minus its
/// ACPI area, so a larger one can never boot; it is streamed, not held in memory.
pub const MAX_INITRD_BYTES: u64 = 0xB000_0000;

/// QEMU's `acpi_data_size` for the pc/q35 machine classes: 128 KiB of ACPI tables plus
/// 32 KiB of other firmware data, kept free at the top of low memory.
pub const QEMU_ACPI_DATA_SIZE: u64 = 0x28000;

/// PE/COFF allows at most 96 sections (the Windows loader's limit, which EDK2 and
/// every real EFI image respect); the count is untrusted.
const MAX_PE_SECTIONS: usize = 96;

const XLF_CAN_BE_LOADED_ABOVE_4G: u16 = 1 << 1;
const LOADED_HIGH: u8 = 1;
const CAN_USE_HEAP: u8 = 0x80;
/// QEMU's addresses for a "high and recent" kernel (boot protocol >= 2.02).
const REAL_ADDR: u32 = 0x10000;
const CMDLINE_ADDR: u32 = 0x20000;

/// Which kernel bytes the firmware measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum KernelSetup {
    /// The setup header as QEMU patches it (loader type, heap, command line and
    /// initrd address). OVMF before edk2-stable202505 / QEMU before the unpatched
    /// `etc/boot/kernel` blob: what dstack-mr and tdx-measure model for TDX.
    #[default]
    QemuPatched,
    /// The kernel file exactly as given (newer OVMF loading QEMU's unpatched copy).
    Raw,
}

/// q35's split of RAM below 4 GiB (`pc_q35_init`, default `max-ram-below-4g`).
fn below_4g_mem_size(memory: u64) -> u64 {
    let lowmem = if memory >= 0xB000_0000 {
        0x8000_0000
    } else {
        0xB000_0000
    };
    memory.min(lowmem)
}

/// The kernel with QEMU's setup-header edits for a TDX direct boot with `memory`
/// bytes of RAM, an initrd of `initrd_size` bytes (if any) and `cmdline`.
/// `memory` matters only with an initrd (it decides the initrd address).
pub fn qemu_patch_setup_header(
    kernel: &[u8],
    initrd_size: Option<u64>,
    memory: Option<u64>,
    cmdline: &str,
) -> Result<Vec<u8>, MeasureError> {
    let c = Cursor::new(kernel, "kernel");
    let bad = |field: &'static str, value: u64, reason: &'static str| MeasureError::BadKernel {
        field,
        value,
        reason,
    };
    let magic = c.u32(0x202, "setup header magic")?;
    if magic != 0x5372_6448 {
        return Err(bad(
            "setup header magic",
            u64::from(magic),
            "no \"HdrS\": not a bzImage",
        ));
    }
    let protocol = c.u16(0x206, "boot protocol version")?;
    let loadflags = c.bytes(0x211, 1, "loadflags")?[0];
    // Older or low-loaded kernels get a command-line address that depends on its
    // length and are not EFI-stub kernels anyway: not a TDX guest kernel.
    if protocol < 0x202 || loadflags & LOADED_HIGH == 0 {
        return Err(bad(
            "boot protocol version",
            u64::from(protocol),
            "older than 2.02 or not loaded high",
        ));
    }
    let setup_sects = c.bytes(0x1f1, 1, "setup_sects")?[0];
    // QEMU: 0 setup sectors means 4; plus the boot sector.
    let setup_size = (usize::from(if setup_sects == 0 { 4 } else { setup_sects }) + 1) * 512;
    if setup_size > kernel.len() {
        return Err(bad(
            "setup_sects",
            u64::from(setup_sects),
            "setup code larger than the kernel file",
        ));
    }
    let mut k = kernel.to_vec();
    // Every offset written is below 0x238 and the file is at least `setup_size`
    // (>= 1024) bytes, so `get_mut` always succeeds; it is used so that this can
    // never panic even if that reasoning were wrong.
    let mut put = |off: usize, bytes: &[u8]| {
        if let Some(dst) = k.get_mut(off..off + bytes.len()) {
            dst.copy_from_slice(bytes);
        }
    };

    // Highest initrd address, as QEMU computes it.
    let xloadflags = if protocol >= 0x20c {
        c.u16(0x236, "xloadflags")?
    } else {
        0
    };
    let mut initrd_max: u64 = if xloadflags & XLF_CAN_BE_LOADED_ABOVE_4G != 0 {
        u64::from(u32::MAX)
    } else if protocol >= 0x203 {
        u64::from(c.u32(0x22c, "initrd_addr_max")?)
    } else {
        0x37ff_ffff
    };

    put(0x228, &CMDLINE_ADDR.to_le_bytes());
    if let Some(mode) = vga_mode(cmdline)? {
        put(0x1fa, &mode.to_le_bytes());
    }
    put(0x210, &[0xb0]); // type_of_loader: QEMU
    put(0x211, &[loadflags | CAN_USE_HEAP]);
    let heap_end = u16::try_from(CMDLINE_ADDR - REAL_ADDR - 0x200).unwrap_or(u16::MAX);
    put(0x224, &heap_end.to_le_bytes());

    if let Some(size) = initrd_size {
        let memory = memory.ok_or(MeasureError::MissingInput {
            register: "rtmr1",
            input: "--memory (the initrd's address in the patched kernel depends on it)",
        })?;
        let below = below_4g_mem_size(memory);
        let avail = below
            .checked_sub(QEMU_ACPI_DATA_SIZE)
            .filter(|a| *a > 0)
            .ok_or(MeasureError::BadMemory {
                value: memory,
                reason: "no room below 4 GiB after QEMU's ACPI area",
            })?;
        if initrd_max >= avail {
            initrd_max = avail - 1;
        }
        if size >= initrd_max {
            return Err(MeasureError::InitrdTooLarge {
                size,
                max: initrd_max,
            });
        }
        let addr = (initrd_max - size) & !4095;
        // Both fit in u32: initrd_max <= u32::MAX and size < initrd_max.
        let addr = u32::try_from(addr).unwrap_or(u32::MAX);
        let size = u32::try_from(size).unwrap_or(u32::MAX);
        put(0x218, &addr.to_le_bytes());
        put(0x21c, &size.to_le_bytes());
    }
    Ok(k)
}

/// QEMU's `vga=` handling: the first "vga=" anywhere in the command line (a plain
/// substring search, as QEMU's `strstr`) sets the setup header's video mode.
fn vga_mode(cmdline: &str) -> Result<Option<u16>, MeasureError> {
    let Some(pos) = cmdline.find("vga=") else {
        return Ok(None);
    };
    let v = &cmdline[pos + 4..];
    let mode: u32 = if v.starts_with("normal") {
        0xffff
    } else if v.starts_with("ext") {
        0xfffe
    } else if v.starts_with("ask") {
        0xfffd
    } else {
        let word = v.split(' ').next().unwrap_or("");
        let parsed = if let Some(h) = word.strip_prefix("0x").or_else(|| word.strip_prefix("0X")) {
            u32::from_str_radix(h, 16)
        } else if word.len() > 1 && word.starts_with('0') {
            u32::from_str_radix(&word[1..], 8)
        } else {
            word.parse::<u32>()
        };
        parsed.map_err(|_| MeasureError::BadCmdline {
            reason: "vga= value QEMU would refuse or that this tool does not parse like QEMU",
        })?
    };
    // QEMU stores the unsigned int into a 16-bit field.
    Ok(Some(u16::try_from(mode & 0xffff).unwrap_or(u16::MAX)))
}

/// The Authenticode SHA-384 of a PE/COFF image as EDK2 computes it when it measures
/// an image it loads (`MeasurePeImageAndExtend`): the headers without the checksum
/// and the certificate-table entry, the sections in file order, then any data after
/// them except the certificate table. No zero padding is appended.
///
/// dstack-mr and tdx-measure differ in two corner cases: they pad the hashed data to
/// a multiple of 8 bytes and skip trailing data when the image has no certificate
/// table. For a file whose size is a multiple of 8 and whose sections end at the end
/// of the file the results are equal. Where they differ this follows EDK2, the code
/// that actually measures; no real TD was available here to settle it.
pub fn authenticode_sha384(pe: &[u8]) -> Result<[u8; 48], MeasureError> {
    use sha2::{Digest, Sha384};
    let c = Cursor::new(pe, "kernel");
    let bad = |field: &'static str, value: u64, reason: &'static str| MeasureError::BadKernel {
        field,
        value,
        reason,
    };
    let mz = c.u16(0, "DOS magic")?;
    if mz != 0x5a4d {
        return Err(bad(
            "DOS magic",
            u64::from(mz),
            "no \"MZ\": not an EFI-stub (PE) kernel",
        ));
    }
    let lfanew = usize::try_from(c.u32(0x3c, "e_lfanew")?).unwrap_or(usize::MAX);
    let sig = c.u32(lfanew, "PE signature")?;
    if sig != 0x0000_4550 {
        return Err(bad("PE signature", u64::from(sig), "not \"PE\\0\\0\""));
    }
    let coff = lfanew + 4;
    let nsec = usize::from(c.u16(coff + 2, "NumberOfSections")?);
    let opt_size = usize::from(c.u16(coff + 16, "SizeOfOptionalHeader")?);
    let opt = coff + 20;
    let magic = c.u16(opt, "optional header magic")?;
    let (nrva_off, dd_off) = match magic {
        0x10b => (opt + 92, opt + 96),
        0x20b => (opt + 108, opt + 112),
        other => {
            return Err(bad(
                "optional header magic",
                u64::from(other),
                "neither PE32 nor PE32+",
            ))
        }
    };
    let checksum = opt + 64;
    let soh = usize::try_from(c.u32(opt + 60, "SizeOfHeaders")?).unwrap_or(usize::MAX);
    let nrva = c.u32(nrva_off, "NumberOfRvaAndSizes")?;
    let has_cert_dir = nrva > 4;
    let cert_dir = dd_off + 4 * 8;

    let mut h = Sha384::new();
    h.update(c.bytes(0, checksum, "PE headers")?);
    if has_cert_dir {
        if cert_dir < checksum + 4 || cert_dir + 8 > soh {
            return Err(bad(
                "SizeOfHeaders",
                to_u64(soh),
                "headers end before the certificate-table entry",
            ));
        }
        h.update(c.bytes(checksum + 4, cert_dir - checksum - 4, "PE headers")?);
        h.update(c.bytes(cert_dir + 8, soh - cert_dir - 8, "PE headers")?);
    } else {
        if soh < checksum + 4 {
            return Err(bad(
                "SizeOfHeaders",
                to_u64(soh),
                "headers end before the checksum",
            ));
        }
        h.update(c.bytes(checksum + 4, soh - checksum - 4, "PE headers")?);
    }

    if nsec > MAX_PE_SECTIONS {
        return Err(bad(
            "NumberOfSections",
            to_u64(nsec),
            "more than 96 sections",
        ));
    }
    let table = opt + opt_size;
    let mut sections = Vec::with_capacity(nsec);
    for i in 0..nsec {
        let at = table + i * 40;
        let size = usize::try_from(c.u32(at + 16, "section SizeOfRawData")?).unwrap_or(usize::MAX);
        let ptr =
            usize::try_from(c.u32(at + 20, "section PointerToRawData")?).unwrap_or(usize::MAX);
        if size > 0 {
            sections.push((ptr, size));
        }
    }
    // EDK2 insertion-sorts by PointerToRawData; a stable sort gives the same order.
    sections.sort_by_key(|&(ptr, _)| ptr);
    let mut sum = soh;
    for (ptr, size) in sections {
        h.update(c.bytes(ptr, size, "section raw data")?);
        sum = sum.saturating_add(size);
    }
    if pe.len() > sum {
        let cert_size = if has_cert_dir {
            usize::try_from(c.u32(cert_dir + 4, "certificate table size")?).unwrap_or(usize::MAX)
        } else {
            0
        };
        let covered = sum.saturating_add(cert_size);
        if pe.len() > covered {
            h.update(c.bytes(sum, pe.len() - covered, "trailing data")?);
        } else if pe.len() < covered {
            // EDK2 refuses such an image (EFI_UNSUPPORTED): it is never measured.
            return Err(bad(
                "certificate table size",
                to_u64(cert_size),
                "larger than the data after the sections",
            ));
        }
    }
    Ok(h.finalize().into())
}
