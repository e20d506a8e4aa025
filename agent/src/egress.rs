//! Which addresses deliveries may reach (SSRF guard). Endpoint URLs come
//! from tenants, so an agent must not become their way into the private
//! network it runs in: every range of IANA's IPv4 and IPv6 Special-Purpose
//! Address Registries (loopback, private, link-local, CGNAT, documentation,
//! NAT64 local use, 6to4, anycast services, reserved), multicast and cloud
//! metadata addresses are refused unless the operator allows them by CIDR.
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

/// Every entry of IANA's IPv4 Special-Purpose Address Registry (RFC 6890
/// and the RFCs it lists since: 7335, 7600, 7723, 7450, 8155, 8880), plus
/// multicast (224.0.0.0/4, RFC 5771) and Azure's metadata address. Entries
/// the registry marks globally reachable (anycast services such as AS112
/// or PCP) are refused too: none of them is a webhook receiver.
const V4_SPECIAL: &[(&str, &str)] = &[
    // Entries inside wider ones come first, so the reason is theirs.
    ("0.0.0.0/32", "\"this host on this network\" (0.0.0.0/32)"),
    (
        "192.0.0.0/29",
        "IPv4 service continuity prefix (192.0.0.0/29)",
    ),
    ("192.0.0.8/32", "IPv4 dummy address (192.0.0.8/32)"),
    ("192.0.0.9/32", "PCP anycast (192.0.0.9/32)"),
    ("192.0.0.10/32", "TURN anycast (192.0.0.10/32)"),
    ("192.0.0.170/32", "NAT64/DNS64 discovery (192.0.0.170/32)"),
    ("192.0.0.171/32", "NAT64/DNS64 discovery (192.0.0.171/32)"),
    ("255.255.255.255/32", "limited broadcast"),
    ("0.0.0.0/8", "\"this network\" (0.0.0.0/8)"),
    ("10.0.0.0/8", "private"),
    (
        "100.64.0.0/10",
        "shared address space (CGNAT, 100.64.0.0/10)",
    ),
    ("127.0.0.0/8", "loopback"),
    ("169.254.0.0/16", "link-local (cloud metadata lives here)"),
    ("172.16.0.0/12", "private"),
    ("192.0.0.0/24", "IETF protocol assignments (192.0.0.0/24)"),
    ("192.0.2.0/24", "documentation"),
    ("192.31.196.0/24", "AS112 (192.31.196.0/24)"),
    ("192.52.193.0/24", "AMT (192.52.193.0/24)"),
    ("192.88.99.0/24", "6to4 relay anycast"),
    ("192.168.0.0/16", "private"),
    (
        "192.175.48.0/24",
        "AS112 direct delegation (192.175.48.0/24)",
    ),
    ("198.18.0.0/15", "benchmarking (198.18.0.0/15)"),
    ("198.51.100.0/24", "documentation"),
    ("203.0.113.0/24", "documentation"),
    ("224.0.0.0/4", "multicast"),
    ("240.0.0.0/4", "reserved or broadcast"),
    ("168.63.129.16/32", "cloud metadata (Azure)"),
];

/// Every entry of IANA's IPv6 Special-Purpose Address Registry (RFC 6890
/// and since: 6052, 6666, 7343, 7450, 7723, 8155, 8215, 9374, 9602, 9637,
/// 9780), plus multicast (ff00::/8) and deprecated site-local (fec0::/10).
/// `::ffff:0:0/96` (IPv4-mapped) and `64:ff9b::/96` (the well-known NAT64
/// prefix) are judged by the IPv4 address they carry, before this table.
const V6_SPECIAL: &[(&str, &str)] = &[
    // Judged by the IPv4 address they carry before this table is looked
    // at; listed so that the table is the registry.
    ("::ffff:0:0/96", "IPv4-mapped (::ffff:0:0/96)"),
    ("64:ff9b::/96", "NAT64 (64:ff9b::/96)"),
    // Entries inside wider ones come first, so the reason is theirs.
    ("2001::/32", "Teredo (2001::/32)"),
    ("2001:1::1/128", "PCP anycast (2001:1::1/128)"),
    ("2001:1::2/128", "TURN anycast (2001:1::2/128)"),
    ("2001:1::3/128", "DNS-SD SRP anycast (2001:1::3/128)"),
    ("2001:2::/48", "benchmarking (2001:2::/48)"),
    ("2001:3::/32", "AMT (2001:3::/32)"),
    ("2001:4:112::/48", "AS112 (2001:4:112::/48)"),
    ("2001:10::/28", "ORCHID (2001:10::/28)"),
    ("2001:20::/28", "ORCHIDv2 (2001:20::/28)"),
    ("2001:30::/28", "drone entity tags (2001:30::/28)"),
    ("::/128", "unspecified (::)"),
    ("::1/128", "loopback (::1)"),
    ("::/96", "IPv4-compatible (::/96)"),
    ("64:ff9b:1::/48", "local-use NAT64 (64:ff9b:1::/48)"),
    ("100::/64", "discard (100::/64)"),
    ("100:0:0:1::/64", "dummy prefix (100:0:0:1::/64)"),
    (
        "2001::/23",
        "IETF protocol assignments and Teredo (2001::/23)",
    ),
    ("2001:db8::/32", "documentation (2001:db8::/32)"),
    ("2002::/16", "6to4 (2002::/16)"),
    (
        "2620:4f:8000::/48",
        "AS112 direct delegation (2620:4f:8000::/48)",
    ),
    ("3fff::/20", "documentation (3fff::/20)"),
    ("5f00::/16", "segment routing SIDs (5f00::/16)"),
    ("fc00::/7", "unique local (fc00::/7)"),
    ("fe80::/10", "link-local (fe80::/10)"),
    ("fec0::/10", "site-local (fec0::/10)"),
    ("ff00::/8", "multicast"),
];

/// A registry table, parsed once.
fn table(entries: &'static [(&'static str, &'static str)]) -> Vec<(Cidr, &'static str)> {
    entries
        .iter()
        .filter_map(|(net, why)| net.parse().ok().map(|c| (c, *why)))
        .collect()
}

static V4_TABLE: std::sync::LazyLock<Vec<(Cidr, &'static str)>> =
    std::sync::LazyLock::new(|| table(V4_SPECIAL));
static V6_TABLE: std::sync::LazyLock<Vec<(Cidr, &'static str)>> =
    std::sync::LazyLock::new(|| table(V6_SPECIAL));

fn lookup(table: &[(Cidr, &'static str)], ip: IpAddr) -> Option<&'static str> {
    table
        .iter()
        .find(|(c, _)| c.contains(ip))
        .map(|(_, why)| *why)
}

fn non_public_v4(ip: Ipv4Addr) -> Option<&'static str> {
    lookup(&V4_TABLE, IpAddr::V4(ip))
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
    lookup(&V6_TABLE, IpAddr::V6(ip))
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
        ];
        for s in public {
            assert_eq!(non_public(ip(s)), None, "{s} is public");
        }
    }

    /// Every registry entry: its first and last address are refused, with
    /// the entry's reason (or a wider entry's, where entries nest).
    #[test]
    fn every_special_purpose_registry_entry_is_refused_at_both_ends() {
        for (net, _) in V4_SPECIAL.iter().chain(V6_SPECIAL) {
            let c: Cidr = net.parse().expect("the table parses");
            let (first, last) = match c.addr {
                IpAddr::V4(a) => {
                    let bits = u32::from(a);
                    let host = u32::MAX.checked_shr(u32::from(c.prefix)).unwrap_or(0);
                    (
                        IpAddr::V4(Ipv4Addr::from(bits)),
                        IpAddr::V4(Ipv4Addr::from(bits | host)),
                    )
                }
                IpAddr::V6(a) => {
                    let bits = u128::from(a);
                    let host = u128::MAX.checked_shr(u32::from(c.prefix)).unwrap_or(0);
                    (
                        IpAddr::V6(Ipv6Addr::from(bits)),
                        IpAddr::V6(Ipv6Addr::from(bits | host)),
                    )
                }
            };
            for ip in [first, last] {
                assert!(non_public(ip).is_some(), "{ip} (in {net}) must be refused");
            }
        }
        assert_eq!(V4_TABLE.len(), V4_SPECIAL.len(), "every v4 entry parses");
        assert_eq!(V6_TABLE.len(), V6_SPECIAL.len(), "every v6 entry parses");
    }

    #[test]
    fn local_use_nat64_is_refused_whatever_it_embeds() {
        // 64:ff9b:1::/48 (RFC 8215) with loopback and metadata addresses in
        // it, and with a public one: all refused, the prefix is local.
        for s in [
            "64:ff9b:1::7f00:1",
            "64:ff9b:1:a9fe:a9fe::",
            "64:ff9b:1::808:808",
        ] {
            let why = non_public(ip(s)).unwrap_or_default();
            assert!(why.contains("local-use NAT64"), "{s}: {why}");
        }
        assert!(
            non_public(ip("2002:808:808::")).is_some(),
            "6to4 as a whole"
        );
        assert!(non_public(ip("192.31.196.1")).is_some(), "AS112");
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
