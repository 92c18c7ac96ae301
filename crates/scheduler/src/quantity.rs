//! Kubernetes resource quantities (`500m`, `0.5`, `128Mi`, `1Gi`, `2`, `1e3`) as the integer
//! amounts the scheduler compares: milli-units for CPU, whole units (bytes, pods) otherwise.
//! Both round up, as upstream's `MilliValue()` and `Value()` do.

/// Why a quantity did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$': {0:?}"
)]
pub struct QuantityError(pub String);

/// Most fractional digits kept; finer digits round the result up.
const MAX_FRACTION_DIGITS: u32 = 9;

/// The quantity in thousandths of a unit, rounded up (CPU: millicores).
pub fn parse_milli(s: &str) -> Result<i64, QuantityError> {
    scaled(s, 3)
}

/// The quantity in whole units, rounded up (memory: bytes).
pub fn parse_value(s: &str) -> Result<i64, QuantityError> {
    scaled(s, 0)
}

/// `s × 10^extra_pow10`, rounded up, saturating at `i64::MAX`.
fn scaled(s: &str, extra_pow10: i32) -> Result<i64, QuantityError> {
    let err = || QuantityError(s.to_string());
    let t = s.trim();
    let (negative, body) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    let num_end = body
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(body.len());
    let (number, suffix) = body.split_at(num_end);
    if number.is_empty() || number == "." || number.matches('.').count() > 1 {
        return Err(err());
    }
    let (int_part, frac_part) = number.split_once('.').unwrap_or((number, ""));
    // mantissa × 10^-frac_digits; extra fraction digits only round up.
    let mut mantissa: i128 = 0;
    for c in int_part.bytes() {
        mantissa = mantissa
            .checked_mul(10)
            .and_then(|m| m.checked_add(i128::from(c - b'0')))
            .ok_or_else(err)?;
    }
    let mut frac_digits = 0u32;
    let mut dropped_nonzero = false;
    for c in frac_part.bytes() {
        if frac_digits < MAX_FRACTION_DIGITS {
            mantissa = mantissa * 10 + i128::from(c - b'0');
            frac_digits += 1;
        } else if c != b'0' {
            dropped_nonzero = true;
        }
    }
    if dropped_nonzero {
        mantissa += 1;
    }
    // Suffix: binary (Ki…Ei), decimal SI (n u m k M G T P E) or an exponent (e3, E-2).
    let (binary_shift, mut pow10): (u32, i32) = match suffix {
        "" => (0, 0),
        "Ki" => (10, 0),
        "Mi" => (20, 0),
        "Gi" => (30, 0),
        "Ti" => (40, 0),
        "Pi" => (50, 0),
        "Ei" => (60, 0),
        "n" => (0, -9),
        "u" => (0, -6),
        "m" => (0, -3),
        "k" => (0, 3),
        "M" => (0, 6),
        "G" => (0, 9),
        "T" => (0, 12),
        "P" => (0, 15),
        "E" => (0, 18),
        e if e.starts_with(['e', 'E']) => {
            let exp: i32 = e[1..].parse().map_err(|_| err())?;
            (0, exp)
        }
        _ => return Err(err()),
    };
    pow10 += extra_pow10 - frac_digits as i32;
    let mut v = mantissa.checked_shl(binary_shift).ok_or_else(err)?;
    if v >> binary_shift != mantissa {
        return Ok(saturate(negative));
    }
    if pow10 >= 0 {
        for _ in 0..pow10 {
            match v.checked_mul(10) {
                Some(n) if n <= i128::from(i64::MAX) => v = n,
                _ => return Ok(saturate(negative)),
            }
        }
    } else {
        let d = 10i128.checked_pow((-pow10) as u32).unwrap_or(i128::MAX);
        // Round away from zero, as upstream's ceiling on the magnitude does.
        v = (v + d - 1) / d;
    }
    let v = i64::try_from(v).unwrap_or(i64::MAX);
    Ok(if negative { -v } else { v })
}

fn saturate(negative: bool) -> i64 {
    if negative { i64::MIN } else { i64::MAX }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_milli(input: &str, expect: i64) {
        assert_eq!(parse_milli(input), Ok(expect), "milli of {input:?}");
    }

    fn check_value(input: &str, expect: i64) {
        assert_eq!(parse_value(input), Ok(expect), "value of {input:?}");
    }

    #[test]
    fn cpu_milli() {
        check_milli("500m", 500);
        check_milli("0.5", 500);
        check_milli("2", 2000);
        check_milli("1.5", 1500);
        check_milli("100", 100_000);
        check_milli("1e3", 1_000_000);
        check_milli("250000u", 250);
        check_milli("1n", 1); // rounds up
        check_milli("0.0001", 1);
        check_milli("+1", 1000);
        check_milli("-1", -1000);
    }

    #[test]
    fn memory_bytes() {
        check_value("128Mi", 134_217_728);
        check_value("1Gi", 1_073_741_824);
        check_value("64Mi", 67_108_864);
        check_value("1.5Gi", 1_610_612_736);
        check_value("1k", 1000);
        check_value("1M", 1_000_000);
        check_value("128974848", 128_974_848);
        check_value("129e6", 129_000_000);
        check_value("100m", 1); // rounds up
        check_value("110", 110);
        check_value("8Ei", i64::MAX); // saturates
    }

    #[test]
    fn rejects_garbage() {
        for bad in ["", "abc", "1.2.3", "1Zi", ".", "1e", "m"] {
            assert!(parse_value(bad).is_err(), "{bad:?} parsed");
        }
    }
}
