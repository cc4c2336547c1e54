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
    /// Hosts (names or literal addresses) exempt from the address checks.
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
        return Ok(());
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

fn is_allowlisted(host: &str, policy: &FetchPolicy) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    policy
        .allowed_hosts
        .iter()
        .any(|allowed| allowed.eq_ignore_ascii_case(host))
}

/// Why an address may not be fetched, or `None` if it is public.
pub fn blocked_reason(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => blocked_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return blocked_v4(v4);
            }
            blocked_v6(v6)
        }
    }
}

fn blocked_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, ..] = ip.octets();
    if ip.is_loopback() {
        Some("loopback address")
    } else if ip.is_link_local() {
        // 169.254.169.254 is the EC2/ECS/Lambda metadata endpoint.
        Some("link-local or cloud metadata address")
    } else if ip.is_private() || (a == 100 && (64..128).contains(&b)) {
        Some("private address")
    } else if ip.is_unspecified()
        || a == 0
        || ip.is_broadcast()
        || ip.is_multicast()
        || a >= 240
        || (a == 192 && b == 0 && ip.octets()[2] == 0)
    {
        Some("reserved address")
    } else {
        None
    }
}

fn blocked_v6(ip: Ipv6Addr) -> Option<&'static str> {
    let first = ip.segments()[0];
    if ip.is_loopback() {
        Some("loopback address")
    } else if ip.is_unspecified() || ip.is_multicast() {
        Some("reserved address")
    } else if first & 0xffc0 == 0xfe80 {
        Some("link-local address")
    } else if first & 0xfe00 == 0xfc00 {
        // Unique local, which includes fd00:ec2::254, the IPv6 metadata endpoint.
        Some("private address")
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
        ] {
            assert!(
                blocked_reason(blocked.parse().unwrap()).is_some(),
                "{blocked}"
            );
        }
        for public in ["93.184.216.34", "8.8.8.8", "2606:4700::1111"] {
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
