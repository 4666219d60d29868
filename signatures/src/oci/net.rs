//! Outbound requests to hosts a remote party named (a registry's token realm or blob
//! redirect, GitHub's `bundle_url`): refused when they lead to an internal address
//! (SSRF). The check runs on the resolved addresses, inside the resolver the HTTP
//! client connects with, so a DNS answer cannot change between the check and the
//! connection (rebinding); an IP literal in the URL is checked before the request.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use reqwest::Url;

/// Whether `ip` is an address a request named by a remote party must not reach:
/// unspecified, loopback, private (RFC 1918), CGNAT (100.64/10), link-local,
/// multicast, broadcast, reserved, documentation and benchmarking ranges; for IPv6
/// also unique-local (fc00::/7), site-local, and every form that embeds an IPv4
/// address (IPv4-mapped, IPv4-compatible, NAT64, 6to4, Teredo) judged by that
/// address.
pub fn is_internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => internal_v4(v4),
        IpAddr::V6(v6) => internal_v6(v6),
    }
}

fn internal_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    a == 0                                  // "this network", 0.0.0.0
        || a == 10                          // private
        || a == 127                         // loopback
        || (a == 100 && (64..128).contains(&b)) // CGNAT 100.64/10
        || (a == 169 && b == 254)           // link-local
        || (a == 172 && (16..32).contains(&b)) // private
        || (a == 192 && b == 168)           // private
        || (a == 192 && b == 0 && c == 0)   // IETF protocol assignments
        || (a == 192 && b == 0 && c == 2)   // documentation
        || (a == 198 && (18..20).contains(&b)) // benchmarking
        || (a == 198 && b == 51 && c == 100) // documentation
        || (a == 203 && b == 0 && c == 113) // documentation
        || a >= 224 // multicast, reserved, broadcast
}

fn internal_v6(ip: Ipv6Addr) -> bool {
    let s = ip.segments();
    let embedded = |hi: u16, lo: u16| {
        let [h1, h2] = hi.to_be_bytes();
        let [l1, l2] = lo.to_be_bytes();
        Ipv4Addr::new(h1, h2, l1, l2)
    };
    if ip.is_unspecified() || ip.is_loopback() {
        return true;
    }
    // IPv4-mapped ::ffff:a.b.c.d and IPv4-compatible ::a.b.c.d.
    if s[..5] == [0; 5] && (s[5] == 0xffff || s[5] == 0) {
        return internal_v4(embedded(s[6], s[7]));
    }
    // NAT64 64:ff9b::/96 (and the local-use 64:ff9b:1::/48).
    if s[0] == 0x64 && s[1] == 0xff9b {
        return s[2] == 1 || internal_v4(embedded(s[6], s[7]));
    }
    // 6to4 2002:aabb:ccdd::/48.
    if s[0] == 0x2002 {
        return internal_v4(embedded(s[1], s[2]));
    }
    (s[0] & 0xfe00) == 0xfc00          // unique local fc00::/7
        || (s[0] & 0xffc0) == 0xfe80   // link-local fe80::/10
        || (s[0] & 0xffc0) == 0xfec0   // site-local (deprecated)
        || (s[0] & 0xff00) == 0xff00   // multicast
        || (s[0] == 0x2001 && s[1] == 0) // Teredo 2001::/32
        || (s[0] == 0x2001 && s[1] == 0xdb8) // documentation
        || s[0] == 0x0100 && s[1..4] == [0; 3] // discard-only 100::/64
}

/// A request went to (or resolved to) an internal address.
#[derive(Debug, Clone)]
pub struct InternalAddress {
    /// The host named.
    pub host: String,
    /// The internal address it is or resolved to.
    pub ip: IpAddr,
}

impl std::fmt::Display for InternalAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.host == self.ip.to_string() {
            write!(f, "{} is an internal address", self.ip)
        } else {
            write!(
                f,
                "{} resolves to the internal address {}",
                self.host, self.ip
            )
        }
    }
}

impl std::error::Error for InternalAddress {}

/// Checks a URL's host where it is an IP literal (the resolver never sees those);
/// host names are checked by [`GuardedResolver`] at connection time.
pub fn check_literal(url: &Url) -> Result<(), InternalAddress> {
    let Some(h) = url.host_str() else {
        return Ok(());
    };
    let Ok(ip) = h
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
    else {
        return Ok(());
    };
    if is_internal(ip) {
        return Err(InternalAddress {
            host: ip.to_string(),
            ip,
        });
    }
    Ok(())
}

/// The internal-address refusal in an error's source chain, if that is what it is.
pub fn internal_in(e: &(dyn std::error::Error + 'static)) -> Option<InternalAddress> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cur {
        if let Some(i) = c.downcast_ref::<InternalAddress>() {
            return Some(i.clone());
        }
        cur = c.source();
    }
    None
}

/// A DNS resolver for reqwest that refuses a name when any of its addresses is
/// internal; the addresses it returns are the ones connected to.
#[derive(Debug, Default, Clone, Copy)]
pub struct GuardedResolver;

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_string();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            if let Some(bad) = addrs.iter().find(|a| is_internal(a.ip())) {
                let e: Box<dyn std::error::Error + Send + Sync> = Box::new(InternalAddress {
                    host: host.clone(),
                    ip: bad.ip(),
                });
                return Err(e);
            }
            if addrs.is_empty() {
                return Err(format!("{host} has no address").into());
            }
            let it: reqwest::dns::Addrs = Box::new(addrs.into_iter());
            Ok(it)
        })
    }
}

/// `b` connecting only through [`GuardedResolver`].
pub fn guarded(b: reqwest::ClientBuilder) -> reqwest::ClientBuilder {
    b.dns_resolver(Arc::new(GuardedResolver))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finding09_ssrf_address_classifier() {
        for internal in [
            "127.0.0.1",
            "127.8.9.10",
            "10.0.0.1",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "100.127.255.254",
            "0.0.0.0",
            "0.1.2.3",
            "224.0.0.1",
            "255.255.255.255",
            "240.0.0.1",
            "198.18.0.1",
            "::",
            "::1",
            "fd00::1",
            "fc00::1",
            "fe80::1",
            "ff02::1",
            "::ffff:10.0.0.1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "::ffff:100.64.0.1",
            "::10.0.0.1",
            "64:ff9b::a00:1",
            "2002:a00:1::1",
            "2002:7f00:1::",
            "2001:0:4136:e378:8000:63bf:3fff:fdd2",
            "2001:db8::1",
        ] {
            let ip: IpAddr = internal.parse().unwrap();
            assert!(is_internal(ip), "{internal} must be internal");
        }
        for public in [
            "1.1.1.1",
            "8.8.8.8",
            "100.63.255.255",
            "100.128.0.1",
            "172.15.0.1",
            "172.32.0.1",
            "192.169.0.1",
            "140.82.112.3",
            "2606:4700::1111",
            "2a00:1450:4001::200e",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "2002:808:808::1",
        ] {
            let ip: IpAddr = public.parse().unwrap();
            assert!(!is_internal(ip), "{public} is public");
        }
    }

    #[test]
    fn literals_are_checked_names_are_left_to_the_resolver() {
        for u in [
            "https://10.0.0.1/x",
            "https://[::ffff:10.0.0.1]/x",
            "https://[fd00::1]:443/",
            "http://100.64.0.1/",
            "http://127.1/",
            "http://0x7f000001/",
        ] {
            let url = Url::parse(u).unwrap();
            assert!(check_literal(&url).is_err(), "{u}");
        }
        for u in [
            "https://ghcr.io/token",
            "https://8.8.8.8/",
            "https://localhost/",
        ] {
            assert!(check_literal(&Url::parse(u).unwrap()).is_ok(), "{u}");
        }
    }

    #[tokio::test]
    async fn finding09_ssrf_resolver_refuses_names_of_internal_addresses() {
        use reqwest::dns::Resolve;
        let name: reqwest::dns::Name = "localhost".parse().unwrap();
        let e = GuardedResolver.resolve(name).await.err().unwrap();
        let i = internal_in(e.as_ref()).unwrap();
        assert_eq!(i.host, "localhost");
        assert!(i.ip.is_loopback());
    }
}
