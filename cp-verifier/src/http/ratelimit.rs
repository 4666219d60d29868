//! A token bucket per request source, for the endpoints anyone can reach
//! (`/challenge`, `/register`).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::model::source_addr;

/// Sources a rate limiter remembers at once.
const MAX_RATE_SOURCES: usize = 65_536;
/// The longest wait a rate limiter asks a client for.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(24 * 3600);

/// A token bucket per source (IPv6: per /64): `rate` tokens a second up to `burst`.
pub struct RateLimiter {
    rate: f64,
    burst: f64,
    buckets: Mutex<HashMap<IpAddr, (f64, Instant)>>,
}

impl RateLimiter {
    /// A limiter of `rate` requests a second per source, in bursts of up to `burst`.
    /// `rate` must be finite and positive (the config checks it).
    pub fn new(rate: f64, burst: u32) -> RateLimiter {
        RateLimiter {
            rate,
            burst: f64::from(burst),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one token for `source` at `now`; when there is none, how long until
    /// there is.
    pub fn check(&self, source: IpAddr, now: Instant) -> Result<(), Duration> {
        let key = source_addr(source);
        let mut m = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if !m.contains_key(&key) && m.len() >= MAX_RATE_SOURCES {
            // Forget the sources whose bucket has refilled: they are as good as new.
            let refill = self.burst / self.rate;
            m.retain(|_, (_, at)| now.saturating_duration_since(*at).as_secs_f64() < refill);
            if m.len() >= MAX_RATE_SOURCES {
                // Still full: a flood from many sources; new ones wait.
                return Err(Duration::from_secs(1));
            }
        }
        let (tokens, at) = m.entry(key).or_insert((self.burst, now));
        let dt = now.saturating_duration_since(*at).as_secs_f64();
        *tokens = (*tokens + dt * self.rate).min(self.burst);
        if now > *at {
            *at = now;
        }
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            // Clamped: a tiny configured rate must not overflow `Duration` (a panic
            // in a request handler); a day is as long as any client should wait.
            let wait = (1.0 - *tokens) / self.rate;
            Err(Duration::try_from_secs_f64(wait)
                .unwrap_or(MAX_RETRY_AFTER)
                .min(MAX_RETRY_AFTER))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found while documenting (issue 11): a tiny configured rate overflowed
    /// `Duration::from_secs_f64` in the request path. The wait is now clamped.
    #[test]
    fn a_tiny_rate_never_panics_and_asks_for_at_most_a_day() {
        let l = RateLimiter::new(1e-20, 1);
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let now = Instant::now();
        assert!(l.check(ip, now).is_ok());
        assert_eq!(l.check(ip, now), Err(MAX_RETRY_AFTER));
        let l = RateLimiter::new(2.0, 1);
        assert!(l.check(ip, now).is_ok());
        let wait = l.check(ip, now).unwrap_err();
        assert!(wait > Duration::from_millis(400) && wait <= Duration::from_millis(500));
    }
}
