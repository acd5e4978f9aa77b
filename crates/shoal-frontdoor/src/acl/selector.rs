//! One ACL selector, as Redis 7.0 keeps it: the commands it may run (a bit per Redis command
//! and subcommand, first arguments of otherwise blocked commands), the key patterns with their
//! read/write access, and the channel patterns. A user has a root selector and may have more.

use shoal_proto::command_table::acl::{
    CATEGORIES, KEY_READ, KEY_WRITE, acl_commands, acl_id, acl_subcommands, category,
};

use super::rules::RuleError;
use shoal_proto::glob_match;

/// Bits for every Redis command and subcommand.
const WORDS: usize = 8;

/// A key pattern and the access it grants ([`KEY_READ`], [`KEY_WRITE`] or both).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct KeyPattern {
    pub(crate) access: u8,
    pub(crate) pattern: Vec<u8>,
}

/// What a selector allows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Selector {
    allowed: [u64; WORDS],
    /// Redis's reserved bit: set by `+@all` alone, it says the rules start from `+@all`.
    future: bool,
    /// `SELECTOR_FLAG_ALLCOMMANDS`: every command, without looking at the bits.
    all_commands: bool,
    /// First arguments allowed for commands whose bit is off (`+select|0`), by ACL id.
    first_args: Vec<(usize, Vec<Vec<u8>>)>,
    pub(crate) all_keys: bool,
    pub(crate) patterns: Vec<KeyPattern>,
    pub(crate) all_channels: bool,
    pub(crate) channels: Vec<Vec<u8>>,
}

/// Why a selector refuses a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Denied {
    /// The command itself.
    Command,
    /// The key at this argument position.
    Key(usize),
    /// The channel at this argument position.
    Channel(usize),
}

/// A command as a selector checks it.
pub(crate) struct Checked<'a> {
    /// Its ACL id.
    pub(crate) id: usize,
    /// Whether it may run before authentication (always allowed).
    pub(crate) no_auth: bool,
    /// Whether it is a subcommand (its first argument is then the third).
    pub(crate) is_sub: bool,
    /// Its arguments, the name first.
    pub(crate) args: &'a [&'a [u8]],
    /// Its keys: position and the access needed.
    pub(crate) keys: &'a [(usize, u8)],
    /// The channels it publishes or subscribes to: position, and whether it names a pattern
    /// (`PSUBSCRIBE`).
    pub(crate) channels: &'a [(usize, bool)],
}

fn has_spaces(s: &[u8]) -> bool {
    s.iter()
        .any(|&c| c == 0 || c == b' ' || (b'\t'..=b'\r').contains(&c))
}

impl Selector {
    /// Whether this selector allows every command, key and channel.
    pub(crate) fn unrestricted(&self) -> bool {
        self.all_commands && self.all_keys && self.all_channels
    }

    fn bit(&self, id: usize) -> bool {
        self.allowed[id / 64] & (1 << (id % 64)) != 0
    }

    fn set_bit(&mut self, id: usize, on: bool) {
        if on {
            self.allowed[id / 64] |= 1 << (id % 64);
        } else {
            self.allowed[id / 64] &= !(1 << (id % 64));
            self.all_commands = false;
        }
    }

    /// `ACLChangeSelectorPerm`: a command and, for a container, all its subcommands.
    fn change(&mut self, id: usize, on: bool) {
        self.set_bit(id, on);
        self.first_args.retain(|(i, _)| *i != id);
        for sub in acl_subcommands(id) {
            self.set_bit(sub, on);
        }
    }

    fn set_category(&mut self, flag: u32, on: bool) {
        for (id, (_, categories)) in acl_commands().iter().enumerate() {
            if categories & flag != 0 {
                self.change(id, on);
            }
        }
    }

    fn all(&mut self, on: bool) {
        self.allowed = if on { [u64::MAX; WORDS] } else { [0; WORDS] };
        self.future = on;
        self.all_commands = on;
        self.first_args.clear();
    }

    /// Applies one selector rule (`ACLSetSelector`).
    pub(crate) fn apply(&mut self, op: &[u8]) -> Result<(), RuleError> {
        let is = |word: &str| op.eq_ignore_ascii_case(word.as_bytes());
        if is("allkeys") || op == b"~*" {
            self.all_keys = true;
            self.patterns.clear();
        } else if is("resetkeys") {
            self.all_keys = false;
            self.patterns.clear();
        } else if is("allchannels") || op == b"&*" {
            self.all_channels = true;
            self.channels.clear();
        } else if is("resetchannels") {
            self.all_channels = false;
            self.channels.clear();
        } else if is("allcommands") || is("+@all") {
            self.all(true);
        } else if is("nocommands") || is("-@all") {
            self.all(false);
        } else if op[0] == b'~' || op[0] == b'%' {
            self.add_key_pattern(op)?;
        } else if op[0] == b'&' {
            if self.all_channels {
                return Err(RuleError::ChannelAfterAll);
            }
            let pattern = &op[1..];
            if has_spaces(pattern) {
                return Err(RuleError::Syntax);
            }
            if !self.channels.iter().any(|c| c == pattern) {
                self.channels.push(pattern.to_vec());
            }
            self.all_channels = false;
        } else if op.len() >= 2 && (op[0] == b'+' || op[0] == b'-') && op[1] == b'@' {
            let flag = category(&op[2..]).ok_or(RuleError::Unknown)?;
            self.set_category(flag, op[0] == b'+');
        } else if op[0] == b'+' {
            self.allow_command(&op[1..])?;
        } else if op[0] == b'-' {
            let id = acl_id(&op[1..]).ok_or(RuleError::Unknown)?;
            self.change(id, false);
        } else {
            return Err(RuleError::Syntax);
        }
        Ok(())
    }

    fn add_key_pattern(&mut self, op: &[u8]) -> Result<(), RuleError> {
        if self.all_keys {
            return Err(RuleError::KeyAfterAll);
        }
        let mut access = 0;
        let mut offset = 1;
        if op[0] == b'%' {
            while offset < op.len() {
                let c = op[offset];
                if c.eq_ignore_ascii_case(&b'R') && access & KEY_READ == 0 {
                    access |= KEY_READ;
                } else if c.eq_ignore_ascii_case(&b'W') && access & KEY_WRITE == 0 {
                    access |= KEY_WRITE;
                } else if c == b'~' {
                    offset += 1;
                    break;
                } else {
                    return Err(RuleError::Syntax);
                }
                offset += 1;
            }
            if access == 0 {
                return Err(RuleError::Syntax);
            }
        } else {
            access = KEY_READ | KEY_WRITE;
        }
        let pattern = op.get(offset..).unwrap_or_default();
        if has_spaces(pattern) {
            return Err(RuleError::Syntax);
        }
        match self.patterns.iter_mut().find(|p| p.pattern == pattern) {
            Some(existing) => existing.access |= access,
            None => self.patterns.push(KeyPattern {
                access,
                pattern: pattern.to_vec(),
            }),
        }
        self.all_keys = false;
        Ok(())
    }

    /// `+command`, `+container|sub` or `+command|first-arg`.
    fn allow_command(&mut self, name: &[u8]) -> Result<(), RuleError> {
        let Some(bar) = name.iter().rposition(|&b| b == b'|') else {
            let id = acl_id(name).ok_or(RuleError::Unknown)?;
            self.change(id, true);
            return Ok(());
        };
        let (parent, sub) = (&name[..bar], &name[bar + 1..]);
        let id = acl_id(parent).ok_or(RuleError::Unknown)?;
        if acl_commands()[id].0.contains('|') {
            return Err(RuleError::FirstArgOfSubcommand);
        }
        if sub.is_empty() {
            return Err(RuleError::Syntax);
        }
        if acl_subcommands(id).next().is_some() {
            let id = acl_id(name).ok_or(RuleError::Unknown)?;
            self.change(id, true);
        } else {
            let args = match self.first_args.iter_mut().find(|(i, _)| *i == id) {
                Some((_, args)) => args,
                None => {
                    self.first_args.push((id, Vec::new()));
                    &mut self.first_args.last_mut().expect("just pushed").1
                }
            };
            if !args.iter().any(|a| a.eq_ignore_ascii_case(sub)) {
                args.push(sub.to_vec());
            }
        }
        Ok(())
    }

    /// Whether the selector lets `command` run (`ACLSelectorCheckCmd`).
    pub(crate) fn check(&self, command: &Checked<'_>) -> Result<(), Denied> {
        if !self.all_commands && !command.no_auth && !self.bit(command.id) {
            let index = if command.is_sub { 2 } else { 1 };
            let allowed = command.args.get(index).is_some_and(|arg| {
                self.first_args
                    .iter()
                    .find(|(i, _)| *i == command.id)
                    .is_some_and(|(_, args)| args.iter().any(|a| a.eq_ignore_ascii_case(arg)))
            });
            if !allowed {
                return Err(Denied::Command);
            }
        }
        if !self.all_keys {
            for &(pos, access) in command.keys {
                if !self.key_allowed(command.args[pos], access) {
                    return Err(Denied::Key(pos));
                }
            }
        }
        for &(pos, pattern) in command.channels {
            if !self.channel_allowed(command.args[pos], pattern) {
                return Err(Denied::Channel(pos));
            }
        }
        Ok(())
    }

    /// Whether `key` may be accessed so (`ACLSelectorCheckKey`).
    pub(crate) fn key_allowed(&self, key: &[u8], access: u8) -> bool {
        self.all_keys
            || self
                .patterns
                .iter()
                .any(|p| p.access & access == access && glob_match(&p.pattern, key, false))
    }

    /// Whether `channel` may be published or subscribed to (`ACLCheckChannelAgainstList`): a
    /// channel name matches the selector's patterns as a glob; a pattern (`PSUBSCRIBE`) must be
    /// one of them, literally, so `&news.*` allows `PSUBSCRIBE news.*` but not `news.*.x`.
    pub(crate) fn channel_allowed(&self, channel: &[u8], is_pattern: bool) -> bool {
        self.all_channels
            || self.channels.iter().any(|p| {
                if is_pattern {
                    p.as_slice() == channel
                } else {
                    glob_match(p, channel, false)
                }
            })
    }

    fn count_category(&self, flag: u32) -> (usize, usize) {
        let (mut on, mut off) = (0, 0);
        for (id, (_, categories)) in acl_commands().iter().enumerate() {
            if categories & flag != 0 {
                if self.bit(id) {
                    on += 1;
                } else {
                    off += 1;
                }
            }
        }
        (on, off)
    }

    /// The command rules, as `ACLDescribeSelectorCommandRules` works them out from the bits:
    /// `+@all` or `-@all`, the categories that fit best, then single commands (in name order,
    /// where Redis follows its hash table's).
    pub(crate) fn describe_commands(&self) -> String {
        let additive = !self.future;
        let mut rules = String::from(if additive { "-@all " } else { "+@all " });
        let mut fake = Selector::default();
        fake.all(!additive);
        let mut temp = Selector {
            allowed: self.allowed,
            ..Selector::default()
        };
        let mut applied = [false; CATEGORIES.len()];
        loop {
            let mut best = None;
            let (mut min_diff, mut max_same) = (usize::MAX, 0);
            for (j, _) in CATEGORIES.iter().enumerate() {
                if applied[j] {
                    continue;
                }
                let (on, off) = temp.count_category(1 << j);
                let (diff, same) = if additive { (off, on) } else { (on, off) };
                if same > diff && (diff < min_diff || (diff == min_diff && same > max_same)) {
                    best = Some(j);
                    min_diff = diff;
                    max_same = same;
                }
            }
            let Some(best) = best else { break };
            fake.set_category(1 << best, additive);
            temp.set_category(1 << best, !additive);
            rules.push_str(if additive { "+@" } else { "-@" });
            rules.push_str(CATEGORIES[best]);
            rules.push(' ');
            applied[best] = true;
        }
        let all = acl_commands();
        for (id, (name, _)) in all.iter().enumerate() {
            if name.contains('|') {
                continue;
            }
            for cmd in std::iter::once(id).chain(acl_subcommands(id)) {
                let user = self.bit(cmd);
                if user != fake.bit(cmd) {
                    rules.push(if user { '+' } else { '-' });
                    rules.push_str(all[cmd].0);
                    rules.push(' ');
                    fake.change(cmd, user);
                }
            }
            if !self.bit(id)
                && let Some((_, args)) = self.first_args.iter().find(|(i, _)| *i == id)
            {
                for arg in args {
                    rules.push('+');
                    rules.push_str(name);
                    rules.push('|');
                    rules.push_str(&String::from_utf8_lossy(arg));
                    rules.push(' ');
                }
            }
        }
        rules.pop();
        rules
    }

    /// The key patterns as `ACL GETUSER` shows them (`~*`, or the patterns joined by spaces).
    pub(crate) fn describe_keys(&self) -> String {
        if self.all_keys {
            return "~*".into();
        }
        let patterns: Vec<String> = self.patterns.iter().map(pattern_string).collect();
        patterns.join(" ")
    }

    /// The channel patterns as `ACL GETUSER` shows them.
    pub(crate) fn describe_channels(&self) -> String {
        if self.all_channels {
            return "&*".into();
        }
        let channels: Vec<String> = self
            .channels
            .iter()
            .map(|c| format!("&{}", String::from_utf8_lossy(c)))
            .collect();
        channels.join(" ")
    }

    /// The whole selector as `ACL LIST` shows it (`ACLDescribeSelector`).
    pub(crate) fn describe(&self) -> String {
        let mut out = String::new();
        if self.all_keys {
            out.push_str("~* ");
        } else {
            for p in &self.patterns {
                out.push_str(&pattern_string(p));
                out.push(' ');
            }
        }
        if self.all_channels {
            out.push_str("&* ");
        } else {
            out.push_str("resetchannels ");
            for c in &self.channels {
                out.push('&');
                out.push_str(&String::from_utf8_lossy(c));
                out.push(' ');
            }
        }
        out.push_str(&self.describe_commands());
        out
    }
}

fn pattern_string(p: &KeyPattern) -> String {
    let prefix = match p.access {
        a if a == KEY_READ | KEY_WRITE => "~",
        KEY_READ => "%R~",
        _ => "%W~",
    };
    format!("{prefix}{}", String::from_utf8_lossy(&p.pattern))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn selector(rules: &[&str]) -> Selector {
        let mut s = Selector::default();
        for r in rules {
            s.apply(r.as_bytes()).expect("valid rule");
        }
        s
    }

    #[test]
    fn every_redis_command_has_a_bit() {
        assert!(acl_commands().len() < WORDS * 64);
    }

    #[test]
    fn rules_are_described_as_redis_does() {
        assert_eq!(selector(&["+@all"]).describe_commands(), "+@all");
        assert_eq!(selector(&[]).describe_commands(), "-@all");
        assert_eq!(
            selector(&["+@string"]).describe_commands(),
            "-@all +@string"
        );
        assert_eq!(
            selector(&["+get", "+set", "-@all", "+@read", "-keys"]).describe_commands(),
            "-@all +@read -keys"
        );
        assert_eq!(
            selector(&["+client", "-client|kill", "+client|kill", "-client|id"])
                .describe_commands(),
            "-@all +client -client|id"
        );
        assert_eq!(
            selector(&["+client|id", "+select|0"]).describe_commands(),
            "-@all +client|id +select|0"
        );
        assert_eq!(
            selector(&["+acl|whoami", "+acl"]).describe_commands(),
            "-@all +acl"
        );
    }

    #[test]
    fn bad_rules_are_refused_with_redis_reasons() {
        let mut s = Selector::default();
        assert_eq!(s.apply(b"+nosuch"), Err(RuleError::Unknown));
        assert_eq!(s.apply(b"-@nope"), Err(RuleError::Unknown));
        assert_eq!(
            s.apply(b"+config|get|x"),
            Err(RuleError::FirstArgOfSubcommand)
        );
        assert_eq!(s.apply(b"+select|"), Err(RuleError::Syntax));
        assert_eq!(s.apply(b"%X~a"), Err(RuleError::Syntax));
        assert_eq!(s.apply(b"%~a"), Err(RuleError::Syntax));
        assert_eq!(s.apply(b"%RR~a"), Err(RuleError::Syntax));
        assert_eq!(s.apply(b"~a b"), Err(RuleError::Syntax));
        assert_eq!(s.apply(b"bogus"), Err(RuleError::Syntax));
        s.apply(b"allkeys").unwrap();
        assert_eq!(s.apply(b"~x"), Err(RuleError::KeyAfterAll));
        s.apply(b"allchannels").unwrap();
        assert_eq!(s.apply(b"&x"), Err(RuleError::ChannelAfterAll));
    }

    #[test]
    fn keys_are_checked_with_their_access() {
        let s = selector(&["%R~r*", "%W~w*", "~both"]);
        assert!(s.key_allowed(b"r1", KEY_READ));
        assert!(!s.key_allowed(b"r1", KEY_WRITE));
        assert!(s.key_allowed(b"w1", KEY_WRITE));
        assert!(!s.key_allowed(b"w1", KEY_READ | KEY_WRITE));
        assert!(s.key_allowed(b"both", KEY_READ | KEY_WRITE));
        assert_eq!(s.describe_keys(), "%R~r* %W~w* ~both");
        let merged = selector(&["%R~k", "%W~k"]);
        assert_eq!(merged.describe_keys(), "~k");
    }
}
