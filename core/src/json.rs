//! A JSON reader that fails where msgspec's does, with msgspec's messages:
//! one pass over the bytes, values skipped or read as the schema asks
//! (`crate::wire`), errors naming the byte offset msgspec names.

use std::borrow::Cow;

/// Why a line could not be read as its wire shape.
#[derive(Debug, Clone, PartialEq)]
pub enum Fail {
    /// msgspec's `DecodeError`: the bytes are not JSON (`not_json`).
    Malformed(String),
    /// msgspec's `ValidationError`: JSON of the wrong shape, with its
    /// message (the path it names at the end: `` - at `$.related[0].share` ``).
    Invalid(String),
    /// Nested deeper than the reader follows (`too_large`).
    TooDeep,
}

/// How deep arrays and objects may nest. msgspec stops at Python's
/// recursion limit (1000 less the frames already on the stack), so the two
/// agree on every input but one nested within a few dozen levels of 1000.
pub const MAX_DEPTH: usize = 1000;

pub struct Reader<'a> {
    pub buf: &'a [u8],
    pub pos: usize,
    pub depth: usize,
}

pub fn truncated() -> Fail {
    Fail::Malformed("Input data was truncated".into())
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Reader {
            buf,
            pos: 0,
            depth: 0,
        }
    }

    pub fn err(&self, msg: &str) -> Fail {
        Fail::Malformed(format!("JSON is malformed: {} (byte {})", msg, self.pos))
    }

    /// The next byte that is not whitespace, not consumed.
    pub fn peek(&mut self) -> Result<u8, Fail> {
        while self.pos < self.buf.len() {
            let c = self.buf[self.pos];
            if c != b' ' && c != b'\n' && c != b'\r' && c != b'\t' {
                return Ok(c);
            }
            self.pos += 1;
        }
        Err(truncated())
    }

    pub fn enter(&mut self) -> Result<(), Fail> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(Fail::TooDeep);
        }
        Ok(())
    }

    pub fn leave(&mut self) {
        self.depth -= 1;
    }

    /// After the top-level value: anything but whitespace is an error.
    pub fn trailing(&mut self) -> Result<(), Fail> {
        while self.pos < self.buf.len() {
            let c = self.buf[self.pos];
            self.pos += 1;
            if !(c == b' ' || c == b'\n' || c == b'\t' || c == b'\r') {
                return Err(self.err("trailing characters"));
            }
        }
        Ok(())
    }

    /// `null`, `true` or `false`: the first byte already seen. A mismatch
    /// is reported after the word when the value is read, after its first
    /// byte when it is skipped (msgspec's two paths).
    pub fn ident(&mut self, rest: &[u8], skipping: bool) -> Result<(), Fail> {
        self.pos += 1;
        if self.buf.len() - self.pos < rest.len() {
            return Err(truncated());
        }
        let got = &self.buf[self.pos..self.pos + rest.len()];
        if !skipping {
            self.pos += rest.len();
        }
        if got != rest {
            return Err(self.err("invalid character"));
        }
        if skipping {
            self.pos += rest.len();
        }
        Ok(())
    }

    fn codepoint(&mut self) -> Result<u32, Fail> {
        if self.buf.len() - self.pos < 4 {
            return Err(truncated());
        }
        let mut cp = 0u32;
        for _ in 0..4 {
            let c = self.buf[self.pos];
            self.pos += 1;
            let d = match c {
                b'0'..=b'9' => c - b'0',
                b'a'..=b'f' => c - b'a' + 10,
                b'A'..=b'F' => c - b'A' + 10,
                _ => return Err(self.err("invalid character in unicode escape")),
            };
            cp = (cp << 4) | d as u32;
        }
        Ok(cp)
    }

    /// A `\u` escape after its `u`: the code point, a surrogate pair joined.
    /// `skip` picks the wording msgspec's skipping path uses.
    fn unicode_escape(&mut self, skip: bool) -> Result<u32, Fail> {
        let cp = self.codepoint()?;
        if (0xdc00..=0xdfff).contains(&cp) {
            return Err(self.err("invalid utf-16 surrogate pair"));
        }
        if (0xd800..=0xdbff).contains(&cp) {
            if self.buf.len() - self.pos < 6 {
                return Err(truncated());
            }
            if self.buf[self.pos] != b'\\' || self.buf[self.pos + 1] != b'u' {
                return Err(self.err(if skip {
                    "unexpected end of hex escape"
                } else {
                    "unexpected end of escaped utf-16 surrogate pair"
                }));
            }
            self.pos += 2;
            let cp2 = self.codepoint()?;
            if !(0xdc00..=0xdfff).contains(&cp2) {
                return Err(self.err("invalid utf-16 surrogate pair"));
            }
            return Ok(0x10000 + (((cp - 0xd800) << 10) | (cp2 - 0xdc00)));
        }
        Ok(cp)
    }

    /// A string, its opening quote already seen; the line is known UTF-8.
    /// Borrowed from the line unless it holds escapes.
    pub fn string(&mut self) -> Result<Cow<'a, str>, Fail> {
        self.pos += 1;
        let start = self.pos;
        let buf = self.buf;
        let mut end = start;
        while end < buf.len() && buf[end] != b'"' && buf[end] != b'\\' && buf[end] >= 0x20 {
            end += 1;
        }
        if end < buf.len() && buf[end] == b'"' {
            self.pos = end + 1;
            return std::str::from_utf8(&buf[start..end])
                .map(Cow::Borrowed)
                .map_err(|_| self.err("invalid character"));
        }
        self.string_escaped()
    }

    fn string_escaped(&mut self) -> Result<Cow<'a, str>, Fail> {
        let mut out: Vec<u8> = Vec::new();
        let mut start = self.pos;
        loop {
            let Some(&c) = self.buf.get(self.pos) else {
                return Err(truncated());
            };
            match c {
                b'"' => {
                    out.extend_from_slice(&self.buf[start..self.pos]);
                    self.pos += 1;
                    break;
                }
                b'\\' => {
                    out.extend_from_slice(&self.buf[start..self.pos]);
                    self.pos += 1;
                    let Some(&e) = self.buf.get(self.pos) else {
                        return Err(truncated());
                    };
                    self.pos += 1;
                    match e {
                        b'n' => out.push(b'\n'),
                        b'"' => out.push(b'"'),
                        b't' => out.push(b'\t'),
                        b'r' => out.push(b'\r'),
                        b'\\' => out.push(b'\\'),
                        b'/' => out.push(b'/'),
                        b'b' => out.push(0x08),
                        b'f' => out.push(0x0c),
                        b'u' => {
                            let cp = self.unicode_escape(false)?;
                            let ch = char::from_u32(cp).expect("surrogates refused above");
                            let mut tmp = [0u8; 4];
                            out.extend_from_slice(ch.encode_utf8(&mut tmp).as_bytes());
                        }
                        _ => return Err(self.err("invalid escape character in string")),
                    }
                    start = self.pos;
                }
                0..=0x1f => return Err(self.err("invalid character")),
                _ => self.pos += 1,
            }
        }
        // The line was checked as UTF-8 and escapes write whole characters.
        String::from_utf8(out)
            .map(Cow::Owned)
            .map_err(|_| self.err("invalid character"))
    }

    fn skip_string(&mut self) -> Result<(), Fail> {
        self.pos += 1;
        loop {
            let Some(&c) = self.buf.get(self.pos) else {
                return Err(truncated());
            };
            match c {
                b'"' => {
                    self.pos += 1;
                    return Ok(());
                }
                b'\\' => {
                    self.pos += 1;
                    let Some(&e) = self.buf.get(self.pos) else {
                        return Err(truncated());
                    };
                    match e {
                        b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => self.pos += 1,
                        b'u' => {
                            self.pos += 1;
                            self.unicode_escape(true)?;
                        }
                        _ => return Err(self.err("invalid escaped character")),
                    }
                }
                0..=0x1f => return Err(self.err("invalid character")),
                _ => self.pos += 1,
            }
        }
    }

    /// Skips one value of a field the record kind does not have.
    pub fn skip(&mut self) -> Result<(), Fail> {
        match self.peek()? {
            b'n' => self.ident(b"ull", true),
            b't' => self.ident(b"rue", true),
            b'f' => self.ident(b"alse", true),
            b'"' => self.skip_string(),
            b'[' => self.skip_array(),
            b'{' => self.skip_object(),
            _ => self.skip_number(),
        }
    }

    fn skip_array(&mut self) -> Result<(), Fail> {
        self.skip_items(b']', "array", Self::skip)
    }

    fn skip_object(&mut self) -> Result<(), Fail> {
        self.skip_items(b'}', "object", |p| {
            if p.peek()? != b'"' {
                return Err(p.err("expected '\"'"));
            }
            p.skip_string()?;
            if p.peek()? != b':' {
                return Err(p.err("expected ':'"));
            }
            p.pos += 1;
            p.skip()
        })
    }

    /// The items of an array or object up to `close`, each read past by
    /// `item` (at its first byte), with msgspec's messages for a missing
    /// or trailing comma.
    fn skip_items(
        &mut self,
        close: u8,
        what: &str,
        mut item: impl FnMut(&mut Self) -> Result<(), Fail>,
    ) -> Result<(), Fail> {
        self.pos += 1;
        self.enter()?;
        let mut first = true;
        loop {
            let mut c = self.peek()?;
            if c == close {
                self.pos += 1;
                break;
            } else if c == b',' && !first {
                self.pos += 1;
                c = self.peek()?;
            } else if first {
                first = false;
            } else {
                return Err(self.err(&format!("expected ',' or '{}'", close as char)));
            }
            if c == close {
                return Err(self.err(&format!("trailing comma in {what}")));
            }
            item(self)?;
        }
        self.leave();
        Ok(())
    }

    fn at(&self) -> u8 {
        self.buf.get(self.pos).copied().unwrap_or(0)
    }

    fn skip_number(&mut self) -> Result<(), Fail> {
        let mut c = self.at();
        if c == b'-' {
            self.pos += 1;
            c = self.at();
        }
        if c == b'0' {
            self.pos += 1;
            if self.at().is_ascii_digit() {
                return Err(self.err("invalid number"));
            }
        } else {
            let start = self.pos;
            while self.pos < self.buf.len() && self.buf[self.pos].is_ascii_digit() {
                self.pos += 1;
            }
            if start == self.pos {
                return Err(self.err("invalid character"));
            }
        }
        c = self.at();
        if c == b'.' {
            self.pos += 1;
            let start = self.pos;
            while self.pos < self.buf.len() && self.buf[self.pos].is_ascii_digit() {
                self.pos += 1;
            }
            if start == self.pos {
                return Err(self.err("invalid number"));
            }
            c = self.at();
        }
        if c == b'e' || c == b'E' {
            self.pos += 1;
            let s = self.at();
            if s == b'+' || s == b'-' {
                self.pos += 1;
            }
            let start = self.pos;
            while self.pos < self.buf.len() && self.buf[self.pos].is_ascii_digit() {
                self.pos += 1;
            }
            if start == self.pos {
                return Err(self.err("invalid number"));
            }
        }
        Ok(())
    }

    /// Reads a number the way msgspec's `parse_number_inline` does and says
    /// what it is; `Err` with msgspec's message for a malformed one.
    pub fn number(&mut self) -> Result<Number, Fail> {
        let buf = self.buf;
        let end = buf.len();
        let start = self.pos;
        let mut p = self.pos;
        let mut neg = false;
        if buf[p] == b'-' {
            p += 1;
            if p == end {
                self.pos = p;
                return Err(self.err("invalid number"));
            }
            neg = true;
        }
        let int_start = p;
        if buf[p] == b'0' {
            p += 1;
            if p != end && buf[p].is_ascii_digit() {
                self.pos = p;
                return Err(self.err("invalid number"));
            }
        } else {
            while p < end && buf[p].is_ascii_digit() {
                p += 1;
            }
            if p == int_start {
                self.pos = p;
                return Err(self.err("invalid character"));
            }
        }
        let int_end = p;
        let mut is_float = false;
        if p < end && buf[p] == b'.' {
            is_float = true;
            p += 1;
            let f = p;
            while p < end && buf[p].is_ascii_digit() {
                p += 1;
            }
            if f == p {
                self.pos = p;
                return Err(self.err("invalid number"));
            }
        }
        if p < end && (buf[p] == b'e' || buf[p] == b'E') {
            is_float = true;
            p += 1;
            if p == end {
                self.pos = p;
                return Err(self.err("invalid number"));
            }
            if buf[p] == b'+' || buf[p] == b'-' {
                p += 1;
            }
            let e = p;
            while p < end && buf[p].is_ascii_digit() {
                p += 1;
            }
            if e == p {
                self.pos = p;
                return Err(self.err("invalid number"));
            }
        }
        self.pos = p;
        let text = std::str::from_utf8(&buf[start..p]).expect("ASCII");
        if !is_float {
            let digits = &buf[int_start..int_end];
            if digits.len() <= 20 {
                let m: u128 = std::str::from_utf8(digits)
                    .expect("ASCII")
                    .parse()
                    .expect("digits");
                if !neg && m <= u64::MAX as u128 {
                    return Ok(Number::UInt(m as u64));
                }
                if neg && m <= 1u128 << 63 {
                    return Ok(Number::Int((-(m as i128)) as i64));
                }
            }
            return Ok(Number::Big {
                neg,
                digits: p - start,
                float: text.parse().expect("a numeral"),
            });
        }
        Ok(Number::Float(text.parse().expect("a numeral")))
    }
}

/// A JSON number as msgspec sorts it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Number {
    /// An integer that fits `u64`.
    UInt(u64),
    /// A negative integer that fits `i64`.
    Int(i64),
    /// An integer beyond 64 bits: its sign, its length in characters (msgspec
    /// refuses over 4300) and its value as a double (what a field with no
    /// integer type reads it as).
    Big {
        neg: bool,
        digits: usize,
        float: f64,
    },
    /// A number with a fraction or an exponent.
    Float(f64),
}
