//! Glob patterns as Redis's `stringmatchlen` reads them (key and channel patterns of ACL
//! rules): `*` any run, `?` any byte, `[abc]` `[^abc]` `[a-z]` sets, `\` escapes the next byte.

/// Whether `string` matches the glob `pattern` (byte for byte, or ignoring ASCII case).
pub fn string_match(pattern: &[u8], string: &[u8], nocase: bool) -> bool {
    let (mut p, mut s) = (0, 0);
    // Where to resume after the last `*`: the pattern after it, and the string position it
    // has reached. A later `*` replaces an earlier one (backtracking to the last is enough).
    let mut star: Option<(usize, usize)> = None;
    loop {
        if p < pattern.len() {
            if pattern[p] == b'*' {
                while p < pattern.len() && pattern[p] == b'*' {
                    p += 1;
                }
                if p == pattern.len() {
                    return true;
                }
                star = Some((p, s));
                continue;
            }
            if s < string.len()
                && let Some(next) = match_one(pattern, p, string[s], nocase)
            {
                p = next;
                s += 1;
                continue;
            }
        } else if s == string.len() {
            return true;
        }
        match star {
            Some((after, from)) if from < string.len() => {
                star = Some((after, from + 1));
                p = after;
                s = from + 1;
            }
            _ => return false,
        }
    }
}

fn same(a: u8, b: u8, nocase: bool) -> bool {
    if nocase {
        a.eq_ignore_ascii_case(&b)
    } else {
        a == b
    }
}

/// Matches byte `c` against the pattern element at `p` (not `*`): the position after the
/// element if it matches.
fn match_one(pattern: &[u8], p: usize, c: u8, nocase: bool) -> Option<usize> {
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
                if i >= pattern.len() {
                    // An unterminated set ends with the pattern.
                    i = pattern.len() - 1;
                    break;
                }
                let here = pattern[i];
                if here == b'\\' && i + 1 < pattern.len() {
                    i += 1;
                    matched |= pattern[i] == c;
                } else if here == b']' {
                    break;
                } else if i + 2 < pattern.len() && pattern[i + 1] == b'-' {
                    let (mut start, mut end) = (pattern[i], pattern[i + 2]);
                    if start > end {
                        std::mem::swap(&mut start, &mut end);
                    }
                    let mut c = c;
                    if nocase {
                        start = start.to_ascii_lowercase();
                        end = end.to_ascii_lowercase();
                        c = c.to_ascii_lowercase();
                    }
                    matched |= (start..=end).contains(&c);
                    i += 2;
                } else {
                    matched |= same(here, c, nocase);
                }
                i += 1;
            }
            (matched != negate).then_some(i + 1)
        }
        b'\\' if p + 1 < pattern.len() => same(pattern[p + 1], c, nocase).then_some(p + 2),
        literal => same(literal, c, nocase).then_some(p + 1),
    }
}

#[cfg(test)]
mod tests {
    use super::string_match;

    fn m(p: &str, s: &str) -> bool {
        string_match(p.as_bytes(), s.as_bytes(), false)
    }

    #[test]
    fn globs_match_as_in_redis() {
        assert!(m("*", ""));
        assert!(m("*", "anything"));
        assert!(m("user:*", "user:1"));
        assert!(!m("user:*", "users:1"));
        assert!(m("h?llo", "hello"));
        assert!(!m("h?llo", "hllo"));
        assert!(m("h*llo", "hllo"));
        assert!(m("h*l*o", "heeeelllllo"));
        assert!(m("a*b*c", "aXbYbZc"));
        assert!(!m("a*b*c", "aXbYbZ"));
        assert!(m("h[ae]llo", "hallo"));
        assert!(!m("h[ae]llo", "hillo"));
        assert!(m("h[^e]llo", "hallo"));
        assert!(!m("h[^e]llo", "hello"));
        assert!(m("h[a-c]llo", "hbllo"));
        assert!(m("h[c-a]llo", "hbllo"), "a reversed range is swapped");
        assert!(!m("h[a-c]llo", "hdllo"));
        assert!(m("a\\*b", "a*b"));
        assert!(!m("a\\*b", "axb"));
        assert!(m("[\\]]", "]"));
        assert!(m("a[bc", "ab"), "an unterminated set ends with the pattern");
        assert!(m("a\\", "a\\"), "a trailing backslash is literal");
        assert!(!m("abc", "ABC"));
        assert!(string_match(b"abc", b"ABC", true));
        assert!(!m("", "x"));
        assert!(m("", ""));
    }
}
