//! [`Script`]: a Lua script run by its SHA1 (`EVALSHA`), sent whole (`EVAL`) only when the
//! node that serves its keys does not have it yet (`-NOSCRIPT`), as Redis clients do. Each
//! node keeps its own script cache, and the script goes where its first key lives.

use sha1::{Digest, Sha1};

use crate::{Client, Error, Value};

/// A script, with its SHA1.
#[derive(Debug, Clone)]
pub struct Script {
    body: String,
    sha: String,
}

impl Script {
    /// The script with this body.
    pub fn new(body: impl Into<String>) -> Script {
        let body = body.into();
        let sha = Sha1::digest(body.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        Script { body, sha }
    }

    /// Its SHA1, as `EVALSHA` and `SCRIPT EXISTS` take it.
    pub fn sha(&self) -> &str {
        &self.sha
    }

    /// Runs the script with `keys` (which route it: they must share a slot) and `args`:
    /// `EVALSHA`, then `EVAL` if that node answered `-NOSCRIPT`. The script's reply, error
    /// replies included, as [`Client::command`] returns them.
    pub async fn invoke<K: AsRef<[u8]>, A: AsRef<[u8]>>(
        &self,
        client: &Client,
        keys: &[K],
        args: &[A],
    ) -> Result<Value, Error> {
        let numkeys = keys.len().to_string();
        let line = |first: &[u8]| -> Vec<Vec<u8>> {
            let mut line = vec![first.to_vec(), numkeys.as_bytes().to_vec()];
            line.extend(keys.iter().map(|k| k.as_ref().to_vec()));
            line.extend(args.iter().map(|a| a.as_ref().to_vec()));
            line
        };
        let mut by_sha = line(self.sha.as_bytes());
        by_sha.insert(0, b"EVALSHA".to_vec());
        match client.command(&by_sha).await? {
            Value::Error(line) if line.starts_with(b"NOSCRIPT") => {
                let mut whole = line_with(&self.body, &by_sha);
                whole.insert(0, b"EVAL".to_vec());
                client.command(&whole).await
            }
            reply => Ok(reply),
        }
    }
}

/// `EVALSHA`'s arguments after its name with the SHA1 replaced by `body`.
fn line_with(body: &str, by_sha: &[Vec<u8>]) -> Vec<Vec<u8>> {
    let mut line = vec![body.as_bytes().to_vec()];
    line.extend(by_sha.iter().skip(2).cloned());
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_script_is_named_by_its_sha1() {
        assert_eq!(
            Script::new("return 1").sha(),
            "e0e1f9fabfc9d4800c877a703b823ac0578ff8db"
        );
        let by_sha = vec![
            b"EVALSHA".to_vec(),
            b"sha".to_vec(),
            b"1".to_vec(),
            b"k".to_vec(),
        ];
        assert_eq!(
            line_with("return 1", &by_sha),
            vec![b"return 1".to_vec(), b"1".to_vec(), b"k".to_vec()]
        );
    }
}
