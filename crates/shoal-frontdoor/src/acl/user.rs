//! One ACL user, as Redis 7.0 keeps it: on or off, its passwords (SHA-256, in hex), `nopass`,
//! and its selectors (the root one first).

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use shoal_proto::split_args;

use super::rules::RuleError;
use super::selector::{Checked, Denied, Selector};

/// A user's rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub(crate) name: Vec<u8>,
    pub(crate) enabled: bool,
    pub(crate) nopass: bool,
    /// `sanitize-payload` (`Some(true)`) or `skip-sanitize-payload` (`Some(false)`), as set.
    sanitize_payload: Option<bool>,
    /// SHA-256 hashes in lower-case hex, in the order added.
    pub(crate) passwords: Vec<String>,
    /// The root selector first.
    pub(crate) selectors: Vec<Selector>,
}

/// The SHA-256 of a password in lower-case hex, as Redis stores it.
pub fn hash_password(password: &[u8]) -> String {
    let digest = Sha256::digest(password);
    let mut hex = String::with_capacity(64);
    for byte in digest {
        hex.push(char::from_digit(u32::from(byte >> 4), 16).expect("nibble"));
        hex.push(char::from_digit(u32::from(byte & 0xF), 16).expect("nibble"));
    }
    hex
}

fn valid_hash(hash: &[u8]) -> bool {
    hash.len() == 64
        && hash
            .iter()
            .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(c))
}

impl User {
    /// A new user: off, no password, no permissions (`ACLCreateUser`).
    pub fn new(name: &[u8]) -> User {
        User {
            name: name.to_vec(),
            enabled: false,
            nopass: false,
            sanitize_payload: None,
            passwords: Vec::new(),
            selectors: vec![Selector::default()],
        }
    }

    /// The `default` user as Redis creates it: on, `nopass`, every command, key and channel.
    pub fn default_user() -> User {
        let mut user = User::new(b"default");
        for rule in ["+@all", "~*", "&*", "on", "nopass"] {
            user.apply(rule.as_bytes()).expect("valid rules");
        }
        user
    }

    /// The user's name.
    pub fn name(&self) -> &[u8] {
        &self.name
    }

    /// Whether the user may run every command on every key and channel.
    pub fn unrestricted(&self) -> bool {
        self.selectors[0].unrestricted()
    }

    /// Applies one rule (`ACLSetUser`); a bad rule changes nothing.
    pub fn apply(&mut self, op: &[u8]) -> Result<(), RuleError> {
        let is = |word: &str| op.eq_ignore_ascii_case(word.as_bytes());
        if op.is_empty() {
            return Ok(());
        }
        if is("on") {
            self.enabled = true;
        } else if is("off") {
            self.enabled = false;
        } else if is("skip-sanitize-payload") {
            self.sanitize_payload = Some(false);
        } else if is("sanitize-payload") {
            self.sanitize_payload = Some(true);
        } else if is("nopass") {
            self.nopass = true;
            self.passwords.clear();
        } else if is("resetpass") {
            self.nopass = false;
            self.passwords.clear();
        } else if op[0] == b'>' || op[0] == b'#' {
            let hash = if op[0] == b'>' {
                hash_password(&op[1..])
            } else if valid_hash(&op[1..]) {
                String::from_utf8_lossy(&op[1..]).into_owned()
            } else {
                return Err(RuleError::BadHash);
            };
            if !self.passwords.contains(&hash) {
                self.passwords.push(hash);
            }
            self.nopass = false;
        } else if op[0] == b'<' || op[0] == b'!' {
            let hash = if op[0] == b'<' {
                hash_password(&op[1..])
            } else if valid_hash(&op[1..]) {
                String::from_utf8_lossy(&op[1..]).into_owned()
            } else {
                return Err(RuleError::BadHash);
            };
            let at = self.passwords.iter().position(|p| *p == hash);
            self.passwords.remove(at.ok_or(RuleError::NoSuchPassword)?);
        } else if op[0] == b'(' && op.last() == Some(&b')') {
            let inside = split_args(&op[1..op.len() - 1]).unwrap_or_default();
            let mut selector = Selector::default();
            for rule in inside {
                selector.apply(&rule)?;
            }
            self.selectors.push(selector);
        } else if is("clearselectors") {
            self.selectors.truncate(1);
        } else if is("reset") {
            for rule in [
                "resetpass",
                "resetkeys",
                "resetchannels",
                "off",
                "sanitize-payload",
                "clearselectors",
                "-@all",
            ] {
                self.apply(rule.as_bytes()).expect("valid rules");
            }
        } else {
            let mut root = self.selectors[0].clone();
            root.apply(op)?;
            self.selectors[0] = root;
        }
        Ok(())
    }

    /// Whether `password` is one of the user's (any, with `nopass`); a disabled user never
    /// authenticates. Hashes are compared in constant time.
    pub fn accepts(&self, password: &[u8]) -> bool {
        if !self.enabled {
            return false;
        }
        if self.nopass {
            return true;
        }
        let given = hash_password(password);
        let mut found = subtle::Choice::from(0);
        for stored in &self.passwords {
            found |= stored.as_bytes().ct_eq(given.as_bytes());
        }
        found.into()
    }

    /// Whether some selector lets the command run; else the denial Redis reports
    /// (`ACLCheckAllUserCommandPerm`: the command if no selector allows it, else the last key
    /// or channel none allows).
    pub(crate) fn check(&self, command: &Checked<'_>) -> Result<(), Denied> {
        let mut relevant = Denied::Command;
        for selector in &self.selectors {
            match selector.check(command) {
                Ok(()) => return Ok(()),
                Err(denied) => {
                    if denied > relevant {
                        relevant = denied;
                    }
                }
            }
        }
        Err(relevant)
    }

    /// Whether some selector lets `key` be accessed so.
    pub fn key_allowed(&self, key: &[u8], access: u8) -> bool {
        self.selectors.iter().any(|s| s.key_allowed(key, access))
    }

    /// Whether some selector lets `channel` (a pattern if `is_pattern`) be published or
    /// subscribed to.
    pub fn channel_allowed(&self, channel: &[u8], is_pattern: bool) -> bool {
        self.selectors
            .iter()
            .any(|s| s.channel_allowed(channel, is_pattern))
    }

    /// The flags `ACL GETUSER` lists, in Redis's order.
    pub(crate) fn flags(&self) -> Vec<&'static str> {
        let mut flags = vec![if self.enabled { "on" } else { "off" }];
        if self.nopass {
            flags.push("nopass");
        }
        match self.sanitize_payload {
            Some(false) => flags.push("skip-sanitize-payload"),
            Some(true) => flags.push("sanitize-payload"),
            None => {}
        }
        flags
    }

    /// The user as `ACL LIST` and the ACL file show it, after `user <name> `
    /// (`ACLDescribeUser`).
    pub fn describe(&self) -> String {
        let mut out = String::new();
        for flag in self.flags() {
            out.push_str(flag);
            out.push(' ');
        }
        for hash in &self.passwords {
            out.push('#');
            out.push_str(hash);
            out.push(' ');
        }
        for (i, selector) in self.selectors.iter().enumerate() {
            if i == 0 {
                out.push_str(&selector.describe());
            } else {
                out.push_str(" (");
                out.push_str(&selector.describe());
                out.push(')');
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(rules: &[&str]) -> User {
        let mut u = User::new(b"alice");
        for r in rules {
            u.apply(r.as_bytes()).expect("valid rule");
        }
        u
    }

    #[test]
    fn passwords_are_hashed_and_checked() {
        let u = user(&["on", ">p1", ">p2"]);
        assert_eq!(u.passwords.len(), 2);
        assert_eq!(
            u.passwords[0],
            "f64551fcd6f07823cb87971cfb91446425da18286b3ab1ef935e0cbd7a69f68a"
        );
        assert!(u.accepts(b"p1") && u.accepts(b"p2"));
        assert!(!u.accepts(b"p3"));
        let off = user(&[">p1"]);
        assert!(!off.accepts(b"p1"), "a disabled user never authenticates");
        let mut u = user(&["on", ">p1", "<p1"]);
        assert!(u.passwords.is_empty());
        assert_eq!(u.apply(b"<p1"), Err(RuleError::NoSuchPassword));
        assert_eq!(u.apply(b"#abc"), Err(RuleError::BadHash));
        u.apply(b"nopass").unwrap();
        assert!(u.accepts(b"anything"));
        u.apply(b"resetpass").unwrap();
        assert!(!u.accepts(b"anything"));
    }

    #[test]
    fn users_are_described_as_redis_lists_them() {
        assert_eq!(User::default_user().describe(), "on nopass ~* &* +@all");
        let u = user(&["on", ">p1", "+@string", "~k*"]);
        assert_eq!(
            u.describe(),
            "on #f64551fcd6f07823cb87971cfb91446425da18286b3ab1ef935e0cbd7a69f68a ~k* \
             resetchannels -@all +@string"
        );
        let bob = user(&[
            "+get",
            "+set",
            "-@all",
            "+@read",
            "-keys",
            "%R~r*",
            "&ch*",
            "(+set ~x*)",
        ]);
        assert_eq!(
            bob.describe(),
            "off %R~r* resetchannels &ch* -@all +@read -keys (~x* resetchannels -@all +set)"
        );
        assert_eq!(
            user(&["reset"]).describe(),
            "off sanitize-payload resetchannels -@all"
        );
    }
}
