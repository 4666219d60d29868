//! Time as an injectable dependency, so tests can pin it, and the two units time is
//! kept in, as types, so that seconds and nanoseconds cannot be mixed.
//!
//! [`UnixNanos`] is what the clock reads, what pulses carry and what the control
//! plane stores. [`UnixSecs`] is the unit of the formats the verifiers read: X.509
//! validity, CRLs, Intel's collateral and Rekor's integrated times. Every verification
//! takes its `now` as one of these two, never as a bare integer; the one conversion
//! between them is [`UnixNanos::secs`] (and [`UnixSecs::nanos`] back). Integers stay
//! only in wire and storage structs, where the field name carries the unit
//! (`at_ns`, `expires_at_secs`).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// An instant, in nanoseconds since 1970-01-01T00:00:00Z (UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct UnixNanos(pub u64);

/// An instant, in whole seconds since 1970-01-01T00:00:00Z (UTC). Signed, as X.509
/// and Rekor times are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct UnixSecs(pub i64);

const NANOS_PER_SEC: u64 = 1_000_000_000;

impl UnixNanos {
    /// The nanosecond count.
    pub const fn get(self) -> u64 {
        self.0
    }

    /// The same instant in whole seconds (rounded down).
    pub fn secs(self) -> UnixSecs {
        UnixSecs(i64::try_from(self.0 / NANOS_PER_SEC).unwrap_or(i64::MAX))
    }

    /// `self + d`, saturating at the end of time.
    pub fn saturating_add(self, d: Duration) -> UnixNanos {
        UnixNanos(self.0.saturating_add(duration_ns(d)))
    }

    /// `self - d`, saturating at the epoch.
    pub fn saturating_sub(self, d: Duration) -> UnixNanos {
        UnixNanos(self.0.saturating_sub(duration_ns(d)))
    }

    /// How long after `earlier` this is; zero when `earlier` is later.
    pub fn since(self, earlier: UnixNanos) -> Duration {
        Duration::from_nanos(self.0.saturating_sub(earlier.0))
    }
}

impl UnixSecs {
    /// The second count.
    pub const fn get(self) -> i64 {
        self.0
    }

    /// Unsigned seconds (as collateral and caches keep them), saturating.
    pub fn from_unsigned(secs: u64) -> UnixSecs {
        UnixSecs(i64::try_from(secs).unwrap_or(i64::MAX))
    }

    /// The second count for APIs that take an unsigned time (dcap-qvl, the
    /// collateral cache); instants before the epoch read as the epoch.
    pub fn unsigned(self) -> u64 {
        u64::try_from(self.0).unwrap_or(0)
    }

    /// The same instant in nanoseconds, saturating; instants before the epoch read
    /// as the epoch.
    pub fn nanos(self) -> UnixNanos {
        UnixNanos(self.unsigned().saturating_mul(NANOS_PER_SEC))
    }

    /// `self + d`, saturating.
    pub fn saturating_add(self, d: Duration) -> UnixSecs {
        UnixSecs(
            self.0
                .saturating_add(i64::try_from(d.as_secs()).unwrap_or(i64::MAX)),
        )
    }
}

impl std::fmt::Display for UnixNanos {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}ns", self.0)
    }
}

impl std::fmt::Display for UnixSecs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}s", self.0)
    }
}

fn duration_ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// A source of wall-clock time.
pub trait Clock: Send + Sync + 'static {
    /// The current instant.
    fn now(&self) -> UnixNanos;
}

/// The system's real-time clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> UnixNanos {
        UnixNanos(
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(duration_ns)
                .unwrap_or(0),
        )
    }
}

/// A clock that always reads the same instant (tests).
#[derive(Debug, Clone, Copy)]
pub struct FixedClock(pub UnixNanos);

impl Clock for FixedClock {
    fn now(&self) -> UnixNanos {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversions_round_down_and_saturate() {
        assert_eq!(UnixNanos(1_999_999_999).secs(), UnixSecs(1));
        assert_eq!(UnixNanos(u64::MAX).secs(), UnixSecs(18_446_744_073));
        assert_eq!(UnixSecs(2).nanos(), UnixNanos(2_000_000_000));
        assert_eq!(UnixSecs(-5).nanos(), UnixNanos(0));
        assert_eq!(UnixSecs(-5).unsigned(), 0);
        assert_eq!(UnixSecs(i64::MAX).nanos(), UnixNanos(u64::MAX));
        assert_eq!(
            UnixNanos(u64::MAX - 1).saturating_add(Duration::from_secs(1)),
            UnixNanos(u64::MAX)
        );
        assert_eq!(
            UnixNanos(5).saturating_sub(Duration::from_secs(1)),
            UnixNanos(0)
        );
        assert_eq!(UnixNanos(5).since(UnixNanos(9)), Duration::ZERO);
        assert_eq!(
            UnixNanos(3_000_000_000).since(UnixNanos(1_000_000_000)),
            Duration::from_secs(2)
        );
        assert_eq!(
            UnixSecs(i64::MAX - 1).saturating_add(Duration::from_secs(9)),
            UnixSecs(i64::MAX)
        );
    }

    #[test]
    fn the_system_clock_reads_after_2020() {
        assert!(SystemClock.now().secs() > UnixSecs(1_577_836_800));
    }
}
