//! The credentials one node gives another's RESP port (its replication link, the seed it joins
//! through, its forwarding client): Redis's `masteruser` and `masterauth`, or the `default`
//! user's `requirepass`.

/// A user and password to authenticate with (`AUTH [user] password`).
#[derive(Clone, PartialEq, Eq)]
pub struct PeerAuth {
    /// The user (`masteruser`); `None` is the `default` user (`AUTH password`).
    pub user: Option<String>,
    /// The password.
    pub password: String,
}

impl PeerAuth {
    /// The `default` user's `password`.
    pub fn password(password: impl Into<String>) -> PeerAuth {
        PeerAuth {
            user: None,
            password: password.into(),
        }
    }

    /// The `AUTH` command that presents these credentials.
    pub fn auth_command(&self) -> Vec<&str> {
        match &self.user {
            Some(user) => vec!["AUTH", user, &self.password],
            None => vec!["AUTH", &self.password],
        }
    }
}

impl std::fmt::Debug for PeerAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerAuth")
            .field("user", &self.user)
            .field("password", &"<redacted>")
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auth_names_the_user_only_when_there_is_one_and_debug_hides_the_password() {
        assert_eq!(PeerAuth::password("pw").auth_command(), ["AUTH", "pw"]);
        let replica = PeerAuth {
            user: Some("replicator".into()),
            password: "pw".into(),
        };
        assert_eq!(replica.auth_command(), ["AUTH", "replicator", "pw"]);
        assert!(!format!("{replica:?}").contains("pw\""));
    }
}
