//! `INCRBYFLOAT` arithmetic that answers as Redis does.
//!
//! Redis adds in C `long double` and prints `%.17Lf` with trailing zeros removed, so `0.1 + 0.2`
//! is `0.3` there, where `f64` would give `0.30000000000000004`. Decimal inputs are therefore
//! added exactly in decimal and rounded to 17 places; only values decimal arithmetic cannot hold
//! (huge exponents) fall back to `f64`.

use crate::error::CommandError;

/// A decimal number: `mantissa * 10^-scale`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Decimal {
    negative: bool,
    mantissa: u128,
    scale: u32,
}

const MAX_SCALE: u32 = 34;

/// Parses a float as Redis's `string2ld` accepts it: no leading space, the whole string must be
/// a number (`1`, `-2.5`, `.5`, `3e2`, `inf`), never NaN.
fn parse_f64(text: &[u8]) -> Option<f64> {
    if text.is_empty() || text[0].is_ascii_whitespace() {
        return None;
    }
    let s = std::str::from_utf8(text).ok()?;
    let value: f64 = s.parse().ok()?;
    (!value.is_nan()).then_some(value)
}

fn parse_decimal(text: &[u8]) -> Option<Decimal> {
    let (negative, rest) = match text.first()? {
        b'-' => (true, &text[1..]),
        b'+' => (false, &text[1..]),
        _ => (false, text),
    };
    let (number, exponent) = match rest.iter().position(|&c| c == b'e' || c == b'E') {
        Some(i) => (
            &rest[..i],
            std::str::from_utf8(&rest[i + 1..])
                .ok()?
                .parse::<i32>()
                .ok()?,
        ),
        None => (rest, 0),
    };
    let (int_part, frac_part) = match number.iter().position(|&c| c == b'.') {
        Some(i) => (&number[..i], &number[i + 1..]),
        None => (number, &number[..0]),
    };
    if int_part.is_empty() && frac_part.is_empty() {
        return None;
    }
    let mut mantissa: u128 = 0;
    for &d in int_part.iter().chain(frac_part) {
        if !d.is_ascii_digit() {
            return None;
        }
        mantissa = mantissa
            .checked_mul(10)?
            .checked_add(u128::from(d - b'0'))?;
    }
    let mut scale = frac_part.len() as i64 - i64::from(exponent);
    while scale < 0 {
        mantissa = mantissa.checked_mul(10)?;
        scale += 1;
    }
    if scale > i64::from(MAX_SCALE) {
        return None;
    }
    Some(Decimal {
        negative,
        mantissa,
        scale: scale as u32,
    })
}

fn pow10(n: u32) -> Option<u128> {
    10u128.checked_pow(n)
}

fn add(a: Decimal, b: Decimal) -> Option<Decimal> {
    let scale = a.scale.max(b.scale);
    let am = a.mantissa.checked_mul(pow10(scale - a.scale)?)?;
    let bm = b.mantissa.checked_mul(pow10(scale - b.scale)?)?;
    let (negative, mantissa) = match (a.negative, b.negative) {
        (x, y) if x == y => (x, am.checked_add(bm)?),
        (a_neg, _) if am >= bm => (a_neg, am - bm),
        (_, b_neg) => (b_neg, bm - am),
    };
    Some(Decimal {
        negative,
        mantissa,
        scale,
    })
}

/// Rounds to 17 decimal places (half away from zero) and prints without trailing zeros.
fn format_decimal(mut d: Decimal) -> String {
    if d.scale > 17 {
        let divisor = pow10(d.scale - 17).expect("scale is at most MAX_SCALE");
        let rounded = d.mantissa / divisor + u128::from(d.mantissa % divisor >= divisor / 2);
        d = Decimal {
            mantissa: rounded,
            scale: 17,
            ..d
        };
    }
    let unit = pow10(d.scale).expect("scale is small");
    let (int_part, frac_part) = (d.mantissa / unit, d.mantissa % unit);
    let mut text = String::new();
    if d.negative && d.mantissa != 0 {
        text.push('-');
    }
    text.push_str(&int_part.to_string());
    if d.scale > 0 && frac_part != 0 {
        let frac = format!("{:0width$}", frac_part, width = d.scale as usize);
        text.push('.');
        text.push_str(frac.trim_end_matches('0'));
    }
    text
}

fn format_f64(value: f64) -> String {
    let text = format!("{value:.17}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    if text == "-0" {
        "0".to_string()
    } else {
        text.to_string()
    }
}

/// `current + increment` as Redis's `INCRBYFLOAT` computes and prints it. A missing current
/// value counts as 0.
pub fn incr_by_float(current: Option<&[u8]>, increment: &[u8]) -> Result<String, CommandError> {
    let current = current.unwrap_or(b"0");
    let (Some(a), Some(b)) = (parse_f64(current), parse_f64(increment)) else {
        return Err(CommandError::NotFloat);
    };
    let sum = a + b;
    if !sum.is_finite() {
        return Err(CommandError::NanOrInfinity);
    }
    match (parse_decimal(current), parse_decimal(increment)) {
        (Some(x), Some(y)) => Ok(add(x, y).map_or_else(|| format_f64(sum), format_decimal)),
        _ => Ok(format_f64(sum)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(current: &str, increment: &str) -> Result<String, CommandError> {
        incr_by_float(Some(current.as_bytes()), increment.as_bytes())
    }

    #[test]
    fn results_match_redis() {
        assert_eq!(run("10.50", "0.1").unwrap(), "10.6");
        assert_eq!(run("0.1", "0.2").unwrap(), "0.3");
        assert_eq!(run("5.0e3", "2.0e2").unwrap(), "5200");
        assert_eq!(run("3", "-3").unwrap(), "0");
        assert_eq!(run("-1.5", "0.5").unwrap(), "-1");
        assert_eq!(run("1", "0.000000000000000001").unwrap(), "1");
        assert_eq!(run("0", "-0.1").unwrap(), "-0.1");
        assert_eq!(incr_by_float(None, b"2.5").unwrap(), "2.5");
        assert_eq!(run("1e300", "1e300").unwrap().len(), 301);
    }

    #[test]
    fn bad_input_gets_redis_errors() {
        assert_eq!(run("abc", "1"), Err(CommandError::NotFloat));
        assert_eq!(run("1", " 1"), Err(CommandError::NotFloat));
        assert_eq!(run("1", "nan"), Err(CommandError::NotFloat));
        assert_eq!(run("1", "inf"), Err(CommandError::NanOrInfinity));
        assert_eq!(run("1e308", "1e308"), Err(CommandError::NanOrInfinity));
    }
}
