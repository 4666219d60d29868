//! A simulated RTMR device: the files the TDX guest driver exposes under
//! `/sys/class/misc/tdx_guest/measurements/` (Linux ≥ 6.16), on a plain directory.
//!
//! The kernel's semantics: writing exactly 48 bytes to `rtmr3:sha384` extends RTMR3
//! (`rtmr = SHA-384(rtmr ‖ written)`), and reading returns the current value. A plain
//! file cannot run code on write, so a polling thread plays the kernel: when the file
//! holds exactly 48 bytes that differ from the value the device last wrote, they are a
//! digest; the device extends, then writes the new value back atomically (temporary
//! file + rename), so a reader never sees a partial value. Files of any other length
//! (a writer's truncate-then-write in progress) are ignored.
//!
//! A writer therefore follows: read the current value `r`, write the digest `d`, then
//! poll-read (bounded) until the file holds `SHA-384(r ‖ d)`. Until the device catches
//! up, a read returns `d` itself. Two limits of the simulation, neither reachable by a
//! single sequential writer: a digest equal to the current value is not seen as a
//! write, and concurrent writers can lose a write that the real kernel would serialise.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use sha2::{Digest, Sha384};

use crate::fsutil::write_atomic;
use provenant_base::fsutil::read_bounded;

/// The file names the kernel uses, RTMR0..RTMR3.
pub const RTMR_FILES: [&str; 4] = [
    "rtmr0:sha384",
    "rtmr1:sha384",
    "rtmr2:sha384",
    "rtmr3:sha384",
];

const POLL: Duration = Duration::from_millis(1);

/// `SHA-384(rtmr ‖ digest)`: one RTMR extension, the replay rule for an event log.
pub fn extend(rtmr: &[u8; 48], digest: &[u8; 48]) -> [u8; 48] {
    let mut h = Sha384::new();
    h.update(rtmr);
    h.update(digest);
    h.finalize().into()
}

/// The digest [`RtmrBehaviour::ExtraExtension`] extends RTMR3 with at start, without
/// any event log entry.
pub fn unlogged_digest() -> [u8; 48] {
    crate::platform::derived("tdx-sim TEST unlogged RTMR3 event")
}

/// How an [`RtmrDevice`] starts: honest, or with an unlogged RTMR3 extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RtmrBehaviour {
    /// RTMR3 starts at 48 zero bytes and changes only by extensions written to it.
    Honest,
    /// At start RTMR3 is extended once with [`unlogged_digest`]: an agent's event log
    /// can never replay to the value a quote carries.
    ExtraExtension,
}

#[derive(Debug)]
struct State {
    rtmrs: [[u8; 48]; 4],
    extensions: u64,
}

/// Shared view of the device's registers, for the configfs kernel.
#[derive(Debug, Clone)]
pub(crate) struct RtmrReader(Arc<Mutex<State>>);

impl RtmrReader {
    pub(crate) fn rtmr3(&self) -> [u8; 48] {
        lock(&self.0).rtmrs[3]
    }
}

fn lock(m: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A running simulated RTMR device; the polling thread stops on drop.
#[derive(Debug)]
pub struct RtmrDevice {
    dir: PathBuf,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl RtmrDevice {
    /// Creates `dir` if needed, writes `rtmr0:sha384`..`rtmr3:sha384` (RTMR0–2 are the
    /// fixed values of [`crate::quote::default_rtmrs`], RTMR3 starts at zero, or
    /// extended once for [`RtmrBehaviour::ExtraExtension`]) and starts the device.
    pub fn start(dir: &Path, behaviour: RtmrBehaviour) -> std::io::Result<RtmrDevice> {
        std::fs::create_dir_all(dir)?;
        let mut rtmrs = crate::quote::default_rtmrs();
        let mut extensions = 0;
        if behaviour == RtmrBehaviour::ExtraExtension {
            rtmrs[3] = extend(&rtmrs[3], &unlogged_digest());
            extensions = 1;
        }
        for (name, value) in RTMR_FILES.iter().zip(rtmrs.iter()) {
            write_atomic(&dir.join(name), value)?;
        }
        let state = Arc::new(Mutex::new(State { rtmrs, extensions }));
        let stop = Arc::new(AtomicBool::new(false));
        let handle = {
            let (state, stop, path) = (state.clone(), stop.clone(), dir.join(RTMR_FILES[3]));
            std::thread::Builder::new()
                .name("tdx-sim-rtmr".into())
                .spawn(move || run(&path, &state, &stop))?
        };
        Ok(RtmrDevice {
            dir: dir.to_path_buf(),
            state,
            stop,
            handle: Some(handle),
        })
    }

    /// The directory holding the `rtmrN:sha384` files.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Path of `rtmr3:sha384`, the file an agent extends.
    pub fn rtmr3_path(&self) -> PathBuf {
        self.dir.join(RTMR_FILES[3])
    }

    /// RTMR3 as the device holds it (what a quote made now carries).
    pub fn current_rtmr3(&self) -> [u8; 48] {
        lock(&self.state).rtmrs[3]
    }

    /// All four registers.
    pub fn current_rtmrs(&self) -> [[u8; 48]; 4] {
        lock(&self.state).rtmrs
    }

    /// How many extensions RTMR3 has had (including an unlogged one at start).
    pub fn extensions(&self) -> u64 {
        lock(&self.state).extensions
    }

    pub(crate) fn reader(&self) -> RtmrReader {
        RtmrReader(self.state.clone())
    }
}

impl Drop for RtmrDevice {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

fn run(path: &Path, state: &Mutex<State>, stop: &AtomicBool) {
    // What the file held when this thread last acted on it: the value it wrote, or, if
    // that write failed, the digest it consumed (so a failed write is not re-extended).
    let mut handled = lock(state).rtmrs[3];
    while !stop.load(Ordering::SeqCst) {
        poll_once(path, state, &mut handled);
        std::thread::sleep(POLL);
    }
}

fn poll_once(path: &Path, state: &Mutex<State>, handled: &mut [u8; 48]) {
    let Ok(content) = read_bounded(path, 48) else {
        return;
    };
    let Ok(digest) = <[u8; 48]>::try_from(content.as_slice()) else {
        return; // empty or partial: a write in progress, or garbage
    };
    if digest == *handled {
        return;
    }
    // A writer overwrites the 48 bytes in place, and a read racing that write can see
    // old and new bytes mixed, at the same length. The kernel serialises the write;
    // here the digest is taken only once a second read, a poll later, agrees (a
    // digest is written once and then left alone until the device answers).
    std::thread::sleep(POLL);
    match read_bounded(path, 48) {
        Ok(again) if again == content => {}
        _ => return,
    }
    let new = {
        let mut s = lock(state);
        // Update the registers before the file, so that a reader who sees the new value
        // in the file and then asks for a quote gets a quote carrying it.
        s.rtmrs[3] = extend(&s.rtmrs[3], &digest);
        s.extensions = s.extensions.saturating_add(1);
        s.rtmrs[3]
    };
    // On an error (directory removed) the register still moved, as the kernel's would.
    *handled = match write_atomic(path, &new) {
        Ok(()) => new,
        Err(_) => digest,
    };
}
