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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors_over_several_arguments_are_joined() {
        let merged = merge_selectors(&["on", "(~a*", "+get", "+set)", "(+ping)"]).unwrap();
        assert_eq!(merged, [&b"on"[..], b"(~a* +get +set)", b"(+ping)"]);
        assert_eq!(merge_selectors(&["on", "(~a*", "+get"]), Err(1));
    }
}
