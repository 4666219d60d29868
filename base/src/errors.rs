//! Error text for people: an error and every source under it on one line.

/// `e` and its chain of sources, joined by `": "` (reqwest and hyper put the cause
/// that says what actually went wrong, e.g. "connection refused", in a source).
pub fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    #[test]
    fn joins_sources() {
        // A plain error: its own text only.
        let plain = std::io::Error::other("connection refused");
        assert_eq!(super::chain(&plain), "connection refused");
        #[derive(Debug, thiserror::Error)]
        #[error("fetch failed")]
        struct Fetch(#[source] std::io::Error);
        let e = Fetch(std::io::Error::other("timed out"));
        assert_eq!(super::chain(&e), "fetch failed: timed out");
    }
}
