//! The ACL file: `ACL LOAD` (all or nothing, with Redis 7.0's error lines) and `ACL SAVE`
//! (written to a temporary file, then renamed over the old one).

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::Path;
use std::sync::Arc;

use super::rules::merge_selectors;
use super::{Acl, User, UserSlot, has_spaces};

/// `ACL SAVE`'s error.
pub const SAVE_FAILED: &str = "ERR There was an error trying to save the ACLs. Please check the server logs for more information";

/// `ACL LOAD` / `ACL SAVE` without an ACL file.
pub const NO_FILE: &str = "ERR This Redis instance is not configured to use an ACL file. You may want to specify users via the ACL SETUSER command and then issue a CONFIG REWRITE (assuming you have a Redis configuration file set) in order to store users in the Redis configuration.";

/// The C library's text for an I/O error, as Redis prints it (`strerror`).
fn strerror(error: &std::io::Error) -> String {
    match error.raw_os_error() {
        Some(code) => {
            // SAFETY: strerror returns a pointer to a NUL-terminated static string.
            let text = unsafe { std::ffi::CStr::from_ptr(libc::strerror(code)) };
            text.to_string_lossy().into_owned()
        }
        None => error.to_string(),
    }
}

/// Reads the users of an ACL file's text; the error is Redis's one-line description of
/// every problem found (`ACLLoadFromFile`), naming the file as `shown`.
fn parse(text: &[u8], shown: &str) -> Result<BTreeMap<Box<[u8]>, User>, String> {
    let mut users: BTreeMap<Box<[u8]>, User> = BTreeMap::new();
    let mut errors = String::new();
    for (i, line) in text.split(|&b| b == b'\n').enumerate() {
        let line_number = i + 1;
        let line = line.trim_ascii_start();
        let line = trim_end(line, b" \t\r\n");
        if line.is_empty() {
            continue;
        }
        let argv: Vec<&[u8]> = line.split(|&b| b == b' ').collect();
        if argv[0] != b"user" || argv.len() < 2 {
            errors.push_str(&format!(
                "{shown}:{line_number} should start with user keyword followed by the username. "
            ));
            continue;
        }
        let name = argv[1];
        if has_spaces(name) {
            errors.push_str(&format!(
                "'{shown}:{line_number}: username '{}' contains invalid characters. ",
                String::from_utf8_lossy(name)
            ));
            continue;
        }
        if users.contains_key(name) {
            errors.push_str(&format!(
                "WARNING: Duplicate user '{}' found on line {line_number}. ",
                String::from_utf8_lossy(name)
            ));
            continue;
        }
        let mut user = User::new(name);
        match merge_selectors(&argv[2..]) {
            Ok(rules) => {
                for rule in rules {
                    if let Err(error) = user.apply(trim_end(trim_start(&rule), b"\t\r\n")) {
                        errors.push_str(&format!("{shown}:{line_number}: {error}. "));
                    }
                }
            }
            Err(_) => errors.push_str(&format!(
                "{shown}:{line_number}: Unmatched parenthesis in selector definition."
            )),
        }
        users.insert(name.into(), user);
    }
    if errors.is_empty() {
        Ok(users)
    } else {
        errors.push_str(
            "WARNING: ACL errors detected, no change to the previously active ACL rules was performed",
        );
        Err(errors)
    }
}

fn trim_start(s: &[u8]) -> &[u8] {
    let start = s
        .iter()
        .position(|c| !b"\t\r\n".contains(c))
        .unwrap_or(s.len());
    &s[start..]
}

fn trim_end<'a>(s: &'a [u8], chars: &[u8]) -> &'a [u8] {
    let end = s
        .iter()
        .rposition(|c| !chars.contains(c))
        .map_or(0, |i| i + 1);
    &s[..end]
}

impl Acl {
    /// `ACL LOAD`: replaces every user with the ACL file's, or changes nothing and returns
    /// Redis's error line. The `default` user keeps its connections (it becomes Redis's
    /// initial `default` user if the file has none); the connections of every other user
    /// must be closed, as Redis closes them: they are returned.
    pub fn load_file(&self) -> Result<Vec<Arc<UserSlot>>, String> {
        let Some(path) = self.file() else {
            return Err(super::file::NO_FILE.to_string());
        };
        let shown = path.display().to_string();
        let text = std::fs::read(&path).map_err(|e| {
            format!(
                "ERR Error loading ACLs, opening file '{shown}': {}",
                strerror(&e)
            )
        })?;
        let mut loaded = parse(&text, &shown).map_err(|e| format!("ERR {e}"))?;
        let default = loaded
            .remove(&b"default"[..])
            .unwrap_or_else(User::default_user);
        let mut users = self.users.write();
        let old = std::mem::take(&mut *users);
        self.default.replace(default);
        users.insert(self.default.name.clone(), self.default.clone());
        for (name, user) in loaded {
            users.insert(name, UserSlot::new(user));
        }
        drop(users);
        self.default_changed();
        let removed: Vec<Arc<UserSlot>> = old
            .into_values()
            .filter(|slot| !Arc::ptr_eq(slot, &self.default))
            .collect();
        for slot in &removed {
            slot.retire();
        }
        Ok(removed)
    }

    /// `ACL SAVE`: writes every user to the ACL file.
    pub fn save_file(&self) -> Result<(), &'static str> {
        let Some(path) = self.file() else {
            return Err(NO_FILE);
        };
        let mut text = String::new();
        for line in self.list() {
            text.push_str(&line);
            text.push('\n');
        }
        write_atomically(&path, text.as_bytes()).map_err(|e| {
            tracing::warn!(path = %path.display(), "ACL SAVE failed: {e}");
            SAVE_FAILED
        })
    }
}

fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(
        ".tmp-{}-{}",
        std::process::id(),
        super::log::now_ms()
    ));
    let tmp = std::path::PathBuf::from(tmp);
    let result = (|| {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_are_read_line_by_line_with_redis_errors() {
        let users = parse(b"user alice on >p ~k* +get\n\n  user bob off\r\n", "f.acl").unwrap();
        assert_eq!(users.len(), 2);
        assert!(users[&b"alice"[..]].accepts(b"p"));
        let error = parse(b"user a +nosuch\nbogus\nuser a\nuser b (~x\n", "f.acl").unwrap_err();
        assert_eq!(
            error,
            "f.acl:1: Unknown command or category name in ACL. \
             f.acl:2 should start with user keyword followed by the username. \
             WARNING: Duplicate user 'a' found on line 3. \
             f.acl:4: Unmatched parenthesis in selector definition.\
             WARNING: ACL errors detected, no change to the previously active ACL rules was performed"
        );
    }

    #[test]
    fn saved_users_load_back_the_same() {
        let dir = std::env::temp_dir().join(format!("shoal-acl-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("users.acl");
        let acl = Acl::default();
        acl.set_file(Some(path.clone()));
        acl.set_user(
            b"alice",
            &["on", ">p1", "~k*", "%R~r*", "&ch", "+@read", "(+set ~w*)"],
        )
        .unwrap();
        acl.set_default_password(Some("s3cret"));
        acl.save_file().unwrap();
        let before = acl.list();
        acl.set_user(b"carol", &["on"]).unwrap();
        let removed = acl.load_file().unwrap();
        assert_eq!(removed.len(), 2, "alice and carol are replaced");
        assert_eq!(acl.list(), before);
        assert!(acl.auth_required());
        assert!(acl.authenticate(b"alice", b"p1").is_some());
        std::fs::write(&path, "user default on nopass +@all ~*\nuser x +nosuch\n").unwrap();
        assert!(acl.load_file().is_err());
        assert_eq!(acl.list(), before, "nothing changes on an error");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
