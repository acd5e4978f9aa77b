//! Credentials and permissions: who a request is (an `Authorization` header checked against
//! the front door's ACL users) and whether that user may run the command a request maps to
//! (`GET` → `get`, `POST` → `set`, `DELETE` → `del`).

use std::sync::Arc;

use shoal_frontdoor::{Acl, UserSlot, table};

use crate::ApiError;

/// What an `Authorization` header carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credentials {
    /// `Basic` credentials: a user (empty: `default`, as `curl -u :<password>` sends) and a
    /// password.
    Basic {
        /// The user name.
        user: String,
        /// The password.
        password: String,
    },
    /// `Bearer <token>`: the `default` user's password, or `user:password`.
    Bearer(String),
}

/// The credentials in an `Authorization` header, if it has any this API reads.
pub fn credentials_from_header(value: &str) -> Option<Credentials> {
    let (scheme, rest) = value.trim().split_once(' ')?;
    if scheme.eq_ignore_ascii_case("bearer") {
        return Some(Credentials::Bearer(rest.trim().to_string()));
    }
    if scheme.eq_ignore_ascii_case("basic") {
        let decoded = String::from_utf8(base64_decode(rest.trim().as_bytes())?).ok()?;
        let (user, password) = decoded.split_once(':')?;
        let user = if user.is_empty() { "default" } else { user };
        return Some(Credentials::Basic {
            user: user.to_string(),
            password: password.to_string(),
        });
    }
    None
}

/// What an HTTP request shows as its client in the `ACL LOG`.
const HTTP_CLIENT: &str = "proto=http";

/// A request turned away by [`authenticate`].
#[derive(Debug)]
pub struct Refused {
    /// The answer (`401`).
    pub error: ApiError,
    /// How long the answer must wait by the failures of its address (over all its
    /// connections), if it came with credentials and its address is known.
    pub wait: Option<std::time::Duration>,
}

impl From<ApiError> for Refused {
    fn from(error: ApiError) -> Self {
        Refused { error, wait: None }
    }
}

/// The user a request from `peer` runs as: the one its `Authorization` header
/// authenticates, or the `default` user when it carries none and no password is required. A
/// wrong password is counted and logged as a failed `AUTH` is, and slowed down by its
/// address as one over RESP is.
pub fn authenticate(
    acl: &Acl,
    header: Option<&str>,
    peer: Option<std::net::SocketAddr>,
) -> Result<Arc<UserSlot>, Refused> {
    let Some(header) = header else {
        if acl.auth_required() {
            return Err(ApiError::Unauthorized.into());
        }
        return Ok(acl.default_user().clone());
    };
    let credentials = credentials_from_header(header).ok_or(ApiError::Unauthorized)?;
    let (user, found) = match &credentials {
        Credentials::Basic { user, password } => (
            user.as_str(),
            acl.authenticate(user.as_bytes(), password.as_bytes()),
        ),
        // The default user's password, else `user:password`; a failure is the default user's.
        Credentials::Bearer(token) => match acl.authenticate(b"default", token.as_bytes()) {
            Some(found) => ("default", Some(found)),
            None => match token.split_once(':').and_then(|(user, password)| {
                Some((
                    user,
                    acl.authenticate(user.as_bytes(), password.as_bytes())?,
                ))
            }) {
                Some((user, found)) => (user, Some(found)),
                None => ("default", None),
            },
        },
    };
    found.ok_or_else(|| {
        let (wait, client) = match peer {
            Some(peer) => (
                acl.auth_failure_from(user.as_bytes(), peer),
                format!("addr={peer} {HTTP_CLIENT}"),
            ),
            None => {
                acl.note_auth_failure(user.as_bytes(), &"http");
                (None, HTTP_CLIENT.to_string())
            }
        };
        acl.log(
            shoal_frontdoor::acl::Reason::Auth,
            b"AUTH",
            user.as_bytes(),
            client,
        );
        Refused {
            error: ApiError::Unauthorized,
            wait,
        }
    })
}

/// Whether `user` may run `command` (`get`, `set`, `del`) on `key`, as the same command over
/// RESP would be checked; a denial is counted and logged, and is a `403`.
pub fn authorize(acl: &Acl, user: &UserSlot, command: &str, key: &[u8]) -> Result<(), ApiError> {
    if user.unrestricted() {
        return Ok(());
    }
    let command = table()
        .find(command.as_bytes())
        .expect("the API's commands are in the table");
    // The value of a `set` is not looked at; its place only makes the arity right.
    let args: [&[u8]; 3] = [command.spec.name.as_bytes(), key, b""];
    let args = if command.spec.name == "set" {
        &args[..]
    } else {
        &args[..2]
    };
    acl.permit(user, command, args, || HTTP_CLIENT.to_string())
        .map_err(|e| ApiError::Forbidden(e.line().into_owned()))
}

/// Standard base64 (RFC 4648, with or without padding), as HTTP Basic credentials use;
/// `None` for anything else.
pub fn base64_decode(input: &[u8]) -> Option<Vec<u8>> {
    let value = |c: u8| -> Option<u32> {
        Some(u32::from(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        }))
    };
    let input = input
        .strip_suffix(b"==")
        .or_else(|| input.strip_suffix(b"="))
        .unwrap_or(input);
    let mut out = Vec::with_capacity(input.len() * 3 / 4);
    for chunk in input.chunks(4) {
        let mut bits = 0u32;
        for &c in chunk {
            bits = bits << 6 | value(c)?;
        }
        match chunk.len() {
            4 => out.extend_from_slice(&bits.to_be_bytes()[1..]),
            3 => out.extend_from_slice(&(bits << 6).to_be_bytes()[1..3]),
            2 => out.push((bits >> 4) as u8),
            _ => return None,
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_come_from_bearer_or_basic_headers() {
        let basic = |user: &str, password: &str| Credentials::Basic {
            user: user.into(),
            password: password.into(),
        };
        assert_eq!(
            credentials_from_header("Bearer s3cret"),
            Some(Credentials::Bearer("s3cret".into()))
        );
        // "default:s3cret", ":s3cret" and "alice:s3cret" in base64.
        assert_eq!(
            credentials_from_header("Basic ZGVmYXVsdDpzM2NyZXQ="),
            Some(basic("default", "s3cret"))
        );
        assert_eq!(
            credentials_from_header("basic OnMzY3JldA=="),
            Some(basic("default", "s3cret"))
        );
        assert_eq!(
            credentials_from_header("Basic YWxpY2U6czNjcmV0"),
            Some(basic("alice", "s3cret"))
        );
        assert_eq!(credentials_from_header("Basic !!!"), None);
        assert_eq!(credentials_from_header("Digest x"), None);
    }

    #[test]
    fn users_authenticate_by_basic_or_bearer_credentials() {
        let acl = Acl::default();
        assert!(
            authenticate(&acl, None, None).is_ok(),
            "no password: the default user"
        );
        acl.set_default_password(Some("s3cret"));
        acl.set_user(b"alice", &["on", ">pw", "~a*", "+get"])
            .unwrap();
        assert!(matches!(
            authenticate(&acl, None, None),
            Err(Refused {
                error: ApiError::Unauthorized,
                wait: None
            })
        ));
        let default = authenticate(&acl, Some("Bearer s3cret"), None).unwrap();
        assert_eq!(default.name(), b"default");
        let alice = authenticate(&acl, Some("Bearer alice:pw"), None).unwrap();
        assert_eq!(alice.name(), b"alice");
        let alice = authenticate(&acl, Some("Basic YWxpY2U6cHc="), None).unwrap();
        assert_eq!(alice.name(), b"alice");
        assert!(authenticate(&acl, Some("Bearer alice:nope"), None).is_err());
        // From a known address, a failure is slowed down by that address's failures: the
        // first ten of a burst wait for nothing more than the HTTP answer's own delay.
        let peer: std::net::SocketAddr = "10.9.8.7:5000".parse().unwrap();
        let refused = authenticate(&acl, Some("Bearer alice:nope"), Some(peer)).unwrap_err();
        assert_eq!(refused.wait, None);
        for _ in 0..9 {
            let _ = authenticate(&acl, Some("Bearer alice:nope"), Some(peer));
        }
        let refused = authenticate(&acl, Some("Bearer alice:nope"), Some(peer)).unwrap_err();
        assert!(
            refused.wait.is_some(),
            "the eleventh failure of one address waits"
        );
        assert_eq!(
            acl.denied.auth.load(std::sync::atomic::Ordering::Relaxed),
            12
        );
        assert!(authorize(&acl, &alice, "get", b"a1").is_ok());
        assert!(matches!(
            authorize(&acl, &alice, "get", b"b1"),
            Err(ApiError::Forbidden(_))
        ));
        assert!(matches!(
            authorize(&acl, &alice, "set", b"a1"),
            Err(ApiError::Forbidden(_))
        ));
    }

    #[test]
    fn base64_decodes_with_or_without_padding() {
        assert_eq!(base64_decode(b"YQ==").as_deref(), Some(&b"a"[..]));
        assert_eq!(base64_decode(b"YQ").as_deref(), Some(&b"a"[..]));
        assert_eq!(base64_decode(b"YWI=").as_deref(), Some(&b"ab"[..]));
        assert_eq!(base64_decode(b"YWJj").as_deref(), Some(&b"abc"[..]));
        assert_eq!(base64_decode(b"").as_deref(), Some(&b""[..]));
        assert_eq!(base64_decode(b"Y"), None);
        assert_eq!(base64_decode(b"Y*=="), None);
    }
}
