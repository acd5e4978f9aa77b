//! The longest common subsequence of two strings, by the textbook dynamic program, walked
//! back exactly as Redis 7.0 walks it (the LCS is not unique: the same walk gives the same
//! string and the same matched ranges).

/// The LCS lengths of every pair of prefixes of `a` and `b`.
pub(crate) struct Table<'s> {
    a: &'s [u8],
    b: &'s [u8],
    /// `(a.len() + 1) * (b.len() + 1)` cells, row by row: cell `(i, j)` is the LCS length of
    /// `a[..i]` and `b[..j]`.
    cells: Vec<u32>,
}

/// A run of consecutive matching bytes: its first and last positions in each string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Match {
    /// Positions in the first string.
    pub a: (u32, u32),
    /// Positions in the second string.
    pub b: (u32, u32),
}

impl Match {
    /// The run's length.
    pub(crate) fn len(&self) -> u32 {
        self.a.1 - self.a.0 + 1
    }
}

impl<'s> Table<'s> {
    /// The table's size in bytes for strings of these lengths (`None` past `u64`), as Redis
    /// checks it before allocating.
    pub(crate) fn bytes(a_len: usize, b_len: usize) -> Option<u64> {
        let cells = (a_len as u128 + 1).checked_mul(b_len as u128 + 1)?;
        u64::try_from(cells.checked_mul(4)?).ok()
    }

    /// Fills the table; `None` if its memory cannot be had.
    pub(crate) fn build(a: &'s [u8], b: &'s [u8]) -> Option<Table<'s>> {
        let width = b.len() + 1;
        let size = (a.len() + 1).checked_mul(width)?;
        let mut cells = Vec::new();
        cells.try_reserve_exact(size).ok()?;
        cells.resize(width, 0);
        for &x in a {
            let above = cells.len() - width;
            cells.push(0);
            for (j, &y) in b.iter().enumerate() {
                let cell = if x == y {
                    cells[above + j] + 1
                } else {
                    cells[above + j + 1].max(cells[cells.len() - 1])
                };
                cells.push(cell);
            }
        }
        Some(Table { a, b, cells })
    }

    fn at(&self, i: usize, j: usize) -> u32 {
        self.cells[i * (self.b.len() + 1) + j]
    }

    /// The LCS's length.
    pub(crate) fn len(&self) -> u32 {
        self.at(self.a.len(), self.b.len())
    }

    /// Walks back from the end of both strings: the LCS, and the runs of it that are at least
    /// `min_len` long (0: all), in the order found (from the end).
    pub(crate) fn walk(&self, min_len: u64) -> (Vec<u8>, Vec<Match>) {
        let mut lcs = vec![0u8; self.len() as usize];
        let mut next = lcs.len();
        let mut matches = Vec::new();
        // The run being followed (backwards): its start and end in each string.
        let mut run: Option<Match> = None;
        let (mut i, mut j) = (self.a.len(), self.b.len());
        while i > 0 && j > 0 {
            let mut ends = false;
            if self.a[i - 1] == self.b[j - 1] {
                next -= 1;
                lcs[next] = self.a[i - 1];
                let (ai, bj) = ((i - 1) as u32, (j - 1) as u32);
                match &mut run {
                    None => {
                        run = Some(Match {
                            a: (ai, ai),
                            b: (bj, bj),
                        })
                    }
                    Some(m) if m.a.0 == ai + 1 && m.b.0 == bj + 1 => {
                        m.a.0 = ai;
                        m.b.0 = bj;
                    }
                    Some(_) => ends = true,
                }
                ends |= run.is_some_and(|m| m.a.0 == 0 || m.b.0 == 0);
                i -= 1;
                j -= 1;
            } else {
                if self.at(i - 1, j) > self.at(i, j - 1) {
                    i -= 1;
                } else {
                    j -= 1;
                }
                ends = run.is_some();
            }
            // A run that ends is reset, and kept if long enough.
            if ends
                && let Some(m) = run.take()
                && (min_len == 0 || u64::from(m.len()) >= min_len)
            {
                matches.push(m);
            }
        }
        (lcs, matches)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn walk(a: &str, b: &str, min_len: u64) -> (String, Vec<Match>) {
        let table = Table::build(a.as_bytes(), b.as_bytes()).unwrap();
        let (lcs, matches) = table.walk(min_len);
        assert_eq!(lcs.len(), table.len() as usize);
        (String::from_utf8(lcs).unwrap(), matches)
    }

    fn m(a: (u32, u32), b: (u32, u32)) -> Match {
        Match { a, b }
    }

    #[test]
    fn redis_documentation_example() {
        let (lcs, matches) = walk("ohmytext", "mynewtext", 0);
        assert_eq!(lcs, "mytext");
        assert_eq!(matches, [m((4, 7), (5, 8)), m((2, 3), (0, 1))]);
        let (_, matches) = walk("ohmytext", "mynewtext", 4);
        assert_eq!(matches, [m((4, 7), (5, 8))]);
    }

    #[test]
    fn empty_and_disjoint_strings() {
        assert_eq!(walk("", "abc", 0), (String::new(), vec![]));
        assert_eq!(walk("abc", "", 0), (String::new(), vec![]));
        assert_eq!(walk("abc", "xyz", 0), (String::new(), vec![]));
        assert_eq!(walk("abc", "abc", 0).1, [m((0, 2), (0, 2))]);
    }

    #[test]
    fn ties_drop_a_byte_of_the_second_string() {
        // "a" and "b" are both an LCS of "ab" and "ba": Redis's walk gives these.
        assert_eq!(walk("ab", "ba", 0).0, "b");
        assert_eq!(walk("ba", "ab", 0).0, "a");
        assert_eq!(walk("abcbdab", "bdcaba", 0).0, "bdab");
    }

    #[test]
    fn table_sizes() {
        assert_eq!(Table::bytes(0, 0), Some(4));
        assert_eq!(Table::bytes(9, 9), Some(400));
        assert_eq!(Table::bytes(usize::MAX, usize::MAX), None);
    }
}
