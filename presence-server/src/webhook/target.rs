//! Where a webhook may deliver: an `http(s)` URL whose host resolves only to
//! public addresses, unless the operator allows the host or its network
//! (`PRESENCE_WEBHOOK_ALLOWED_HOSTS`). Otherwise anyone holding the admin
//! key could make the hub POST into the operator's private network (SSRF).
//!
//! Checked when a webhook is configured (400) and again when each delivery
//! connects (an address in the URL before the request, a host name by the
//! resolver): the client's resolver ([`PolicyResolver`]) refuses a name that
//! resolves to a refused address by then, so a DNS answer that changes after
//! the check (rebinding) cannot reach a private address either.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use ipnet::IpNet;
use reqwest::Url;

/// Longest URL accepted.
pub const MAX_URL_LEN: usize = 2048;

/// Why a webhook URL is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    #[error("not a URL: {0}")]
    NotUrl(String),
    #[error("longer than {MAX_URL_LEN} bytes")]
    TooLong,
    #[error("the scheme must be http or https, not {0:?}")]
    Scheme(String),
    #[error("the URL has no host")]
    NoHost,
    #[error("the URL must not carry a user name or password")]
    Credentials,
    #[error("the host {host} does not resolve: {reason}")]
    Resolve { host: String, reason: String },
    #[error(
        "the host {host} resolves to {ip}, a private, loopback or link-local address; \
         the operator may allow it with PRESENCE_WEBHOOK_ALLOWED_HOSTS"
    )]
    Private { host: String, ip: IpAddr },
}

/// Hosts and networks the operator allows even though they are private.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Policy {
    hosts: Vec<String>,
    nets: Vec<IpNet>,
}

impl Policy {
    /// Parses `PRESENCE_WEBHOOK_ALLOWED_HOSTS`: comma-separated host names,
    /// IP addresses and CIDR networks (`127.0.0.1`, `10.0.0.0/8`,
    /// `erp.internal`).
    ///
    /// # Errors
    /// An entry that looks like a network but does not parse.
    pub fn parse(list: &str) -> Result<Policy, String> {
        let mut p = Policy::default();
        for entry in list.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            if entry.contains('/') {
                p.nets
                    .push(entry.parse().map_err(|e| format!("{entry:?}: {e}"))?);
            } else if let Ok(ip) = entry.parse::<IpAddr>() {
                p.nets.push(IpNet::from(ip));
            } else {
                p.hosts.push(entry.to_ascii_lowercase());
            }
        }
        Ok(p)
    }

    fn allows_host(&self, host: &str) -> bool {
        self.hosts.iter().any(|h| h.eq_ignore_ascii_case(host))
    }

    /// Whether a delivery to `host` at `ip` may go.
    fn allows(&self, host: &str, ip: IpAddr) -> bool {
        self.allows_host(host) || self.nets.iter().any(|n| n.contains(&ip)) || is_public(ip)
    }

    /// The first address of `addrs` that `host` may not use, if any: one
    /// refused address refuses the host, since the client may pick any.
    pub fn refused(&self, host: &str, addrs: &[IpAddr]) -> Option<IpAddr> {
        addrs.iter().copied().find(|ip| !self.allows(host, *ip))
    }
}

/// Whether `ip` is a public unicast address (not loopback, private,
/// link-local, shared (CGNAT), unspecified, broadcast, multicast or
/// documentation; IPv4 inside IPv6 is judged as IPv4).
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => is_public_v4(v4),
            None => is_public_v6(v6),
        },
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    !(ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || a == 0
        || (a == 100 && (64..128).contains(&b))
        || (a == 192 && b == 0 && ip.octets()[2] == 0)
        || a >= 240)
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let first = ip.segments()[0];
    !(ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        || (first & 0xfe00) == 0xfc00 // unique local
        || (first & 0xffc0) == 0xfe80 // link-local
        || (first == 0x2001 && ip.segments()[1] == 0x0db8) // documentation
        || (first == 0x0064 && ip.segments()[1] == 0xff9b)) // NAT64 (v4 inside)
}

/// Parses a webhook URL and checks what can be checked without DNS.
///
/// # Errors
/// Not an absolute `http(s)` URL with a host, or it carries credentials.
pub fn parse_url(s: &str) -> Result<Url, TargetError> {
    if s.len() > MAX_URL_LEN {
        return Err(TargetError::TooLong);
    }
    let url = Url::parse(s).map_err(|e| TargetError::NotUrl(e.to_string()))?;
    if url.scheme() != "http" && url.scheme() != "https" {
        return Err(TargetError::Scheme(url.scheme().to_owned()));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(TargetError::NoHost);
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(TargetError::Credentials);
    }
    Ok(url)
}

/// The host of `url` as the resolver and the policy see it (an IPv6
/// literal without its brackets).
fn host_of(url: &Url) -> String {
    match url.host() {
        Some(url::Host::Ipv6(ip)) => ip.to_string(),
        Some(h) => h.to_string(),
        None => String::new(),
    }
}

/// Resolves `url`'s host and checks every address against the policy.
///
/// # Errors
/// The host does not resolve, or resolves to an address not allowed.
pub async fn check(policy: &Policy, url: &Url) -> Result<(), TargetError> {
    let host = host_of(url);
    let port = url.port_or_known_default().unwrap_or(443);
    let addrs = resolve(&host, port).await?;
    match policy.refused(&host, &addrs) {
        Some(ip) => Err(TargetError::Private { host, ip }),
        None => Ok(()),
    }
}

/// What a delivery checks before it sends: an address written in the URL
/// (the client's resolver is not asked for it). A host name is checked by
/// [`PolicyResolver`] when a connection is made, so it is not resolved
/// twice per delivery.
///
/// # Errors
/// The URL's literal address is not allowed.
pub fn check_literal(policy: &Policy, url: &Url) -> Result<(), TargetError> {
    let host = host_of(url);
    match host.parse::<IpAddr>() {
        Ok(ip) if policy.refused(&host, &[ip]).is_some() => Err(TargetError::Private { host, ip }),
        _ => Ok(()),
    }
}

async fn resolve(host: &str, port: u16) -> Result<Vec<IpAddr>, TargetError> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(vec![ip]);
    }
    let addrs: Vec<IpAddr> = tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| TargetError::Resolve {
            host: host.to_owned(),
            reason: e.to_string(),
        })?
        .map(|a| a.ip())
        .collect();
    if addrs.is_empty() {
        return Err(TargetError::Resolve {
            host: host.to_owned(),
            reason: "no address".into(),
        });
    }
    Ok(addrs)
}

/// The delivery client's resolver: the system's answer, refused when the
/// policy refuses one of its addresses (see the module's doc).
pub struct PolicyResolver(pub Arc<Policy>);

impl reqwest::dns::Resolve for PolicyResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = self.0.clone();
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let addrs = resolve(&host, 0).await?;
            if let Some(ip) = policy.refused(&host, &addrs) {
                return Err(Box::new(TargetError::Private { host, ip }) as _);
            }
            let out: reqwest::dns::Addrs =
                Box::new(addrs.into_iter().map(|ip| SocketAddr::new(ip, 0)));
            Ok(out)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn private_loopback_and_link_local_addresses_are_not_public() {
        for s in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "224.0.0.1",
            "::1",
            "::",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "64:ff9b::a00:1",
        ] {
            assert!(!is_public(ip(s)), "{s}");
        }
        for s in [
            "8.8.8.8",
            "1.1.1.1",
            "2606:4700:4700::1111",
            "::ffff:8.8.8.8",
        ] {
            assert!(is_public(ip(s)), "{s}");
        }
    }

    #[test]
    fn the_operator_allows_hosts_addresses_and_networks() {
        let p = Policy::parse(" 127.0.0.1 , 10.0.0.0/8,ERP.internal,").unwrap();
        assert_eq!(p.refused("x", &[ip("127.0.0.1")]), None);
        assert_eq!(p.refused("x", &[ip("10.9.9.9")]), None);
        assert_eq!(p.refused("erp.internal", &[ip("192.168.0.5")]), None);
        assert_eq!(
            p.refused("x", &[ip("8.8.8.8"), ip("192.168.0.5")]),
            Some(ip("192.168.0.5")),
            "one private answer refuses the host"
        );
        assert_eq!(
            Policy::default().refused("x", &[ip("127.0.0.1")]),
            Some(ip("127.0.0.1"))
        );
        assert!(Policy::parse("10.0.0.0/33").is_err());
    }

    #[test]
    fn only_http_urls_with_a_host_and_no_credentials() {
        assert!(parse_url("https://erp.example.com/hooks/presence").is_ok());
        assert!(parse_url("http://127.0.0.1:8080/x").is_ok());
        assert!(matches!(parse_url("ftp://x/"), Err(TargetError::Scheme(_))));
        assert!(matches!(
            parse_url("file:///etc/passwd"),
            Err(TargetError::Scheme(_))
        ));
        assert!(matches!(
            parse_url("https://u:p@x/"),
            Err(TargetError::Credentials)
        ));
        assert!(matches!(
            parse_url("not a url"),
            Err(TargetError::NotUrl(_))
        ));
        let long = format!("https://x/{}", "a".repeat(MAX_URL_LEN));
        assert_eq!(parse_url(&long), Err(TargetError::TooLong));
    }

    #[tokio::test]
    async fn a_literal_private_address_is_refused_unless_allowed() {
        let url = parse_url("http://127.0.0.1:9/x").unwrap();
        assert!(matches!(
            check(&Policy::default(), &url).await,
            Err(TargetError::Private { .. })
        ));
        assert!(check(&Policy::parse("127.0.0.1").unwrap(), &url)
            .await
            .is_ok());
        let v6 = parse_url("http://[::1]:9/x").unwrap();
        assert!(matches!(
            check(&Policy::default(), &v6).await,
            Err(TargetError::Private { .. })
        ));
        // `localhost` resolves to loopback: refused by its address.
        let name = parse_url("http://localhost:9/x").unwrap();
        assert!(check(&Policy::default(), &name).await.is_err());
    }
}
