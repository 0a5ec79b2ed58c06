//! Python's own text for values that dead letters quote: `repr()` of a
//! string and of a float, and `str()` of a `decimal.Decimal`. The Python
//! decoder puts these into `detail` and into records, so the port writes
//! them the same way.

/// `repr(s)` of a Python `str`: single quotes unless the text holds a single
/// quote and no double quote; backslash escapes for the quote, backslash,
/// tab, newline, carriage return and every character Python does not print.
///
/// Python decides "printable" from its Unicode database; the port carries
/// that database's answer as a table (`crate::unprintable`, Python 3.11's
/// Unicode 14.0.0).
pub fn str_repr(s: &str) -> String {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    let mut out = String::with_capacity(s.len() + 2);
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c if (c as u32) < 0x7f => out.push(c),
            c if printable(c as u32) => out.push(c),
            c => {
                let n = c as u32;
                if n <= 0xff {
                    out.push_str(&format!("\\x{n:02x}"));
                } else if n <= 0xffff {
                    out.push_str(&format!("\\u{n:04x}"));
                } else {
                    out.push_str(&format!("\\U{n:08x}"));
                }
            }
        }
    }
    out.push(quote);
    out
}

fn printable(n: u32) -> bool {
    crate::unprintable::printable(n)
}

/// `repr(x)` of a Python float: the shortest text that reads back as `x`,
/// in positional notation when the decimal exponent is in -4..16,
/// otherwise as `d.ddde+XX`.
pub fn float_repr(x: f64) -> String {
    if x.is_nan() {
        return "nan".into();
    }
    if x.is_infinite() {
        return if x > 0.0 { "inf".into() } else { "-inf".into() };
    }
    // Rust's `{:e}` is the shortest round-trip digits: "-1.2345e-7".
    let sci = format!("{x:e}");
    let (mantissa, exp) = sci.split_once('e').expect("`{:e}` always has an exponent");
    let exp: i32 = exp.parse().expect("`{:e}` exponent is an integer");
    let (sign, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => ("-", m),
        None => ("", mantissa),
    };
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    let decpt = exp + 1; // digits d1 d2 ... with the point after `decpt` of them
    let n = digits.len() as i32;
    let body = if (-4 < decpt) && decpt <= 16 {
        if decpt <= 0 {
            format!("0.{}{}", "0".repeat((-decpt) as usize), digits)
        } else if decpt >= n {
            format!("{}{}.0", digits, "0".repeat((decpt - n) as usize))
        } else {
            format!(
                "{}.{}",
                &digits[..decpt as usize],
                &digits[decpt as usize..]
            )
        }
    } else {
        let e = decpt - 1;
        let frac = if n > 1 {
            format!(".{}", &digits[1..])
        } else {
            String::new()
        };
        let esign = if e < 0 { '-' } else { '+' };
        format!("{}{}e{}{:02}", &digits[..1], frac, esign, e.abs())
    };
    format!("{sign}{body}")
}

/// `str(Decimal(text))` for a decimal numeral (`[-+]digits[.digits][e[-+]digits]`,
/// surrounding whitespace allowed, as `Decimal()` takes it). `None` if `text`
/// is not one.
pub fn decimal_str(text: &str) -> Option<String> {
    let t = text.trim_matches(|c: char| c.is_ascii_whitespace());
    let (neg, t) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    let (num, exp_part) = match t.find(['e', 'E']) {
        Some(i) => (&t[..i], Some(&t[i + 1..])),
        None => (t, None),
    };
    let (int_part, frac_part) = match num.find('.') {
        Some(i) => (&num[..i], &num[i + 1..]),
        None => (num, ""),
    };
    let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if (int_part.is_empty() && frac_part.is_empty())
        || !all_digits(int_part)
        || !all_digits(frac_part)
    {
        return None;
    }
    let mut exp: i64 = match exp_part {
        None => 0,
        Some(e) => {
            let digits = e.strip_prefix(['+', '-']).unwrap_or(e);
            if digits.is_empty() || !all_digits(digits) {
                return None;
            }
            e.parse().ok()?
        }
    };
    exp -= frac_part.len() as i64;
    let coefficient: String = format!("{int_part}{frac_part}");
    let trimmed = coefficient.trim_start_matches('0');
    let int = if trimmed.is_empty() { "0" } else { trimmed };
    let len = int.len() as i64;
    let leftdigits = exp + len;
    let dotplace = if exp <= 0 && leftdigits > -6 {
        leftdigits
    } else {
        1
    };
    let (intpart, fracpart) = if dotplace <= 0 {
        (
            "0".to_string(),
            format!(".{}{}", "0".repeat((-dotplace) as usize), int),
        )
    } else if dotplace >= len {
        (
            format!("{}{}", int, "0".repeat((dotplace - len) as usize)),
            String::new(),
        )
    } else {
        (
            int[..dotplace as usize].to_string(),
            format!(".{}", &int[dotplace as usize..]),
        )
    };
    let e = if leftdigits == dotplace {
        String::new()
    } else {
        format!("E{:+}", leftdigits - dotplace)
    };
    Some(format!(
        "{}{}{}{}",
        if neg { "-" } else { "" },
        intpart,
        fracpart,
        e
    ))
}

/// `bytes.decode("utf-8", "backslashreplace")`: every byte of an invalid
/// sequence as `\xNN`.
pub fn utf8_backslashreplace(raw: &[u8]) -> String {
    let mut out = String::with_capacity(raw.len());
    for chunk in raw.utf8_chunks() {
        out.push_str(chunk.valid());
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out
}

/// The message of the `UnicodeDecodeError` that `str(raw, "utf-8")` raises
/// for `raw`, or `None` when `raw` is UTF-8.
pub fn utf8_error(raw: &[u8]) -> Option<String> {
    let err = std::str::from_utf8(raw).err()?;
    let start = err.valid_up_to();
    let (end, why) = match err.error_len() {
        None => (raw.len(), "unexpected end of data"),
        Some(n) => {
            let lead = raw[start];
            // A byte that can begin a sequence, followed by one that cannot
            // continue it, is a bad continuation; anything else a bad start.
            if n == 1 && !(0xc2..=0xf4).contains(&lead) {
                (start + 1, "invalid start byte")
            } else {
                (start + n, "invalid continuation byte")
            }
        }
    };
    Some(if end - start == 1 {
        format!(
            "'utf-8' codec can't decode byte 0x{:02x} in position {}: {}",
            raw[start], start, why
        )
    } else {
        format!(
            "'utf-8' codec can't decode bytes in position {}-{}: {}",
            start,
            end - 1,
            why
        )
    })
}

/// The first `n` characters of `s` (Python's `s[:n]`).
pub fn head_chars(s: &str, n: usize) -> &str {
    match s.char_indices().nth(n) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reprs_of_strings() {
        assert_eq!(str_repr("abc"), "'abc'");
        assert_eq!(str_repr("it's"), "\"it's\"");
        assert_eq!(str_repr("a'b\"c"), "'a\\'b\"c'");
        assert_eq!(str_repr("t\u{0}\n\\"), "'t\\x00\\n\\\\'");
        assert_eq!(
            str_repr("盛泰\u{a0}\u{200b}\u{1f600}"),
            "'盛泰\\xa0\\u200b\u{1f600}'"
        );
    }

    #[test]
    fn reprs_of_floats() {
        for (x, s) in [
            (0.1, "0.1"),
            (12.5, "12.5"),
            (1e15, "1000000000000000.0"),
            (1e16, "1e+16"),
            (1.5e16, "1.5e+16"),
            (1e-5, "1e-05"),
            (0.0001, "0.0001"),
            (-0.0, "-0.0"),
            (100.0, "100.0"),
            (5e-324, "5e-324"),
        ] {
            assert_eq!(float_repr(x), s, "{x}");
        }
    }

    #[test]
    fn decimal_texts() {
        for (t, s) in [
            ("0.0825", "0.0825"),
            ("00.50", "0.50"),
            ("10", "10"),
            ("5e-05", "0.00005"),
            ("1e-07", "1E-7"),
            ("-0.0", "-0.0"),
            ("0.000", "0.000"),
            ("0.5\n", "0.5"),
            ("1e+16", "1E+16"),
        ] {
            assert_eq!(decimal_str(t).as_deref(), Some(s), "{t}");
        }
        assert_eq!(decimal_str("x"), None);
    }

    #[test]
    fn utf8_messages() {
        assert_eq!(
            utf8_error(b"ab\xff").unwrap(),
            "'utf-8' codec can't decode byte 0xff in position 2: invalid start byte"
        );
        assert_eq!(
            utf8_error(b"\xe4\xb8A").unwrap(),
            "'utf-8' codec can't decode bytes in position 0-1: invalid continuation byte"
        );
        assert_eq!(
            utf8_error(b"a\xe4\xb8").unwrap(),
            "'utf-8' codec can't decode bytes in position 1-2: unexpected end of data"
        );
        assert_eq!(utf8_backslashreplace(b"a\xe4\xb8"), "a\\xe4\\xb8");
        assert_eq!(head_chars("盛泰支付", 2), "盛泰");
    }
}
