//! The agent's side of the RTMR3 runtime event log.
//!
//! At start and whenever a measurement changes, the agent extends RTMR3 with the
//! SHA-384 of a typed event (see `evidence::eventlog` for the format and the replay
//! rule) and appends the event to its own log, which it sends with every registration.
//! The quote then carries RTMR3, so the control plane can replay the log and know that
//! every bound event really reached the hardware register before the quote was taken.
//!
//! The kernel (Linux >= 6.16) exposes RTMR3 as `rtmr3:sha384` under
//! `/sys/class/misc/tdx_guest/measurements/`: writing exactly 48 bytes extends it,
//! reading gives its value. It keeps no log, and RTMR3 lives until the TD restarts, so
//! the log is persisted to a file (by default under `/run`, which also ends with the
//! TD) and reloaded when the agent restarts. Where the register is missing or refuses
//! the write, events are still logged, marked `bound: false`: they prove nothing on
//! their own, and the control plane's replay skips them.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use evidence::eventlog::{self, Rtmr3Event, MAX_EVENTS, MAX_LINE, MAX_LOG_BYTES};

use provenant_base::fsutil::{read_bounded, ReadError};

/// File name of RTMR3 in the kernel's measurements directory.
pub const RTMR3_FILE: &str = "rtmr3:sha384";

/// Largest persisted log read back: the control plane's cap on a whole log.
fn max_log_bytes() -> u64 {
    u64::try_from(MAX_LOG_BYTES).unwrap_or(u64::MAX)
}

/// Why the event log could not be read, written or extended.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RtmrError {
    /// Reading, locking or writing the log (or its lock file) failed, or it holds
    /// something unreadable.
    #[error("event log {path}: {detail}")]
    Log {
        /// The log or lock file.
        path: String,
        /// What failed.
        detail: String,
    },
    /// The log holds `MAX_EVENTS` events or `MAX_LOG_BYTES` bytes; nothing more is
    /// extended.
    #[error("event log is full ({MAX_EVENTS} events or {MAX_LOG_BYTES} bytes); not extending RTMR3 further")]
    Full,
    /// One event would be longer than `MAX_LINE` bytes as a JSON line.
    #[error("event {kind} is longer than {MAX_LINE} bytes as a log line")]
    LineTooLong {
        /// The event's kind.
        kind: String,
    },
}

/// The event log and, where available, the register it is bound to.
#[derive(Debug)]
pub struct EventLog {
    file: Option<PathBuf>,
    register: Option<PathBuf>,
    events: Vec<Rtmr3Event>,
    /// How long to wait for a read-back to show an extension (the kernel is
    /// synchronous; a simulated one may lag).
    pub settle: Duration,
}

/// The result of comparing the log with the register at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Consistency {
    /// The replayed log equals the register's value.
    Matches,
    /// No register to compare with: events are logged unbound.
    NoRegister,
    /// The register holds something the log does not explain (another process
    /// extended it, or the log was lost). The control plane will refuse registration
    /// until the TD restarts.
    Mismatch {
        /// The register's value, hex (or `unreadable: ..`).
        register: String,
        /// The value the log replays to, hex.
        replayed: String,
    },
}

impl EventLog {
    /// Opens the log. `file` is where the log persists (none: memory only);
    /// `measurements_dir` is the kernel's measurements directory (none, or no
    /// `rtmr3:sha384` in it: events are logged unbound).
    pub fn open(
        file: Option<PathBuf>,
        measurements_dir: Option<&Path>,
    ) -> Result<EventLog, RtmrError> {
        let register = measurements_dir
            .map(|d| d.join(RTMR3_FILE))
            .filter(|p| p.exists());
        if let Some(path) = &file {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).map_err(|e| RtmrError::Log {
                    path: path.display().to_string(),
                    detail: e.to_string(),
                })?;
            }
        }
        let mut log = EventLog {
            file,
            register,
            events: Vec::new(),
            settle: Duration::from_secs(2),
        };
        if log.file.is_some() {
            let _lock = log.lock()?;
            log.reload()?;
        }
        Ok(log)
    }

    /// Takes the cross-process lock on the log: the agent daemon and a
    /// `guest-agent pull` both extend RTMR3 and append to the same file, and each
    /// extension must be logged in the order it reached the register. The lock is a
    /// `flock` on a sidecar file (`<log>.lock`), released when the guard drops.
    fn lock(&self) -> Result<Option<std::fs::File>, RtmrError> {
        let Some(path) = &self.file else {
            return Ok(None);
        };
        let lock_path = path.with_extension("lock");
        let err = |detail: String| RtmrError::Log {
            path: lock_path.display().to_string(),
            detail,
        };
        let f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| err(e.to_string()))?;
        rustix::fs::flock(&f, rustix::fs::FlockOperation::LockExclusive)
            .map_err(|e| err(e.to_string()))?;
        Ok(Some(f))
    }

    /// Reads the persisted log back (the caller holds the lock): the file, not this
    /// process's memory, is the record, since another process may have appended.
    fn reload(&mut self) -> Result<(), RtmrError> {
        let Some(path) = &self.file else {
            return Ok(());
        };
        let err = |detail: String| RtmrError::Log {
            path: path.display().to_string(),
            detail,
        };
        match read_bounded(path, max_log_bytes()) {
            Ok(bytes) => match eventlog::parse_jsonl(&bytes) {
                Ok(e) => self.events = e,
                Err(e) => {
                    // A log we cannot read back cannot explain RTMR3 any more. Keep
                    // the evidence of what happened and start a new log; the replay
                    // will not match, and the control plane will say so.
                    let aside = path.with_extension("corrupt");
                    tracing::error!(path = %path.display(), error = %e, moved_to = %aside.display(),
                        "RTMR3 event log is unreadable; starting a new one");
                    std::fs::rename(path, &aside).map_err(|e| err(e.to_string()))?;
                    self.events.clear();
                }
            },
            Err(ReadError::Io(e)) if e.kind() == std::io::ErrorKind::NotFound => {
                self.events.clear()
            }
            Err(e) => return Err(err(e.to_string())),
        }
        Ok(())
    }

    /// Re-reads the persisted log, which another process (`guest-agent pull`) may
    /// have appended to. Returns whether it now holds events this process had not
    /// seen.
    pub fn refresh(&mut self) -> Result<bool, RtmrError> {
        let before = self.events.len();
        let _lock = self.lock()?;
        self.reload()?;
        Ok(self.events.len() != before)
    }

    /// The events logged so far, oldest first.
    pub fn events(&self) -> &[Rtmr3Event] {
        &self.events
    }

    /// Whether extensions reach a hardware register.
    pub fn has_register(&self) -> bool {
        self.register.is_some()
    }

    /// The log as JSON lines, as sent at registration.
    pub fn to_jsonl(&self) -> String {
        self.to_jsonl_from(0)
    }

    /// The events from `seq` `first` on, as JSON lines (the control plane holds the
    /// ones before).
    pub fn to_jsonl_from(&self, first: usize) -> String {
        let mut out = String::new();
        for e in self.events.iter().skip(first) {
            out.push_str(&serde_json::to_string(e).unwrap_or_default());
            out.push('\n');
        }
        out
    }

    /// Compares the replayed log with the register.
    pub fn consistency(&self) -> Consistency {
        let Some(reg) = &self.register else {
            return Consistency::NoRegister;
        };
        let replayed = eventlog::replay(&self.events);
        match read_register(reg) {
            Ok(v) if v == replayed => Consistency::Matches,
            Ok(v) => Consistency::Mismatch {
                register: hex::encode(v),
                replayed: hex::encode(replayed),
            },
            Err(e) => Consistency::Mismatch {
                register: format!("unreadable: {e}"),
                replayed: hex::encode(replayed),
            },
        }
    }

    /// Records `value` for `kind` unless the latest event of that kind already says
    /// it. Returns whether an event was added. The register is extended first and the
    /// event logged after, with `bound` saying whether the extension was accepted.
    pub fn record(&mut self, kind: &str, value: &str) -> Result<bool, RtmrError> {
        let _lock = self.lock()?;
        self.reload()?;
        self.record_locked(kind, value)
    }

    /// Records an event whatever the latest event of its kind says (each verified
    /// pull is its own event, even of an image pulled before).
    pub fn record_always(&mut self, kind: &str, value: &str) -> Result<Rtmr3Event, RtmrError> {
        let _lock = self.lock()?;
        self.reload()?;
        self.append_event(kind, value)
    }

    fn record_locked(&mut self, kind: &str, value: &str) -> Result<bool, RtmrError> {
        let latest = self.events.iter().rev().find(|e| e.kind == kind);
        if latest.is_some_and(|e| e.value == value) {
            return Ok(false);
        }
        self.append_event(kind, value)?;
        Ok(true)
    }

    fn append_event(&mut self, kind: &str, value: &str) -> Result<Rtmr3Event, RtmrError> {
        if self.events.len() >= MAX_EVENTS {
            return Err(RtmrError::Full);
        }
        let seq = u64::try_from(self.events.len()).unwrap_or(u64::MAX);
        let mut event = Rtmr3Event::new(seq, kind, value, false);
        // The whole log must stay readable by the control plane (and fit a
        // registration): a line is at most MAX_LINE, the log at most MAX_LOG_BYTES.
        let line = serde_json::to_string(&event).unwrap_or_default().len() + 1;
        if line > MAX_LINE {
            return Err(RtmrError::LineTooLong {
                kind: kind.to_string(),
            });
        }
        if self.to_jsonl().len() + line > MAX_LOG_BYTES {
            return Err(RtmrError::Full);
        }
        event.bound = match &self.register {
            Some(reg) => self.extend(reg, &event.digest.0),
            None => false,
        };
        if let Some(path) = &self.file {
            append_line(path, &event).map_err(|e| RtmrError::Log {
                path: path.display().to_string(),
                detail: e.to_string(),
            })?;
        }
        tracing::info!(seq, kind, value, bound = event.bound, "RTMR3 event");
        self.events.push(event.clone());
        Ok(event)
    }

    /// Extends the register with `digest`: read the value, write the digest, and
    /// wait for the read-back to show `SHA-384(value || digest)`. Returns whether the
    /// write was accepted (then the extension happened, even if a concurrent writer
    /// makes the read-back differ: the replay will expose that).
    fn extend(&self, reg: &Path, digest: &[u8; 48]) -> bool {
        let before = match read_register(reg) {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(path = %reg.display(), error = %e, "cannot read RTMR3; logging the event unbound");
                return false;
            }
        };
        let written = std::fs::OpenOptions::new()
            .write(true)
            .open(reg)
            .and_then(|mut f| f.write_all(digest));
        if let Err(e) = written {
            tracing::warn!(path = %reg.display(), error = %e, "RTMR3 extension refused; logging the event unbound");
            return false;
        }
        let want = eventlog::extend(&before, digest);
        let deadline = Instant::now() + self.settle;
        loop {
            match read_register(reg) {
                Ok(v) if v == want => return true,
                _ if Instant::now() >= deadline => {
                    tracing::warn!(path = %reg.display(),
                        "RTMR3 does not show our extension (another writer?); the control plane's replay will decide");
                    return true;
                }
                _ => std::thread::sleep(Duration::from_millis(2)),
            }
        }
    }
}

fn read_register(reg: &Path) -> std::io::Result<[u8; 48]> {
    let bytes = read_bounded(reg, 48).map_err(|e| match e {
        ReadError::Io(e) => e,
        other => std::io::Error::other(other.to_string()),
    })?;
    <[u8; 48]>::try_from(bytes.as_slice()).map_err(|_| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("RTMR value is {} bytes, not 48", bytes.len()),
        )
    })
}

fn append_line(path: &Path, event: &Rtmr3Event) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(event).map_err(std::io::Error::other)?;
    line.push(b'\n');
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    f.write_all(&line)?;
    f.sync_data()
}

#[cfg(test)]
mod tests {
    use super::*;

    use tdx_sim::{RtmrBehaviour, RtmrDevice};

    struct Register {
        dir: tempfile::TempDir,
        dev: RtmrDevice,
    }

    impl Register {
        fn start() -> Register {
            let dir = tempfile::tempdir().unwrap();
            let dev = RtmrDevice::start(dir.path(), RtmrBehaviour::Honest).unwrap();
            Register { dir, dev }
        }
        fn value(&self) -> [u8; 48] {
            self.dev.current_rtmr3()
        }
    }

    #[test]
    fn events_extend_the_register_and_replay_to_it() {
        let reg = Register::start();
        let logdir = tempfile::tempdir().unwrap();
        let file = logdir.path().join("run/rtmr3.jsonl");
        let mut log = EventLog::open(Some(file.clone()), Some(reg.dir.path())).unwrap();
        assert!(log.has_register());
        assert!(log.record("agent_binary", &"aa".repeat(32)).unwrap());
        assert!(log.record("policy", &"bb".repeat(32)).unwrap());
        // The same value again is not a new event; a changed one is.
        assert!(!log.record("policy", &"bb".repeat(32)).unwrap());
        assert!(log.record("policy", &"cc".repeat(32)).unwrap());
        assert_eq!(log.events().len(), 3);
        assert!(log.events().iter().all(|e| e.bound));
        assert_eq!(eventlog::replay(log.events()), reg.value());
        assert_eq!(log.consistency(), Consistency::Matches);

        // The persisted log is what was sent, and a restarted agent picks it up.
        let sent = log.to_jsonl();
        assert_eq!(std::fs::read_to_string(&file).unwrap(), sent);
        assert_eq!(
            eventlog::parse_jsonl(sent.as_bytes()).unwrap(),
            log.events()
        );
        let mut again = EventLog::open(Some(file.clone()), Some(reg.dir.path())).unwrap();
        assert_eq!(again.events(), log.events());
        assert_eq!(again.consistency(), Consistency::Matches);
        assert!(!again.record("policy", &"cc".repeat(32)).unwrap());
        assert!(again.record("agent_binary", &"dd".repeat(32)).unwrap());
        assert_eq!(eventlog::replay(again.events()), reg.value());
    }

    #[test]
    fn a_lost_log_or_foreign_extension_is_a_visible_mismatch() {
        let reg = Register::start();
        let mut log = EventLog::open(None, Some(reg.dir.path())).unwrap();
        log.record("agent_binary", &"aa".repeat(32)).unwrap();
        // A restarted agent whose log was lost.
        let fresh = EventLog::open(None, Some(reg.dir.path())).unwrap();
        assert!(matches!(fresh.consistency(), Consistency::Mismatch { .. }));
    }

    #[test]
    fn without_a_register_events_are_logged_unbound() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = EventLog::open(None, Some(dir.path())).unwrap();
        assert!(!log.has_register());
        log.record("agent_binary", &"aa".repeat(32)).unwrap();
        assert!(!log.events()[0].bound);
        assert_eq!(log.consistency(), Consistency::NoRegister);
        assert_eq!(eventlog::replay(log.events()), [0u8; 48]);

        // A register that cannot be used (here: not a file) also gives unbound events.
        std::fs::create_dir(dir.path().join(RTMR3_FILE)).unwrap();
        let mut log = EventLog::open(None, Some(dir.path())).unwrap();
        assert!(log.has_register());
        log.record("agent_binary", &"aa".repeat(32)).unwrap();
        assert!(!log.events()[0].bound);
    }

    #[test]
    fn a_corrupt_log_is_set_aside_not_trusted() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("rtmr3.jsonl");
        std::fs::write(&file, b"{garbage\n").unwrap();
        let log = EventLog::open(Some(file.clone()), None).unwrap();
        assert!(log.events().is_empty());
        assert!(dir.path().join("rtmr3.corrupt").exists());
        assert!(!file.exists());
    }
}
