//! The quote-provider seam: how a report is bound to the platform.
//!
//! Three providers implement one trait: [`ConfigfsTsm`] (a DCAP quote, tier `tdx`),
//! [`TdxGuestDevice`] (a TDREPORT from `/dev/tdx_guest`, tier `tdx-report`: not a
//! quote, so weaker) and [`NoTee`] (tier `software`). The tier is always explicit: a
//! missing TEE produces `Tier::Software`, stated in every report and on `/health`, and
//! a provider the operator named explicitly that does not work is an error, never a
//! silent downgrade.

use evidence::Tier;

/// Evidence that binds a report to the platform, if the platform can give any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlatformEvidence {
    /// The tier the evidence supports.
    pub tier: Tier,
    /// The raw quote (or TDREPORT) whose REPORTDATA is the report binding.
    pub quote: Option<Vec<u8>>,
}

/// Why a provider could not give evidence.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum QuoteError {
    /// The provider's directory, device or attribute is not there.
    #[error("quote provider unavailable: {0}")]
    Unavailable(String),
    /// configfs-tsm reports a provider other than `tdx_guest`.
    #[error("configfs-tsm provider is {0:?}, not tdx_guest")]
    WrongProvider(String),
    /// Another writer touched the report between our write and our read.
    #[error("configfs-tsm generation moved from {before} to {after} (expected {expected}): concurrent request; retry")]
    Race {
        /// The generation read before the step.
        before: u64,
        /// The generation read after it.
        after: u64,
        /// The generation that a step without another writer gives.
        expected: u64,
    },
    /// I/O on a provider file or device failed, or it held something unreadable.
    #[error("configfs-tsm I/O on {path}: {detail}")]
    Io {
        /// The file or device.
        path: String,
        /// What failed.
        detail: String,
    },
    /// The quote is larger than the provider's limit.
    #[error("quote is {len} bytes, over the limit of {max}")]
    TooLarge {
        /// The quote's size, bytes.
        len: usize,
        /// The limit, bytes.
        max: usize,
    },
}

/// A source of platform evidence (see the module docs for the three providers).
pub trait QuoteProvider: Send + Sync {
    /// The tier this provider produces.
    fn tier(&self) -> Tier;
    /// Evidence for a report whose binding is `report_data`.
    fn evidence(&self, report_data: &[u8; 64]) -> Result<PlatformEvidence, QuoteError>;
}

/// The provider the config names. `auto` takes configfs-tsm where its directory
/// exists, else `/dev/tdx_guest` where the device exists, else the software tier
/// (logged). A provider named explicitly must be present: the agent does not start
/// rather than report a weaker tier than the operator asked for.
pub fn select(
    cfg: &crate::config::AgentConfig,
) -> Result<std::sync::Arc<dyn QuoteProvider>, QuoteError> {
    use crate::config::QuoteProviderKind as K;
    let tsm = || ConfigfsTsm::new(&cfg.tsm_report_dir);
    let dev = || TdxGuestDevice {
        path: cfg.tdx_guest_device.clone(),
    };
    let p: std::sync::Arc<dyn QuoteProvider> = match cfg.quote_provider {
        K::None => std::sync::Arc::new(NoTee),
        K::ConfigfsTsm if cfg.tsm_report_dir.is_dir() => std::sync::Arc::new(tsm()),
        K::TdxGuest if cfg.tdx_guest_device.exists() => std::sync::Arc::new(dev()),
        K::ConfigfsTsm => {
            return Err(QuoteError::Unavailable(format!(
                "quote_provider = \"configfs-tsm\" but {} is not a directory",
                cfg.tsm_report_dir.display()
            )))
        }
        K::TdxGuest => {
            return Err(QuoteError::Unavailable(format!(
                "quote_provider = \"tdx-guest\" but {} does not exist",
                cfg.tdx_guest_device.display()
            )))
        }
        K::Auto if cfg.tsm_report_dir.is_dir() => std::sync::Arc::new(tsm()),
        K::Auto if cfg.tdx_guest_device.exists() => std::sync::Arc::new(dev()),
        K::Auto => {
            tracing::warn!(
                tsm = %cfg.tsm_report_dir.display(),
                device = %cfg.tdx_guest_device.display(),
                "no TDX interface found: software tier (reports are signed by the node key only)"
            );
            std::sync::Arc::new(NoTee)
        }
    };
    tracing::info!(tier = p.tier().as_str(), "quote provider selected");
    Ok(p)
}

/// No TEE: the software tier. The report's own signature is the only binding.
#[derive(Debug, Default)]
pub struct NoTee;

impl QuoteProvider for NoTee {
    fn tier(&self) -> Tier {
        Tier::Software
    }
    fn evidence(&self, _report_data: &[u8; 64]) -> Result<PlatformEvidence, QuoteError> {
        Ok(PlatformEvidence {
            tier: Tier::Software,
            quote: None,
        })
    }
}

/// configfs-tsm (`/sys/kernel/config/tsm/report`, Linux >= 6.7): a directory per
/// request, exactly 64 bytes of REPORTDATA written to `inblob`, the quote read from
/// `outblob`. `generation` is read before the write, after it, and after the read: it
/// must advance by exactly one for our write and not move while we read, or another
/// writer raced us and the quote may not carry our REPORTDATA.
#[derive(Debug, Clone)]
pub struct ConfigfsTsm {
    /// The `report` directory; configurable so tests can use a simulated tree.
    pub root: std::path::PathBuf,
    /// How long to wait for the attribute files of a new request directory. The kernel
    /// creates them with the directory; a simulated kernel may lag.
    pub settle: std::time::Duration,
}

impl ConfigfsTsm {
    /// A provider over the `report` directory `root`, with a 2 s settle time.
    pub fn new(root: impl Into<std::path::PathBuf>) -> ConfigfsTsm {
        ConfigfsTsm {
            root: root.into(),
            settle: std::time::Duration::from_secs(2),
        }
    }

    fn request(
        &self,
        dir: &std::path::Path,
        report_data: &[u8; 64],
    ) -> Result<Vec<u8>, QuoteError> {
        use std::io::Read;
        let io = |p: &std::path::Path, e: std::io::Error| QuoteError::Io {
            path: p.display().to_string(),
            detail: e.to_string(),
        };
        let generation_path = dir.join("generation");
        let deadline = std::time::Instant::now() + self.settle;
        while !generation_path.exists() {
            if std::time::Instant::now() > deadline {
                return Err(QuoteError::Unavailable(format!(
                    "{} has no generation attribute",
                    dir.display()
                )));
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let provider_path = dir.join("provider");
        let provider =
            std::fs::read_to_string(&provider_path).map_err(|e| io(&provider_path, e))?;
        if provider.trim() != "tdx_guest" {
            return Err(QuoteError::WrongProvider(provider.trim().to_string()));
        }
        let generation = || -> Result<u64, QuoteError> {
            let s =
                std::fs::read_to_string(&generation_path).map_err(|e| io(&generation_path, e))?;
            s.trim().parse().map_err(|_| QuoteError::Io {
                path: generation_path.display().to_string(),
                detail: format!("not a number: {:?}", s.trim()),
            })
        };
        let g1 = generation()?;
        let inblob = dir.join("inblob");
        std::fs::write(&inblob, report_data).map_err(|e| io(&inblob, e))?;
        // The kernel bumps `generation` within the write; a simulated kernel may take a
        // moment, so wait (bounded) for it to move, then require exactly one step.
        let mut g2 = generation()?;
        while g2 == g1 && std::time::Instant::now() < deadline + self.settle {
            std::thread::sleep(std::time::Duration::from_millis(2));
            g2 = generation()?;
        }
        if g2 != g1 + 1 {
            return Err(QuoteError::Race {
                before: g1,
                after: g2,
                expected: g1 + 1,
            });
        }
        let outblob = dir.join("outblob");
        let f = std::fs::File::open(&outblob).map_err(|e| io(&outblob, e))?;
        let max = evidence::tdx::MAX_QUOTE_BYTES;
        let mut quote = Vec::new();
        f.take(u64::try_from(max).unwrap_or(u64::MAX) + 1)
            .read_to_end(&mut quote)
            .map_err(|e| io(&outblob, e))?;
        if quote.len() > max {
            return Err(QuoteError::TooLarge {
                len: quote.len(),
                max,
            });
        }
        let g3 = generation()?;
        if g3 != g2 {
            return Err(QuoteError::Race {
                before: g2,
                after: g3,
                expected: g2,
            });
        }
        Ok(quote)
    }
}

impl QuoteProvider for ConfigfsTsm {
    fn tier(&self) -> Tier {
        Tier::Tdx
    }

    fn evidence(&self, report_data: &[u8; 64]) -> Result<PlatformEvidence, QuoteError> {
        if !self.root.is_dir() {
            return Err(QuoteError::Unavailable(format!(
                "{} is not a directory",
                self.root.display()
            )));
        }
        let name: [u8; 8] = rand::random();
        let dir = self.root.join(format!("provenant-{}", hex::encode(name)));
        std::fs::create_dir(&dir).map_err(|e| QuoteError::Io {
            path: dir.display().to_string(),
            detail: e.to_string(),
        })?;
        let result = self.request(&dir, report_data);
        // The kernel frees the request on rmdir; a failure to remove it only leaks it.
        if let Err(e) = std::fs::remove_dir(&dir) {
            tracing::debug!(dir = %dir.display(), error = %e, "could not remove configfs-tsm request");
        }
        Ok(PlatformEvidence {
            tier: Tier::Tdx,
            quote: Some(result?),
        })
    }
}

/// `/dev/tdx_guest` (Linux >= 6.2) `TDX_CMD_GET_REPORT0`: a TDREPORT whose REPORTDATA
/// is the report binding. Used where configfs-tsm is absent. A TDREPORT is MACed with a
/// platform-local key, so the control plane cannot verify it: the tier is `tdx-report`.
#[derive(Debug, Clone)]
pub struct TdxGuestDevice {
    /// The device; configurable so a test can point it elsewhere.
    pub path: std::path::PathBuf,
}

impl QuoteProvider for TdxGuestDevice {
    fn tier(&self) -> Tier {
        Tier::TdxReport
    }

    fn evidence(&self, report_data: &[u8; 64]) -> Result<PlatformEvidence, QuoteError> {
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&self.path)
            .map_err(|e| {
                if e.kind() == std::io::ErrorKind::NotFound {
                    QuoteError::Unavailable(format!("{} does not exist", self.path.display()))
                } else {
                    QuoteError::Io {
                        path: self.path.display().to_string(),
                        detail: e.to_string(),
                    }
                }
            })?;
        let report = ioctl::get_report0(&f, report_data).map_err(|e| QuoteError::Io {
            path: self.path.display().to_string(),
            detail: format!("TDX_CMD_GET_REPORT0: {e}"),
        })?;
        // The kernel fills the TDREPORT; refuse anything that is not one.
        evidence::tdreport::parse_tdreport(&report).map_err(|e| QuoteError::Io {
            path: self.path.display().to_string(),
            detail: format!("not a TDREPORT: {e}"),
        })?;
        Ok(PlatformEvidence {
            tier: Tier::TdxReport,
            quote: Some(report.to_vec()),
        })
    }
}

/// The one unsafe operation in the agent: the `TDX_CMD_GET_REPORT0` ioctl.
#[allow(unsafe_code)]
mod ioctl {
    use evidence::tdreport::TDREPORT_LEN;
    use rustix::ioctl::{opcode, Opcode, Updater};

    /// `struct tdx_report_req` from `include/uapi/linux/tdx-guest.h`.
    #[repr(C)]
    pub(super) struct TdxReportReq {
        reportdata: [u8; 64],
        tdreport: [u8; TDREPORT_LEN],
    }

    /// `_IOWR('T', 1, struct tdx_report_req)`.
    pub(super) const GET_REPORT0: Opcode = opcode::read_write::<TdxReportReq>(b'T', 1);

    pub(super) fn get_report0(
        dev: &std::fs::File,
        report_data: &[u8; 64],
    ) -> std::io::Result<[u8; TDREPORT_LEN]> {
        let mut req = TdxReportReq {
            reportdata: *report_data,
            tdreport: [0; TDREPORT_LEN],
        };
        // SAFETY: GET_REPORT0 is the kernel's `_IOWR('T', 1, struct tdx_report_req)`,
        // and `TdxReportReq` is `repr(C)` with that struct's layout (u8[64] then
        // u8[1024]: no padding, size 1088, which the opcode encodes). The kernel reads
        // `reportdata` and writes `tdreport` only within the struct we lend it, which
        // outlives the call. On a file that is not the TDX guest device the kernel
        // refuses the unknown opcode (ENOTTY) without touching memory.
        unsafe {
            rustix::ioctl::ioctl(dev, Updater::<GET_REPORT0, TdxReportReq>::new(&mut req))?;
        }
        Ok(req.tdreport)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    use tdx_sim::{Behaviour, ConfigfsKernel};

    fn kernel(root: &Path, b: Behaviour) -> ConfigfsKernel {
        ConfigfsKernel::start(root, b, None).unwrap()
    }

    /// On a plain directory the provider's rmdir fails (the attribute files are
    /// still there); configfs removes them with the directory. The provider tolerates it.
    fn provider(root: &Path) -> ConfigfsTsm {
        ConfigfsTsm::new(root)
    }

    #[test]
    fn honest_kernel_returns_a_quote_carrying_our_report_data() {
        let dir = tempfile::tempdir().unwrap();
        let _k = kernel(dir.path(), Behaviour::Honest);
        let rd = [0x5au8; 64];
        let ev = provider(dir.path()).evidence(&rd).unwrap();
        assert_eq!(ev.tier, Tier::Tdx);
        let q = ev.quote.unwrap();
        let parsed = evidence::tdx::Quote::parse(&q).unwrap();
        assert_eq!(parsed.body.report_data.0, rd);
    }

    #[test]
    fn generation_race_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let _k = kernel(dir.path(), Behaviour::Racing);
        let e = provider(dir.path()).evidence(&[1; 64]).unwrap_err();
        assert!(
            matches!(
                e,
                QuoteError::Race {
                    before: 0,
                    after: 2,
                    expected: 1
                }
            ),
            "{e}"
        );
    }

    #[test]
    fn wrong_provider_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let _k = kernel(dir.path(), Behaviour::WrongProvider);
        let e = provider(dir.path()).evidence(&[1; 64]).unwrap_err();
        assert!(
            matches!(e, QuoteError::WrongProvider(ref p) if p == "sev_guest"),
            "{e}"
        );
    }

    #[test]
    fn quotes_over_8_kib_are_read_whole() {
        let dir = tempfile::tempdir().unwrap();
        let _k = kernel(dir.path(), Behaviour::BigQuote);
        let q = provider(dir.path())
            .evidence(&[2; 64])
            .unwrap()
            .quote
            .unwrap();
        assert_eq!(q.len(), tdx_sim::configfs::BIG_QUOTE_LEN);
        assert!(evidence::tdx::Quote::parse(&q).unwrap().trailing_bytes > 0);
    }

    #[test]
    fn missing_tree_and_dead_kernel_are_unavailable() {
        let e = ConfigfsTsm::new("/nonexistent/tsm/report")
            .evidence(&[0; 64])
            .unwrap_err();
        assert!(matches!(e, QuoteError::Unavailable(_)), "{e}");
        let dir = tempfile::tempdir().unwrap();
        let mut p = ConfigfsTsm::new(dir.path());
        p.settle = std::time::Duration::from_millis(50);
        let e = p.evidence(&[0; 64]).unwrap_err();
        assert!(matches!(e, QuoteError::Unavailable(_)), "{e}");
    }

    #[test]
    fn selection_detects_and_never_downgrades_an_explicit_choice() {
        use crate::config::{AgentConfig, QuoteProviderKind as K};
        let dir = tempfile::tempdir().unwrap();
        let tsm = dir.path().join("tsm");
        let dev = dir.path().join("tdx_guest");
        let cfgp = dir.path().join("agent.toml");
        let cfg = |kind: &str| {
            std::fs::write(
                &cfgp,
                format!(
                    "agent_id = \"n\"\ncontrol_plane = \"http://x\"\ninsecure_http = true\nquote_provider = \"{kind}\"\n\
                     tsm_report_dir = {tsm:?}\ntdx_guest_device = {dev:?}\n"
                ),
            )
            .unwrap();
            AgentConfig::load(&cfgp).unwrap()
        };
        let tier = |c: &AgentConfig| select(c).map(|p| p.tier());
        assert_eq!(cfg("auto").quote_provider, K::Auto);
        assert_eq!(tier(&cfg("auto")).unwrap(), Tier::Software);
        assert_eq!(tier(&cfg("none")).unwrap(), Tier::Software);
        assert!(matches!(
            tier(&cfg("configfs-tsm")),
            Err(QuoteError::Unavailable(_))
        ));
        assert!(matches!(
            tier(&cfg("tdx-guest")),
            Err(QuoteError::Unavailable(_))
        ));
        std::fs::write(&dev, b"").unwrap();
        assert_eq!(tier(&cfg("auto")).unwrap(), Tier::TdxReport);
        assert_eq!(tier(&cfg("tdx-guest")).unwrap(), Tier::TdxReport);
        std::fs::create_dir(&tsm).unwrap();
        assert_eq!(tier(&cfg("auto")).unwrap(), Tier::Tdx);
        assert_eq!(tier(&cfg("configfs-tsm")).unwrap(), Tier::Tdx);
        assert_eq!(tier(&cfg("none")).unwrap(), Tier::Software);
    }

    #[test]
    fn get_report0_opcode_matches_the_kernel_header() {
        // _IOWR('T', 1, 1088 bytes): dir 3 << 30 | 1088 << 16 | 'T' << 8 | 1.
        assert_eq!(std::mem::size_of::<ioctl::TdxReportReq>(), 1088);
        assert_eq!(u64::from(ioctl::GET_REPORT0), 0xC440_5401);
    }

    #[test]
    fn tdx_guest_device_fails_closed_off_tdx() {
        let missing = TdxGuestDevice {
            path: "/nonexistent/tdx_guest".into(),
        };
        assert!(matches!(
            missing.evidence(&[0; 64]).unwrap_err(),
            QuoteError::Unavailable(_)
        ));
        // A real file that is not the device: the kernel refuses the ioctl (ENOTTY).
        let null = TdxGuestDevice {
            path: "/dev/null".into(),
        };
        let e = null.evidence(&[0; 64]).unwrap_err();
        assert!(matches!(e, QuoteError::Io { .. }), "{e}");
        assert!(e.to_string().contains("TDX_CMD_GET_REPORT0"), "{e}");
        assert_eq!(null.tier(), Tier::TdxReport);
    }
}
