//! The Python module `fundflow._core`: the decoder over whole chunks of
//! JSON lines, so that the boundary is crossed once a chunk, not once a
//! record.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Mutex, TryLockError};

use pyo3::exceptions::PyValueError;
use pyo3::ffi;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyString, PyTuple};

use crate::decode::{self, DeadLetter, Decoded, Out, KIND_NAMES, REASONS};
use crate::strcache::{Key, StrCache};

/// Slots of a decoder's string cache: at most this many strings kept alive.
const STRING_SLOTS: usize = 16_384;

/// The strings a decoder has made (see [`crate::strcache`]).
type Strings = StrCache<Py<PyString>>;

/// Decodes one line; a fault in the decoder itself (a bug, never expected)
/// becomes a dead letter naming it rather than an exception mid-chunk.
fn decode_one<'a>(dec: &decode::Decoder, line: &'a [u8]) -> Decoded<'a> {
    catch_unwind(AssertUnwindSafe(|| dec.decode(line))).unwrap_or_else(|_| {
        Decoded::Dead(DeadLetter {
            reason: "bad_field",
            detail: "fundflow._core: decoder fault on this line".into(),
            raw: crate::pytext::utf8_backslashreplace(line),
        })
    })
}

/// `Decoder(zone="Asia/Shanghai", max_line_bytes=1048576, kind=None)`: the
/// JSON-lines decoder of `RecordDecoder` (same records, same dead letters).
/// `kind` names the kind of every line, as `RecordDecoder.decode(raw, kind)`.
#[pyclass(frozen, module = "fundflow._core")]
struct Decoder {
    inner: decode::Decoder,
    classes: Classes,
    /// Taken once a call, never waited for (see `with_strings`).
    strings: Mutex<Strings>,
}

/// What a record is built from: the record class of each kind (in the order
/// of `KIND_NAMES`), `Related`, `DeadLetter` and `decimal.Decimal`, looked
/// up once a decoder.
struct Classes {
    kinds: Vec<Py<PyAny>>,
    /// Each kind's field names in class order (`__struct_fields__`), as
    /// the names of a keyword call.
    fields: Vec<(Vec<String>, Py<PyTuple>)>,
    related: Py<PyAny>,
    dead_letter: Py<PyAny>,
    decimal: Py<PyAny>,
}

impl Classes {
    fn load(py: Python<'_>) -> PyResult<Self> {
        let records = py.import("fundflow.schemas.records")?;
        let by_kind = records.getattr("RECORD_TYPES")?;
        let kinds = KIND_NAMES
            .iter()
            .map(|k| by_kind.get_item(*k).map(Bound::unbind))
            .collect::<PyResult<Vec<_>>>()?;
        let fields = kinds
            .iter()
            .map(|class| {
                let names: Vec<String> = class.bind(py).getattr("__struct_fields__")?.extract()?;
                let tuple = PyTuple::new(py, names.iter().map(|n| PyString::intern(py, n)))?;
                Ok((names, tuple.unbind()))
            })
            .collect::<PyResult<Vec<_>>>()?;
        Ok(Classes {
            kinds,
            fields,
            related: records.getattr("Related")?.unbind(),
            dead_letter: py
                .import("fundflow.schemas.decode")?
                .getattr("DeadLetter")?
                .unbind(),
            decimal: py.import("decimal")?.getattr("Decimal")?.unbind(),
        })
    }

    /// The decoded lines as records and dead letters (a dead letter's
    /// source `"<source>:<line>"` when `source` is given), and the records
    /// per kind.
    fn build<'py>(
        &self,
        py: Python<'py>,
        decoded: &[(u64, Decoded)],
        source: Option<&str>,
        strings: &mut Strings,
    ) -> PyResult<(Bound<'py, PyList>, Bound<'py, PyDict>)> {
        let out = PyList::empty(py);
        let mut kinds = [0u64; KIND_NAMES.len()];
        for (n, d) in decoded {
            if let Decoded::Record(r) = d {
                kinds[r.kind] += 1;
            }
            out.append(self.item(py, d, source.map(|src| format!("{src}:{n}")), strings)?)?;
        }
        let by_kind = PyDict::new(py);
        for (name, n) in KIND_NAMES.iter().zip(kinds) {
            if n > 0 {
                by_kind.set_item(*name, n)?;
            }
        }
        Ok((out, by_kind))
    }

    /// One decoded line as its record, or as its `DeadLetter` (with
    /// `source`, when given).
    fn item<'py>(
        &self,
        py: Python<'py>,
        d: &Decoded,
        source: Option<String>,
        strings: &mut Strings,
    ) -> PyResult<Bound<'py, PyAny>> {
        match d {
            Decoded::Record(r) => self.record(py, r, strings),
            Decoded::Dead(dl) => {
                let kw = PyDict::new(py);
                kw.set_item(intern!(py, "reason"), dl.reason)?;
                kw.set_item(intern!(py, "detail"), &dl.detail)?;
                kw.set_item(intern!(py, "raw"), &dl.raw)?;
                if let Some(src) = source {
                    kw.set_item(intern!(py, "source"), src)?;
                }
                self.dead_letter.bind(py).call((), Some(&kw))
            }
        }
    }

    /// The record of `r`'s kind, built by one keyword call of its class.
    fn record<'py>(
        &self,
        py: Python<'py>,
        r: &decode::Record,
        strings: &mut Strings,
    ) -> PyResult<Bound<'py, PyAny>> {
        let class = self.kinds[r.kind].bind(py);
        let (names, kwnames) = &self.fields[r.kind];
        let in_order =
            names.len() == r.fields.len() && names.iter().zip(&r.fields).all(|(a, (b, _))| a == b);
        if !in_order {
            let kw = PyDict::new(py);
            for (name, v) in &r.fields {
                kw.set_item(
                    PyString::intern(py, name),
                    self.value(py, name, v, strings)?,
                )?;
            }
            return class.call((), Some(&kw));
        }
        let values = r
            .fields
            .iter()
            .map(|(name, v)| self.value(py, name, v, strings))
            .collect::<PyResult<Vec<_>>>()?;
        let args: Vec<*mut ffi::PyObject> = values.iter().map(Bound::as_ptr).collect();
        // SAFETY: `args` holds one borrowed reference per keyword name, kept
        // alive by `values` for the call; the call returns a new reference
        // or NULL with the exception set.
        unsafe {
            let got = ffi::PyObject_Vectorcall(class.as_ptr(), args.as_ptr(), 0, kwnames.as_ptr());
            Bound::from_owned_ptr_or_err(py, got)
        }
    }

    /// A field's value as the record class holds it: tuples for lists,
    /// `Decimal` for decimals, `Related` for related entities; a text the
    /// decoder has made before (a transaction id excepted: it never
    /// recurs) is the same object again.
    fn value<'py>(
        &self,
        py: Python<'py>,
        name: &str,
        v: &Out,
        strings: &mut Strings,
    ) -> PyResult<Bound<'py, PyAny>> {
        Ok(match v {
            Out::Str(s) if name != "txn_id" => {
                let key = Key::of(s);
                let same = |v: &Py<PyString>, s: &str| v.bind(py).to_str().is_ok_and(|t| t == s);
                if let Some(hit) = strings.get(key, s, same) {
                    return Ok(hit.bind(py).clone().into_any());
                }
                let made = PyString::new(py, s);
                strings.put(key, made.clone().unbind());
                made.into_any()
            }
            Out::Decimal(s) => self.decimal.bind(py).call1((s.as_str(),))?,
            Out::Strs(items) => PyTuple::new(py, items.iter().map(|s| s.as_ref()))?.into_any(),
            Out::Related(items) => {
                let related = self.related.bind(py);
                let mut out = Vec::with_capacity(items.len());
                for (id, relation, share) in items {
                    let kw = PyDict::new(py);
                    kw.set_item(intern!(py, "entity_id"), id.as_ref())?;
                    kw.set_item(intern!(py, "relation"), relation.as_ref())?;
                    let share = match share {
                        Some(s) => self.decimal.bind(py).call1((s.as_str(),))?,
                        None => py.None().into_bound(py),
                    };
                    kw.set_item(intern!(py, "share"), share)?;
                    out.push(related.call((), Some(&kw))?);
                }
                PyTuple::new(py, out)?.into_any()
            }
            other => out_to_py(py, other)?,
        })
    }
}

fn out_to_py<'py>(py: Python<'py>, v: &Out) -> PyResult<Bound<'py, PyAny>> {
    Ok(match v {
        Out::None => py.None().into_bound(py),
        Out::Bool(b) => b.into_pyobject(py)?.to_owned().into_any(),
        Out::Int(i) => i.into_pyobject(py)?.into_any(),
        Out::Str(s) => s.as_ref().into_pyobject(py)?.into_any(),
        Out::Decimal(s) => s.into_pyobject(py)?.into_any(),
        Out::Strs(items) => PyList::new(py, items.iter().map(|s| s.as_ref()))?.into_any(),
        Out::Related(items) => {
            let list = PyList::empty(py);
            for (id, relation, share) in items {
                let d = PyDict::new(py);
                d.set_item("entity_id", id.as_ref())?;
                d.set_item("relation", relation.as_ref())?;
                d.set_item("share", share)?;
                list.append(d)?;
            }
            list.into_any()
        }
    })
}

impl Decoder {
    /// Builds with the string cache when no other call holds it (a panic
    /// while it was held leaves it usable: it holds whole entries only). A
    /// call made while another thread's is building never waits for it,
    /// since that call may be waiting for the GIL this one holds: it builds
    /// with a small cache of its own.
    fn with_strings<T>(&self, build: impl FnOnce(&mut Strings) -> T) -> T {
        match self.strings.try_lock() {
            Ok(mut held) => build(&mut held),
            Err(TryLockError::Poisoned(e)) => build(&mut e.into_inner()),
            Err(TryLockError::WouldBlock) => build(&mut StrCache::new(64)),
        }
    }
}

#[pymethods]
impl Decoder {
    #[new]
    #[pyo3(signature = (zone = "Asia/Shanghai", max_line_bytes = 1 << 20, kind = None))]
    fn new(
        py: Python<'_>,
        zone: &str,
        max_line_bytes: usize,
        kind: Option<&str>,
    ) -> PyResult<Self> {
        let inner =
            decode::Decoder::new(zone, max_line_bytes, kind).map_err(PyValueError::new_err)?;
        Ok(Decoder {
            inner,
            classes: Classes::load(py)?,
            strings: Mutex::new(StrCache::new(STRING_SLOTS)),
        })
    }

    /// Every line of `chunk` (split at `\n`) as the record it holds, an
    /// instance of its class in `fundflow.schemas.records`, or a
    /// `DeadLetter` with the reason `RecordDecoder` gives; blank lines are
    /// counted but give nothing. With `source`, a dead letter's source is
    /// `"<source>:<line>"`, lines numbered from `first_line`. Returns the
    /// records and dead letters in line order and the number of records of
    /// each kind (kinds with none left out).
    #[pyo3(signature = (chunk, source = None, first_line = 1))]
    fn records<'py>(
        &self,
        py: Python<'py>,
        chunk: &[u8],
        source: Option<&str>,
        first_line: u64,
    ) -> PyResult<(Bound<'py, PyList>, Bound<'py, PyDict>)> {
        let decoded: Vec<(u64, Decoded)> = py.detach(|| {
            chunk
                .split(|&b| b == b'\n')
                .zip(first_line..)
                .filter(|(ln, _)| !decode::is_blank(ln))
                .map(|(ln, n)| (n, decode_one(&self.inner, ln)))
                .collect()
        });
        self.with_strings(|strings| self.classes.build(py, &decoded, source, strings))
    }

    /// One record (`value`, a line or a message value: newlines inside it
    /// are JSON whitespace) as its record or its `DeadLetter`, the dead
    /// letter's source `source` (empty when not given).
    #[pyo3(signature = (value, source = None))]
    fn decode<'py>(
        &self,
        py: Python<'py>,
        value: &[u8],
        source: Option<String>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let d = decode_one(&self.inner, value);
        self.with_strings(|strings| self.classes.item(py, &d, source, strings))
    }

    /// Each of `values` (the values of Kafka messages: each one record,
    /// newlines and all; `None` for a message without one) as the record it
    /// holds or its `DeadLetter`, with no source; and the number of records
    /// of each kind, as `records` gives them.
    fn values<'py>(
        &self,
        py: Python<'py>,
        values: Vec<Option<Bound<'py, PyBytes>>>,
    ) -> PyResult<(Bound<'py, PyList>, Bound<'py, PyDict>)> {
        let raw: Vec<Option<&[u8]>> = values
            .iter()
            .map(|v| v.as_ref().map(|b| b.as_bytes()))
            .collect();
        let decoded: Vec<(u64, Decoded)> = py.detach(|| {
            raw.iter()
                .map(|v| match v {
                    Some(value) => (0, decode_one(&self.inner, value)),
                    None => (
                        0,
                        Decoded::Dead(DeadLetter {
                            reason: "not_json",
                            detail: "empty message (null value)".into(),
                            raw: String::new(),
                        }),
                    ),
                })
                .collect()
        });
        self.with_strings(|strings| self.classes.build(py, &decoded, None, strings))
    }

    /// Decodes every line of `chunk` and returns only the counts: records
    /// per kind and dead letters per reason, as two dicts (kinds and reasons
    /// with none left out). No Python object is made per record.
    fn count_lines<'py>(
        &self,
        py: Python<'py>,
        chunk: &[u8],
    ) -> PyResult<(Bound<'py, PyDict>, Bound<'py, PyDict>)> {
        let (kinds, reasons) = py.detach(|| {
            let mut kinds = [0u64; KIND_NAMES.len()];
            let mut reasons = [0u64; REASONS.len()];
            for ln in decode::lines(chunk) {
                match decode_one(&self.inner, ln) {
                    Decoded::Record(r) => kinds[r.kind] += 1,
                    Decoded::Dead(d) => {
                        let i = REASONS.iter().position(|r| *r == d.reason).unwrap_or(0);
                        reasons[i] += 1;
                    }
                }
            }
            (kinds, reasons)
        });
        let by_kind = PyDict::new(py);
        for (name, n) in KIND_NAMES.iter().zip(kinds) {
            if n > 0 {
                by_kind.set_item(*name, n)?;
            }
        }
        let by_reason = PyDict::new(py);
        for (name, n) in REASONS.iter().zip(reasons) {
            if n > 0 {
                by_reason.set_item(*name, n)?;
            }
        }
        Ok((by_kind, by_reason))
    }
}

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Decoder>()?;
    m.add_class::<crate::python_order::EventOrder>()?;
    m.add_class::<crate::python_dedup::Deduplicator>()?;
    m.add_class::<crate::python_table::Table>()?;
    m.add_class::<crate::python_book::AlertBook>()?;
    m.add("REASONS", PyTuple::new(m.py(), REASONS)?)?;
    m.add("KINDS", PyTuple::new(m.py(), KIND_NAMES)?)?;
    m.add("MAX_DEPTH", crate::json::MAX_DEPTH)?;
    m.add("UNICODE_VERSION", crate::unprintable::UNICODE_VERSION)?;
    let ranges: Vec<(u32, u32)> = crate::unprintable::UNPRINTABLE.to_vec();
    m.add("UNPRINTABLE", ranges)?;
    Ok(())
}
