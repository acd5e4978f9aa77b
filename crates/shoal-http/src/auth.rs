//! Credentials: the password an `Authorization` header carries.

/// The password in an `Authorization` header: `Bearer <password>`, or `Basic` credentials for
/// the user `default` (or an empty user name, as `curl -u :<password>` sends).
pub fn password_from_header(value: &str) -> Option<String> {
    let (scheme, rest) = value.trim().split_once(' ')?;
    if scheme.eq_ignore_ascii_case("bearer") {
        return Some(rest.trim().to_string());
    }
    if scheme.eq_ignore_ascii_case("basic") {
        let decoded = String::from_utf8(base64_decode(rest.trim().as_bytes())?).ok()?;
        let (user, password) = decoded.split_once(':')?;
        return (user == "default" || user.is_empty()).then(|| password.to_string());
    }
    None
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
    fn passwords_come_from_bearer_or_basic_credentials() {
        assert_eq!(
            password_from_header("Bearer s3cret").as_deref(),
            Some("s3cret")
        );
        assert_eq!(password_from_header("Bearer x").as_deref(), Some("x"));
        // "default:s3cret" and ":s3cret" in base64.
        assert_eq!(
            password_from_header("Basic ZGVmYXVsdDpzM2NyZXQ=").as_deref(),
            Some("s3cret")
        );
        assert_eq!(
            password_from_header("basic OnMzY3JldA==").as_deref(),
            Some("s3cret")
        );
        // "alice:s3cret": only the default user exists.
        assert_eq!(password_from_header("Basic YWxpY2U6czNjcmV0"), None);
        assert_eq!(password_from_header("Basic !!!"), None);
        assert_eq!(password_from_header("Digest x"), None);
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
