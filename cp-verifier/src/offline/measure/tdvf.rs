//! TDVF (TDX OVMF) metadata and MRTD.
//!
//! Where QEMU (`hw/i386/tdvf.c`) validates the metadata, this parser applies the same
//! rules, so a firmware QEMU would refuse to launch is refused here too rather than
//! given a measurement no TD can have. Rules QEMU does not have are marked as ours.

use sha2::{Digest, Sha384};

use super::{to_u64, Cursor, Layout, MeasureError};

/// Largest firmware image read. OVMF builds are 2–4 MiB; QEMU maps the image just
/// below 4 GiB, and nothing near 64 MiB fits that window next to the other MMIO.
pub const MAX_FIRMWARE_BYTES: u64 = 64 * 1024 * 1024;

/// Most TDVF sections accepted. Real TDVF has 4–8; the count is an untrusted u32 and
/// every section costs a bounds check, so a small cap keeps parsing trivially cheap.
pub const MAX_SECTIONS: u32 = 64;

/// Most bytes of TD memory the measured (non-PAGE.AUG) sections may span in total.
/// MRTD work is one SHA-384 block per 4 KiB page plus the extended data, and real
/// TDVF measures a few MiB; a section claiming terabytes would otherwise make the
/// hash loop run for hours on a 32-byte lie.
pub const MAX_MEASURED_MEMORY: u64 = 1024 * 1024 * 1024;

const PAGE: u64 = 0x1000;
const PAGE_USIZE: usize = 0x1000;
/// TDH.MR.EXTEND measures 256 bytes at a time.
const EXTEND_CHUNK: usize = 256;

/// Bytes from the end of the image to the end of the GUID table footer (the reset
/// vector and padding follow it).
const FOOTER_TAIL: usize = 32;
const GUID_ENTRY_HEADER: usize = 18; // u16 length + 16-byte GUID

/// Section attribute: TDH.MR.EXTEND the section's content into MRTD.
pub const ATTR_MR_EXTEND: u32 = 1;
/// Section attribute: the pages are added later with TDH.MEM.PAGE.AUG (not measured).
pub const ATTR_PAGE_AUG: u32 = 2;

/// A GUID in its on-disk (mixed-endian) form.
const fn guid(d1: u32, d2: u16, d3: u16, d4: [u8; 8]) -> [u8; 16] {
    let a = d1.to_le_bytes();
    let b = d2.to_le_bytes();
    let c = d3.to_le_bytes();
    [
        a[0], a[1], a[2], a[3], b[0], b[1], c[0], c[1], d4[0], d4[1], d4[2], d4[3], d4[4], d4[5],
        d4[6], d4[7],
    ]
}

/// 96b582de-1fb2-45f7-baea-a366c55a082d: OVMF's GUID-ed table footer.
pub const TABLE_FOOTER_GUID: [u8; 16] = guid(
    0x96b5_82de,
    0x1fb2,
    0x45f7,
    [0xba, 0xea, 0xa3, 0x66, 0xc5, 0x5a, 0x08, 0x2d],
);
/// e47a6535-984a-4798-865e-4685a7bf8ec2: the TDX metadata offset entry.
pub const TDX_METADATA_OFFSET_GUID: [u8; 16] = guid(
    0xe47a_6535,
    0x984a,
    0x4798,
    [0x86, 0x5e, 0x46, 0x85, 0xa7, 0xbf, 0x8e, 0xc2],
);

/// What a TDVF section holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub enum SectionKind {
    /// Boot firmware volume: code, copied from the image.
    #[serde(rename = "BFV")]
    Bfv,
    /// Configuration firmware volume: the variable store, copied from the image.
    #[serde(rename = "CFV")]
    Cfv,
    /// The TD hand-off block QEMU builds.
    #[serde(rename = "TD_HOB")]
    TdHob,
    /// Zeroed temporary memory.
    #[serde(rename = "TempMem")]
    TempMem,
}

impl SectionKind {
    fn from_u32(v: u32) -> Option<SectionKind> {
        match v {
            0 => Some(SectionKind::Bfv),
            1 => Some(SectionKind::Cfv),
            2 => Some(SectionKind::TdHob),
            3 => Some(SectionKind::TempMem),
            _ => None,
        }
    }

    /// The name the manifest uses (`BFV`, `CFV`, `TD_HOB`, `TempMem`).
    pub fn as_str(self) -> &'static str {
        match self {
            SectionKind::Bfv => "BFV",
            SectionKind::Cfv => "CFV",
            SectionKind::TdHob => "TD_HOB",
            SectionKind::TempMem => "TempMem",
        }
    }
}

/// One TDVF section descriptor, validated.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct Section {
    /// The section type.
    #[serde(rename = "type")]
    pub kind: SectionKind,
    /// Offset of the content in the image (BFV, CFV).
    pub data_offset: u32,
    /// Bytes of content in the image.
    pub raw_size: u32,
    /// Guest physical address of the section.
    pub gpa: u64,
    /// Bytes of TD memory the section occupies (a multiple of 4 KiB).
    pub mem_size: u64,
    /// Raw attribute bits.
    pub attributes: u32,
    /// [`ATTR_MR_EXTEND`] is set: the content is extended into MRTD.
    pub mr_extend: bool,
    /// [`ATTR_PAGE_AUG`] is set: the pages are not added (nor measured) at build time.
    pub page_aug: bool,
}

/// A parsed TDVF image: the image bytes and its validated sections, in metadata order
/// (the order QEMU adds them to the TD).
#[derive(Debug, Clone)]
pub struct Tdvf<'a> {
    image: &'a [u8],
    sections: Vec<Section>,
}

impl<'a> Tdvf<'a> {
    /// Finds and validates the TDVF metadata of `image` (the whole OVMF.fd).
    pub fn parse(image: &'a [u8]) -> Result<Tdvf<'a>, MeasureError> {
        if to_u64(image.len()) > MAX_FIRMWARE_BYTES {
            return Err(MeasureError::TooLarge {
                input: "firmware",
                max: MAX_FIRMWARE_BYTES,
            });
        }
        let c = Cursor::new(image, "firmware");
        let meta_off = find_metadata_offset(&c)?;
        let sections = parse_descriptor(&c, meta_off)?;
        Ok(Tdvf { image, sections })
    }

    /// The validated sections, in metadata order.
    pub fn sections(&self) -> &[Section] {
        &self.sections
    }

    /// MRTD as the TDX module computes it when QEMU builds the TD from this image,
    /// with the page-add order `layout`.
    pub fn mrtd(&self, layout: Layout) -> [u8; 48] {
        let mut h = Sha384::new();
        for s in &self.sections {
            // PAGE.AUG sections are neither added nor extended at build time (parse()
            // refuses PAGE.AUG with MR.EXTEND), and their size is not bounded by
            // MAX_MEASURED_MEMORY: walking their pages would only burn time.
            if s.page_aug {
                continue;
            }
            // parse() checked: measured bytes lie in the image and sizes fit usize.
            let content = self.content(s);
            let pages = s.mem_size / PAGE;
            match layout {
                Layout::TwoPass => {
                    for p in 0..pages {
                        page_add(&mut h, s, p);
                    }
                    for p in 0..pages {
                        extend_page(&mut h, s, p, content);
                    }
                }
                Layout::SinglePass => {
                    for p in 0..pages {
                        page_add(&mut h, s, p);
                        extend_page(&mut h, s, p, content);
                    }
                }
            }
        }
        h.finalize().into()
    }

    /// The bytes TDH.MR.EXTEND reads for a section: `mem_size` bytes from
    /// `data_offset` of the image (QEMU copies that many from there), or nothing for
    /// sections without MR.EXTEND.
    fn content(&self, s: &Section) -> &'a [u8] {
        if !s.mr_extend {
            return &[];
        }
        let start = usize::try_from(s.data_offset).unwrap_or(usize::MAX);
        let len = usize::try_from(s.mem_size).unwrap_or(usize::MAX);
        start
            .checked_add(len)
            .and_then(|end| self.image.get(start..end))
            .unwrap_or(&[])
    }
}

fn block(tag: &[u8], gpa: u64) -> [u8; 128] {
    let mut b = [0u8; 128];
    b[..tag.len()].copy_from_slice(tag);
    b[16..24].copy_from_slice(&gpa.to_le_bytes());
    b
}

fn page_add(h: &mut Sha384, s: &Section, page: u64) {
    if !s.page_aug {
        h.update(block(b"MEM.PAGE.ADD", s.gpa + page * PAGE));
    }
}

fn extend_page(h: &mut Sha384, s: &Section, page: u64, content: &[u8]) {
    if !s.mr_extend {
        return;
    }
    let base = usize::try_from(page).unwrap_or(usize::MAX) * PAGE_USIZE;
    for (i, chunk) in content
        .get(base..base + PAGE_USIZE)
        .unwrap_or(&[])
        .chunks_exact(EXTEND_CHUNK)
        .enumerate()
    {
        let gpa = s.gpa + page * PAGE + to_u64(i * EXTEND_CHUNK);
        h.update(block(b"MR.EXTEND", gpa));
        h.update(chunk);
    }
}

/// Walks OVMF's GUID table back from its footer to the TDX metadata offset entry and
/// returns the metadata's offset from the start of the image.
fn find_metadata_offset(c: &Cursor<'_>) -> Result<usize, MeasureError> {
    let len = c.len();
    let footer_end = len
        .checked_sub(FOOTER_TAIL)
        .ok_or_else(|| c.truncated("GUID table footer", 0, FOOTER_TAIL + GUID_ENTRY_HEADER))?;
    let footer_start = footer_end
        .checked_sub(GUID_ENTRY_HEADER)
        .ok_or_else(|| c.truncated("GUID table footer", 0, FOOTER_TAIL + GUID_ENTRY_HEADER))?;
    if c.bytes(footer_start + 2, 16, "GUID table footer GUID")? != TABLE_FOOTER_GUID {
        return Err(MeasureError::NoGuidTable);
    }
    let table_len = usize::from(c.u16(footer_start, "GUID table length")?);
    // The length covers every entry including the footer's own 18 bytes.
    let table_start = footer_end
        .checked_sub(table_len)
        .filter(|_| table_len >= GUID_ENTRY_HEADER)
        .ok_or(MeasureError::BadGuidTable {
            field: "table length",
            value: to_u64(table_len),
            reason: "shorter than its footer or longer than the image",
        })?;
    let mut end = footer_start;
    while end > table_start {
        if end - table_start < GUID_ENTRY_HEADER {
            return Err(MeasureError::BadGuidTable {
                field: "entry",
                value: to_u64(end - table_start),
                reason: "bytes left before the table start are fewer than an entry header",
            });
        }
        let g = c.bytes(end - 16, 16, "GUID table entry GUID")?;
        let entry_len = usize::from(c.u16(end - GUID_ENTRY_HEADER, "GUID table entry length")?);
        if entry_len < GUID_ENTRY_HEADER || entry_len > end - table_start {
            return Err(MeasureError::BadGuidTable {
                field: "entry length",
                value: to_u64(entry_len),
                reason: "smaller than an entry header or reaching before the table start",
            });
        }
        if g == TDX_METADATA_OFFSET_GUID {
            let data_len = entry_len - GUID_ENTRY_HEADER;
            if data_len != 4 {
                return Err(MeasureError::BadGuidTable {
                    field: "TDX metadata offset entry length",
                    value: to_u64(entry_len),
                    reason: "its data must be exactly one u32",
                });
            }
            let off = usize::try_from(c.u32(end - entry_len, "TDX metadata offset")?)
                .unwrap_or(usize::MAX);
            return len
                .checked_sub(off)
                .filter(|_| off != 0)
                .ok_or(MeasureError::BadDescriptor {
                    field: "metadata offset",
                    value: to_u64(off),
                    reason: "zero or larger than the image",
                });
        }
        end -= entry_len;
    }
    Err(MeasureError::NoTdvfMetadata)
}

const DESCRIPTOR_LEN: usize = 16;
const SECTION_LEN: usize = 32;

fn parse_descriptor(c: &Cursor<'_>, at: usize) -> Result<Vec<Section>, MeasureError> {
    let sig = c.bytes(at, 4, "TDVF signature")?;
    if sig != b"TDVF" {
        return Err(MeasureError::BadDescriptor {
            field: "signature",
            value: u64::from(u32::from_le_bytes([sig[0], sig[1], sig[2], sig[3]])),
            reason: "not \"TDVF\"",
        });
    }
    let length = c.u32(at + 4, "TDVF descriptor length")?;
    let version = c.u32(at + 8, "TDVF descriptor version")?;
    let count = c.u32(at + 12, "TDVF section count")?;
    if version != 1 {
        return Err(MeasureError::BadDescriptor {
            field: "version",
            value: u64::from(version),
            reason: "only version 1 is defined",
        });
    }
    // QEMU refuses fewer than two sections; the upper cap is ours.
    if !(2..=MAX_SECTIONS).contains(&count) {
        return Err(MeasureError::BadDescriptor {
            field: "section count",
            value: u64::from(count),
            reason: "must be between 2 and 64",
        });
    }
    let n = usize::try_from(count).unwrap_or(usize::MAX);
    let expected = DESCRIPTOR_LEN + n * SECTION_LEN;
    if usize::try_from(length).ok() != Some(expected) {
        return Err(MeasureError::BadDescriptor {
            field: "length",
            value: u64::from(length),
            reason: "must be 16 + 32 x section count",
        });
    }
    c.bytes(at, expected, "TDVF sections")?;
    let mut out = Vec::with_capacity(n);
    let mut measured: u64 = 0;
    for i in 0..n {
        let s = parse_section(c, at + DESCRIPTOR_LEN + i * SECTION_LEN, i)?;
        if !s.page_aug {
            measured = measured.saturating_add(s.mem_size);
            if measured > MAX_MEASURED_MEMORY {
                return Err(MeasureError::BadSection {
                    index: i,
                    field: "memory_data_size",
                    value: s.mem_size,
                    reason: "measured sections together exceed 1 GiB",
                });
            }
        }
        out.push(s);
    }
    Ok(out)
}

fn parse_section(c: &Cursor<'_>, at: usize, index: usize) -> Result<Section, MeasureError> {
    let data_offset = c.u32(at, "section data_offset")?;
    let raw_size = c.u32(at + 4, "section raw_data_size")?;
    let gpa = c.u64(at + 8, "section memory_address")?;
    let mem_size = c.u64(at + 16, "section memory_data_size")?;
    let kind_raw = c.u32(at + 24, "section type")?;
    let attributes = c.u32(at + 28, "section attributes")?;
    let bad = |field: &'static str, value: u64, reason: &'static str| MeasureError::BadSection {
        index,
        field,
        value,
        reason,
    };
    let kind = SectionKind::from_u32(kind_raw).ok_or(bad(
        "type",
        u64::from(kind_raw),
        "not BFV (0), CFV (1), TD_HOB (2) or TempMem (3)",
    ))?;
    // Ours: an attribute bit we do not know might change what is measured.
    if attributes & !(ATTR_MR_EXTEND | ATTR_PAGE_AUG) != 0 {
        return Err(bad(
            "attributes",
            u64::from(attributes),
            "unknown attribute bits",
        ));
    }
    if mem_size < u64::from(raw_size) {
        return Err(bad(
            "raw_data_size",
            u64::from(raw_size),
            "larger than memory_data_size",
        ));
    }
    if gpa % PAGE != 0 {
        return Err(bad("memory_address", gpa, "not 4 KiB aligned"));
    }
    if mem_size % PAGE != 0 {
        return Err(bad("memory_data_size", mem_size, "not 4 KiB aligned"));
    }
    // Ours: the section must not wrap the address space.
    if gpa.checked_add(mem_size).is_none() {
        return Err(bad(
            "memory_data_size",
            mem_size,
            "memory_address + memory_data_size overflows",
        ));
    }
    let mr_extend = attributes & ATTR_MR_EXTEND != 0;
    let page_aug = attributes & ATTR_PAGE_AUG != 0;
    match kind {
        SectionKind::Bfv | SectionKind::Cfv => {
            if raw_size == 0 {
                return Err(bad("raw_data_size", 0, "BFV and CFV must have content"));
            }
            // QEMU hands memory_data_size bytes from data_offset to the TDX module.
            let end = u64::from(data_offset).checked_add(mem_size);
            if end.is_none_or(|e| e > to_u64(c.len())) {
                return Err(bad(
                    "data_offset",
                    u64::from(data_offset),
                    "data_offset + memory_data_size reaches past the image",
                ));
            }
        }
        SectionKind::TdHob | SectionKind::TempMem => {
            if raw_size != 0 {
                return Err(bad(
                    "raw_data_size",
                    u64::from(raw_size),
                    "TD_HOB and TempMem have no content in the image",
                ));
            }
            // Ours: extending these would measure memory the VMM fills (the HOB) or
            // zeroes, not bytes of this file. No TDVF does it; refuse rather than guess.
            if mr_extend {
                return Err(MeasureError::UnsupportedSection {
                    index,
                    reason: "MR.EXTEND on a section whose content the VMM builds",
                });
            }
        }
    }
    // Ours: PAGE.AUG pages are not in the TD at build time, so nothing to extend.
    if page_aug && mr_extend {
        return Err(bad(
            "attributes",
            u64::from(attributes),
            "both PAGE.AUG and MR.EXTEND",
        ));
    }
    Ok(Section {
        kind,
        data_offset,
        raw_size,
        gpa,
        mem_size,
        attributes,
        mr_extend,
        page_aug,
    })
}
