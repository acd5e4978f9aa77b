//! Sizes as the command line takes them (`100mb`, `1gb`, bytes), for `shoal server`, `shoal
//! proxy` and `shoal cluster up` alike.

use shoal_server::ByteSize;

/// Parses a size flag's value, with a message that says what a size looks like.
pub(crate) fn parse_size(s: &str) -> Result<ByteSize, String> {
    s.parse()
        .map_err(|_| format!("'{s}' is not a size (use e.g. 100mb, 1gb, or bytes)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_take_units_and_bad_ones_say_what_a_size_is() {
        assert_eq!(parse_size("1kb"), Ok(ByteSize(1024)));
        let error = parse_size("1.5g").expect_err("not a size");
        assert!(error.contains("'1.5g' is not a size"), "{error}");
    }
}
