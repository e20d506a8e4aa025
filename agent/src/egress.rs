//! Which addresses deliveries may reach (SSRF guard). Endpoint URLs come
//! from tenants, so an agent must not become their way into the private
//! network it runs in: loopback, private, link-local, CGNAT, multicast,
//! documentation, reserved and cloud metadata addresses are refused unless
//! the operator allows them by CIDR.
//!
//! The check is made on the addresses the HTTP client actually connects
//! to: host names go through [`GuardedResolver`], which hands the connector
//! only addresses that pass, so a name that resolves to a public address at
//! one moment and a private one the next (DNS rebinding) gains nothing.
//! IP literals skip resolution and are checked by [`Guard::check_url`].

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;
use std::sync::Arc;

/// A refused destination: the error the resolver and the URL check return,
/// found again in the error chain to record the `BLOCKED` error kind.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Blocked(pub String);

/// An IP network, as `10.0.0.0/8` or `::1/128` (a bare address is one host).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl FromStr for Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (ip, prefix) = match s.split_once('/') {
            Some((ip, p)) => (ip, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = ip
            .trim()
            .parse()
            .map_err(|_| format!("'{s}' is not an IP address or CIDR"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("'{s}': prefix must be 0..={max}"))?,
        };
        Ok(Cidr { addr, prefix })
    }
}

impl Cidr {
    /// Whether `ip` is inside this network (v4 against v4, v6 against v6).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                prefix_eq(&n.octets(), &a.octets(), usize::from(self.prefix))
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                prefix_eq(&n.octets(), &a.octets(), usize::from(self.prefix))
            }
            _ => false,
        }
    }
}

fn prefix_eq(a: &[u8], b: &[u8], bits: usize) -> bool {
    let whole = bits / 8;
    if a[..whole] != b[..whole] {
        return false;
    }
    let rest = bits % 8;
    rest == 0 || (a[whole] ^ b[whole]) >> (8 - rest) == 0
}

/// Why `ip` is not a public unicast address, or None when it is.
pub fn non_public(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => non_public_v4(v4),
        IpAddr::V6(v6) => non_public_v6(v6),
    }
}

fn non_public_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, c, d] = ip.octets();
    Some(match (a, b, c, d) {
        (0, ..) => "unspecified (0.0.0.0/8)",
        (10, ..) | (172, 16..=31, ..) | (192, 168, ..) => "private",
        (100, 64..=127, ..) => "shared address space (CGNAT, 100.64.0.0/10)",
        (127, ..) => "loopback",
        (169, 254, ..) => "link-local (cloud metadata lives here)",
        (168, 63, 129, 16) => "cloud metadata (Azure)",
        (192, 0, 0, _) => "IETF protocol assignments (192.0.0.0/24)",
        (192, 0, 2, _) | (198, 51, 100, _) | (203, 0, 113, _) => "documentation",
        (192, 88, 99, _) => "6to4 relay anycast",
        (198, 18..=19, ..) => "benchmarking (198.18.0.0/15)",
        (224..=239, ..) => "multicast",
        (240..=255, ..) => "reserved or broadcast",
        _ => return None,
    })
}

fn non_public_v6(ip: Ipv6Addr) -> Option<&'static str> {
    let s = ip.segments();
    // Forms that carry an IPv4 address are judged by it.
    if let Some(v4) = ip.to_ipv4_mapped() {
        return non_public_v4(v4);
    }
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return non_public_v4(embedded_v4(s[6], s[7])); // NAT64
    }
    if s[0] == 0x2002 {
        return non_public_v4(embedded_v4(s[1], s[2])); // 6to4
    }
    Some(match s {
        [0, 0, 0, 0, 0, 0, 0, 0] => "unspecified (::)",
        [0, 0, 0, 0, 0, 0, 0, 1] => "loopback (::1)",
        // Deprecated IPv4-compatible addresses.
        [0, 0, 0, 0, 0, 0, ..] => "IPv4-compatible (::/96)",
        [0x100, 0, 0, 0, ..] => "discard (100::/64)",
        [0x2001, 0..=0x1ff, ..] => "IETF protocol assignments and Teredo (2001::/23)",
        [0x2001, 0xdb8, ..] => "documentation (2001:db8::/32)",
        [x, ..] if x & 0xfff0 == 0x3ff0 => "documentation (3fff::/20)",
        [x, ..] if x & 0xfe00 == 0xfc00 => "unique local (fc00::/7)",
        [x, ..] if x & 0xffc0 == 0xfe80 => "link-local (fe80::/10)",
        [x, ..] if x & 0xffc0 == 0xfec0 => "site-local (fec0::/10)",
        [x, ..] if x & 0xff00 == 0xff00 => "multicast",
        _ => return None,
    })
}

fn embedded_v4(hi: u16, lo: u16) -> Ipv4Addr {
    Ipv4Addr::new((hi >> 8) as u8, hi as u8, (lo >> 8) as u8, lo as u8)
}

/// The operator's egress policy.
#[derive(Debug, Clone, Default)]
pub struct Guard {
    /// Networks opened despite not being public (say, 127.0.0.0/8 for
    /// receivers on the same host in development).
    pub allow: Vec<Cidr>,
    /// Whether plain-http URLs may be delivered to.
    pub allow_http: bool,
}

impl Guard {
    /// Refuses `ip` unless it is public or inside an allowed network.
    /// IPv4-mapped IPv6 addresses are also tried against IPv4 networks.
    pub fn check_ip(&self, ip: IpAddr) -> Result<(), Blocked> {
        let Some(why) = non_public(ip) else {
            return Ok(());
        };
        let as_v4 = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4),
            IpAddr::V4(_) => None,
        };
        let allowed = self
            .allow
            .iter()
            .any(|c| c.contains(ip) || as_v4.is_some_and(|v4| c.contains(v4)));
        if allowed {
            Ok(())
        } else {
            Err(Blocked(format!(
                "blocked: {ip} is {why}; an operator may allow it with --allow-cidr"
            )))
        }
    }

    /// Refuses a URL whose scheme is not allowed or whose host is an IP
    /// literal that [`Guard::check_ip`] refuses. Names are left to the
    /// resolver.
    pub fn check_url(&self, url: &reqwest::Url) -> Result<(), Blocked> {
        match url.scheme() {
            "https" => {}
            "http" if self.allow_http => {}
            "http" => {
                return Err(Blocked(
                    "blocked: http is not allowed by this agent (--allow-http)".into(),
                ));
            }
            s => return Err(Blocked(format!("blocked: scheme '{s}'"))),
        }
        match url.host() {
            Some(url::Host::Ipv4(v4)) => self.check_ip(IpAddr::V4(v4)),
            Some(url::Host::Ipv6(v6)) => self.check_ip(IpAddr::V6(v6)),
            Some(url::Host::Domain(_)) => Ok(()),
            None => Err(Blocked("blocked: the URL has no host".into())),
        }
    }
}

/// A DNS resolver for the HTTP client that drops refused addresses, and
/// fails with [`Blocked`] when none is left.
#[derive(Debug, Clone)]
pub struct GuardedResolver(pub Arc<Guard>);

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let guard = self.0.clone();
        Box::pin(async move {
            let host = name.as_str().to_string();
            let found: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let mut refused = None;
            let allowed: Vec<SocketAddr> = found
                .into_iter()
                .filter(|a| match guard.check_ip(a.ip()) {
                    Ok(()) => true,
                    Err(e) => {
                        refused.get_or_insert(e);
                        false
                    }
                })
                .collect();
            if allowed.is_empty()
                && let Some(Blocked(why)) = refused
            {
                let e: Box<dyn std::error::Error + Send + Sync> =
                    Box::new(Blocked(format!("{host}: {why}")));
                return Err(e);
            }
            let addrs: reqwest::dns::Addrs = Box::new(allowed.into_iter());
            Ok(addrs)
        })
    }
}

/// Whether a [`Blocked`] is anywhere in `e`'s chain of causes.
pub fn is_blocked(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(e);
    while let Some(err) = next {
        if err.downcast_ref::<Blocked>().is_some() {
            return true;
        }
        next = err.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn refuses_every_non_public_range() {
        let refused = [
            "0.0.0.0",
            "0.1.2.3",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "100.64.0.1",
            "100.127.255.254",
            "127.0.0.1",
            "127.255.0.9",
            "169.254.169.254",
            "168.63.129.16",
            "192.0.0.192",
            "192.0.2.1",
            "198.51.100.7",
            "203.0.113.9",
            "198.18.0.1",
            "224.0.0.1",
            "239.255.255.250",
            "255.255.255.255",
            "::",
            "::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::ffff:169.254.169.254",
            "::127.0.0.1",
            "64:ff9b::a9fe:a9fe",
            "2002:7f00:1::",
            "fd00::1",
            "fd00:ec2::254",
            "fe80::1",
            "fec0::1",
            "ff02::1",
            "2001:db8::1",
            "2001::1",
            "3fff::1",
            "100::1",
        ];
        for s in refused {
            assert!(non_public(ip(s)).is_some(), "{s} must be refused");
        }
        let public = [
            "1.1.1.1",
            "8.8.8.8",
            "172.32.0.1",
            "100.128.0.1",
            "169.253.1.1",
            "192.0.3.1",
            "2606:4700:4700::1111",
            "2001:4860:4860::8888",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "2002:808:808::",
        ];
        for s in public {
            assert_eq!(non_public(ip(s)), None, "{s} is public");
        }
    }

    #[test]
    fn the_allowlist_opens_networks_including_mapped_forms() {
        let g = Guard {
            allow: vec!["127.0.0.0/8".parse().unwrap(), "fd00::/8".parse().unwrap()],
            allow_http: true,
        };
        assert!(g.check_ip(ip("127.0.0.1")).is_ok());
        assert!(g.check_ip(ip("::ffff:127.0.0.1")).is_ok());
        assert!(g.check_ip(ip("fd00::1")).is_ok());
        assert!(
            g.check_ip(ip("fc00::1")).is_err(),
            "fd00::/8 leaves fc00::/8 out"
        );
        assert!(g.check_ip(ip("::1")).is_err(), "v6 loopback is not v4's");
        let e = g.check_ip(ip("10.0.0.1")).unwrap_err();
        assert!(e.0.contains("private"), "{e}");
    }

    #[test]
    fn cidrs_parse_and_match_on_bit_boundaries() {
        let c: Cidr = "100.64.0.0/10".parse().unwrap();
        assert!(c.contains(ip("100.127.1.1")));
        assert!(!c.contains(ip("100.128.0.0")));
        assert!(!c.contains(ip("::1")));
        let one: Cidr = "192.0.2.7".parse().unwrap();
        assert!(one.contains(ip("192.0.2.7")) && !one.contains(ip("192.0.2.8")));
        let all: Cidr = "::/0".parse().unwrap();
        assert!(all.contains(ip("fe80::1")));
        assert!("10.0.0.0/33".parse::<Cidr>().is_err());
        assert!("host/8".parse::<Cidr>().is_err());
    }

    #[test]
    fn urls_are_checked_for_scheme_and_literal_hosts() {
        let g = Guard::default();
        let u = |s: &str| reqwest::Url::parse(s).unwrap();
        assert!(g.check_url(&u("https://example.com/x")).is_ok());
        assert!(g.check_url(&u("http://example.com/x")).is_err());
        assert!(g.check_url(&u("https://127.0.0.1/")).is_err());
        assert!(g.check_url(&u("https://[::ffff:127.0.0.1]/")).is_err());
        assert!(g.check_url(&u("https://0x7f000001/")).is_err(), "hex form");
        assert!(g.check_url(&u("https://8.8.8.8/")).is_ok());
    }
}
