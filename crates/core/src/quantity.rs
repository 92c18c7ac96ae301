//! Resource quantities (`resource.Quantity`): parsing, the canonical form upstream's
//! apiserver writes back (`0.5` → `500m`, `1000m` → `1`, `2048Mi` → `2Gi`), and the integer
//! amounts the scheduler and the kubelet compute with ([`milli_value`], [`value`]).
//!
//! One parser serves all three, so what the apiserver accepts is what the scheduler and the
//! kubelet can read.

/// Why a quantity did not parse (upstream's `ErrFormatWrong` text).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$': {0:?}"
)]
pub struct QuantityError(pub String);

/// How a quantity was written, which decides how it is printed back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    /// `Ki`, `Mi`, … (powers of 1024).
    BinarySi,
    /// `m`, `k`, `M`, … or no suffix (powers of 1000).
    DecimalSi,
    /// `e3`, `E-2`.
    DecimalExponent,
}

/// A parsed quantity: `mantissa × 10^exp10`, `exp10 ≥ -9`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Parsed {
    mantissa: i128,
    exp10: i32,
    format: Format,
}

const BINARY: [(&str, u32); 6] = [
    ("Ki", 10),
    ("Mi", 20),
    ("Gi", 30),
    ("Ti", 40),
    ("Pi", 50),
    ("Ei", 60),
];
const DECIMAL: [(&str, i32); 9] = [
    ("n", -9),
    ("u", -6),
    ("m", -3),
    ("k", 3),
    ("M", 6),
    ("G", 9),
    ("T", 12),
    ("P", 15),
    ("E", 18),
];

fn parse(s: &str) -> Option<Parsed> {
    let (negative, rest) = match s.as_bytes().first()? {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    let num_end = rest
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(rest.len());
    let (number, suffix) = rest.split_at(num_end);
    let (int_part, frac_part) = number.split_once('.').unwrap_or((number, ""));
    if int_part.is_empty() && frac_part.is_empty() || frac_part.contains('.') {
        return None;
    }
    let (format, mut exp10, binary_exp) = if suffix.is_empty() {
        (Format::DecimalSi, 0, 0)
    } else if let Some((_, e)) = BINARY.iter().find(|(x, _)| *x == suffix) {
        (Format::BinarySi, 0, *e)
    } else if let Some((_, e)) = DECIMAL.iter().find(|(x, _)| *x == suffix) {
        (Format::DecimalSi, *e, 0)
    } else if let Some(e) = suffix.strip_prefix(['e', 'E']) {
        let e: i32 = e.parse().ok()?;
        if !(-100..=100).contains(&e) {
            return None;
        }
        (Format::DecimalExponent, e, 0)
    } else {
        return None;
    };
    let digits = format!("{int_part}{frac_part}");
    let digits = digits.trim_start_matches('0');
    let mut mantissa: i128 = if digits.is_empty() {
        0
    } else {
        if digits.len() > 36 {
            return None;
        }
        digits.parse().ok()?
    };
    exp10 -= frac_part.len() as i32;
    if binary_exp > 0 {
        mantissa = mantissa.checked_mul(1i128 << binary_exp)?;
    }
    // Round away from zero to nano precision, as upstream does.
    while exp10 < -9 {
        let rem = mantissa % 10;
        mantissa /= 10;
        if rem != 0 {
            mantissa += 1;
        }
        exp10 += 1;
    }
    let mut format = format;
    if format == Format::BinarySi && binary_exp > 0 && frac_part.chars().any(|c| c != '0') {
        // A fractional binary amount below one unit is printed in decimal.
        let value_lt_one = exp10 < 0 && mantissa < 10i128.checked_pow((-exp10) as u32)?;
        if value_lt_one {
            format = Format::DecimalSi;
        }
    }
    Some(Parsed {
        mantissa: if negative { -mantissa } else { mantissa },
        exp10,
        format,
    })
}

/// The canonical string upstream stores for quantity `s`, or `None` if `s` is not a
/// quantity.
pub fn canonical(s: &str) -> Option<String> {
    let p = parse(s)?;
    if p.mantissa == 0 {
        return Some("0".into());
    }
    let mut format = p.format;
    if format == Format::BinarySi {
        // |v| < 1024, or not a whole number: printed in decimal.
        let whole = if p.exp10 >= 0 {
            p.mantissa.checked_mul(10i128.checked_pow(p.exp10 as u32)?)
        } else {
            let d = 10i128.pow((-p.exp10) as u32);
            (p.mantissa % d == 0).then(|| p.mantissa / d)
        };
        match whole {
            Some(w) if w.abs() >= 1024 => {
                let (mut amount, mut exp) = (w, 0);
                while amount % 1024 == 0 && exp < 6 {
                    amount /= 1024;
                    exp += 1;
                }
                let suffix = if exp == 0 { "" } else { BINARY[exp - 1].0 };
                return Some(format!("{amount}{suffix}"));
            }
            _ => format = Format::DecimalSi,
        }
    }
    let (mut amount, mut exp) = (p.mantissa, p.exp10);
    while amount % 10 == 0 {
        amount /= 10;
        exp += 1;
    }
    match exp.rem_euclid(3) {
        1 => {
            amount *= 10;
            exp -= 1;
        }
        2 => {
            amount *= 100;
            exp -= 2;
        }
        _ => {}
    }
    let suffix = match format {
        Format::DecimalExponent if exp == 0 => String::new(),
        Format::DecimalExponent => format!("e{exp}"),
        _ if exp == 0 => String::new(),
        _ => match DECIMAL.iter().find(|(_, e)| *e == exp) {
            Some((x, _)) => x.to_string(),
            None => format!("e{exp}"),
        },
    };
    Some(format!("{amount}{suffix}"))
}

/// The quantity in thousandths of a unit, rounded up as upstream's `Quantity.MilliValue()`
/// (CPU: millicores): `"500m"` → 500, `"0.5"` → 500, `"1n"` → 1. Surrounding whitespace is
/// ignored; amounts beyond `i64` saturate.
pub fn milli_value(s: &str) -> Result<i64, QuantityError> {
    scaled_value(s, 3)
}

/// The quantity in whole units, rounded up as upstream's `Quantity.Value()` (memory: bytes):
/// `"128Mi"` → 134217728, `"100m"` → 1. Surrounding whitespace is ignored; amounts beyond
/// `i64` saturate.
pub fn value(s: &str) -> Result<i64, QuantityError> {
    scaled_value(s, 0)
}

/// `s × 10^scale`, its magnitude rounded up (away from zero, as upstream's `ScaledValue`),
/// saturating at `i64::MAX` / `i64::MIN`.
fn scaled_value(s: &str, scale: i32) -> Result<i64, QuantityError> {
    let p = parse(s.trim()).ok_or_else(|| QuantityError(s.to_string()))?;
    let negative = p.mantissa < 0;
    let saturated = if negative { i64::MIN } else { i64::MAX };
    let mut magnitude = p.mantissa.unsigned_abs();
    let exp = p.exp10 + scale;
    if exp >= 0 {
        for _ in 0..exp {
            magnitude = magnitude.saturating_mul(10);
            if magnitude > i64::MAX as u128 {
                return Ok(saturated);
            }
        }
    } else {
        // parse() keeps at most nano precision, so the divisor is at most 10^9.
        magnitude = magnitude.div_ceil(10u128.pow(exp.unsigned_abs()));
    }
    Ok(match i64::try_from(magnitude) {
        Ok(m) if negative => -m,
        Ok(m) => m,
        Err(_) => saturated,
    })
}

/// Rewrites every string value of a `ResourceList`-shaped map (`{"cpu": "0.5"}`) in
/// canonical form; values that are not quantities are left for validation to report.
pub fn canonicalize_list(list: &mut serde_json::Value) {
    if let Some(map) = list.as_object_mut() {
        for v in map.values_mut() {
            if let Some(c) = v.as_str().and_then(canonical) {
                *v = serde_json::Value::String(c);
            } else if v.is_number() {
                // A bare number in JSON is a quantity too (`cpu: 1`).
                if let Some(c) = canonical(&v.to_string()) {
                    *v = serde_json::Value::String(c);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_forms() {
        for (input, want) in [
            ("0.5", "500m"),
            ("1", "1"),
            ("1000m", "1"),
            ("1500m", "1500m"),
            ("1.5", "1500m"),
            ("100m", "100m"),
            ("64Mi", "64Mi"),
            ("128Mi", "128Mi"),
            ("2048Mi", "2Gi"),
            ("1024Ki", "1Mi"),
            ("1536Mi", "1536Mi"),
            ("0.5Ki", "512"),
            ("1.5Gi", "1536Mi"),
            ("1000", "1k"),
            ("1200", "1200"),
            ("1e3", "1e3"),
            ("12e2", "1200"),
            ("10Gi", "10Gi"),
            ("0", "0"),
            ("0Mi", "0"),
            ("0.1n", "1n"),
            ("-0.5", "-500m"),
            ("2048", "2048"),
            ("1M", "1M"),
            ("250m", "250m"),
        ] {
            assert_eq!(canonical(input).as_deref(), Some(want), "{input}");
        }
        for bad in ["", "abc", "1.2.3", "1Zi", "m", "1 Gi"] {
            assert_eq!(canonical(bad), None, "{bad}");
        }
    }

    fn check_milli(input: &str, expect: i64) {
        assert_eq!(milli_value(input), Ok(expect), "milli of {input:?}");
    }

    fn check_value(input: &str, expect: i64) {
        assert_eq!(value(input), Ok(expect), "value of {input:?}");
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
        check_milli("1Ki", 1_024_000);
        check_milli("128Mi", 134_217_728_000);
        check_milli("2G", 2_000_000_000_000);
        check_milli("0", 0);
        check_milli(" 250m ", 250);
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
        check_value("1.5", 2);
        check_value("1n", 1);
        check_value("110", 110);
        check_value("1Ki", 1024);
        check_value("0Mi", 0);
    }

    #[test]
    fn rounds_away_from_zero_and_saturates() {
        check_value("-100m", -1);
        check_milli("-1n", -1);
        check_value("8Ei", i64::MAX);
        check_value("-8Ei", i64::MIN);
        check_milli("10E", i64::MAX);
        check_value("1e100", i64::MAX);
        check_value(&i64::MAX.to_string(), i64::MAX);
        check_value(&i64::MIN.to_string(), i64::MIN);
    }

    #[test]
    fn rejects_garbage() {
        for bad in [
            "", "abc", "1.2.3", "1Zi", "1Qi", ".", "1e", "m", "x", "1 Gi",
        ] {
            assert_eq!(value(bad), Err(QuantityError(bad.to_string())), "{bad:?}");
            assert!(milli_value(bad).is_err(), "{bad:?} parsed");
        }
        assert!(
            value("abc")
                .unwrap_err()
                .to_string()
                .contains("quantities must match the regular expression")
        );
    }
}
