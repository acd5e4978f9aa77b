//! Reading ACL rules as Redis 7.0 does: the errors of a bad rule (`ACLSetUserStringError`),
//! selectors spread over several arguments (`ACLMergeSelectorArguments`), and splitting a
//! selector's inside (`sdssplitargs`).

/// Why a rule was refused, with Redis's wording.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RuleError {
    /// `ENOENT`.
    #[error("Unknown command or category name in ACL")]
    Unknown,
    /// `EINVAL`.
    #[error("Syntax error")]
    Syntax,
    /// `EEXIST`.
    #[error(
        "Adding a pattern after the * pattern (or the 'allkeys' flag) is not valid and does not have any effect. Try 'resetkeys' to start with an empty list of patterns"
    )]
    KeyAfterAll,
    /// `EISDIR`.
    #[error(
        "Adding a pattern after the * pattern (or the 'allchannels' flag) is not valid and does not have any effect. Try 'resetchannels' to start with an empty list of channels"
    )]
    ChannelAfterAll,
    /// `ENODEV`.
    #[error("The password you are trying to remove from the user does not exist")]
    NoSuchPassword,
    /// `EBADMSG`.
    #[error(
        "The password hash must be exactly 64 characters and contain only lowercase hexadecimal characters"
    )]
    BadHash,
    /// `ECHILD`.
    #[error("Allowing first-arg of a subcommand is not supported")]
    FirstArgOfSubcommand,
}

/// Joins a selector spread over several arguments (`(~key* +get)` given as `(~key*` and
/// `+get)`) into one; `Err(i)` when the selector opened at argument `i` is not closed.
pub fn merge_selectors<A: AsRef<[u8]>>(args: &[A]) -> Result<Vec<Vec<u8>>, usize> {
    let mut merged = Vec::with_capacity(args.len());
    let mut open: Option<(usize, Vec<u8>)> = None;
    for (i, arg) in args.iter().enumerate() {
        let op = arg.as_ref();
        if let Some((_, selector)) = &mut open {
            selector.push(b' ');
            selector.extend_from_slice(op);
            if op.last() == Some(&b')') {
                merged.push(open.take().expect("open").1);
            }
            continue;
        }
        if op.first() == Some(&b'(') && op.last() != Some(&b')') {
            open = Some((i, op.to_vec()));
            continue;
        }
        merged.push(op.to_vec());
    }
    match open {
        Some((i, _)) => Err(i),
        None => Ok(merged),
    }
}

/// Splits a line into arguments as Redis's `sdssplitargs` does (spaces separate, `"..."` with
/// `\n \r \t \b \a \\ \xHH` escapes, `'...'` with `\'`); `None` for unbalanced quotes.
pub fn split_args(line: &[u8]) -> Option<Vec<Vec<u8>>> {
    let mut args = Vec::new();
    let mut i = 0;
    loop {
        while i < line.len() && line[i].is_ascii_whitespace() {
            i += 1;
        }
        if i >= line.len() {
            return Some(args);
        }
        let mut current = Vec::new();
        let (mut in_double, mut in_single) = (false, false);
        loop {
            let c = line.get(i).copied();
            if in_double {
                match c {
                    None => return None,
                    Some(b'\\')
                        if line.get(i + 1) == Some(&b'x')
                            && line.get(i + 2).is_some_and(u8::is_ascii_hexdigit)
                            && line.get(i + 3).is_some_and(u8::is_ascii_hexdigit) =>
                    {
                        let hex = std::str::from_utf8(&line[i + 2..i + 4]).expect("hex digits");
                        current.push(u8::from_str_radix(hex, 16).expect("hex digits"));
                        i += 3;
                    }
                    Some(b'\\') if i + 1 < line.len() => {
                        i += 1;
                        current.push(match line[i] {
                            b'n' => b'\n',
                            b'r' => b'\r',
                            b't' => b'\t',
                            b'b' => 8,
                            b'a' => 7,
                            other => other,
                        });
                    }
                    Some(b'"') => {
                        // A closing quote must be followed by a space or the end.
                        if line.get(i + 1).is_some_and(|c| !c.is_ascii_whitespace()) {
                            return None;
                        }
                        in_double = false;
                    }
                    Some(c) => current.push(c),
                }
            } else if in_single {
                match c {
                    None => return None,
                    Some(b'\\') if line.get(i + 1) == Some(&b'\'') => {
                        i += 1;
                        current.push(b'\'');
                    }
                    Some(b'\'') => {
                        if line.get(i + 1).is_some_and(|c| !c.is_ascii_whitespace()) {
                            return None;
                        }
                        in_single = false;
                    }
                    Some(c) => current.push(c),
                }
            } else {
                match c {
                    None => break,
                    Some(c) if c.is_ascii_whitespace() => break,
                    Some(b'"') => in_double = true,
                    Some(b'\'') => in_single = true,
                    Some(c) => current.push(c),
                }
            }
            i += 1;
        }
        args.push(current);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors_over_several_arguments_are_joined() {
        let merged = merge_selectors(&["on", "(~a*", "+get", "+set)", "(+ping)"]).unwrap();
        assert_eq!(merged, [&b"on"[..], b"(~a* +get +set)", b"(+ping)"]);
        assert_eq!(merge_selectors(&["on", "(~a*", "+get"]), Err(1));
    }

    #[test]
    fn arguments_split_as_sdssplitargs() {
        let args = split_args(b" ~a*  \"+g\\x65t\" 'x y' ").unwrap();
        assert_eq!(args, [&b"~a*"[..], b"+get", b"x y"]);
        assert_eq!(split_args(b"\"open"), None);
        assert_eq!(split_args(b"\"a\"b"), None);
        assert_eq!(split_args(b"   ").unwrap(), Vec::<Vec<u8>>::new());
    }
}
