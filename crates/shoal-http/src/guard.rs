//! Refusing requests a browser was tricked into sending: to a host name not on the allowed
//! list (DNS rebinding, [`AllowedHosts`](crate::AllowedHosts)), or from a web page of another
//! origin (cross-site requests: a page's form or `fetch` posting to the API).

use axum::http::HeaderMap;
use axum::http::header::{HOST, ORIGIN};

use crate::ApiError;
use crate::settings::{HttpSettings, host_name};

/// Checks a request's `Host` and `Origin` headers.
///
/// A browser sends `Origin` with every cross-origin request that could change something (a
/// form post, a `fetch`), so a request with an `Origin` whose host is neither the one the
/// request is addressed to nor an allowed name is refused, whatever its method or content
/// type. Clients that are not browsers (curl, SDKs) send no `Origin` and are not affected.
pub(crate) fn check(headers: &HeaderMap, settings: &HttpSettings) -> Result<(), ApiError> {
    let host = headers.get(HOST).and_then(|v| v.to_str().ok());
    if let Some(host) = host
        && !settings.allowed_hosts.allows(host)
    {
        return Err(ApiError::HostNotAllowed(shown(host)));
    }
    let Some(origin) = headers.get(ORIGIN) else {
        return Ok(());
    };
    let origin = origin.to_str().unwrap_or("");
    let authority = origin
        .split_once("://")
        .map(|(_, rest)| rest.split('/').next().unwrap_or(rest));
    let same_origin = match (authority, host) {
        (Some(authority), Some(host)) => authority.eq_ignore_ascii_case(host.trim()),
        _ => false,
    };
    let listed_name = authority.is_some_and(|authority| {
        let name = host_name(authority);
        name.parse::<std::net::IpAddr>().is_err() && settings.allowed_hosts.allows(authority)
    });
    if same_origin || listed_name {
        Ok(())
    } else {
        Err(ApiError::CrossOrigin(shown(origin)))
    }
}

/// A header value as an error message shows it: at most 100 bytes.
fn shown(value: &str) -> String {
    let mut end = value.len().min(100);
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    value[..end].to_string()
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn headers(host: Option<&str>, origin: Option<&str>) -> HeaderMap {
        let mut headers = HeaderMap::new();
        if let Some(host) = host {
            headers.insert(HOST, HeaderValue::from_str(host).unwrap());
        }
        if let Some(origin) = origin {
            headers.insert(ORIGIN, HeaderValue::from_str(origin).unwrap());
        }
        headers
    }

    #[test]
    fn requests_without_a_browser_origin_pass_when_their_host_is_allowed() {
        let settings = HttpSettings::default();
        assert!(check(&headers(Some("127.0.0.1:8080"), None), &settings).is_ok());
        assert!(check(&headers(None, None), &settings).is_ok());
        assert!(matches!(
            check(&headers(Some("rebound.evil.example:8080"), None), &settings),
            Err(ApiError::HostNotAllowed(h)) if h == "rebound.evil.example:8080"
        ));
    }

    #[test]
    fn a_page_of_another_origin_is_refused_and_the_same_origin_served() {
        let settings = HttpSettings::default();
        let host = Some("127.0.0.1:8080");
        assert!(matches!(
            check(&headers(host, Some("http://evil.example")), &settings),
            Err(ApiError::CrossOrigin(o)) if o == "http://evil.example"
        ));
        assert!(check(&headers(host, Some("null")), &settings).is_err());
        // Another port of the same address is another origin.
        assert!(check(&headers(host, Some("http://127.0.0.1:9999")), &settings).is_err());
        assert!(check(&headers(host, Some("http://127.0.0.1:8080")), &settings).is_ok());
        assert!(check(&headers(host, Some("https://127.0.0.1:8080")), &settings).is_ok());
        // A page served from an allowed name (an operator's dashboard) may call the API.
        let mut settings = HttpSettings::default();
        settings.allowed_hosts.add("dashboard.internal");
        assert!(
            check(
                &headers(host, Some("https://dashboard.internal")),
                &settings
            )
            .is_ok()
        );
    }
}
