//! The wire shapes of `schemas/wire.py`, as tables: every record kind's
//! fields in declaration order with the type msgspec checks, and the decode
//! of a JSON object into them with msgspec's checks, order and messages.

use std::borrow::Cow;

use crate::json::{Fail, Number, Reader};

pub const BOOL: u16 = 1;
pub const INT: u16 = 2;
pub const FLOAT: u16 = 4;
pub const STR: u16 = 8;
pub const ENUM: u16 = 16;
pub const OBJECT: u16 = 32;
pub const ARRAY: u16 = 64;
pub const NULL: u16 = 128;

/// A regular expression of `wire.py`, checked as Python's `re.search`
/// checks it (`$` also matches before a final newline).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Pattern {
    Money,
    Date,
    Rate,
}

impl Pattern {
    fn repr(self) -> &'static str {
        match self {
            Pattern::Money => r"'^([0-9]{1,15}(\\.[0-9]{1,2})?|1000000000000000(\\.0{1,2})?)$'",
            Pattern::Date => r"'^[0-9]{4}-[0-9]{2}-[0-9]{2}$'",
            Pattern::Rate => r"'^[0-9]{1,2}(\\.[0-9]{1,12})?$'",
        }
    }

    pub fn matches(self, s: &str) -> bool {
        let t = s.strip_suffix('\n').unwrap_or(s).as_bytes();
        let digits = |b: &[u8]| b.iter().all(u8::is_ascii_digit);
        fn split(b: &[u8]) -> (&[u8], Option<&[u8]>) {
            match b.iter().position(|&c| c == b'.') {
                Some(i) => (&b[..i], Some(&b[i + 1..])),
                None => (b, None),
            }
        }
        match self {
            Pattern::Money => {
                let (i, f) = split(t);
                let plain = (1..=15).contains(&i.len())
                    && digits(i)
                    && f.is_none_or(|f| (1..=2).contains(&f.len()) && digits(f));
                let max = i == b"1000000000000000"
                    && f.is_none_or(|f| (1..=2).contains(&f.len()) && f.iter().all(|&c| c == b'0'));
                plain || max
            }
            Pattern::Date => {
                t.len() == 10
                    && digits(&t[..4])
                    && t[4] == b'-'
                    && digits(&t[5..7])
                    && t[7] == b'-'
                    && digits(&t[8..])
            }
            Pattern::Rate => {
                let (i, f) = split(t);
                (1..=2).contains(&i.len())
                    && digits(i)
                    && f.is_none_or(|f| (1..=12).contains(&f.len()) && digits(f))
            }
        }
    }
}

/// One field's type as msgspec sees it: the JSON kinds it takes and their
/// constraints.
pub struct Ty {
    pub mask: u16,
    pub int_min: Option<i64>,
    pub int_max: Option<i64>,
    pub float_ge: Option<f64>,
    pub float_le: Option<f64>,
    pub str_min: Option<usize>,
    pub str_max: Option<usize>,
    pub pattern: Option<Pattern>,
    pub values: &'static [&'static str],
    pub items: Option<&'static Ty>,
    pub object: Option<&'static Shape>,
}

const fn ty(mask: u16) -> Ty {
    Ty {
        mask,
        int_min: None,
        int_max: None,
        float_ge: None,
        float_le: None,
        str_min: None,
        str_max: None,
        pattern: None,
        values: &[],
        items: None,
        object: None,
    }
}

const fn id(mask: u16) -> Ty {
    Ty {
        str_min: Some(1),
        str_max: Some(64),
        ..ty(mask)
    }
}

const fn money(mask: u16) -> Ty {
    Ty {
        int_min: Some(0),
        int_max: Some(1_000_000_000_000_000),
        float_ge: Some(0.0),
        float_le: Some(1e15),
        pattern: Some(Pattern::Money),
        ..ty(mask)
    }
}

const fn time(mask: u16) -> Ty {
    Ty {
        str_min: Some(10),
        str_max: Some(40),
        ..ty(mask)
    }
}

const fn one_of(values: &'static [&'static str]) -> Ty {
    Ty { values, ..ty(ENUM) }
}

static ID: Ty = id(STR);
static OPT_ID: Ty = id(STR | NULL);
static MONEY: Ty = money(INT | FLOAT | STR);
static OPT_MONEY: Ty = money(INT | FLOAT | STR | NULL);
static TIME: Ty = time(INT | STR);
static OPT_TIME: Ty = time(INT | STR | NULL);
static DATE: Ty = Ty {
    pattern: Some(Pattern::Date),
    ..ty(STR)
};
static RATE: Ty = Ty {
    int_min: Some(0),
    int_max: Some(10),
    float_ge: Some(0.0),
    float_le: Some(10.0),
    pattern: Some(Pattern::Rate),
    ..ty(INT | FLOAT | STR)
};
static TERM_DAYS: Ty = Ty {
    int_min: Some(1),
    int_max: Some(36500),
    ..ty(INT)
};
static CURRENCY: Ty = Ty {
    str_min: Some(1),
    str_max: Some(8),
    ..ty(STR)
};
static NAME: Ty = Ty {
    str_min: Some(1),
    str_max: Some(256),
    ..ty(STR)
};
static LICENSE: Ty = Ty {
    str_min: Some(1),
    str_max: Some(64),
    ..ty(STR)
};
static LICENSES: Ty = Ty {
    items: Some(&LICENSE),
    ..ty(ARRAY)
};
static PURPOSE_TEXT: Ty = Ty {
    str_max: Some(64),
    ..ty(STR | NULL)
};
static BOOLEAN: Ty = ty(BOOL);
static SHARE: Ty = Ty {
    float_ge: Some(0.0),
    float_le: Some(1.0),
    ..ty(FLOAT | NULL)
};
static RELATED_ITEM: Ty = Ty {
    object: Some(&RELATED),
    ..ty(OBJECT)
};
static RELATED_LIST: Ty = Ty {
    items: Some(&RELATED_ITEM),
    ..ty(ARRAY)
};

static ENTITY_KIND: Ty = one_of(&[
    "p2p_platform",
    "crowdfunding_platform",
    "payment_institution",
    "asset_manager",
    "bank",
    "custody_bank",
    "company",
    "person",
    "real_estate",
]);
static RELATION: Ty = one_of(&[
    "shareholder",
    "controller",
    "executive",
    "affiliate",
    "subsidiary",
]);
static ROLE: Ty = one_of(&[
    "lender_sub",
    "borrower_sub",
    "platform_custody",
    "platform_own",
    "risk_reserve",
    "client_reserve",
    "settlement",
    "operating",
    "personal",
    "corporate",
]);
static CUSTODY_PURPOSE: Ty = one_of(&[
    "recharge", "invest", "disburse", "repay", "payout", "withdraw", "fee", "interest", "subsidy",
    "transfer",
]);
static SYSTEM: Ty = one_of(&["CNAPS", "NUCC", "CUP", "direct", "internal"]);

/// What an absent field becomes.
#[derive(Clone, Copy)]
pub enum Default {
    Required,
    Null,
    Str(&'static str),
    False,
    EmptyList,
}

pub struct Field {
    pub name: &'static str,
    pub ty: &'static Ty,
    pub default: Default,
}

const fn req(name: &'static str, ty: &'static Ty) -> Field {
    Field {
        name,
        ty,
        default: Default::Required,
    }
}

const fn opt(name: &'static str, ty: &'static Ty) -> Field {
    Field {
        name,
        ty,
        default: Default::Null,
    }
}

/// A wire struct: its tag (`None` for a relation entry) and fields.
pub struct Shape {
    pub tag: Option<&'static str>,
    pub fields: &'static [Field],
}

pub static RELATED: Shape = Shape {
    tag: None,
    fields: &[
        req("entity_id", &ID),
        req("relation", &RELATION),
        opt("share", &SHARE),
    ],
};

pub static ENTITY: Shape = Shape {
    tag: Some("entity"),
    fields: &[
        req("entity_id", &ID),
        req("name", &NAME),
        req("kind", &ENTITY_KIND),
        Field {
            name: "licenses",
            ty: &LICENSES,
            default: Default::EmptyList,
        },
        Field {
            name: "related",
            ty: &RELATED_LIST,
            default: Default::EmptyList,
        },
    ],
};

pub static ACCOUNT: Shape = Shape {
    tag: Some("account"),
    fields: &[
        req("account_id", &ID),
        req("owner_id", &ID),
        req("bank_id", &ID),
        req("role", &ROLE),
        opt("platform_id", &OPT_ID),
        opt("opened_at", &OPT_TIME),
    ],
};

pub static PRODUCT: Shape = Shape {
    tag: Some("product"),
    fields: &[
        req("product_id", &ID),
        req("platform_id", &ID),
        req("term_days", &TERM_DAYS),
        req("annual_rate", &RATE),
        opt("min_ticket", &OPT_MONEY),
        Field {
            name: "private",
            ty: &BOOLEAN,
            default: Default::False,
        },
    ],
};

pub static LOAN: Shape = Shape {
    tag: Some("loan"),
    fields: &[
        req("loan_id", &ID),
        req("platform_id", &ID),
        req("borrower_account", &ID),
        req("principal", &MONEY),
        req("term_days", &TERM_DAYS),
        req("annual_rate", &RATE),
        req("issued_at", &TIME),
        opt("purpose", &PURPOSE_TEXT),
    ],
};

pub static RESERVE_REPORT: Shape = Shape {
    tag: Some("reserve_report"),
    fields: &[
        req("institution_id", &ID),
        req("as_of", &DATE),
        req("client_liabilities", &MONEY),
    ],
};

pub static BALANCE: Shape = Shape {
    tag: Some("balance"),
    fields: &[
        req("account_id", &ID),
        req("as_of", &TIME),
        req("balance", &MONEY),
    ],
};

pub static CUSTODY_TXN: Shape = Shape {
    tag: Some("custody_txn"),
    fields: &[
        req("txn_id", &ID),
        req("ts", &TIME),
        req("bank_id", &ID),
        req("platform_id", &ID),
        req("debit_account", &ID),
        req("credit_account", &ID),
        req("amount", &MONEY),
        req("purpose", &CUSTODY_PURPOSE),
        Field {
            name: "currency",
            ty: &CURRENCY,
            default: Default::Str("CNY"),
        },
        opt("product_id", &OPT_ID),
        opt("loan_id", &OPT_ID),
    ],
};

pub static CLEARING_TXN: Shape = Shape {
    tag: Some("clearing_txn"),
    fields: &[
        req("txn_id", &ID),
        req("ts", &TIME),
        req("system", &SYSTEM),
        req("initiator_id", &ID),
        req("payer_bank", &ID),
        req("payer_account", &ID),
        req("payee_bank", &ID),
        req("payee_account", &ID),
        req("amount", &MONEY),
        Field {
            name: "currency",
            ty: &CURRENCY,
            default: Default::Str("CNY"),
        },
        opt("purpose", &PURPOSE_TEXT),
    ],
};

/// The record kinds, in the order of `WIRE_TYPES`.
pub static KINDS: [&Shape; 8] = [
    &ENTITY,
    &ACCOUNT,
    &PRODUCT,
    &LOAN,
    &RESERVE_REPORT,
    &BALANCE,
    &CUSTODY_TXN,
    &CLEARING_TXN,
];

pub fn kind_index(name: &str) -> Option<usize> {
    KINDS.iter().position(|s| s.tag == Some(name))
}

/// A decoded field value, before conversion into a record; strings are
/// borrowed from the line where they hold no escape.
#[derive(Debug, Clone, PartialEq)]
pub enum Val<'a> {
    Null,
    Bool(bool),
    /// An integer: those over 64 bits keep only their sign (a time that big
    /// is out of range whatever it is; money and term fields bound them).
    Int(i128),
    Float(f64),
    Str(Cow<'a, str>),
    List(Vec<Val<'a>>),
    Object(Vec<Option<Val<'a>>>),
}

/// A step of the path into the record that a message names
/// (`` - at `$.related[0].entity_id` ``).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Step {
    Field(&'static str),
    Index(usize),
}

/// A validation failure on its way out: the message without its path, and
/// the path, innermost step last. Steps are added as the failure leaves
/// each array and object, so a line that decodes pays nothing for them.
struct Invalid(String, Vec<Step>);

type Res<T> = Result<T, Failure>;

enum Failure {
    Json(Fail),
    Invalid(Invalid),
}

impl From<Fail> for Failure {
    fn from(f: Fail) -> Self {
        Failure::Json(f)
    }
}

impl Failure {
    fn within(self, step: Step) -> Self {
        match self {
            Failure::Invalid(Invalid(m, mut path)) => {
                path.insert(0, step);
                Failure::Invalid(Invalid(m, path))
            }
            other => other,
        }
    }

    fn finish(self) -> Fail {
        match self {
            Failure::Json(f) => f,
            Failure::Invalid(Invalid(m, path)) => Fail::Invalid(format!("{}{}", m, suffix(&path))),
        }
    }
}

fn suffix(path: &[Step]) -> String {
    if path.is_empty() {
        return String::new();
    }
    let mut s = String::from(" - at `$");
    for step in path {
        match step {
            Step::Field(f) => {
                s.push('.');
                s.push_str(f);
            }
            Step::Index(i) => s.push_str(&format!("[{i}]")),
        }
    }
    s.push('`');
    s
}

fn invalid(msg: impl Into<String>) -> Failure {
    Failure::Invalid(Invalid(msg.into(), Vec::new()))
}

fn type_repr(mask: u16) -> String {
    let mut parts = Vec::new();
    if mask & BOOL != 0 {
        parts.push("bool");
    }
    if mask & INT != 0 {
        parts.push("int");
    }
    if mask & FLOAT != 0 {
        parts.push("float");
    }
    if mask & (STR | ENUM) != 0 {
        parts.push("str");
    }
    if mask & OBJECT != 0 {
        parts.push("object");
    }
    if mask & ARRAY != 0 {
        parts.push("array");
    }
    if mask & NULL != 0 {
        parts.push("null");
    }
    parts.join(" | ")
}

fn wrong(got: &str, ty: &Ty) -> Failure {
    invalid(format!("Expected `{}`, got `{}`", type_repr(ty.mask), got))
}

/// The top-level type of a line: one kind, or any kind told by `type`.
pub enum Top {
    Any,
    Kind(usize),
}

/// The fields of one record, in the order of its shape.
pub type Fields<'a> = Vec<Option<Val<'a>>>;

/// Reads one JSON value of the line's top-level type: the record kind and
/// its fields, or msgspec's failure.
pub fn read_top<'a>(r: &mut Reader<'a>, top: &Top) -> Result<(usize, Fields<'a>), Fail> {
    let got = (|| -> Res<(usize, Fields<'a>)> {
        let out = match r.peek()? {
            b'{' => match top {
                Top::Kind(k) => {
                    r.pos += 1;
                    (*k, read_struct(r, KINDS[*k], true)?)
                }
                Top::Any => read_union(r)?,
            },
            // Anything else is the wrong type, once it is known to be JSON.
            _ => {
                read_value(r, &ty(OBJECT))?;
                return Err(invalid("Expected `object`"));
            }
        };
        r.trailing()?;
        Ok(out)
    })();
    got.map_err(Failure::finish)
}

/// A tagged union: find `type` first (skipping what comes before it), then
/// read the whole object as that kind.
fn read_union<'a>(r: &mut Reader<'a>) -> Res<(usize, Fields<'a>)> {
    r.pos += 1;
    let orig = r.pos;
    let mut i = 0usize;
    loop {
        let mut c = r.peek()?;
        if c == b'}' {
            r.pos += 1;
            break;
        } else if c == b',' && i != 0 {
            r.pos += 1;
            c = r.peek()?;
        } else if i != 0 {
            return Err(r.err("expected ',' or '}'").into());
        }
        let key = if c == b'"' {
            r.string()?
        } else if c == b'}' {
            return Err(r.err("trailing comma in object").into());
        } else {
            return Err(r.err("object keys must be strings").into());
        };
        if r.peek()? != b':' {
            return Err(r.err("expected ':'").into());
        }
        r.pos += 1;
        if key == "type" {
            let tag = read_tag(r).map_err(|e| e.within(Step::Field("type")))?;
            let Some(k) = kind_index(&tag) else {
                return Err(invalid(format!("Invalid value '{tag}'")).within(Step::Field("type")));
            };
            if i != 0 {
                r.pos = orig;
            }
            let fields = read_struct(r, KINDS[k], i != 0)?;
            return Ok((k, fields));
        }
        r.skip()?;
        i += 1;
    }
    Err(invalid("Object missing required field `type`"))
}

fn read_tag<'a>(r: &mut Reader<'a>) -> Res<Cow<'a, str>> {
    if r.peek()? != b'"' {
        r.skip()?;
        return Err(invalid("Expected `str`"));
    }
    Ok(r.string()?)
}

/// The fields of one struct, its `{` consumed; `first` when no member has
/// been read yet. Repeated keys: each is checked, the last one kept.
fn read_struct<'a>(r: &mut Reader<'a>, shape: &'static Shape, first: bool) -> Res<Fields<'a>> {
    r.enter()?;
    let mut vals: Fields<'a> = vec![None; shape.fields.len()];
    let mut first = first;
    loop {
        let mut c = r.peek()?;
        if c == b'}' {
            r.pos += 1;
            break;
        } else if c == b',' && !first {
            r.pos += 1;
            c = r.peek()?;
        } else if first {
            first = false;
        } else {
            return Err(r.err("expected ',' or '}'").into());
        }
        let key = if c == b'"' {
            r.string()?
        } else if c == b'}' {
            return Err(r.err("trailing comma in object").into());
        } else {
            return Err(r.err("object keys must be strings").into());
        };
        if r.peek()? != b':' {
            return Err(r.err("expected ':'").into());
        }
        r.pos += 1;
        if let Some(i) = shape.fields.iter().position(|f| f.name == key) {
            let field = &shape.fields[i];
            let v = read_value(r, field.ty).map_err(|e| e.within(Step::Field(field.name)))?;
            vals[i] = Some(v);
        } else if shape.tag.is_some() && key == "type" {
            let tag = read_tag(r).map_err(|e| e.within(Step::Field("type")))?;
            if Some(tag.as_ref()) != shape.tag {
                return Err(invalid(format!("Invalid value '{tag}'")).within(Step::Field("type")));
            }
        } else {
            r.skip()?;
        }
    }
    for (i, field) in shape.fields.iter().enumerate() {
        if vals[i].is_none() {
            vals[i] = Some(match field.default {
                Default::Required => {
                    return Err(invalid(format!(
                        "Object missing required field `{}`",
                        field.name
                    )))
                }
                Default::Null => Val::Null,
                Default::Str(s) => Val::Str(Cow::Borrowed(s)),
                Default::False => Val::Bool(false),
                Default::EmptyList => Val::List(Vec::new()),
            });
        }
    }
    r.leave();
    Ok(vals)
}

fn read_value<'a>(r: &mut Reader<'a>, ty: &Ty) -> Res<Val<'a>> {
    match r.peek()? {
        b'n' => {
            r.ident(b"ull", false)?;
            if ty.mask & NULL != 0 {
                Ok(Val::Null)
            } else {
                Err(wrong("null", ty))
            }
        }
        b't' => {
            r.ident(b"rue", false)?;
            if ty.mask & BOOL != 0 {
                Ok(Val::Bool(true))
            } else {
                Err(wrong("bool", ty))
            }
        }
        b'f' => {
            r.ident(b"alse", false)?;
            if ty.mask & BOOL != 0 {
                Ok(Val::Bool(false))
            } else {
                Err(wrong("bool", ty))
            }
        }
        b'[' => {
            let Some(items) = ty.items.filter(|_| ty.mask & ARRAY != 0) else {
                return Err(wrong("array", ty));
            };
            r.pos += 1;
            r.enter()?;
            let mut out = Vec::new();
            let mut first = true;
            loop {
                let mut c = r.peek()?;
                if c == b']' {
                    r.pos += 1;
                    break;
                } else if c == b',' && !first {
                    r.pos += 1;
                    c = r.peek()?;
                } else if first {
                    first = false;
                } else {
                    return Err(r.err("expected ',' or ']'").into());
                }
                if c == b']' {
                    return Err(r.err("trailing comma in array").into());
                }
                let i = out.len();
                out.push(read_value(r, items).map_err(|e| e.within(Step::Index(i)))?);
            }
            r.leave();
            Ok(Val::List(out))
        }
        b'{' => {
            let Some(shape) = ty.object.filter(|_| ty.mask & OBJECT != 0) else {
                return Err(wrong("object", ty));
            };
            r.pos += 1;
            Ok(Val::Object(read_struct(r, shape, true)?))
        }
        b'"' => {
            let s = r.string()?;
            if ty.mask & STR != 0 {
                check_str(&s, ty)?;
                Ok(Val::Str(s))
            } else if ty.mask & ENUM != 0 {
                if ty.values.contains(&s.as_ref()) {
                    Ok(Val::Str(s))
                } else {
                    Err(invalid(format!(
                        "Invalid enum value {}",
                        crate::pytext::str_repr(&s)
                    )))
                }
            } else {
                Err(wrong("str", ty))
            }
        }
        _ => number(r, ty),
    }
}

fn check_str(s: &str, ty: &Ty) -> Res<()> {
    if ty.str_min.is_some() || ty.str_max.is_some() {
        // Characters, not bytes; an ASCII text has as many of each.
        let n = if s.is_ascii() {
            s.len()
        } else {
            s.chars().count()
        };
        if let Some(m) = ty.str_min.filter(|&m| n < m) {
            return Err(invalid(format!("Expected `str` of length >= {m}")));
        }
        if let Some(m) = ty.str_max.filter(|&m| n > m) {
            return Err(invalid(format!("Expected `str` of length <= {m}")));
        }
    }
    if let Some(p) = ty.pattern {
        if !p.matches(s) {
            return Err(invalid(format!(
                "Expected `str` matching regex {}",
                p.repr()
            )));
        }
    }
    Ok(())
}

fn int_checked<'a>(x: i128, ty: &Ty) -> Res<Val<'a>> {
    if let Some(m) = ty.int_min.filter(|&m| x < m as i128) {
        return Err(invalid(format!("Expected `int` >= {m}")));
    }
    if let Some(m) = ty.int_max.filter(|&m| x > m as i128) {
        return Err(invalid(format!("Expected `int` <= {m}")));
    }
    Ok(Val::Int(x))
}

fn float_checked<'a>(x: f64, ty: &Ty) -> Res<Val<'a>> {
    use crate::pytext::float_repr;
    if let Some(c) = ty.float_ge.filter(|&c| x < c) {
        return Err(invalid(format!("Expected `float` >= {}", float_repr(c))));
    }
    if let Some(c) = ty.float_le.filter(|&c| x > c) {
        return Err(invalid(format!("Expected `float` <= {}", float_repr(c))));
    }
    Ok(Val::Float(x))
}

fn number<'a>(r: &mut Reader<'a>, ty: &Ty) -> Res<Val<'a>> {
    let n = r.number()?;
    let float_path = |x: f64| -> Res<Val<'a>> {
        if x.is_infinite() {
            return Err(invalid("Number out of range"));
        }
        if ty.mask & FLOAT != 0 {
            float_checked(x, ty)
        } else {
            Err(wrong("float", ty))
        }
    };
    match n {
        Number::UInt(u) => {
            if ty.mask & INT != 0 {
                int_checked(u as i128, ty)
            } else if ty.mask & FLOAT != 0 {
                float_checked(u as f64, ty)
            } else {
                Err(wrong("int", ty))
            }
        }
        Number::Int(i) => {
            if ty.mask & INT != 0 {
                int_checked(i as i128, ty)
            } else if ty.mask & FLOAT != 0 {
                float_checked(i as f64, ty)
            } else {
                Err(wrong("int", ty))
            }
        }
        Number::Big { neg, digits, float } => {
            if ty.mask & INT != 0 {
                if digits > 4300 {
                    return Err(invalid("Integer value out of range"));
                }
                if let Some(m) = ty.int_min.filter(|_| neg) {
                    return Err(invalid(format!("Expected `int` >= {m}")));
                }
                if let Some(m) = ty.int_max.filter(|_| !neg) {
                    return Err(invalid(format!("Expected `int` <= {m}")));
                }
                Ok(Val::Int(if neg { i128::MIN } else { i128::MAX }))
            } else {
                float_path(float)
            }
        }
        Number::Float(x) => float_path(x),
    }
}
