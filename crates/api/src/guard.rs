//! Who may address the API from a browser. Two checks run before any
//! route, so they cover every handler and the fallback alike:
//!
//! - **Host.** A page on `evil.example` whose name an attacker re-points at
//!   127.0.0.1 (DNS rebinding) sends requests the browser treats as
//!   same-origin, with `Host: evil.example`. While the server listens on a
//!   loopback address, only `localhost`, loopback addresses and the names in
//!   `RAG_AGENT_ALLOWED_HOSTS` are served. Elsewhere (Lambda, behind a load
//!   balancer) the Host is the public name, so the list is enforced only
//!   when it is set.
//! - **Origin.** Multipart uploads and form posts need no CORS preflight,
//!   so any page could otherwise send them. A state-changing request that
//!   carries an `Origin` must come from the server's own origin or one in
//!   `CORS_ALLOWED_ORIGINS`. Requests without an `Origin` (curl, the CLI,
//!   SDKs) are not browser requests and pass.

use std::net::IpAddr;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::error::ApiError;

/// The Host and Origin rules; the default checks nothing.
#[derive(Debug, Clone, Default)]
pub struct RequestGuard {
    /// Host names (without port, any case) always served.
    pub allowed_hosts: Vec<String>,
    /// The server listens on a loopback address: refuse every other Host.
    pub loopback_only: bool,
    /// Origins (`scheme://host[:port]`) allowed to make cross-origin
    /// requests; also what CORS preflights are answered for.
    pub allowed_origins: Vec<String>,
}

impl RequestGuard {
    fn host_allowed(&self, host: &str) -> bool {
        let name = host_name(host);
        if self
            .allowed_hosts
            .iter()
            .any(|allowed| allowed.eq_ignore_ascii_case(name))
        {
            return true;
        }
        if !self.loopback_only {
            return self.allowed_hosts.is_empty();
        }
        name.eq_ignore_ascii_case("localhost")
            || name.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
    }

    fn origin_allowed(&self, origin: &str, host: Option<&str>) -> bool {
        if self
            .allowed_origins
            .iter()
            .any(|allowed| allowed.trim_end_matches('/').eq_ignore_ascii_case(origin))
        {
            return true;
        }
        // Same origin: the Origin's authority is the Host the request was
        // sent to. The scheme cannot be told apart behind a proxy, and the
        // Host check already pins which names reach us.
        let authority = origin
            .strip_prefix("http://")
            .or_else(|| origin.strip_prefix("https://"));
        match (authority, host) {
            (Some(authority), Some(host)) => authority.eq_ignore_ascii_case(host),
            _ => false,
        }
    }

    /// CORS answers for the listed origins only; none listed, none given.
    pub fn cors_layer(&self) -> Option<CorsLayer> {
        let origins: Vec<HeaderValue> = self
            .allowed_origins
            .iter()
            .filter_map(|o| HeaderValue::from_str(o.trim_end_matches('/')).ok())
            .collect();
        if origins.is_empty() {
            return None;
        }
        Some(
            CorsLayer::new()
                .allow_origin(AllowOrigin::list(origins))
                .allow_methods([Method::GET, Method::POST, Method::DELETE])
                .allow_headers([
                    header::CONTENT_TYPE,
                    header::AUTHORIZATION,
                    header::ACCEPT,
                    header::HeaderName::from_static("x-api-key"),
                    crate::observe::REQUEST_ID_HEADER,
                    header::HeaderName::from_static(crate::routes::answer::USE_CASE_HEADER),
                ])
                // A page can quote the id of a request that failed.
                .expose_headers([crate::observe::REQUEST_ID_HEADER])
                .max_age(std::time::Duration::from_secs(600)),
        )
    }
}

/// The host part of a `Host` value: no port, no IPv6 brackets.
fn host_name(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    }
}

fn request_host(request: &Request) -> Option<String> {
    request
        .headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .or_else(|| request.uri().authority().map(|a| a.to_string()))
}

fn changes_state(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

fn origin_of(headers: &HeaderMap) -> Option<&str> {
    headers.get(header::ORIGIN).and_then(|v| v.to_str().ok())
}

/// The middleware: refuses what the rules refuse, before routing.
pub async fn check(State(guard): State<RequestGuard>, request: Request, next: Next) -> Response {
    let host = request_host(&request);
    let host_ok = match &host {
        Some(host) => guard.host_allowed(host),
        None => !guard.loopback_only && guard.allowed_hosts.is_empty(),
    };
    if !host_ok {
        return ApiError::HostNotAllowed.into_response();
    }
    if changes_state(request.method())
        && let Some(origin) = origin_of(request.headers())
        && !guard.origin_allowed(origin, host.as_deref())
    {
        return ApiError::OriginNotAllowed.into_response();
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loopback() -> RequestGuard {
        RequestGuard {
            allowed_hosts: vec!["rag.internal".to_string()],
            loopback_only: true,
            allowed_origins: vec!["https://app.example".to_string()],
        }
    }

    #[test]
    fn loopback_serves_local_names_only() {
        let guard = loopback();
        for host in [
            "localhost:3000",
            "127.0.0.1:3000",
            "127.1.2.3",
            "[::1]:3000",
            "LOCALHOST",
            "rag.internal:8080",
        ] {
            assert!(guard.host_allowed(host), "{host}");
        }
        for host in [
            "evil.example",
            "evil.example:3000",
            "localhost.evil.example",
            "10.0.0.1:3000",
            "[fe80::1]",
        ] {
            assert!(!guard.host_allowed(host), "{host}");
        }
    }

    #[test]
    fn elsewhere_the_list_applies_only_when_set() {
        let open = RequestGuard::default();
        assert!(open.host_allowed("abc.execute-api.us-east-1.amazonaws.com"));
        let listed = RequestGuard {
            allowed_hosts: vec!["api.example.com".to_string()],
            ..RequestGuard::default()
        };
        assert!(listed.host_allowed("api.example.com"));
        assert!(!listed.host_allowed("evil.example"));
    }

    #[test]
    fn origins_are_the_servers_own_or_listed() {
        let guard = loopback();
        assert!(guard.origin_allowed("http://127.0.0.1:3000", Some("127.0.0.1:3000")));
        assert!(guard.origin_allowed("https://app.example", Some("127.0.0.1:3000")));
        assert!(!guard.origin_allowed("http://evil.example", Some("127.0.0.1:3000")));
        assert!(!guard.origin_allowed("null", Some("127.0.0.1:3000")));
        assert!(!guard.origin_allowed("http://127.0.0.1:4000", Some("127.0.0.1:3000")));
    }
}
