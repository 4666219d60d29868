//! A simulated configfs-tsm kernel (`/sys/kernel/config/tsm/report`) on a plain
//! directory, returning REAL signed quotes.
//!
//! A polling thread plays the kernel. For each new request directory under the root it
//! creates `provider` (`tdx_guest\n`), `inblob` (empty) and, last, `generation`
//! (`0\n`). When `inblob` holds exactly 64 bytes and no quote has been made for them
//! (no `outblob` yet, or `inblob` changed since), it builds a signed v4 quote whose
//! REPORTDATA is those bytes and whose RTMR3 is the simulated RTMR device's current
//! value (when one is given), writes `outblob`, and then bumps `generation`. `outblob`
//! and `generation` are replaced atomically, so a reader never sees them partial. Real
//! configfs removes the attribute files on `rmdir`; here they stay, so a client's
//! `rmdir` fails and the directory lingers until the test's temporary root goes.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::fsutil::write_atomic;
use crate::quote::{build_quote_v4, TdReport};
use crate::rtmr::{RtmrDevice, RtmrReader};
use provenant_base::fsutil::read_bounded;

const POLL: Duration = Duration::from_millis(2);
/// Request directories tracked at once; more are ignored until some go away.
const MAX_REQUESTS: usize = 1024;
/// Length of a [`Behaviour::BigQuote`] quote.
pub const BIG_QUOTE_LEN: usize = 20_000;

/// How a [`ConfigfsKernel`] answers requests: honestly, or with one misbehaviour for a
/// negative test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    /// Quotes carry the requested REPORTDATA.
    Honest,
    /// One bit of REPORTDATA is flipped before signing: the quote verifies, but does
    /// not carry the requester's binding.
    TamperReportData,
    /// TDATTRIBUTES DEBUG (bit 0) is set.
    Debug,
    /// `generation` moves by 2 per request, as if another writer raced the requester.
    Racing,
    /// `provider` reads `sev_guest`.
    WrongProvider,
    /// The quote is padded with trailing zero bytes to [`BIG_QUOTE_LEN`] (over 8 KiB);
    /// it still verifies.
    BigQuote,
}

#[derive(Debug, Default)]
struct Request {
    generation: u64,
    /// The REPORTDATA of the last quote made for this directory.
    quoted: Option<[u8; 64]>,
}

struct Kernel {
    root: PathBuf,
    behaviour: Behaviour,
    body: Arc<Mutex<TdReport>>,
    rtmr: Option<RtmrReader>,
    served: Arc<AtomicU64>,
    requests: HashMap<PathBuf, Request>,
}

/// A running simulated configfs-tsm kernel; its thread stops on drop.
pub struct ConfigfsKernel {
    root: PathBuf,
    body: Arc<Mutex<TdReport>>,
    served: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for ConfigfsKernel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConfigfsKernel")
            .field("root", &self.root)
            .field("served", &self.quotes_served())
            .finish_non_exhaustive()
    }
}

impl ConfigfsKernel {
    /// Starts a kernel on `root_dir` with the default [`TdReport`] as the template for
    /// every quote. With `rtmr`, each quote's RTMR3 is that device's value at the time.
    pub fn start(
        root_dir: &Path,
        behaviour: Behaviour,
        rtmr: Option<&RtmrDevice>,
    ) -> std::io::Result<ConfigfsKernel> {
        Self::start_with_body(root_dir, behaviour, rtmr, TdReport::default())
    }

    /// As [`ConfigfsKernel::start`], with `body` as the template (MRTD, RTMRs, ...);
    /// REPORTDATA (and RTMR3, with a device) are replaced per request.
    pub fn start_with_body(
        root_dir: &Path,
        behaviour: Behaviour,
        rtmr: Option<&RtmrDevice>,
        body: TdReport,
    ) -> std::io::Result<ConfigfsKernel> {
        crate::quote::preload_keys();
        let body = Arc::new(Mutex::new(body));
        let served = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let mut kernel = Kernel {
            root: root_dir.to_path_buf(),
            behaviour,
            body: body.clone(),
            rtmr: rtmr.map(RtmrDevice::reader),
            served: served.clone(),
            requests: HashMap::new(),
        };
        let s = stop.clone();
        let handle = std::thread::Builder::new()
            .name("tdx-sim-configfs".into())
            .spawn(move || {
                while !s.load(Ordering::SeqCst) {
                    kernel.poll();
                    std::thread::sleep(POLL);
                }
            })?;
        Ok(ConfigfsKernel {
            root: root_dir.to_path_buf(),
            body,
            served,
            stop,
            handle: Some(handle),
        })
    }

    /// The `report` directory this kernel serves.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Replaces the template for quotes made from now on.
    pub fn set_body(&self, body: TdReport) {
        *self.body.lock().unwrap_or_else(|e| e.into_inner()) = body;
    }

    /// The current template.
    pub fn body(&self) -> TdReport {
        self.body.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// How many quotes this kernel has written.
    pub fn quotes_served(&self) -> u64 {
        self.served.load(Ordering::SeqCst)
    }
}

impl Drop for ConfigfsKernel {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

impl Kernel {
    fn poll(&mut self) {
        let Ok(entries) = std::fs::read_dir(&self.root) else {
            return;
        };
        let mut present = HashSet::new();
        for entry in entries.flatten() {
            if !entry.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            let dir = entry.path();
            if !self.requests.contains_key(&dir) {
                if self.requests.len() >= MAX_REQUESTS {
                    continue;
                }
                self.populate(&dir);
                self.requests.insert(dir.clone(), Request::default());
            }
            self.serve(&dir);
            present.insert(dir);
        }
        // A directory that went away (rmdir, test cleanup) may come back as a new request.
        self.requests.retain(|d, _| present.contains(d));
    }

    fn populate(&self, dir: &Path) {
        let provider = if self.behaviour == Behaviour::WrongProvider {
            "sev_guest\n"
        } else {
            "tdx_guest\n"
        };
        // `generation` last: a client waits for it before reading the others.
        let _ = std::fs::write(dir.join("provider"), provider);
        let _ = std::fs::write(dir.join("inblob"), b"");
        let _ = write_atomic(&dir.join("generation"), b"0\n");
    }

    fn serve(&mut self, dir: &Path) {
        let Ok(inblob) = read_bounded(&dir.join("inblob"), 64) else {
            return;
        };
        let Ok(report_data) = <[u8; 64]>::try_from(inblob.as_slice()) else {
            return; // not (yet) exactly 64 bytes
        };
        let outblob = dir.join("outblob");
        let Some(req) = self.requests.get_mut(dir) else {
            return;
        };
        let fresh = match req.quoted {
            None => !outblob.exists(),
            Some(q) => q != report_data,
        };
        if !fresh {
            return;
        }

        let mut body = self.body.lock().unwrap_or_else(|e| e.into_inner()).clone();
        body.report_data = report_data;
        if let Some(r) = &self.rtmr {
            body.rtmrs[3] = r.rtmr3();
        }
        match self.behaviour {
            Behaviour::TamperReportData => body.report_data[0] ^= 0x01,
            Behaviour::Debug => body = body.with_debug(true),
            _ => {}
        }
        let mut quote = build_quote_v4(&body);
        if self.behaviour == Behaviour::BigQuote && quote.len() < BIG_QUOTE_LEN {
            quote.resize(BIG_QUOTE_LEN, 0);
        }
        if write_atomic(&outblob, &quote).is_err() {
            return; // directory gone; the next poll forgets it
        }
        let step = if self.behaviour == Behaviour::Racing {
            2
        } else {
            1
        };
        req.generation = req.generation.saturating_add(step);
        req.quoted = Some(report_data);
        // Counted before `generation` moves, so a client that saw it move sees the count.
        self.served.fetch_add(1, Ordering::SeqCst);
        let _ = write_atomic(
            &dir.join("generation"),
            format!("{}\n", req.generation).as_bytes(),
        );
    }
}
