//! Fetches a URL for ingestion (and the agent's `fetch_url`) without letting
//! a caller reach the service's own network: loopback, private, link-local
//! and cloud-metadata addresses are refused after DNS resolution and on every
//! redirect, unless the host is explicitly allowlisted.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use url::Url;

use crate::error::FetchError;

/// Limits and the allowlist for outbound fetches.
#[derive(Debug, Clone)]
pub struct FetchPolicy {
    pub max_bytes: u64,
    pub timeout: Duration,
    pub max_redirects: usize,
    /// Hosts exempt from the address checks, each `host:port` (only that
    /// port), `host:*` (any port) or `host` (the scheme's default port).
    /// A listed host on another port is refused outright: reaching an
    /// internal host's other services is exactly what the checks prevent.
    pub allowed_hosts: HashSet<String>,
}

impl Default for FetchPolicy {
    fn default() -> Self {
        Self {
            max_bytes: 20 * 1024 * 1024,
            timeout: Duration::from_secs(30),
            max_redirects: 5,
            allowed_hosts: HashSet::new(),
        }
    }
}

/// What a fetch brought back.
#[derive(Debug, Clone)]
pub struct FetchedResource {
    pub final_url: String,
    pub content_type: Option<String>,
    pub bytes: Bytes,
}

/// An HTTP client that enforces a [`FetchPolicy`].
#[derive(Clone)]
pub struct UrlFetcher {
    client: reqwest::Client,
    policy: Arc<FetchPolicy>,
}

impl UrlFetcher {
    pub fn new(policy: FetchPolicy) -> Result<Self, FetchError> {
        let policy = Arc::new(policy);
        let redirect_policy = {
            let policy = policy.clone();
            reqwest::redirect::Policy::custom(move |attempt| {
                if attempt.previous().len() >= policy.max_redirects {
                    return attempt.error(FetchError::TooManyRedirects);
                }
                match check_url(attempt.url(), &policy) {
                    Ok(()) => attempt.follow(),
                    Err(e) => attempt.error(e),
                }
            })
        };
        let client = reqwest::Client::builder()
            .user_agent(concat!("rag-agent/", env!("CARGO_PKG_VERSION")))
            .timeout(policy.timeout)
            .connect_timeout(Duration::from_secs(10))
            .redirect(redirect_policy)
            .dns_resolver(Arc::new(GuardedResolver {
                policy: policy.clone(),
            }))
            .no_proxy()
            .build()
            .map_err(|e| FetchError::Network(Box::new(e)))?;
        Ok(Self { client, policy })
    }

    pub fn policy(&self) -> &FetchPolicy {
        &self.policy
    }

    pub async fn fetch(&self, raw_url: &str) -> Result<FetchedResource, FetchError> {
        let url = Url::parse(raw_url.trim()).map_err(|e| FetchError::InvalidUrl(e.to_string()))?;
        check_url(&url, &self.policy)?;
        let response = self
            .client
            .get(url)
            .send()
            .await
            .map_err(classify_reqwest_error)?;
        let status = response.status();
        if !status.is_success() {
            return Err(FetchError::Status {
                status: status.as_u16(),
            });
        }
        if let Some(len) = response.content_length()
            && len > self.policy.max_bytes
        {
            return Err(FetchError::TooLarge {
                limit_bytes: self.policy.max_bytes,
            });
        }
        let final_url = response.url().to_string();
        let content_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let mut body = BytesMut::new();
        let mut stream = response.bytes_stream();
        while let Some(piece) = stream.next().await {
            let piece = piece.map_err(classify_reqwest_error)?;
            if (body.len() + piece.len()) as u64 > self.policy.max_bytes {
                return Err(FetchError::TooLarge {
                    limit_bytes: self.policy.max_bytes,
                });
            }
            body.extend_from_slice(&piece);
        }
        Ok(FetchedResource {
            final_url,
            content_type,
            bytes: body.freeze(),
        })
    }
}

/// Scheme and literal-address checks; names are checked by the resolver,
/// which sees every address a name resolves to.
fn check_url(url: &Url, policy: &FetchPolicy) -> Result<(), FetchError> {
    if !matches!(url.scheme(), "http" | "https") {
        return Err(FetchError::InvalidUrl(format!(
            "only http and https URLs can be fetched, not {}",
            url.scheme()
        )));
    }
    let host = url
        .host_str()
        .ok_or_else(|| FetchError::InvalidUrl("the URL has no host".to_string()))?;
    if is_allowlisted(host, policy) {
        let port = url.port_or_known_default().unwrap_or(0);
        if allows_port(host, port, policy) {
            return Ok(());
        }
        return Err(FetchError::Blocked {
            host: host.to_string(),
            reason: format!("port {port} of this host is not on the allowlist"),
        });
    }
    let literal = match url.host() {
        Some(url::Host::Ipv4(ip)) => Some(IpAddr::V4(ip)),
        Some(url::Host::Ipv6(ip)) => Some(IpAddr::V6(ip)),
        _ => None,
    };
    if let Some(ip) = literal
        && let Some(reason) = blocked_reason(ip)
    {
        return Err(FetchError::Blocked {
            host: host.to_string(),
            reason: reason.to_string(),
        });
    }
    if host.eq_ignore_ascii_case("localhost") || host.to_ascii_lowercase().ends_with(".localhost") {
        return Err(FetchError::Blocked {
            host: host.to_string(),
            reason: "loopback host".to_string(),
        });
    }
    Ok(())
}

/// Splits an allowlist entry into its host and port (`None` for `*`,
/// `Some(0)` for "the scheme's default").
fn allow_entry(entry: &str) -> (&str, Option<u16>) {
    let entry = entry.trim();
    let (host, port) = match entry.rsplit_once(':') {
        // A bare IPv6 address has colons but no port.
        Some((host, port)) if !host.contains(':') || host.ends_with(']') => (host, port),
        _ => (entry, ""),
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    match port {
        "" => (host, Some(0)),
        "*" => (host, None),
        port => (host, Some(port.parse().unwrap_or(u16::MAX))),
    }
}

fn is_allowlisted(host: &str, policy: &FetchPolicy) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    policy
        .allowed_hosts
        .iter()
        .any(|entry| allow_entry(entry).0.eq_ignore_ascii_case(host))
}

fn allows_port(host: &str, port: u16, policy: &FetchPolicy) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    policy.allowed_hosts.iter().any(|entry| {
        let (allowed, allowed_port) = allow_entry(entry);
        allowed.eq_ignore_ascii_case(host)
            && match allowed_port {
                None => true,
                Some(0) => port == 80 || port == 443,
                Some(p) => p == port,
            }
    })
}

/// Why an address may not be fetched, or `None` if it is public. Every
/// IPv6 form that carries an IPv4 address (mapped, compatible, translated,
/// NAT64, 6to4, Teredo) is judged by the IPv4 address it reaches.
pub fn blocked_reason(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => blocked_v4(v4),
        IpAddr::V6(v6) => blocked_v6(v6),
    }
}

fn blocked_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, c, _] = ip.octets();
    if ip.is_loopback() {
        Some("loopback address")
    } else if ip.is_link_local() {
        // 169.254.169.254 is the EC2/ECS/Lambda metadata endpoint.
        Some("link-local or cloud metadata address")
    } else if ip.is_private()
        || (a == 100 && (64..128).contains(&b))
        || (a == 198 && (b & 0xfe) == 18)
    {
        Some("private address")
    } else if ip.is_unspecified()
        || a == 0
        || ip.is_broadcast()
        || ip.is_multicast()
        || a >= 240
        || (a == 192 && b == 0 && (c == 0 || c == 2))
        || (a == 198 && b == 51 && c == 100)
        || (a == 203 && b == 0 && c == 113)
    {
        Some("reserved address")
    } else {
        None
    }
}

/// The IPv4 address an IPv6 address stands for, where it is one of the
/// transition forms; `None` for native IPv6.
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = ip.segments();
    let low32 = Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    match s {
        // ::ffff:a.b.c.d (mapped) and ::a.b.c.d (compatible, deprecated).
        [0, 0, 0, 0, 0, 0xffff, _, _] | [0, 0, 0, 0, 0, 0, _, _] => Some(low32),
        // ::ffff:0:a.b.c.d (translated, RFC 2765).
        [0, 0, 0, 0, 0xffff, 0, _, _] => Some(low32),
        // 64:ff9b::a.b.c.d, the well-known NAT64 prefix.
        [0x64, 0xff9b, 0, 0, 0, 0, _, _] => Some(low32),
        // 2002:AABB:CCDD::/48, 6to4.
        [0x2002, hi, lo, ..] => Some(Ipv4Addr::new(
            (hi >> 8) as u8,
            hi as u8,
            (lo >> 8) as u8,
            lo as u8,
        )),
        _ => None,
    }
}

fn blocked_v6(ip: Ipv6Addr) -> Option<&'static str> {
    let s = ip.segments();
    if ip.is_loopback() {
        return Some("loopback address");
    }
    if ip.is_unspecified() || ip.is_multicast() {
        return Some("reserved address");
    }
    if let Some(v4) = embedded_v4(ip) {
        // `::` and `::1` were handled above; any other compatible form whose
        // IPv4 address is public is as reachable as that address.
        return blocked_v4(v4);
    }
    if s[0] == 0x2001 && s[1] == 0 {
        // Teredo carries the server's IPv4 address and the client's,
        // inverted; either may point inside.
        let server = Ipv4Addr::new((s[2] >> 8) as u8, s[2] as u8, (s[3] >> 8) as u8, s[3] as u8);
        let client = Ipv4Addr::new(
            !(s[6] >> 8) as u8,
            !s[6] as u8,
            !(s[7] >> 8) as u8,
            !s[7] as u8,
        );
        return blocked_v4(server)
            .or(blocked_v4(client))
            .or(Some("Teredo tunnel address"));
    }
    if s[0] == 0x64 && s[1] == 0xff9b && s[2] == 1 {
        // 64:ff9b:1::/48 is for local NAT64 deployments (RFC 8215).
        return Some("private address");
    }
    if s[0] & 0xffc0 == 0xfe80 {
        Some("link-local address")
    } else if s[0] & 0xffc0 == 0xfec0 {
        Some("site-local address")
    } else if s[0] & 0xfe00 == 0xfc00 {
        // Unique local, which includes fd00:ec2::254, the IPv6 metadata endpoint.
        Some("private address")
    } else if (s[0] == 0x2001 && s[1] == 0xdb8) || (s[0] == 0x100 && s[1..4] == [0, 0, 0]) {
        Some("reserved address")
    } else {
        None
    }
}

/// Resolves names and drops every blocked address; a name with only blocked
/// addresses fails to connect with a [`FetchError::Blocked`] in its chain.
struct GuardedResolver {
    policy: Arc<FetchPolicy>,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.policy.clone();
        Box::pin(async move {
            let host = name.as_str().to_string();
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await
                .map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>)?
                .collect();
            if is_allowlisted(&host, &policy) {
                return Ok(Box::new(addrs.into_iter()) as Addrs);
            }
            let mut reason = "no addresses";
            let allowed: Vec<SocketAddr> = addrs
                .into_iter()
                .filter(|addr| match blocked_reason(addr.ip()) {
                    Some(why) => {
                        reason = why;
                        false
                    }
                    None => true,
                })
                .collect();
            if allowed.is_empty() {
                return Err(Box::new(FetchError::Blocked {
                    host,
                    reason: format!("resolves to a {reason}"),
                })
                    as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(allowed.into_iter()) as Addrs)
        })
    }
}

/// Finds our own errors (from the resolver or redirect policy) inside a
/// reqwest error; anything else is a network failure.
fn classify_reqwest_error(error: reqwest::Error) -> FetchError {
    if error.is_timeout() {
        return FetchError::Timeout;
    }
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&error);
    while let Some(e) = source {
        if let Some(ours) = e.downcast_ref::<FetchError>() {
            return match ours {
                FetchError::Blocked { host, reason } => FetchError::Blocked {
                    host: host.clone(),
                    reason: reason.clone(),
                },
                FetchError::TooManyRedirects => FetchError::TooManyRedirects,
                FetchError::InvalidUrl(m) => FetchError::InvalidUrl(m.clone()),
                other => FetchError::Network(other.to_string().into()),
            };
        }
        source = e.source();
    }
    FetchError::Network(Box::new(error))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_addresses() {
        for blocked in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fe80::1",
            "fd00:ec2::254",
            "::ffff:127.0.0.1",
            "::127.0.0.1",
            "::ffff:0:7f00:1",
            "64:ff9b::7f00:1",
            "64:ff9b::a9fe:a9fe",
            "64:ff9b:1::1",
            "2002:7f00:1::1",
            "2002:a00:1::1",
            "2001:0:4136:e378:8000:63bf:80ff:fffe",
            "2001:0:7f00:1::1",
            "fec0::1",
            "fc00::1",
            "ff02::1",
            "::",
            "2001:db8::1",
            "192.0.2.1",
            "198.18.0.1",
        ] {
            assert!(
                blocked_reason(blocked.parse().unwrap()).is_some(),
                "{blocked}"
            );
        }
        for public in [
            "93.184.216.34",
            "8.8.8.8",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "2002:808:808::1",
        ] {
            assert!(
                blocked_reason(public.parse().unwrap()).is_none(),
                "{public}"
            );
        }
    }

    #[tokio::test]
    async fn refuses_literal_private_addresses_and_bad_schemes() {
        let fetcher = UrlFetcher::new(FetchPolicy::default()).unwrap();
        for url in [
            "http://127.0.0.1:9/",
            "http://169.254.169.254/latest/meta-data/",
            "http://[::1]/",
            "http://localhost:1/",
            "http://[::127.0.0.1]:9/",
            "http://[::ffff:0:7f00:1]:9/",
            "http://[64:ff9b::7f00:1]:9/",
            "http://[2002:7f00:1::1]:9/",
        ] {
            assert!(
                matches!(fetcher.fetch(url).await, Err(FetchError::Blocked { .. })),
                "{url}"
            );
        }
        assert!(matches!(
            fetcher.fetch("file:///etc/passwd").await,
            Err(FetchError::InvalidUrl(_))
        ));
        assert!(matches!(
            fetcher.fetch("not a url").await,
            Err(FetchError::InvalidUrl(_))
        ));
    }

    #[test]
    fn the_allowlist_matches_host_and_port() {
        let policy = FetchPolicy {
            allowed_hosts: ["127.0.0.1:8080", "docs.internal", "[::1]:*"]
                .map(String::from)
                .into(),
            ..FetchPolicy::default()
        };
        let check = |url: &str| check_url(&Url::parse(url).unwrap(), &policy);
        check("http://127.0.0.1:8080/x").unwrap();
        check("http://docs.internal/").unwrap();
        check("https://docs.internal/").unwrap();
        check("http://[::1]:1234/").unwrap();
        for refused in [
            "http://127.0.0.1:3000/documents",
            "http://docs.internal:9200/",
            "http://127.0.0.1/",
        ] {
            assert!(
                matches!(check(refused), Err(FetchError::Blocked { .. })),
                "{refused}"
            );
        }
    }

    /// A server on loopback must see no connection for a refused URL: the
    /// decision comes before any connect.
    #[tokio::test]
    async fn a_refused_form_never_connects() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let fetcher = UrlFetcher::new(FetchPolicy::default()).unwrap();
        for host in [
            "127.0.0.1",
            "[::ffff:127.0.0.1]",
            "[::127.0.0.1]",
            "[::ffff:0:7f00:1]",
            "[64:ff9b::7f00:1]",
            "[2002:7f00:1::1]",
        ] {
            let result = fetcher.fetch(&format!("http://{host}:{port}/")).await;
            assert!(
                matches!(result, Err(FetchError::Blocked { .. })),
                "{host}: {result:?}"
            );
        }
        assert!(
            listener.accept().is_err(),
            "a refused URL reached the listener"
        );
    }

    #[tokio::test]
    async fn resolver_drops_blocked_addresses() {
        let resolver = GuardedResolver {
            policy: Arc::new(FetchPolicy::default()),
        };
        let result = resolver.resolve("localhost".parse().unwrap()).await;
        let error = result.err().expect("localhost must be refused");
        assert!(error.downcast_ref::<FetchError>().is_some(), "{error}");

        let allowing = GuardedResolver {
            policy: Arc::new(FetchPolicy {
                allowed_hosts: ["localhost".to_string()].into(),
                ..FetchPolicy::default()
            }),
        };
        let addrs: Vec<SocketAddr> = allowing
            .resolve("localhost".parse().unwrap())
            .await
            .unwrap_or_else(|e| panic!("an allowlisted host resolves: {e}"))
            .collect();
        assert!(addrs.iter().all(|a| a.ip().is_loopback()) && !addrs.is_empty());
    }
}
