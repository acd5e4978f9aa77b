//! Redis 7.0's ACL, written once for a node and the proxy: users with passwords and
//! permissions ([`User`]), the registry of users ([`Acl`]) with `requirepass` as the `default`
//! user's password, the ACL file (`ACL LOAD`/`ACL SAVE`), the `ACL LOG`, and the check every
//! command passes ([`Acl::check`]).
//!
//! A connection holds the [`UserSlot`] it authenticated as. `ACL SETUSER` replaces the rules
//! in the slot, so the change applies to the connection's next command; `ACL DELUSER` (and
//! `ACL LOAD`) retire the slot and close its connections, as Redis does. A slot whose user
//! may run everything says so in one flag, so the `default` user costs one relaxed load per
//! command.

mod adopt;
pub(crate) mod commands;
mod file;
mod log;
mod rules;
mod selector;
mod subscribers;
mod throttle;
mod user;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};

use arc_swap::ArcSwap;
use parking_lot::{Mutex, RwLock};
use shoal_proto::command_table::acl::{KEY_READ, KEY_WRITE};

pub use adopt::{Adopted, adopt_users};
pub use log::{Entry as LogEntry, Reason};
pub use rules::{RuleError, merge_selectors};
pub use selector::Denied;
pub(crate) use subscribers::close_denied_subscribers;
pub use user::{User, hash_password};

use crate::commands::Command;
use crate::error::CommandError;
use selector::Checked;

/// A user as connections hold it: its current rules, replaced by `ACL SETUSER`.
#[derive(Debug)]
pub struct UserSlot {
    name: Box<[u8]>,
    user: ArcSwap<User>,
    unrestricted: AtomicBool,
    removed: AtomicBool,
}

impl UserSlot {
    fn new(user: User) -> Arc<UserSlot> {
        Arc::new(UserSlot {
            name: user.name.clone().into_boxed_slice(),
            unrestricted: AtomicBool::new(user.unrestricted()),
            user: ArcSwap::from_pointee(user),
            removed: AtomicBool::new(false),
        })
    }

    /// The user's name.
    pub fn name(&self) -> &[u8] {
        &self.name
    }

    /// Whether the user may run every command on every key and channel: then nothing needs
    /// checking.
    #[inline]
    pub fn unrestricted(&self) -> bool {
        self.unrestricted.load(Relaxed)
    }

    /// The user's rules now.
    pub fn current(&self) -> Arc<User> {
        self.user.load_full()
    }

    fn replace(&self, user: User) {
        let unrestricted = user.unrestricted();
        self.user.store(Arc::new(user));
        self.unrestricted.store(unrestricted, Relaxed);
    }

    /// Whether the user was deleted (its connections are being closed).
    pub fn removed(&self) -> bool {
        self.removed.load(Relaxed)
    }

    /// Retires the slot: its connections are closed, and one that authenticated as it in the
    /// meantime is closed at its next command (the slot no longer passes as unrestricted).
    fn retire(&self) {
        self.removed.store(true, Relaxed);
        self.unrestricted.store(false, Relaxed);
    }
}

/// Counters of denials, as Redis 7.2's `INFO stats` shows them.
#[derive(Debug, Default)]
pub struct DeniedCounts {
    /// Failed `AUTH` / `HELLO ... AUTH` (`acl_access_denied_auth`).
    pub auth: AtomicU64,
    /// Commands refused (`acl_access_denied_cmd`).
    pub command: AtomicU64,
    /// Keys refused (`acl_access_denied_key`).
    pub key: AtomicU64,
    /// Channels refused (`acl_access_denied_channel`).
    pub channel: AtomicU64,
}

/// Why `ACL SETUSER` refused, with Redis's error text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SetUserError {
    /// A user name with a space or a NUL.
    #[error("ERR Usernames can't contain spaces or null characters")]
    BadName,
    /// A selector that is opened and never closed.
    #[error("ERR Unmatched parenthesis in acl selector starting at '{0}'.")]
    Unmatched(String),
    /// A rule that is not valid.
    #[error("ERR Error in ACL SETUSER modifier '{rule}': {error}")]
    Rule {
        /// The rule as given.
        rule: String,
        /// Why.
        error: RuleError,
    },
}

/// Every user, the ACL file and the ACL log.
#[derive(Debug)]
pub struct Acl {
    users: RwLock<BTreeMap<Box<[u8]>, Arc<UserSlot>>>,
    default: Arc<UserSlot>,
    /// The default user needs a password (or is off): clients must authenticate.
    auth_required: AtomicBool,
    /// The default user has `nopass` (protected mode applies).
    default_nopass: AtomicBool,
    file: RwLock<Option<std::path::PathBuf>>,
    log: Mutex<log::Log>,
    /// Denials counted for `INFO`.
    pub denied: DeniedCounts,
    /// When the last failed authentication was logged, and how many since.
    auth_warnings: Mutex<(u64, u64)>,
    /// Failed authentications slowed down per source address.
    throttle: throttle::AuthThrottle,
}

impl Default for Acl {
    fn default() -> Self {
        let default = UserSlot::new(User::default_user());
        let mut users = BTreeMap::new();
        users.insert(default.name.clone(), default.clone());
        Acl {
            users: RwLock::new(users),
            default,
            auth_required: AtomicBool::new(false),
            default_nopass: AtomicBool::new(true),
            file: RwLock::new(None),
            log: Mutex::new(log::Log::default()),
            denied: DeniedCounts::default(),
            auth_warnings: Mutex::new((0, 0)),
            throttle: throttle::AuthThrottle::default(),
        }
    }
}

/// The user name with a space or a NUL (`ACLStringHasSpaces`).
fn has_spaces(s: &[u8]) -> bool {
    s.iter()
        .any(|&c| c == 0 || c == b' ' || (b'\t'..=b'\r').contains(&c))
}

impl Acl {
    /// The `default` user, which every connection starts as.
    pub fn default_user(&self) -> &Arc<UserSlot> {
        &self.default
    }

    /// Whether clients must authenticate before running commands (the `default` user has a
    /// password, or is off).
    #[inline]
    pub fn auth_required(&self) -> bool {
        self.auth_required.load(Relaxed)
    }

    /// Whether the `default` user has `nopass` (protected mode then turns remote clients away).
    pub fn default_nopass(&self) -> bool {
        self.default_nopass.load(Relaxed)
    }

    fn default_changed(&self) {
        let user = self.default.current();
        self.auth_required
            .store(!user.nopass || !user.enabled, Relaxed);
        self.default_nopass.store(user.nopass, Relaxed);
    }

    /// Sets the `default` user's password as `requirepass` does (`None` or empty: `nopass`).
    pub fn set_default_password(&self, password: Option<&str>) {
        let mut user = (*self.default.current()).clone();
        user.apply(b"resetpass").expect("valid rule");
        match password.filter(|p| !p.is_empty()) {
            Some(password) => {
                let rule = [b">", password.as_bytes()].concat();
                user.apply(&rule).expect("valid rule");
            }
            None => user.apply(b"nopass").expect("valid rule"),
        }
        self.default.replace(user);
        self.default_changed();
    }

    /// The user called `name`.
    pub fn user(&self, name: &[u8]) -> Option<Arc<UserSlot>> {
        self.users.read().get(name).cloned()
    }

    /// The user `name` if `password` is one of its (and it is on), else `None`.
    pub fn authenticate(&self, name: &[u8], password: &[u8]) -> Option<Arc<UserSlot>> {
        let slot = self.user(name)?;
        (slot.current().accepts(password) && !slot.removed()).then_some(slot)
    }

    /// Records a failed authentication from `source` (counted, logged as
    /// [`Acl::note_auth_failure`]): how long its reply must wait, by the failures from that
    /// address over all its connections (about ten a second once a short burst is spent).
    pub fn auth_failure_from(
        &self,
        user: &[u8],
        source: std::net::SocketAddr,
    ) -> Option<std::time::Duration> {
        self.note_auth_failure(user, &source);
        self.throttle.failed(source.ip(), std::time::Instant::now())
    }

    /// Counts a failed authentication and logs it, at most once a second (with how many
    /// there were since the last line).
    pub fn note_auth_failure(&self, user: &[u8], addr: &dyn std::fmt::Display) {
        self.denied.auth.fetch_add(1, Relaxed);
        let now = log::now_ms();
        let mut warnings = self.auth_warnings.lock();
        warnings.1 += 1;
        if now.saturating_sub(warnings.0) >= 1000 {
            tracing::warn!(
                user = %String::from_utf8_lossy(user),
                addr = %addr,
                failures = warnings.1,
                "authentication failed (failures since the last warning: {})",
                warnings.1
            );
            *warnings = (now, 0);
        }
    }

    /// `ACL SETUSER name rules...`: all rules apply, or none.
    pub fn set_user<A: AsRef<[u8]>>(&self, name: &[u8], rules: &[A]) -> Result<(), SetUserError> {
        if has_spaces(name) {
            return Err(SetUserError::BadName);
        }
        let rules = merge_selectors(rules).map_err(|i| {
            SetUserError::Unmatched(String::from_utf8_lossy(rules[i].as_ref()).into_owned())
        })?;
        let mut users = self.users.write();
        let existing = users.get(name).cloned();
        let mut user = existing
            .as_ref()
            .map_or_else(|| User::new(name), |slot| (*slot.current()).clone());
        for rule in &rules {
            user.apply(rule).map_err(|error| SetUserError::Rule {
                rule: String::from_utf8_lossy(shoal_proto::args::c_str(rule)).into_owned(),
                error,
            })?;
        }
        match existing {
            Some(slot) => slot.replace(user),
            None => {
                users.insert(name.into(), UserSlot::new(user));
            }
        }
        drop(users);
        if name == b"default" {
            self.default_changed();
        }
        Ok(())
    }

    /// `ACL DELUSER`: removes the users that exist and returns them (their connections must be
    /// closed). The `default` user cannot be removed.
    pub fn delete_users<A: AsRef<[u8]>>(
        &self,
        names: &[A],
    ) -> Result<Vec<Arc<UserSlot>>, &'static str> {
        if names.iter().any(|n| n.as_ref() == b"default") {
            return Err("ERR The 'default' user cannot be removed");
        }
        let mut users = self.users.write();
        let removed: Vec<Arc<UserSlot>> = names
            .iter()
            .filter_map(|n| users.remove(n.as_ref()))
            .collect();
        for slot in &removed {
            slot.retire();
        }
        Ok(removed)
    }

    /// Every user, in name order.
    pub fn users(&self) -> Vec<Arc<UserSlot>> {
        self.users.read().values().cloned().collect()
    }

    /// Every user as `ACL LIST` and the ACL file show it.
    pub fn list(&self) -> Vec<String> {
        self.users()
            .iter()
            .map(|slot| {
                format!(
                    "user {} {}",
                    String::from_utf8_lossy(slot.name()),
                    slot.current().describe()
                )
            })
            .collect()
    }

    /// Records a denial in the `ACL LOG`.
    pub fn log(&self, reason: Reason, object: &[u8], username: &[u8], client_info: String) {
        self.log.lock().add(log::Entry {
            count: 1,
            reason,
            object: object.to_vec(),
            username: username.to_vec(),
            updated_ms: log::now_ms(),
            client_info,
        });
    }

    /// The newest `count` `ACL LOG` entries, and the time now (for their ages).
    pub fn log_entries(&self, count: usize) -> (Vec<LogEntry>, u64) {
        (self.log.lock().newest(count), log::now_ms())
    }

    /// `ACL LOG RESET`.
    pub fn reset_log(&self) {
        self.log.lock().reset();
    }

    /// Sets the ACL file (`aclfile`).
    pub fn set_file(&self, path: Option<std::path::PathBuf>) {
        *self.file.write() = path;
    }

    /// The ACL file, if one is configured.
    pub fn file(&self) -> Option<std::path::PathBuf> {
        self.file.read().clone()
    }

    /// Lets `user` run `command` with `args` (the name first), or counts the denial, records
    /// it in the `ACL LOG` (with the client's `CLIENT LIST` line from `client_info`) and
    /// returns Redis's `-NOPERM` error.
    pub fn permit(
        &self,
        user: &UserSlot,
        command: &Command,
        args: &[&[u8]],
        client_info: impl FnOnce() -> String,
    ) -> Result<(), CommandError> {
        if user.unrestricted() {
            return Ok(());
        }
        // Read without taking a reference: connections of one user on every thread check it.
        let current = user.user.load();
        let Err(denied) = Acl::check(&current, command, args) else {
            return Ok(());
        };
        let (reason, object, counter, error) = match denied {
            Denied::Command => (
                Reason::Command,
                command.spec.name.as_bytes(),
                &self.denied.command,
                CommandError::Other(
                    format!(
                        "NOPERM this user has no permissions to run the '{}' command",
                        command.spec.name
                    )
                    .into(),
                ),
            ),
            Denied::Key(pos) => (
                Reason::Key,
                args[pos],
                &self.denied.key,
                CommandError::fixed(
                    "NOPERM this user has no permissions to access one of the keys used as arguments",
                ),
            ),
            Denied::Channel(pos) => (
                Reason::Channel,
                args[pos],
                &self.denied.channel,
                CommandError::fixed(
                    "NOPERM this user has no permissions to access one of the channels used as arguments",
                ),
            ),
        };
        counter.fetch_add(1, Relaxed);
        self.log(reason, object, current.name(), client_info());
        Err(error)
    }

    /// Whether `user` may run `command` with `args` (the name first); else what is denied.
    pub fn check(user: &User, command: &Command, args: &[&[u8]]) -> Result<(), Denied> {
        let mut keys = Vec::new();
        for spec in command.key_specs.iter() {
            let mut access = spec.access;
            if command.spec.name == "set" {
                // SET's key spec has variable flags: it reads the old value only with GET.
                let get = args.iter().skip(3).any(|a| a.eq_ignore_ascii_case(b"get"));
                access = if get { KEY_READ | KEY_WRITE } else { KEY_WRITE };
            }
            keys.extend(spec.positions(args.len()).map(|pos| (pos, access)));
        }
        let channels = channels_of(command.spec.name, args.len());
        user.check(&Checked {
            id: command.acl_id,
            no_auth: command.spec.has(shoal_proto::command_table::flags::NO_AUTH),
            is_sub: command.spec.name.contains('|'),
            args,
            keys: &keys,
            channels: &channels,
        })
    }
}

/// The channels a command of `argc` arguments publishes or subscribes to, as Redis 7.0's
/// `getChannelsFromCommand` finds them: position, and whether it names a pattern. Unsubscribing
/// needs no permission.
fn channels_of(name: &str, argc: usize) -> Vec<(usize, bool)> {
    match name {
        "subscribe" | "ssubscribe" => (1..argc).map(|pos| (pos, false)).collect(),
        "psubscribe" => (1..argc).map(|pos| (pos, true)).collect(),
        "publish" | "spublish" => (1..argc.min(2)).map(|pos| (pos, false)).collect(),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commands::table;

    #[test]
    fn set_user_changes_the_slot_connections_hold_and_delete_retires_it() {
        let acl = Acl::default();
        assert!(acl.default_user().unrestricted());
        acl.set_user(b"bob", &["on", ">pw", "+@all", "~*", "&*"])
            .unwrap();
        let held = acl.authenticate(b"bob", b"pw").expect("bob's password");
        assert!(held.unrestricted());
        acl.set_user(b"bob", &["-set"]).unwrap();
        assert!(
            !held.unrestricted(),
            "the change reaches the slot a connection holds"
        );
        let set = table().lookup(b"set").unwrap();
        let denied = acl.permit(&held, set, &[b"set", b"k", b"v"], String::new);
        assert_eq!(
            denied.unwrap_err().line(),
            "NOPERM this user has no permissions to run the 'set' command"
        );
        assert_eq!(acl.denied.command.load(Relaxed), 1);
        assert_eq!(acl.log_entries(10).0.len(), 1);
        let removed = acl.delete_users(&["bob", "nobody"]).unwrap();
        assert_eq!(removed.len(), 1);
        assert!(held.removed() && !held.unrestricted());
        assert!(acl.authenticate(b"bob", b"pw").is_none());
        assert_eq!(
            acl.delete_users(&["default"]).unwrap_err(),
            "ERR The 'default' user cannot be removed"
        );
    }

    #[test]
    fn requirepass_is_the_default_users_password() {
        let acl = Acl::default();
        assert!(!acl.auth_required() && acl.default_nopass());
        acl.set_default_password(Some("s3cret"));
        assert!(acl.auth_required() && !acl.default_nopass());
        assert!(acl.authenticate(b"default", b"s3cret").is_some());
        assert!(acl.authenticate(b"default", b"wrong").is_none());
        assert!(acl.authenticate(b"admin", b"s3cret").is_none());
        acl.set_user(b"default", &["off"]).unwrap();
        assert!(
            acl.auth_required(),
            "a disabled default user needs authentication"
        );
        acl.set_default_password(Some(""));
        acl.set_user(b"default", &["on"]).unwrap();
        assert!(!acl.auth_required() && acl.default_nopass());
    }
}
