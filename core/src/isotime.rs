//! Times as the Python decoder reads them: `datetime.fromisoformat` of
//! CPython 3.11+ (its C parser, byte for byte: any one character between
//! date and time, `,` or `.` before a fraction of any length, offsets with
//! seconds and fractions, ISO week dates), then the configured zone for a
//! time without an offset, resolved as `zoneinfo` resolves it (`fold=0`: a
//! repeated local time takes the earlier offset, a skipped one the offset in
//! force before the gap).

use chrono::{NaiveDate, NaiveDateTime, Offset, TimeZone};
use chrono_tz::Tz;

/// The fields of a parsed ISO-8601 text: local date and time, and the
/// offset in microseconds east of UTC when the text has one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IsoTime {
    pub year: i32,
    pub month: u32,
    pub day: u32,
    pub hour: u32,
    pub minute: u32,
    pub second: u32,
    pub micro: u32,
    pub offset_us: Option<i64>,
}

/// A byte of `s`, or 0 past its end: the C parser reads a NUL-terminated
/// buffer and relies on the terminator.
#[inline]
fn at(s: &[u8], i: usize) -> u8 {
    s.get(i).copied().unwrap_or(0)
}

fn digits(s: &[u8], p: &mut usize, n: usize) -> Option<i64> {
    let mut v: i64 = 0;
    for _ in 0..n {
        let d = at(s, *p).wrapping_sub(b'0');
        *p += 1;
        if d > 9 {
            return None;
        }
        v = v * 10 + d as i64;
    }
    Some(v)
}

fn separator(s: &[u8]) -> Option<usize> {
    let len = s.len();
    if len == 7 {
        return Some(7);
    }
    if at(s, 4) == b'-' {
        if at(s, 5) == b'W' {
            if len < 8 {
                return None;
            }
            if len > 8 && at(s, 8) == b'-' {
                if len == 9 {
                    return None;
                }
                if len > 10 && at(s, 10).is_ascii_digit() {
                    return Some(8);
                }
                return Some(10);
            }
            return Some(8);
        }
        return Some(10);
    }
    if at(s, 4) == b'W' {
        let mut idx = 7;
        while idx < len && at(s, idx).is_ascii_digit() {
            idx += 1;
        }
        if idx < 9 {
            return Some(idx);
        }
        return Some(if idx % 2 == 0 { 7 } else { 8 });
    }
    Some(8)
}

fn parse_date(s: &[u8], len: usize) -> Option<(i32, u32, u32)> {
    let mut p = 0;
    let year = digits(s, &mut p, 4)?;
    let sep = at(s, p) == b'-';
    if sep {
        p += 1;
    }
    if at(s, p) == b'W' {
        p += 1;
        let week = digits(s, &mut p, 2)?;
        let day = if p < len {
            if sep {
                let c = at(s, p);
                p += 1;
                if c != b'-' {
                    return None;
                }
            }
            digits(s, &mut p, 1)?
        } else {
            1
        };
        let weekday = match day {
            1 => chrono::Weekday::Mon,
            2 => chrono::Weekday::Tue,
            3 => chrono::Weekday::Wed,
            4 => chrono::Weekday::Thu,
            5 => chrono::Weekday::Fri,
            6 => chrono::Weekday::Sat,
            7 => chrono::Weekday::Sun,
            _ => return None,
        };
        let d = NaiveDate::from_isoywd_opt(year as i32, week as u32, weekday)?;
        use chrono::Datelike;
        return Some((d.year(), d.month(), d.day()));
    }
    let month = digits(s, &mut p, 2)?;
    if sep {
        let c = at(s, p);
        p += 1;
        if c != b'-' {
            return None;
        }
    }
    let day = digits(s, &mut p, 2)?;
    Some((year as i32, month as u32, day as u32))
}

/// `parse_hh_mm_ss_ff` of CPython: `Ok(true)` when text follows what was
/// parsed, `Ok(false)` at the end of the string.
fn hh_mm_ss_ff(s: &[u8], start: usize, end: usize) -> Option<([i64; 4], bool)> {
    let mut v = [0i64; 4];
    let mut p = start;
    let mut has_sep = true;
    for (i, slot) in v.iter_mut().take(3).enumerate() {
        *slot = digits(s, &mut p, 2)?;
        let c = at(s, p);
        p += 1;
        if i == 0 {
            has_sep = c == b':';
        }
        if p >= end {
            return Some((v, c != 0));
        } else if has_sep && c == b':' {
            continue;
        } else if c == b'.' || c == b',' {
            break;
        } else if !has_sep {
            p -= 1;
        } else {
            return None;
        }
    }
    let remains = end.saturating_sub(p);
    let n = remains.min(6);
    let mut us = digits(s, &mut p, n)?;
    const CORRECTION: [i64; 5] = [100000, 10000, 1000, 100, 10];
    if (1..6).contains(&n) {
        us *= CORRECTION[n - 1];
    }
    v[3] = us;
    while at(s, p).is_ascii_digit() {
        p += 1;
    }
    Some((v, at(s, p) != 0))
}

fn parse_time(s: &[u8], start: usize) -> Option<([i64; 4], Option<i64>)> {
    let end = s.len();
    let mut tz = start;
    loop {
        let c = at(s, tz);
        if c == b'Z' || c == b'+' || c == b'-' {
            break;
        }
        tz += 1;
        if tz >= end {
            break;
        }
    }
    let (t, more) = hh_mm_ss_ff(s, start, tz)?;
    if tz == end {
        return if more { None } else { Some((t, None)) };
    }
    if at(s, tz) == b'Z' {
        return if at(s, tz + 1) != 0 {
            None
        } else {
            Some((t, Some(0)))
        };
    }
    let sign = if at(s, tz) == b'-' { -1 } else { 1 };
    let (o, more) = hh_mm_ss_ff(s, tz + 1, end)?;
    if more {
        return None;
    }
    let offset = sign * ((o[0] * 3600 + o[1] * 60 + o[2]) * 1_000_000 + o[3]);
    // datetime.timezone: strictly between -24 h and 24 h.
    if offset.abs() >= 86_400_000_000 {
        return None;
    }
    Some((t, Some(offset)))
}

/// `datetime.fromisoformat(s)`, or `None` where it raises `ValueError`.
pub fn fromisoformat(text: &str) -> Option<IsoTime> {
    let s = text.as_bytes();
    if text.chars().count() < 7 {
        return None;
    }
    let sep = separator(s)?;
    let (year, month, day) = parse_date(s, sep)?;
    let mut time = [0i64; 4];
    let mut offset_us = None;
    if s.len() > sep {
        let lead = s[sep];
        let width = if lead & 0x80 == 0 {
            1
        } else {
            match lead & 0xf0 {
                0xe0 => 3,
                0xf0 => 4,
                _ => 2,
            }
        };
        let (t, o) = parse_time(s, sep + width)?;
        time = t;
        offset_us = o;
    }
    let [hour, minute, second, micro] = time;
    if !(1..=9999).contains(&year)
        || NaiveDate::from_ymd_opt(year, month, day).is_none()
        || !(0..24).contains(&hour)
        || !(0..60).contains(&minute)
        || !(0..60).contains(&second)
    {
        return None;
    }
    Some(IsoTime {
        year,
        month,
        day,
        hour: hour as u32,
        minute: minute as u32,
        second: second as u32,
        micro: micro as u32,
        offset_us,
    })
}

/// Epoch milliseconds (floor) of a parsed time; one without an offset is
/// read in `zone`.
pub fn epoch_ms(t: &IsoTime, zone: &Tz) -> i64 {
    let date = NaiveDate::from_ymd_opt(t.year, t.month, t.day).expect("checked by fromisoformat");
    let local: NaiveDateTime = date
        .and_hms_opt(t.hour, t.minute, t.second)
        .expect("checked");
    let offset_us = match t.offset_us {
        Some(o) => o,
        None => zone_offset_s(zone, &local) * 1_000_000,
    };
    let local_us = local.and_utc().timestamp() * 1_000_000 + t.micro as i64;
    (local_us - offset_us).div_euclid(1000)
}

/// The UTC offset, in seconds, that `zoneinfo` gives local time `local` in
/// `zone` with `fold=0`.
fn zone_offset_s(zone: &Tz, local: &NaiveDateTime) -> i64 {
    use chrono::LocalResult;
    match zone.offset_from_local_datetime(local) {
        LocalResult::Single(o) => o.fix().local_minus_utc() as i64,
        // The earlier instant: the offset before the clocks went back.
        LocalResult::Ambiguous(a, b) => {
            let (a, b) = (a.fix().local_minus_utc(), b.fix().local_minus_utc());
            a.max(b) as i64
        }
        // In a gap: the offset in force before it (a day earlier).
        LocalResult::None => {
            let before = *local - chrono::Duration::days(1);
            zone.offset_from_utc_datetime(&before)
                .fix()
                .local_minus_utc() as i64
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(s: &str, zone: &str) -> Option<i64> {
        let tz: Tz = zone.parse().unwrap();
        fromisoformat(s).map(|t| epoch_ms(&t, &tz))
    }

    #[test]
    fn shapes_python_reads() {
        let sh = "Asia/Shanghai";
        assert_eq!(ms("2026-03-01T10:00:07+08:00", sh), Some(1772330407000));
        assert_eq!(ms("2026-03-01T02:00:07Z", sh), Some(1772330407000));
        assert_eq!(ms("2026-03-01T10:00:07", sh), Some(1772330407000));
        assert_eq!(ms("2026-03-01 10:00", sh), Some(1772330400000));
        assert_eq!(ms("2026-03-01", sh), Some(1772294400000));
        assert_eq!(ms("20260301T100007", sh), Some(1772330407000));
        assert_eq!(ms("2026-03-01T10:00:00.2509", sh), Some(1772330400250));
        assert_eq!(ms("2026-03-01T10:00:00,5+08:00", sh), Some(1772330400500));
        assert_eq!(ms("2026-W09-7", sh), Some(1772294400000));
        assert_eq!(ms("1969-12-31T23:59:59.9995Z", sh), Some(-1));
    }

    #[test]
    fn shapes_python_refuses() {
        for s in [
            "2026-02-30T00:00:00",
            "2026-03-01T24:00:00",
            "2026-03-01T10:00:00+24:00",
            "2026-03-01T10:00:00Zx",
            "2026-03-01T10:00:00 ",
            "2026-03-01T1",
            "2026/03/01",
            "0000-01-01",
        ] {
            assert_eq!(fromisoformat(s), None, "{s}");
        }
    }

    #[test]
    fn zones_resolve_as_zoneinfo() {
        // New York, 2026-03-08 02:30 does not exist: the offset before (-5 h).
        assert_eq!(
            ms("2026-03-08T02:30:00", "America/New_York"),
            Some(1772955000000)
        );
        // 2026-11-01 01:30 happens twice: the first (-4 h).
        assert_eq!(
            ms("2026-11-01T01:30:00", "America/New_York"),
            Some(1793511000000)
        );
        assert_eq!(
            ms("2026-03-01T00:00:00", "Asia/Kathmandu"),
            Some(1772302500000)
        );
    }
}
