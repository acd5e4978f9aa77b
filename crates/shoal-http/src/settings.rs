//! How the HTTP API guards itself: connection and body limits, timeouts, and the host names
//! it answers to.

use std::net::IpAddr;
use std::time::Duration;

/// The HTTP API's guards, from the node's or the proxy's configuration.
#[derive(Clone, Debug)]
pub struct HttpSettings {
    /// Most connections open at once (`http-maxclients`); one more is answered `503` and
    /// closed. Separate from RESP's `maxclients`, so HTTP clients cannot take the file
    /// descriptors RESP clients need.
    pub max_connections: usize,
    /// Longest wait for a request's headers, for the next request on an idle connection, and
    /// for the next piece of a body (`http-timeout`).
    pub timeout: Duration,
    /// Most bytes of request bodies held at once over all connections
    /// (`http-max-inflight-bytes`); a body that does not fit waits up to [`Self::timeout`],
    /// then gets a `503`.
    pub max_inflight_bytes: usize,
    /// The host names requests may be addressed to (`http-allowed-hosts`).
    pub allowed_hosts: AllowedHosts,
}

impl Default for HttpSettings {
    fn default() -> Self {
        HttpSettings {
            max_connections: 1024,
            timeout: Duration::from_secs(10),
            max_inflight_bytes: 1 << 30,
            allowed_hosts: AllowedHosts::default(),
        }
    }
}

/// The host names a request's `Host` header may carry, against DNS rebinding: a web page on
/// a name the attacker controls, re-pointed at the node's address, would otherwise talk to
/// the API from the victim's browser. An IP address is always allowed (a page cannot be
/// served from a name that is an IP address of the node without the user going there), as is
/// a request with no `Host` header (HTTP/1.0); a name must be on the list.
///
/// The list holds names (`localhost`, `cache.internal`), `.suffix` entries that allow every
/// name under a domain (`.svc.cluster.local`), or `*` for any name. By default it holds
/// `localhost` only.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AllowedHosts {
    entries: Vec<String>,
}

impl Default for AllowedHosts {
    fn default() -> Self {
        AllowedHosts {
            entries: vec!["localhost".to_string()],
        }
    }
}

impl AllowedHosts {
    /// The list in `text`: entries separated by commas or spaces, compared without case.
    pub fn parse(text: &str) -> AllowedHosts {
        AllowedHosts {
            entries: text
                .split([',', ' '])
                .map(str::trim)
                .filter(|e| !e.is_empty())
                .map(str::to_ascii_lowercase)
                .collect(),
        }
    }

    /// Adds `name` (a node's announced hostname, say) if it is not on the list yet.
    pub fn add(&mut self, name: &str) {
        let name = name.to_ascii_lowercase();
        if !self.entries.contains(&name) {
            self.entries.push(name);
        }
    }

    /// The list as the setting shows it.
    pub fn to_setting(&self) -> String {
        self.entries.join(",")
    }

    /// Whether a request whose `Host` header is `host` (`name`, `name:port`, `1.2.3.4:80`,
    /// `[::1]:80`) is served.
    pub fn allows(&self, host: &str) -> bool {
        let name = host_name(host);
        if name.parse::<IpAddr>().is_ok() {
            return true;
        }
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        self.entries.iter().any(|entry| {
            entry == "*"
                || *entry == name
                || (entry.starts_with('.')
                    && (name.ends_with(entry.as_str()) || name == entry[1..]))
        })
    }
}

/// The name part of a `Host` header or of an origin's authority: without the port, and
/// without the brackets of an IPv6 address.
pub(crate) fn host_name(host: &str) -> &str {
    let host = host.trim();
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_always_allowed_and_names_only_when_listed() {
        let hosts = AllowedHosts::default();
        for host in [
            "127.0.0.1",
            "127.0.0.1:8080",
            "[::1]:80",
            "10.1.2.3",
            "localhost:8080",
        ] {
            assert!(hosts.allows(host), "{host}");
        }
        for host in [
            "evil.example",
            "evil.example:8080",
            "localhost.evil.example",
            "",
        ] {
            assert!(!hosts.allows(host), "{host}");
        }
    }

    #[test]
    fn a_list_takes_names_suffixes_and_a_wildcard() {
        let hosts = AllowedHosts::parse("Cache.Internal, .svc.cluster.local");
        assert!(hosts.allows("cache.internal:8080"));
        assert!(hosts.allows("CACHE.INTERNAL."));
        assert!(hosts.allows("shoal-0.shoal.svc.cluster.local"));
        assert!(hosts.allows("svc.cluster.local"));
        assert!(!hosts.allows("localhost"));
        assert!(!hosts.allows("evilsvc.cluster.local"));
        assert!(AllowedHosts::parse("*").allows("anything.example"));
        assert_eq!(hosts.to_setting(), "cache.internal,.svc.cluster.local");
    }
}
