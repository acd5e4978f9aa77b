//! Glob-style patterns as Redis matches them (`KEYS`, `SCAN MATCH`, `CONFIG GET`, ACL key and
//! channel patterns).
//!
//! `*` any run, `?` any byte, `[abc]`, `[^abc]`, `[a-z]` classes, `\x` escapes; a class left open
//! at the end of the pattern ends there, and a trailing `\` matches a backslash, as in Redis's
//! `stringmatchlen`. Matching backtracks only to the last `*`, so it takes at most
//! `O(pattern * string)` steps, however the pattern is built. Like Redis's matcher, an empty
//! string matches only an empty pattern (even `*` does not match it).

/// Whether `string` matches `pattern`; `nocase` folds ASCII case.
pub fn glob_match(pattern: &[u8], string: &[u8], nocase: bool) -> bool {
    if string.is_empty() {
        return pattern.is_empty();
    }
    let (mut p, mut s) = (0, 0);
    let mut backtrack: Option<(usize, usize)> = None;
    loop {
        if p < pattern.len() {
            if pattern[p] == b'*' {
                while p < pattern.len() && pattern[p] == b'*' {
                    p += 1;
                }
                if p == pattern.len() {
                    return true;
                }
                backtrack = Some((p, s));
                continue;
            }
            if s < string.len()
                && let Some(next) = match_token(pattern, p, string[s], nocase)
            {
                p = next;
                s += 1;
                continue;
            }
        } else if s == string.len() {
            return true;
        }
        match backtrack {
            Some((star_p, star_s)) if star_s < string.len() => {
                backtrack = Some((star_p, star_s + 1));
                p = star_p;
                s = star_s + 1;
            }
            _ => return false,
        }
    }
}

/// Matches the single-byte token at `pattern[p]` against `c`; returns where the next token starts.
fn match_token(pattern: &[u8], p: usize, c: u8, nocase: bool) -> Option<usize> {
    let eq = |a: u8, b: u8| {
        if nocase {
            a.eq_ignore_ascii_case(&b)
        } else {
            a == b
        }
    };
    match pattern[p] {
        b'?' => Some(p + 1),
        b'[' => {
            let mut i = p + 1;
            let negate = pattern.get(i) == Some(&b'^');
            if negate {
                i += 1;
            }
            let mut matched = false;
            loop {
                match pattern.get(i) {
                    None => break,
                    Some(b']') => {
                        i += 1;
                        break;
                    }
                    Some(b'\\') if i + 1 < pattern.len() => {
                        matched |= pattern[i + 1] == c;
                        i += 2;
                    }
                    Some(&start) if pattern.get(i + 1) == Some(&b'-') && i + 2 < pattern.len() => {
                        let end = pattern[i + 2];
                        let (lo, hi) = if start <= end {
                            (start, end)
                        } else {
                            (end, start)
                        };
                        let (lo, hi, ch) = if nocase {
                            (
                                lo.to_ascii_lowercase(),
                                hi.to_ascii_lowercase(),
                                c.to_ascii_lowercase(),
                            )
                        } else {
                            (lo, hi, c)
                        };
                        matched |= ch >= lo && ch <= hi;
                        i += 3;
                    }
                    Some(&literal) => {
                        matched |= eq(literal, c);
                        i += 1;
                    }
                }
            }
            (matched != negate).then_some(i)
        }
        b'\\' if p + 1 < pattern.len() => eq(pattern[p + 1], c).then_some(p + 2),
        literal => eq(literal, c).then_some(p + 1),
    }
}

#[cfg(test)]
mod tests {
    use super::glob_match;

    #[test]
    fn matches_like_redis() {
        let cases: &[(&str, &str, bool)] = &[
            ("*", "", false),
            ("", "", true),
            ("*", "anything", true),
            ("h?llo", "hello", true),
            ("h?llo", "hllo", false),
            ("h*llo", "heeeello", true),
            ("h[ae]llo", "hallo", true),
            ("h[ae]llo", "hillo", false),
            ("h[^e]llo", "hallo", true),
            ("h[^e]llo", "hello", false),
            ("h[a-b]llo", "hbllo", true),
            ("h[b-a]llo", "hallo", true),
            ("h\\*llo", "h*llo", true),
            ("h\\*llo", "hello", false),
            ("user:*:name", "user:42:name", true),
            ("user:*:name", "user:42:age", false),
            ("a*b*c", "aXbYc", true),
            ("a*b*c", "aXbY", false),
            ("[abc", "b", true),
            ("ab\\", "ab\\", true),
            ("*a", "bbbba", true),
        ];
        for &(pattern, string, expected) in cases {
            assert_eq!(
                glob_match(pattern.as_bytes(), string.as_bytes(), false),
                expected,
                "{pattern} vs {string}"
            );
        }
        assert!(glob_match(b"HELLO*", b"hello world", true));
        assert!(!glob_match(b"HELLO*", b"hello world", false));
    }

    #[test]
    fn pathological_patterns_finish_quickly() {
        let pattern = "a*".repeat(30) + "b";
        let string = "a".repeat(2000);
        assert!(!glob_match(pattern.as_bytes(), string.as_bytes(), false));
    }
}
