//! The Python module `fundflow._core`: the decoder over whole chunks of
//! JSON lines, so that the boundary is crossed once a chunk, not once a
//! record.

use std::panic::{catch_unwind, AssertUnwindSafe};

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyTuple};

use crate::decode::{self, DeadLetter, Decoded, Out, KIND_NAMES, REASONS};

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

#[pymethods]
impl Decoder {
    #[new]
    #[pyo3(signature = (zone = "Asia/Shanghai", max_line_bytes = 1 << 20, kind = None))]
    fn new(zone: &str, max_line_bytes: usize, kind: Option<&str>) -> PyResult<Self> {
        let inner =
            decode::Decoder::new(zone, max_line_bytes, kind).map_err(PyValueError::new_err)?;
        Ok(Decoder { inner })
    }

    /// Every line of `chunk` (split at `\n`, blank lines left out) as a
    /// `(kind, fields)` pair: a record's kind and its fields as
    /// `msgspec.to_builtins` gives them, or `("dead_letter", {"reason",
    /// "detail", "raw"})`. For comparing with the Python decoder; the hot
    /// path is `count_lines`.
    fn decode_lines<'py>(&self, py: Python<'py>, chunk: &[u8]) -> PyResult<Bound<'py, PyList>> {
        let decoded: Vec<Decoded> = py.detach(|| {
            decode::lines(chunk)
                .map(|ln| decode_one(&self.inner, ln))
                .collect()
        });
        let out = PyList::empty(py);
        for d in &decoded {
            let fields = PyDict::new(py);
            let kind = match d {
                Decoded::Record(r) => {
                    for (name, v) in &r.fields {
                        fields.set_item(*name, out_to_py(py, v)?)?;
                    }
                    KIND_NAMES[r.kind]
                }
                Decoded::Dead(dl) => {
                    fields.set_item("reason", dl.reason)?;
                    fields.set_item("detail", &dl.detail)?;
                    fields.set_item("raw", &dl.raw)?;
                    "dead_letter"
                }
            };
            out.append(PyTuple::new(
                py,
                [kind.into_pyobject(py)?.into_any(), fields.into_any()],
            )?)?;
        }
        Ok(out)
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
    m.add("REASONS", PyTuple::new(m.py(), REASONS)?)?;
    m.add("KINDS", PyTuple::new(m.py(), KIND_NAMES)?)?;
    m.add("MAX_DEPTH", crate::json::MAX_DEPTH)?;
    m.add("UNICODE_VERSION", crate::unprintable::UNICODE_VERSION)?;
    let ranges: Vec<(u32, u32)> = crate::unprintable::UNPRINTABLE.to_vec();
    m.add("UNPRINTABLE", ranges)?;
    Ok(())
}
