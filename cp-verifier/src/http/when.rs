//! Times for people: UTC to the second, and how long ago.

use serde::Serialize;

/// One instant as the pages show it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct When {
    /// `2026-12-06 02:40:12 UTC`.
    pub utc: String,
    /// RFC 3339, for `<time datetime=...>`.
    pub iso: String,
    /// `12 s ago`, `5 min ago`, `3 h ago`, `2 d ago`, or `in 4 s` for a time ahead
    /// of `now` (a skewed clock).
    pub rel: String,
}

impl When {
    /// `ns` (UTC, since the epoch) seen at `now_ns`.
    pub fn at(ns: u64, now_ns: u64) -> When {
        let secs = i64::try_from(ns / 1_000_000_000).unwrap_or(i64::MAX);
        let t = time::OffsetDateTime::from_unix_timestamp(secs).ok();
        let utc = t
            .and_then(|t| {
                t.format(time::macros::format_description!(
                    "[year]-[month]-[day] [hour]:[minute]:[second] UTC"
                ))
                .ok()
            })
            .unwrap_or_else(|| format!("{ns} ns"));
        let iso = rfc3339(ns).unwrap_or_default();
        When {
            utc,
            iso,
            rel: relative(ns, now_ns),
        }
    }
}

/// `ns` (UTC, since the epoch) as RFC 3339, to the second; `None` out of range.
pub fn rfc3339(ns: u64) -> Option<String> {
    let secs = i64::try_from(ns / 1_000_000_000).ok()?;
    time::OffsetDateTime::from_unix_timestamp(secs)
        .ok()?
        .format(&time::format_description::well_known::Rfc3339)
        .ok()
}

/// How far `ns` is from `now_ns`, in the largest whole unit.
pub fn relative(ns: u64, now_ns: u64) -> String {
    let (d, ahead) = if ns <= now_ns {
        (now_ns - ns, false)
    } else {
        (ns - now_ns, true)
    };
    let s = d / 1_000_000_000;
    let amount = match s {
        0..=59 => format!("{s} s"),
        60..=3_599 => format!("{} min", s / 60),
        3_600..=172_799 => format!("{} h", s / 3_600),
        _ => format!("{} d", s / 86_400),
    };
    if ahead {
        format!("in {amount}")
    } else {
        format!("{amount} ago")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    #[test]
    fn utc_and_relative() {
        // 2026-12-06T02:40:12Z
        let t = 1_796_524_812 * S;
        let w = When::at(t, t + 12 * S);
        assert_eq!(w.utc, "2026-12-06 02:40:12 UTC");
        assert_eq!(w.iso, "2026-12-06T02:40:12Z");
        assert_eq!(w.rel, "12 s ago");
        assert_eq!(relative(t, t + 5 * 60 * S), "5 min ago");
        assert_eq!(relative(t, t + 3 * 3600 * S), "3 h ago");
        assert_eq!(relative(t, t + 49 * 3600 * S), "2 d ago");
        assert_eq!(relative(t + 4 * S, t), "in 4 s");
        assert_eq!(When::at(u64::MAX, 0).rel, "in 213503 d");
    }
}
