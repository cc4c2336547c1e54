//! The web UI: three static files compiled into the binary, so it needs no
//! network and no files on disk, under Lambda as on a laptop. Every URL in
//! them is relative, so the UI works below an API Gateway stage too.

use axum::http::header::{CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE};
use axum::http::{HeaderName, HeaderValue};
use axum::response::{IntoResponse, Response};

const INDEX_HTML: &str = include_str!("../../ui/index.html");
const APP_JS: &str = include_str!("../../ui/app.js");
const APP_CSS: &str = include_str!("../../ui/app.css");

/// Only the page's own files, and the one inline script (by its hash: it
/// fixes the base path before anything loads); the page talks only to its
/// own origin, and to S3 for the presigned PUTs of direct uploads, and may
/// not be framed.
const CSP: &str = "default-src 'self'; script-src 'self' 'sha256-Cu7aww0rfEJ1q/+ujrqWMuGFkhKcMuyV017vlHiwkAc='; \
    style-src 'self'; img-src 'self' data:; connect-src 'self' https://*.amazonaws.com; \
    frame-ancestors 'none'; base-uri 'self'; form-action 'self'; object-src 'none'";

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (CONTENT_TYPE, HeaderValue::from_static(content_type)),
            // The files change with the binary; revalidating is cheap and
            // keeps a redeploy from mixing old and new files.
            (CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            (
                HeaderName::from_static("x-content-type-options"),
                HeaderValue::from_static("nosniff"),
            ),
            (CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP)),
        ],
        body,
    )
        .into_response()
}

/// The UI's page.
pub async fn index() -> Response {
    asset("text/html; charset=utf-8", INDEX_HTML)
}

pub async fn script() -> Response {
    asset("text/javascript; charset=utf-8", APP_JS)
}

pub async fn stylesheet() -> Response {
    asset("text/css; charset=utf-8", APP_CSS)
}

#[cfg(test)]
mod tests {
    use base64::Engine;
    use sha2::{Digest, Sha256};

    use super::*;

    #[test]
    fn the_policy_allows_exactly_the_inline_script() {
        let start = INDEX_HTML.find("<script>").unwrap() + "<script>".len();
        let end = INDEX_HTML[start..].find("</script>").unwrap() + start;
        let digest = Sha256::digest(&INDEX_HTML[start..end]);
        let hash = base64::engine::general_purpose::STANDARD.encode(digest);
        assert!(
            CSP.contains(&format!("'sha256-{hash}'")),
            "update CSP: {hash}"
        );
        assert_eq!(INDEX_HTML.matches("<script>").count(), 1);
    }

    #[test]
    fn every_url_in_the_page_is_relative() {
        for file in [INDEX_HTML, APP_JS, APP_CSS] {
            for absolute in [
                "href=\"/",
                "src=\"/",
                "fetch(\"/",
                "api(\"/",
                "http://",
                "https://",
            ] {
                assert!(
                    !file.contains(absolute),
                    "an absolute URL ({absolute}) would break below an API stage"
                );
            }
        }
    }
}
