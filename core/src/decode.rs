//! Lines into records or dead letters: the JSON-lines half of
//! `schemas/decode.py`'s `RecordDecoder`, rule for rule (money to exact fen,
//! times to epoch ms in the configured zone, every refusal a dead letter
//! with the Python decoder's reason and detail).

use std::borrow::Cow;

use chrono_tz::Tz;

use crate::isotime;
use crate::json::{Fail, Reader};
use crate::pytext::{
    decimal_str, float_repr, head_chars, str_repr, utf8_backslashreplace, utf8_error,
};
use crate::wire::{self, Top, Val, KINDS};

/// The reasons of `schemas/decode.py`'s `REASONS`, in its order.
pub const REASONS: [&str; 11] = [
    "not_json",
    "not_object",
    "unknown_type",
    "missing_field",
    "bad_id",
    "bad_amount",
    "bad_time",
    "bad_enum",
    "bad_field",
    "too_large",
    "too_late",
];

/// The record kinds, in the order of `WIRE_TYPES`.
pub const KIND_NAMES: [&str; 8] = [
    "entity",
    "account",
    "product",
    "loan",
    "reserve_report",
    "balance",
    "custody_txn",
    "clearing_txn",
];

const MAX_MONEY_FEN: i128 = 100_000_000_000_000_000;
const MIN_MS: i64 = 0;
const MAX_MS: i64 = 4_102_444_800_000;

const MONEY_FIELDS: [&str; 5] = [
    "amount",
    "principal",
    "balance",
    "client_liabilities",
    "min_ticket",
];
const TIME_FIELDS: [&str; 4] = ["ts", "as_of", "issued_at", "opened_at"];

fn is_id_field(name: &str) -> bool {
    name.ends_with("_id") || name.ends_with("_account") || name.ends_with("_bank")
}

/// A field of a record, as `msgspec.to_builtins` gives it.
#[derive(Debug, Clone, PartialEq)]
pub enum Out<'a> {
    None,
    Bool(bool),
    Int(i64),
    Str(Cow<'a, str>),
    /// A `Decimal`, as its `str()`.
    Decimal(String),
    Strs(Vec<Cow<'a, str>>),
    /// `related`: entity id, relation, share.
    Related(Vec<(Cow<'a, str>, Cow<'a, str>, Option<String>)>),
}

/// A record: its kind (index into [`KIND_NAMES`]) and its fields in the
/// order of its class in `schemas/records.py`.
#[derive(Debug, Clone, PartialEq)]
pub struct Record<'a> {
    pub kind: usize,
    pub fields: Vec<(&'static str, Out<'a>)>,
}

/// A refused line: the reason (one of [`REASONS`]), the detail (at most 300
/// characters) and the line itself (at most 65,536 characters, invalid
/// UTF-8 as `\xNN`).
#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetter {
    pub reason: &'static str,
    pub detail: String,
    pub raw: String,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Decoded<'a> {
    Record(Record<'a>),
    Dead(DeadLetter),
}

/// The decoder of one configuration: the zone times without an offset are
/// read in, the line limit and, for a single-kind input, the kind.
pub struct Decoder {
    zone: Tz,
    max_line_bytes: usize,
    kind: Option<Result<usize, String>>,
}

struct Refused(&'static str, String);

/// `_classify` of `decode.py`: the reason of a msgspec validation message,
/// found by the same two regular expressions over the same text (a value
/// quoted in the message can hold what they look for, and then decides, as
/// it does in Python).
fn classify(message: &str) -> &'static str {
    let name_run = |s: &str| {
        s.bytes()
            .take_while(|b| b.is_ascii_alphabetic() || *b == b'_')
            .count()
    };
    // missing required field `([A-Za-z_]+)`
    const MISSING: &str = "missing required field `";
    for (i, _) in message.match_indices(MISSING) {
        let rest = &message[i + MISSING.len()..];
        let n = name_run(rest);
        if n > 0 && rest[n..].starts_with('`') {
            return if &rest[..n] == "type" {
                "unknown_type"
            } else {
                "missing_field"
            };
        }
    }
    // at `\$\.([A-Za-z_]+)[^`]*?([A-Za-z_]+)?`
    const AT: &str = "at `$.";
    let mut found: Option<(&str, &str)> = None;
    for (i, _) in message.match_indices(AT) {
        let rest = &message[i + AT.len()..];
        let n = name_run(rest);
        if n == 0 {
            continue;
        }
        let Some(close) = rest[n..].find('`').map(|c| c + n) else {
            continue;
        };
        let between = &rest[n..close];
        let tail = between
            .bytes()
            .rev()
            .take_while(|b| b.is_ascii_alphabetic() || *b == b'_')
            .count();
        let leaf = if tail > 0 {
            &between[between.len() - tail..]
        } else {
            &rest[..n]
        };
        found = Some((&rest[..n], leaf));
        break;
    }
    let Some((field, leaf)) = found else {
        return if message.starts_with("Expected `object`") {
            "not_object"
        } else {
            "bad_field"
        };
    };
    if field == "type" {
        "unknown_type"
    } else if MONEY_FIELDS.contains(&field) {
        "bad_amount"
    } else if TIME_FIELDS.contains(&field) {
        "bad_time"
    } else if message.starts_with("Invalid enum value") {
        "bad_enum"
    } else if is_id_field(leaf) {
        "bad_id"
    } else {
        "bad_field"
    }
}

fn dead(reason: &'static str, detail: &str, raw: &[u8]) -> DeadLetter {
    let raw = utf8_backslashreplace(raw);
    DeadLetter {
        reason,
        detail: head_chars(detail, 300).to_string(),
        raw: head_chars(&raw, 65536).to_string(),
    }
}

impl Decoder {
    /// `zone`: an IANA zone name; `kind`: the kind every line is (`type` may
    /// then be absent), or `None` when each line names its own.
    pub fn new(zone: &str, max_line_bytes: usize, kind: Option<&str>) -> Result<Self, String> {
        let zone: Tz = zone
            .parse()
            .map_err(|_| format!("No time zone found with key {zone}"))?;
        let kind = kind.map(|k| wire::kind_index(k).ok_or_else(|| k.to_string()));
        Ok(Decoder {
            zone,
            max_line_bytes,
            kind,
        })
    }

    /// One line (without its newline) into a record or a dead letter.
    pub fn decode<'a>(&self, raw: &'a [u8]) -> Decoded<'a> {
        match self.decode_inner(raw) {
            Ok(r) => Decoded::Record(r),
            Err(d) => Decoded::Dead(d),
        }
    }

    fn decode_inner<'a>(&self, raw: &'a [u8]) -> Result<Record<'a>, DeadLetter> {
        if raw.len() > self.max_line_bytes {
            let detail = format!("{} bytes, limit {}", raw.len(), self.max_line_bytes);
            return Err(dead("too_large", &detail, raw));
        }
        let top = match &self.kind {
            None => Top::Any,
            Some(Ok(k)) => Top::Kind(*k),
            Some(Err(k)) => {
                return Err(dead(
                    "unknown_type",
                    &format!("unknown record kind {}", str_repr(k)),
                    raw,
                ))
            }
        };
        let mut body = raw;
        if !raw.is_ascii() {
            if let Some(msg) = utf8_error(raw) {
                return Err(dead("not_json", &msg, raw));
            }
            body = raw.strip_prefix(b"\xef\xbb\xbf").unwrap_or(raw);
        }
        let mut reader = Reader::new(body);
        let (kind, vals) = match wire::read_top(&mut reader, &top) {
            Ok(x) => x,
            Err(Fail::Malformed(m)) => return Err(dead("not_json", &m, raw)),
            Err(Fail::Invalid(m)) => return Err(dead(classify(&m), &m, raw)),
            Err(Fail::TooDeep) => {
                return Err(dead("too_large", "JSON nested too deep to decode", raw))
            }
        };
        self.convert(kind, vals)
            .map_err(|Refused(reason, detail)| dead(reason, &detail, raw))
    }

    fn convert<'a>(&self, kind: usize, vals: Vec<Option<Val<'a>>>) -> Result<Record<'a>, Refused> {
        let shape = KINDS[kind];
        let get = |name: &str| -> &Val<'a> {
            let i = shape
                .fields
                .iter()
                .position(|f| f.name == name)
                .expect("a field of the kind");
            vals[i].as_ref().expect("every field filled")
        };
        let text = |name: &str| -> Out<'a> {
            match get(name) {
                Val::Str(s) => Out::Str(s.clone()),
                _ => Out::None,
            }
        };
        let fields: Vec<(&'static str, Out<'a>)> = match KIND_NAMES[kind] {
            "custody_txn" | "clearing_txn" => {
                let (a, b) = if kind == 6 {
                    ("debit_account", "credit_account")
                } else {
                    ("payer_account", "payee_account")
                };
                if get(a) == get(b) {
                    return Err(Refused("bad_field", format!("{a} equals {b}")));
                }
                let ts = self.to_ms(get("ts"), "ts")?;
                let amount = money_to_fen(get("amount"), "amount", true)?;
                shape
                    .fields
                    .iter()
                    .map(|f| {
                        let v = match f.name {
                            "ts" => Out::Int(ts),
                            "amount" => Out::Int(amount),
                            n => text(n),
                        };
                        (f.name, v)
                    })
                    .collect()
            }
            "entity" => {
                let licenses = match get("licenses") {
                    Val::List(items) => items
                        .iter()
                        .filter_map(|v| match v {
                            Val::Str(s) => Some(s.clone()),
                            _ => None,
                        })
                        .collect(),
                    _ => Vec::new(),
                };
                let related = match get("related") {
                    Val::List(items) => items
                        .iter()
                        .filter_map(|v| match v {
                            Val::Object(r) => {
                                let s = |i: usize| match r[i].as_ref() {
                                    Some(Val::Str(s)) => s.clone(),
                                    _ => Cow::Borrowed(""),
                                };
                                let share = match r[2].as_ref() {
                                    Some(Val::Float(x)) => decimal_str(&float_repr(*x)),
                                    _ => None,
                                };
                                Some((s(0), s(1), share))
                            }
                            _ => None,
                        })
                        .collect(),
                    _ => Vec::new(),
                };
                vec![
                    ("entity_id", text("entity_id")),
                    ("name", text("name")),
                    ("kind", text("kind")),
                    ("licenses", Out::Strs(licenses)),
                    ("related", Out::Related(related)),
                ]
            }
            "account" => {
                let opened = match get("opened_at") {
                    Val::Null => Out::None,
                    v => Out::Int(self.to_ms(v, "opened_at")?),
                };
                vec![
                    ("account_id", text("account_id")),
                    ("owner_id", text("owner_id")),
                    ("bank_id", text("bank_id")),
                    ("role", text("role")),
                    ("platform_id", text("platform_id")),
                    ("opened_at", opened),
                ]
            }
            "product" => {
                let rate = rate(get("annual_rate"), "annual_rate")?;
                let min_ticket = match get("min_ticket") {
                    Val::Null => Out::None,
                    v => Out::Int(money_to_fen(v, "min_ticket", false)?),
                };
                vec![
                    ("product_id", text("product_id")),
                    ("platform_id", text("platform_id")),
                    ("term_days", int_of(get("term_days"))),
                    ("annual_rate", Out::Decimal(rate)),
                    ("min_ticket", min_ticket),
                    (
                        "private",
                        Out::Bool(matches!(get("private"), Val::Bool(true))),
                    ),
                ]
            }
            "loan" => {
                let principal = money_to_fen(get("principal"), "principal", true)?;
                let rate = rate(get("annual_rate"), "annual_rate")?;
                let issued = self.to_ms(get("issued_at"), "issued_at")?;
                vec![
                    ("loan_id", text("loan_id")),
                    ("platform_id", text("platform_id")),
                    ("borrower_account", text("borrower_account")),
                    ("principal", Out::Int(principal)),
                    ("term_days", int_of(get("term_days"))),
                    ("annual_rate", Out::Decimal(rate)),
                    ("issued_at", Out::Int(issued)),
                    ("purpose", text("purpose")),
                ]
            }
            "reserve_report" => {
                let as_of = check_date(get("as_of"), "as_of")?;
                let liabilities =
                    money_to_fen(get("client_liabilities"), "client_liabilities", false)?;
                vec![
                    ("institution_id", text("institution_id")),
                    ("as_of", Out::Str(Cow::Owned(as_of))),
                    ("client_liabilities", Out::Int(liabilities)),
                ]
            }
            _ => {
                let as_of = self.to_ms(get("as_of"), "as_of")?;
                let balance = money_to_fen(get("balance"), "balance", false)?;
                vec![
                    ("account_id", text("account_id")),
                    ("as_of", Out::Int(as_of)),
                    ("balance", Out::Int(balance)),
                ]
            }
        };
        Ok(Record { kind, fields })
    }

    /// `TimeParser.to_ms`: an ISO-8601 text or epoch ms to epoch ms, in
    /// 1970-01-01T00:00Z..2100-01-01T00:00Z. The Python parser reads the
    /// common shapes a minute at a time (the text with its seconds set to
    /// `00`, then the seconds added); this does the same, so the text a
    /// refusal quotes and the range checked are the same.
    fn to_ms(&self, v: &Val, field: &str) -> Result<i64, Refused> {
        let outside = || {
            Refused(
                "bad_time",
                format!("{field}: outside 1970-01-01..2099-12-31"),
            )
        };
        let ms = match v {
            Val::Str(s) => {
                if let Some((minute, secs)) = minute_and_seconds(s) {
                    let base = self.parse(&minute, field)?;
                    if base < MIN_MS || base + 59_000 >= MAX_MS {
                        return Err(outside());
                    }
                    return Ok(base + secs);
                }
                self.parse(s, field)?
            }
            Val::Int(i) => {
                if *i < MIN_MS as i128 || *i >= MAX_MS as i128 {
                    return Err(outside());
                }
                *i as i64
            }
            _ => return Err(outside()),
        };
        if !(MIN_MS..MAX_MS).contains(&ms) {
            return Err(outside());
        }
        Ok(ms)
    }

    fn parse(&self, s: &str, field: &str) -> Result<i64, Refused> {
        match isotime::fromisoformat(s) {
            Some(t) => Ok(isotime::epoch_ms(&t, &self.zone)),
            None => Err(Refused(
                "bad_time",
                format!("{}: {} is not ISO-8601", field, str_repr(head_chars(s, 40))),
            )),
        }
    }
}

/// For a text of 19, 20 or 25 characters with `:` at [16] and seconds
/// `00`..`59` at [17..19]: the text with its seconds set to `00`, and the
/// seconds in ms (the shapes `TimeParser` reads a minute at a time).
fn minute_and_seconds(s: &str) -> Option<(String, i64)> {
    let secs = |a: char, b: char| -> Option<i64> {
        if a.is_ascii_digit() && b.is_ascii_digit() && a < '6' {
            Some(((a as i64 - '0' as i64) * 10 + (b as i64 - '0' as i64)) * 1000)
        } else {
            None
        }
    };
    if s.is_ascii() {
        let b = s.as_bytes();
        let n = b.len();
        if (n == 25 || n == 20 || n == 19) && b[16] == b':' {
            let ms = secs(b[17] as char, b[18] as char)?;
            return Some((format!("{}:00{}", &s[..16], &s[19..]), ms));
        }
        return None;
    }
    let chars: Vec<char> = s.chars().collect();
    let n = chars.len();
    if (n == 25 || n == 20 || n == 19) && chars[16] == ':' {
        let ms = secs(chars[17], chars[18])?;
        let mut minute: String = chars[..16].iter().collect();
        minute.push_str(":00");
        minute.extend(chars[19..].iter());
        return Some((minute, ms));
    }
    None
}

fn int_of<'a>(v: &Val) -> Out<'a> {
    match v {
        Val::Int(i) => Out::Int(*i as i64),
        _ => Out::None,
    }
}

/// `money_to_fen`: yuan (a string already matched against the money
/// pattern, an integer in 0..10^15, or a float in that range) to fen.
fn money_to_fen(v: &Val, field: &str, positive: bool) -> Result<i64, Refused> {
    let fen: i128 = match v {
        Val::Str(s) => return str_to_fen(s, field, positive),
        Val::Int(i) => i * 100,
        Val::Float(x) => {
            let text = float_repr(*x);
            if text.contains(['e', 'E', 'n']) {
                return Err(Refused(
                    "bad_amount",
                    format!("{field}: {text} is not a plain decimal"),
                ));
            }
            if let Some(i) = text.find('.') {
                if text.len() - i - 1 > 2 {
                    return Err(Refused(
                        "bad_amount",
                        format!("{field}: {text} has more than 2 decimals"),
                    ));
                }
            }
            return str_to_fen(&text, field, positive);
        }
        _ => {
            return Err(Refused(
                "bad_amount",
                format!("{field}: not a plain decimal"),
            ))
        }
    };
    bounded(fen, field, positive)
}

fn bounded(fen: i128, field: &str, positive: bool) -> Result<i64, Refused> {
    if fen > MAX_MONEY_FEN {
        return Err(Refused("bad_amount", format!("{field}: over 10^15 yuan")));
    }
    if positive && fen <= 0 {
        return Err(Refused(
            "bad_amount",
            format!("{field}: must be greater than 0"),
        ));
    }
    Ok(fen as i64)
}

/// The string branch of `money_to_fen`, on what the money pattern lets
/// through (and a float's shortest text, which may carry a sign).
fn str_to_fen(s: &str, field: &str, positive: bool) -> Result<i64, Refused> {
    if s.ends_with('\n') {
        return Err(Refused(
            "bad_amount",
            format!("{field}: {} is not a plain decimal", str_repr(s)),
        ));
    }
    let int = |t: &str| -> i128 { t.parse::<i128>().unwrap_or(0) };
    let fen = match s.find('.') {
        None => int(s) * 100,
        Some(i) if s.len() - i == 3 => {
            let whole = int(&s[..i]);
            let frac = int(&s[i + 1..]);
            // int("-0") * 100 + 5 is 5: Python adds the fraction unsigned.
            whole * 100 + frac
        }
        Some(i) => int(&s[..i]) * 100 + int(&s[i + 1..]) * 10,
    };
    bounded(fen, field, positive)
}

/// `_rate`: the text of `Decimal(value)`, in 0..10.
fn rate(v: &Val, field: &str) -> Result<String, Refused> {
    let text = match v {
        Val::Str(s) => s.to_string(),
        Val::Int(i) => i.to_string(),
        Val::Float(x) => float_repr(*x),
        _ => String::new(),
    };
    let Some(d) = decimal_str(&text) else {
        return Err(Refused("bad_field", format!("{field}: not a decimal")));
    };
    // The pattern bounds a string to 2 integer digits; above 10 is refused.
    let over = {
        let t = d.trim_start_matches('-');
        let int_part: &str = t.split(['.', 'E']).next().unwrap_or("");
        let frac_nonzero = t
            .split_once('.')
            .is_some_and(|(_, f)| f.bytes().any(|b| b != b'0'));
        let i: i64 = int_part.parse().unwrap_or(0);
        !d.contains('E') && (i > 10 || (i == 10 && frac_nonzero))
    };
    if over {
        return Err(Refused(
            "bad_field",
            format!("{field}: must be a decimal in 0..10"),
        ));
    }
    Ok(d)
}

/// `_check_date`: a real calendar date, year 1970..2099.
fn check_date(v: &Val, field: &str) -> Result<String, Refused> {
    let Val::Str(s) = v else {
        return Err(Refused("bad_time", format!("{field}: not a date")));
    };
    let b = s.as_bytes();
    let real = b.len() == 10 && {
        let num = |r: std::ops::Range<usize>| s[r].parse::<u32>().ok();
        match (num(0..4), num(5..7), num(8..10)) {
            (Some(y), Some(m), Some(d)) => {
                y >= 1 && chrono::NaiveDate::from_ymd_opt(y as i32, m, d).is_some()
            }
            _ => false,
        }
    };
    if !real {
        return Err(Refused(
            "bad_time",
            format!("{field}: {} is not a date", str_repr(s)),
        ));
    }
    if !("1970"..="2099").contains(&&s[..4]) {
        return Err(Refused("bad_time", format!("{field}: outside 1970..2099")));
    }
    Ok(s.to_string())
}

/// The lines of a chunk as a JSON-lines reader sees them: split at `\n`,
/// blank lines (nothing but ASCII whitespace) left out.
pub fn lines(chunk: &[u8]) -> impl Iterator<Item = &[u8]> {
    chunk.split(|&b| b == b'\n').filter(|ln| !is_blank(ln))
}

/// A line of nothing but ASCII whitespace (as Python's `bytes.strip()`
/// sees it): not a record.
pub fn is_blank(line: &[u8]) -> bool {
    line.iter()
        .all(|b| matches!(b, b' ' | b'\t' | b'\r' | b'\x0b' | b'\x0c'))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TXN: &[u8] = br#"{"type":"custody_txn","txn_id":"T1","ts":"2026-03-01T10:00:00+08:00","bank_id":"B","platform_id":"P","debit_account":"A","credit_account":"C","amount":"10.00","purpose":"invest"}"#;

    fn dec() -> Decoder {
        Decoder::new("Asia/Shanghai", 1 << 20, None).unwrap()
    }

    fn dead(line: &[u8]) -> (&'static str, String) {
        match dec().decode(line) {
            Decoded::Dead(d) => (d.reason, d.detail),
            Decoded::Record(r) => panic!("decoded: {r:?}"),
        }
    }

    fn with(field: &str, value: &str) -> Vec<u8> {
        let text = std::str::from_utf8(TXN).unwrap();
        let key = format!("\"{field}\":");
        let start = text.find(&key).unwrap() + key.len();
        let end = start + text[start..].find([',', '}']).unwrap();
        format!("{}{}{}", &text[..start], value, &text[end..]).into_bytes()
    }

    #[test]
    fn a_transaction_becomes_fen_and_epoch_ms() {
        let Decoded::Record(r) = dec().decode(TXN) else {
            panic!()
        };
        assert_eq!(KIND_NAMES[r.kind], "custody_txn");
        let get = |n: &str| r.fields.iter().find(|(k, _)| *k == n).unwrap().1.clone();
        assert_eq!(get("amount"), Out::Int(1000));
        assert_eq!(get("ts"), Out::Int(1772330400000));
        assert_eq!(get("currency"), Out::Str(Cow::Borrowed("CNY")));
        assert_eq!(get("loan_id"), Out::None);
    }

    #[test]
    fn refusals_carry_the_python_reason_and_detail() {
        let money = r"'^([0-9]{1,15}(\\.[0-9]{1,2})?|1000000000000000(\\.0{1,2})?)$'";
        let cases: Vec<(Vec<u8>, &str, String)> = vec![
            (
                with("amount", "\"12.345\""),
                "bad_amount",
                format!("Expected `str` matching regex {money} - at `$.amount`"),
            ),
            (
                with("amount", "0"),
                "bad_amount",
                "amount: must be greater than 0".into(),
            ),
            (
                with("amount", "1e-5"),
                "bad_amount",
                "amount: 1e-05 is not a plain decimal".into(),
            ),
            (
                with("amount", "10.001"),
                "bad_amount",
                "amount: 10.001 has more than 2 decimals".into(),
            ),
            (
                with("amount", "1e400"),
                "bad_amount",
                "Number out of range - at `$.amount`".into(),
            ),
            (
                with("ts", "-1"),
                "bad_time",
                "ts: outside 1970-01-01..2099-12-31".into(),
            ),
            (
                with("ts", "1.5"),
                "bad_time",
                "Expected `int | str`, got `float` - at `$.ts`".into(),
            ),
            (
                with("ts", "\"2026-02-30T00:00:00\""),
                "bad_time",
                "ts: '2026-02-30T00:00:00' is not ISO-8601".into(),
            ),
            (
                with("txn_id", "\"\""),
                "bad_id",
                "Expected `str` of length >= 1 - at `$.txn_id`".into(),
            ),
            (
                with("purpose", "\"steal\""),
                "bad_enum",
                "Invalid enum value 'steal' - at `$.purpose`".into(),
            ),
            (
                with("credit_account", "\"A\""),
                "bad_field",
                "debit_account equals credit_account".into(),
            ),
            (
                with("type", "\"steal\""),
                "unknown_type",
                "Invalid value 'steal' - at `$.type`".into(),
            ),
            (
                br#"{"type":"balance"}"#.to_vec(),
                "missing_field",
                "Object missing required field `account_id`".into(),
            ),
            (
                br#"{"a":1}"#.to_vec(),
                "unknown_type",
                "Object missing required field `type`".into(),
            ),
            (
                b"[1]".to_vec(),
                "not_object",
                "Expected `object`, got `array`".into(),
            ),
            (
                TXN[..TXN.len() - 1].to_vec(),
                "not_json",
                "Input data was truncated".into(),
            ),
            (
                [TXN, b"x"].concat(),
                "not_json",
                format!(
                    "JSON is malformed: trailing characters (byte {})",
                    TXN.len() + 1
                ),
            ),
            (
                b"\xff".to_vec(),
                "not_json",
                "'utf-8' codec can't decode byte 0xff in position 0: invalid start byte".into(),
            ),
        ];
        for (line, reason, detail) in cases {
            assert_eq!(
                dead(&line),
                (reason, detail),
                "{}",
                String::from_utf8_lossy(&line)
            );
        }
    }

    #[test]
    fn a_message_quoting_input_is_classified_as_python_reads_it() {
        // The regular expressions of _classify find the path inside the quoted value.
        let line = with("type", "\"x - at `$.amount`\"");
        assert_eq!(dead(&line).0, "bad_amount");
    }

    #[test]
    fn nesting_past_the_limit_is_too_large() {
        let nested = |n: usize| {
            let mut v = TXN[..TXN.len() - 1].to_vec();
            v.extend_from_slice(b",\"x\":");
            v.extend(std::iter::repeat_n(b'[', n));
            v.extend(std::iter::repeat_n(b']', n));
            v.push(b'}');
            v
        };
        assert!(matches!(
            dec().decode(&nested(MAX_DEPTH_ARRAYS)),
            Decoded::Record(_)
        ));
        assert_eq!(
            dead(&nested(MAX_DEPTH_ARRAYS + 1)),
            ("too_large", "JSON nested too deep to decode".into())
        );
        assert_eq!(dead(&nested(200_000)).0, "too_large");
    }
    const MAX_DEPTH_ARRAYS: usize = crate::json::MAX_DEPTH - 1;

    #[test]
    fn a_line_over_the_limit_is_too_large() {
        let d = Decoder::new("UTC", 10, None).unwrap();
        let Decoded::Dead(dl) = d.decode(TXN) else {
            panic!()
        };
        assert_eq!(
            (dl.reason, dl.detail.as_str()),
            (
                "too_large",
                format!("{} bytes, limit 10", TXN.len()).as_str()
            )
        );
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        // A fixed linear congruential sequence: mutations of a good line and
        // plain noise, every one a record or a dead letter.
        let mut x: u64 = 0x2026_1207;
        let mut next = || {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (x >> 33) as usize
        };
        let alphabet = b"{}[]\":,.-+eE0123456789 \\u\x00\x7f\xc3\xa9\xffnultrZT";
        let d = dec();
        for _ in 0..20_000 {
            let mut line = TXN.to_vec();
            for _ in 0..(1 + next() % 4) {
                let i = next() % (line.len() + 1);
                let b = alphabet[next() % alphabet.len()];
                match next() % 3 {
                    0 if i < line.len() => {
                        line.remove(i);
                    }
                    1 => line.insert(i, b),
                    _ if i < line.len() => line[i] = b,
                    _ => {}
                }
            }
            let _ = d.decode(&line);
            let noise: Vec<u8> = (0..next() % 64)
                .map(|_| alphabet[next() % alphabet.len()])
                .collect();
            let _ = d.decode(&noise);
        }
    }

    #[test]
    fn blank_lines_are_not_lines() {
        let chunk = b"a\n\n \r\n\tb\r\n";
        assert_eq!(
            lines(chunk).collect::<Vec<_>>(),
            vec![&b"a"[..], &b"\tb\r"[..]]
        );
    }
}
