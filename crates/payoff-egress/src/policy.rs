//! Where URLs that tenants supply may lead.
//!
//! Refused unless the operator allows them (`[egress] allow`): loopback,
//! private, link-local, multicast, unspecified, carrier-grade NAT and
//! reserved addresses, the same inside IPv4-mapped and NAT64 IPv6
//! addresses, plain `http`, user names and passwords in URLs, and the
//! server's own listen address (refused even when allowed). Addresses are
//! checked as the URL names them and, for host names, again as they
//! resolve at connect time ([`crate::tenant_client`]), so a name that
//! changes its answer between the two checks (DNS rebinding) gains
//! nothing.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use ipnet::IpNet;
use reqwest::Url;

/// Why a URL or an address is refused. The text is safe to show the
/// tenant who supplied the URL.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("must use https (http only to hosts the operator allows)")]
    NotHttps,
    #[error("must not carry a user name or password")]
    Userinfo,
    #[error("must be an http or https URL with a host")]
    NotHttp,
    /// The URL names, or its host resolves only to, a refused address.
    #[error("{0} addresses are refused by the egress policy")]
    Address(&'static str),
    #[error("the server's own address is refused")]
    OwnAddress,
}

/// An entry of the allow list that is neither a CIDR, an address nor a
/// host name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("egress allow entry \"{0}\" is not a CIDR (10.0.0.0/8), an address or a host name")]
pub struct BadAllowEntry(pub String);

/// What tenant URLs may reach beyond the public internet.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EgressPolicy {
    nets: Vec<IpNet>,
    /// Lower case, without a trailing dot.
    hosts: Vec<String>,
    own: Option<SocketAddr>,
}

impl EgressPolicy {
    /// A policy allowing `entries`: CIDRs (`10.0.0.0/8`), addresses
    /// (`127.0.0.1`) or host names (`hooks.internal`, exact).
    ///
    /// ```
    /// let p = payoff_egress::EgressPolicy::allowing(["127.0.0.0/8", "sink.internal"]).unwrap();
    /// assert!(p.check_ip(None, "127.0.0.2".parse().unwrap()).is_ok());
    /// assert!(p.check_ip(None, "10.0.0.1".parse().unwrap()).is_err());
    /// ```
    pub fn allowing<S: AsRef<str>>(
        entries: impl IntoIterator<Item = S>,
    ) -> Result<EgressPolicy, BadAllowEntry> {
        let mut policy = EgressPolicy::default();
        for entry in entries {
            let e = entry.as_ref().trim();
            if let Ok(net) = e.parse::<IpNet>() {
                policy.nets.push(net.trunc());
            } else if let Ok(ip) = e.parse::<IpAddr>() {
                policy.nets.push(IpNet::from(ip));
            } else if is_host_name(e) {
                policy
                    .hosts
                    .push(e.trim_end_matches('.').to_ascii_lowercase());
            } else {
                return Err(BadAllowEntry(e.to_owned()));
            }
        }
        Ok(policy)
    }

    /// [`EgressPolicy::allowing`] over a comma-separated list, as in
    /// `PAYOFF_EGRESS_ALLOW`; empty items are skipped.
    pub fn allowing_list(text: &str) -> Result<EgressPolicy, BadAllowEntry> {
        EgressPolicy::allowing(text.split(',').map(str::trim).filter(|e| !e.is_empty()))
    }

    /// The same policy, also refusing the address the server listens on.
    pub fn listening_on(mut self, own: SocketAddr) -> EgressPolicy {
        self.own = Some(own);
        self
    }

    fn host_allowed(&self, host: &str) -> bool {
        let host = host.trim_end_matches('.');
        self.hosts.iter().any(|h| h.eq_ignore_ascii_case(host))
    }

    /// Checks a URL as written: scheme, user info, and its host when that
    /// is an address (the URL parser has already read decimal, hex and
    /// octal IPv4 forms such as `http://2130706433/` as addresses).
    pub fn check_url(&self, url: &Url) -> Result<(), Refusal> {
        if !matches!(url.scheme(), "http" | "https") {
            return Err(Refusal::NotHttp);
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(Refusal::Userinfo);
        }
        let Some(host) = url.host_str() else {
            return Err(Refusal::NotHttp);
        };
        let literal = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        let (name, ip) = match literal.parse::<IpAddr>() {
            Ok(ip) => (None, Some(ip)),
            Err(_) => (Some(host), None),
        };
        if let (Some(ip), Some(port)) = (ip, url.port_or_known_default()) {
            if self.is_own(SocketAddr::new(ip, port)) {
                return Err(Refusal::OwnAddress);
            }
        }
        if url.scheme() == "http" {
            let allowed = match (name, ip) {
                (Some(n), _) => self.host_allowed(n),
                (None, Some(ip)) => self.nets.iter().any(|n| n.contains(&ip)),
                (None, None) => false,
            };
            if !allowed {
                return Err(Refusal::NotHttps);
            }
        }
        match ip {
            Some(ip) => self.check_ip(None, ip),
            None => Ok(()),
        }
    }

    /// Checks one address `host` (when named) resolved to, or a URL named.
    pub fn check_ip(&self, host: Option<&str>, ip: IpAddr) -> Result<(), Refusal> {
        if let Some(own) = self.own {
            // Where the port is not known (a name being resolved), the
            // server's own address is refused when it is a specific,
            // non-loopback one; loopback is refused by default anyway.
            let specific = !own.ip().is_unspecified() && !own.ip().is_loopback();
            if specific && canonical(ip) == canonical(own.ip()) {
                return Err(Refusal::OwnAddress);
            }
        }
        if host.is_some_and(|h| self.host_allowed(h)) || self.nets.iter().any(|n| n.contains(&ip)) {
            return Ok(());
        }
        match refused_kind(ip) {
            Some(kind) => Err(Refusal::Address(kind)),
            None => Ok(()),
        }
    }

    fn is_own(&self, target: SocketAddr) -> bool {
        let Some(own) = self.own else { return false };
        if target.port() != own.port() {
            return false;
        }
        let ip = canonical(target.ip());
        ip == canonical(own.ip())
            || (own.ip().is_unspecified() && (ip.is_loopback() || ip.is_unspecified()))
    }
}

/// IPv4-mapped IPv6 addresses as the IPv4 address they are.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// What kind of refused address `ip` is, if it is one.
pub fn refused_kind(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => refused_v4(v4),
        IpAddr::V6(v6) => refused_v6(v6),
    }
}

fn refused_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, ..] = ip.octets();
    Some(if ip.is_unspecified() || a == 0 {
        "unspecified"
    } else if ip.is_loopback() {
        "loopback"
    } else if ip.is_private() {
        "private"
    } else if ip.is_link_local() {
        "link-local"
    } else if ip.is_multicast() {
        "multicast"
    } else if a == 100 && (64..128).contains(&b) {
        "carrier-grade NAT"
    } else if ip.is_broadcast() || a >= 240 || (a == 192 && b == 0 && ip.octets()[2] == 0) {
        // 240.0.0.0/4 (reserved, broadcast) and 192.0.0.0/24 (IETF).
        "reserved"
    } else if a == 198 && (b == 18 || b == 19) {
        "benchmarking"
    } else {
        return None;
    })
}

fn refused_v6(ip: Ipv6Addr) -> Option<&'static str> {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return refused_v4(v4);
    }
    let s = ip.segments();
    // NAT64 (64:ff9b::/96) reaches the IPv4 address in its last 32 bits.
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return refused_v4(Ipv4Addr::new(
            (s[6] >> 8) as u8,
            s[6] as u8,
            (s[7] >> 8) as u8,
            s[7] as u8,
        ));
    }
    Some(if ip.is_unspecified() {
        "unspecified"
    } else if ip.is_loopback() {
        "loopback"
    } else if ip.is_multicast() {
        "multicast"
    } else if s[0] & 0xffc0 == 0xfe80 || s[0] & 0xffc0 == 0xfec0 {
        // Link-local, and the deprecated site-local.
        "link-local"
    } else if s[0] & 0xfe00 == 0xfc00 {
        // Unique local addresses: IPv6's private ranges.
        "private"
    } else if s[..6] == [0; 6] {
        // The deprecated IPv4-compatible ::a.b.c.d.
        "reserved"
    } else {
        return None;
    })
}

fn is_host_name(s: &str) -> bool {
    let s = s.trim_end_matches('.');
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        })
}
