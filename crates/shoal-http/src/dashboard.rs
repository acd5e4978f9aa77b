//! The dashboard: one self-contained page (`dashboard.html`: its CSS and script inline, no
//! external asset, embedded in the binary) that polls `GET /cluster` on its own origin every
//! second and draws the slot map, the nodes and the hot keys. Served behind the API's
//! authentication like every path but `/health`: a browser asks for the password (HTTP Basic)
//! once, and sends it again with the page's own requests.
//!
//! Its `Content-Security-Policy` lets it load nothing from anywhere else and be framed by no
//! other page; the page puts every text it shows (keys, addresses) into the document as text,
//! never as markup.

use axum::http::HeaderValue;
use axum::http::header::{CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE};
use axum::response::{IntoResponse, Response};

/// The page.
const PAGE: &str = include_str!("dashboard.html");

/// What the page may do: run its own inline script and style, fetch from its own origin, and
/// nothing else.
const POLICY: &str = "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; \
                      connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; \
                      frame-ancestors 'none'";

/// The answer to `GET /dashboard`.
pub(crate) fn page() -> Response {
    (
        [
            (
                CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            ),
            (CONTENT_SECURITY_POLICY, HeaderValue::from_static(POLICY)),
            (CACHE_CONTROL, HeaderValue::from_static("no-store")),
            (
                axum::http::header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
        ],
        PAGE,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_loads_nothing_from_elsewhere_and_never_injects_markup() {
        for external in [
            "src=", "href=", "@import", "url(", "//cdn", "http://", "https://",
        ] {
            let found = PAGE
                .match_indices(external)
                .map(|(at, _)| &PAGE[at.saturating_sub(30)..(at + 40).min(PAGE.len())])
                // The SVG namespace is a name, not something loaded.
                .filter(|context| !context.contains("www.w3.org/2000/svg"))
                .collect::<Vec<_>>();
            assert!(found.is_empty(), "{external}: {found:?}");
        }
        for injection in [
            "innerHTML",
            "outerHTML",
            "insertAdjacentHTML",
            "document.write",
            "eval(",
        ] {
            assert!(!PAGE.contains(injection), "the page uses {injection}");
        }
        assert!(PAGE.contains("new URL(\"/cluster\", window.location.origin)"));
        assert!(PAGE.contains("credentials: \"same-origin\""));
    }
}
