//! The node's health for the pulse: uptime, load, memory, free space on the
//! configured mounts, the agent's own RSS and CPU time, the kernel's clock
//! synchronisation state (`adjtimex`) and the agent's last error. Everything is read
//! from the kernel (`/proc`, `statvfs`, `adjtimex`); what cannot be read is left at
//! zero or `None`, never invented. The one unsafe call (adjtimex) is in [`clock`].
#![allow(unsafe_code)]

use std::path::{Path, PathBuf};

use evidence::report::{MAX_HEALTH_MOUNTS, MAX_LAST_ERROR_LEN};
use evidence::{ClockSync, DiskFree, Health};
use provenant_base::fsutil::read_text_bounded;

/// Largest `/proc` file read here.
const MAX_PROC_BYTES: u64 = 64 * 1024;

fn proc_text(path: &str) -> Option<String> {
    read_text_bounded(Path::new(path), MAX_PROC_BYTES).ok()
}

/// Reads the node's health now. `mounts` are the configured mount points (at most
/// [`MAX_HEALTH_MOUNTS`] are reported); `last_error` is the agent's.
pub fn collect(mounts: &[PathBuf], last_error: Option<&str>) -> Health {
    // "12345.67 4567.89": the whole seconds of the first field.
    let uptime_s = proc_text("/proc/uptime")
        .and_then(|t| {
            t.split_whitespace()
                .next()
                .and_then(|f| f.split('.').next())
                .and_then(|s| s.parse::<u64>().ok())
        })
        .unwrap_or(0);
    let mut load_avg = [0.0; 3];
    if let Some(t) = proc_text("/proc/loadavg") {
        for (slot, v) in load_avg.iter_mut().zip(t.split_whitespace()) {
            if let Ok(f) = v.parse::<f64>() {
                if f.is_finite() && f >= 0.0 {
                    *slot = f;
                }
            }
        }
    }
    let meminfo = proc_text("/proc/meminfo").unwrap_or_default();
    let status = proc_text("/proc/self/status").unwrap_or_default();
    Health {
        uptime_s,
        load_avg,
        mem_total_kib: kib_field(&meminfo, "MemTotal:"),
        mem_available_kib: kib_field(&meminfo, "MemAvailable:"),
        disks: mounts
            .iter()
            .take(MAX_HEALTH_MOUNTS)
            .filter_map(|m| disk_free(m))
            .collect(),
        agent_rss_kib: kib_field(&status, "VmRSS:"),
        agent_cpu_ms: cpu_ms(),
        clock: clock(),
        last_error: last_error.map(|e| truncate(e, MAX_LAST_ERROR_LEN)),
    }
}

/// `Name:   1234 kB` in a `/proc` status-style file.
fn kib_field(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

fn disk_free(mount: &Path) -> Option<DiskFree> {
    let s = rustix::fs::statvfs(mount).ok()?;
    let frag = s.f_frsize.max(1);
    Some(DiskFree {
        mount: mount.display().to_string(),
        total_bytes: s.f_blocks.saturating_mul(frag),
        free_bytes: s.f_bavail.saturating_mul(frag),
    })
}

/// User plus system CPU time of this process, from `/proc/self/stat` (fields 14 and
/// 15, in clock ticks; the command name, field 2, may hold spaces and parentheses,
/// so fields are counted after its closing parenthesis).
fn cpu_ms() -> u64 {
    let Some(stat) = proc_text("/proc/self/stat") else {
        return 0;
    };
    let Some(after) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
        return 0;
    };
    // After the name: field 3 (state) is the first; utime is field 14, stime 15.
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let total = ticks(11).saturating_add(ticks(12));
    let hz = rustix::param::clock_ticks_per_second().max(1);
    total.saturating_mul(1000) / hz
}

/// The kernel's clock state: `adjtimex(2)` with no modes set only reads it.
fn clock() -> Option<ClockSync> {
    // SAFETY: `timex` is a plain C struct for which all-zero bytes are a valid value;
    // with `modes == 0` adjtimex only writes the kernel's state into the struct we
    // own and pass by a valid, exclusive pointer, and reads nothing else from it.
    let mut t: libc::timex = unsafe { std::mem::zeroed() };
    // SAFETY: as above; `t` lives for the call.
    let state = unsafe { libc::adjtimex(&mut t) };
    if state < 0 {
        return None;
    }
    let unsync = (t.status & libc::STA_UNSYNC) != 0 || state == libc::TIME_ERROR;
    Some(ClockSync {
        synchronised: !unsync,
        est_error_us: u64::try_from(t.esterror).unwrap_or(0),
        max_error_us: u64::try_from(t.maxerror).unwrap_or(0),
    })
}

/// `s` cut to at most `max` bytes on a character boundary, control characters
/// replaced by spaces (the wire refuses them).
fn truncate(s: &str, max: usize) -> String {
    let mut out = String::with_capacity(s.len().min(max));
    for c in s.chars() {
        let c = if c.is_control() { ' ' } else { c };
        if out.len() + c.len_utf8() > max {
            break;
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Against the real kernel of the machine running the tests.
    #[test]
    fn reads_the_real_kernel() {
        let h = collect(
            &[PathBuf::from("/"), PathBuf::from("/nonexistent-mount")],
            None,
        );
        assert!(h.uptime_s > 0, "{h:?}");
        assert!(
            h.mem_total_kib > 0 && h.mem_available_kib <= h.mem_total_kib,
            "{h:?}"
        );
        assert_eq!(h.disks.len(), 1, "an unreadable mount is left out: {h:?}");
        assert_eq!(h.disks[0].mount, "/");
        assert!(h.disks[0].total_bytes > 0 && h.disks[0].free_bytes <= h.disks[0].total_bytes);
        assert!(h.agent_rss_kib > 0, "{h:?}");
        assert!(h.load_avg.iter().all(|l| l.is_finite() && *l >= 0.0));
        // adjtimex is readable by any process; whether the clock is synchronised
        // depends on the machine, the error fields are bounded by the kernel.
        let c = h.clock.expect("adjtimex readable");
        assert!(c.max_error_us <= 16_000_000, "{c:?}");
        // Burn some CPU and see it counted.
        let t = std::time::Instant::now();
        let mut x = 0u64;
        while t.elapsed() < std::time::Duration::from_millis(50) {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
        }
        std::hint::black_box(x);
        assert!(collect(&[], None).agent_cpu_ms > 0);
    }

    #[test]
    fn last_error_is_bounded_and_cleaned() {
        let e = format!("bad\nline {}", "é".repeat(600));
        let h = collect(&[], Some(&e));
        let got = h.last_error.unwrap();
        assert!(got.len() <= MAX_LAST_ERROR_LEN && got.starts_with("bad line "));
        assert!(!got.chars().any(char::is_control));
    }
}
