//! The script cache (per node, as Redis's): the bodies of the scripts `EVAL` ran and
//! `SCRIPT LOAD` loaded, by their SHA1, and the flags a script's shebang line declares.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use parking_lot::RwLock;
use sha1::{Digest, Sha1};

/// A script's declared flags (`#!lua flags=...`), Redis's `SCRIPT_FLAG_*`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct ScriptFlags {
    /// The script has a shebang line: flags are what it declares (none: Redis's defaults
    /// for a script without one).
    pub shebang: bool,
    /// `no-writes`: a read-only script.
    pub no_writes: bool,
    /// `allow-oom`: may run over `maxmemory`.
    pub allow_oom: bool,
    /// `allow-stale`.
    pub allow_stale: bool,
    /// `no-cluster`: refused in cluster mode.
    pub no_cluster: bool,
    /// `allow-cross-slot-keys`: may access keys of several slots.
    pub allow_cross_slot: bool,
}

/// A SHA1 as 20 bytes: what the caches are keyed by, so that a lookup by the 40 hex digits
/// an `EVALSHA` sends parses them (in any case) instead of allocating a lower-case copy.
pub(crate) type Digest20 = [u8; 20];

/// The digest that 40 hex digits (any case) spell, if they do.
pub(crate) fn digest_of_hex(hex: &[u8]) -> Option<Digest20> {
    if hex.len() != 40 {
        return None;
    }
    let nibble = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    };
    let mut digest = [0; 20];
    for (byte, pair) in digest.iter_mut().zip(hex.chunks_exact(2)) {
        *byte = (nibble(pair[0])? << 4) | nibble(pair[1])?;
    }
    Some(digest)
}

/// A cached script.
#[derive(Debug)]
pub(crate) struct Script {
    /// Its SHA1, 40 lower-case hex digits.
    pub sha: String,
    /// The same SHA1 as bytes.
    pub digest: Digest20,
    /// Its body as sent (the shebang line included).
    pub body: Arc<[u8]>,
    /// What its shebang declares.
    pub flags: ScriptFlags,
}

/// The node's script cache.
#[derive(Debug, Default)]
pub(crate) struct Scripts {
    by_sha: RwLock<foldhash::HashMap<Digest20, Arc<Script>>>,
    /// Bumped by `SCRIPT FLUSH`: each thread's Lua state starts anew when it sees a change.
    generation: AtomicU64,
    /// `math.random`'s generator.
    pub random: super::libs::random::Rand48,
}

impl Scripts {
    /// The script with this SHA1 (any case).
    pub fn get(&self, sha: &[u8]) -> Option<Arc<Script>> {
        let digest = digest_of_hex(sha)?;
        self.by_sha.read().get(&digest).cloned()
    }

    /// Whether a script with this SHA1 is cached.
    pub fn contains(&self, sha: &[u8]) -> bool {
        self.get(sha).is_some()
    }

    /// Adds a script that compiled (or returns the one cached already).
    pub fn insert(&self, script: Script) -> Arc<Script> {
        let mut by_sha = self.by_sha.write();
        by_sha
            .entry(script.digest)
            .or_insert_with(|| Arc::new(script))
            .clone()
    }

    /// `SCRIPT FLUSH`: forgets every script.
    pub fn flush(&self) {
        self.by_sha.write().clear();
        self.generation.fetch_add(1, Relaxed);
    }

    /// Changes with every flush.
    pub fn generation(&self) -> u64 {
        self.generation.load(Relaxed)
    }
}

/// The SHA1 of `data`.
pub(crate) fn sha1_digest(data: &[u8]) -> Digest20 {
    Sha1::digest(data).into()
}

/// A digest as 40 lower-case hex digits (Redis's `sha1hex`).
pub(crate) fn hex_of(digest: &Digest20) -> String {
    let mut hex = String::with_capacity(40);
    for byte in digest {
        hex.push(char::from_digit(u32::from(byte >> 4), 16).unwrap_or('0'));
        hex.push(char::from_digit(u32::from(byte & 15), 16).unwrap_or('0'));
    }
    hex
}

/// The SHA1 of `data`, as 40 lower-case hex digits (Redis's `sha1hex`).
pub(crate) fn sha1_hex(data: &[u8]) -> String {
    hex_of(&sha1_digest(data))
}

/// Reads a script's shebang line (Redis's `evalExtractShebangFlags`): the flags, and how
/// many bytes the line takes (without its line feed, which stays so line numbers hold).
pub(crate) fn shebang(body: &[u8]) -> Result<(ScriptFlags, usize), String> {
    if !body.starts_with(b"#!") {
        return Ok((ScriptFlags::default(), 0));
    }
    let len = body.iter().position(|&b| b == b'\n').unwrap_or(body.len());
    let line = String::from_utf8_lossy(&body[..len]);
    let mut parts = line.split(' ').filter(|p| !p.is_empty());
    let engine = parts.next().unwrap_or("");
    if engine != "#!lua" {
        return Err(format!("ERR Unexpected engine in script shebang: {engine}"));
    }
    let mut flags = ScriptFlags {
        shebang: true,
        ..ScriptFlags::default()
    };
    for part in parts {
        let Some(list) = part.strip_prefix("flags=") else {
            return Err(format!("ERR Unknown lua shebang option: {part}"));
        };
        for flag in list.split(',').filter(|f| !f.is_empty()) {
            match flag {
                "no-writes" => flags.no_writes = true,
                "allow-oom" => flags.allow_oom = true,
                "allow-stale" => flags.allow_stale = true,
                "no-cluster" => flags.no_cluster = true,
                "allow-cross-slot-keys" => flags.allow_cross_slot = true,
                other => return Err(format!("ERR Unexpected flag in script shebang: {other}")),
            }
        }
    }
    Ok((flags, len))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shebangs_declare_flags_as_redis_reads_them() {
        assert_eq!(shebang(b"return 1"), Ok((ScriptFlags::default(), 0)));
        let (flags, len) = shebang(b"#!lua flags=no-writes,allow-oom\nreturn 1").unwrap();
        assert!(flags.shebang && flags.no_writes && flags.allow_oom && !flags.no_cluster);
        assert_eq!(len, 31);
        assert_eq!(
            shebang(b"#!luax\n"),
            Err("ERR Unexpected engine in script shebang: #!luax".into())
        );
        assert_eq!(
            shebang(b"#!lua name=x\n"),
            Err("ERR Unknown lua shebang option: name=x".into())
        );
        assert_eq!(
            shebang(b"#!lua flags=bogus\n"),
            Err("ERR Unexpected flag in script shebang: bogus".into())
        );
        assert_eq!(sha1_hex(b""), "da39a3ee5e6b4b0d3255bfef95601890afd80709");
        let digest = sha1_digest(b"");
        assert_eq!(
            digest_of_hex(b"DA39A3EE5E6B4B0D3255BFEF95601890AFD80709"),
            Some(digest)
        );
        assert_eq!(
            digest_of_hex(b"da39a3ee5e6b4b0d3255bfef95601890afd8070g"),
            None
        );
        assert_eq!(digest_of_hex(b"da39"), None);
    }
}
