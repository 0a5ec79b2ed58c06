//! `fundflow._core.Deduplicator`: the deduplicator of [`crate::dedup`], the
//! base of `detectors.engine.Deduplicator`.

use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString, PyTuple};

use crate::dedup::{Dedup, TxnId, Verdict};
use crate::python_text::{text_of, utf8_of};

/// `Deduplicator(horizon_ms)`: transaction ids remembered for `horizon_ms`
/// of event time, per `(kind, feed)` (see `detectors/engine.py`).
#[pyclass(subclass, module = "fundflow._core", name = "Deduplicator")]
pub struct Deduplicator {
    inner: Dedup,
}

fn feed_key<'py>(py: Python<'py>, kind: &[u8], feed: &[u8]) -> PyResult<Bound<'py, PyTuple>> {
    PyTuple::new(py, [text_of(py, kind)?, text_of(py, feed)?])
}

#[pymethods]
impl Deduplicator {
    #[new]
    #[pyo3(signature = (horizon_ms = 0))]
    fn new(horizon_ms: i64) -> Self {
        Deduplicator {
            inner: Dedup::new(horizon_ms),
        }
    }

    #[getter]
    fn horizon_ms(&self) -> i64 {
        self.inner.horizon_ms
    }

    /// Ids remembered.
    fn __len__(&self) -> usize {
        self.inner.len()
    }

    /// The object and what its tables hold on the heap, in bytes.
    fn __sizeof__(&self) -> usize {
        std::mem::size_of::<Self>() + self.inner.heap_bytes()
    }

    /// `"new"`, `"duplicate"` or `"too_late"`: the verdict on transaction
    /// `txn_id` at event time `ts` of feed `feed` of kind `kind`.
    fn admit<'py>(
        &mut self,
        py: Python<'py>,
        kind: &Bound<'py, PyString>,
        feed: &Bound<'py, PyString>,
        txn_id: &Bound<'py, PyString>,
        ts: i64,
    ) -> PyResult<Bound<'py, PyString>> {
        let verdict = self
            .inner
            .admit(&utf8_of(kind)?, &utf8_of(feed)?, &utf8_of(txn_id)?, ts);
        Ok(match verdict {
            Verdict::New => intern!(py, "new"),
            Verdict::Duplicate => intern!(py, "duplicate"),
            Verdict::TooLate => intern!(py, "too_late"),
        }
        .clone())
    }

    /// `(kind, feed)` -> the feed's watermark, for the feeds that have one.
    #[getter]
    fn watermarks<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let out = PyDict::new(py);
        for ((kind, feed), f) in self.inner.feeds() {
            if f.mark >= 0 {
                out.set_item(feed_key(py, kind, feed)?, f.mark)?;
            }
        }
        Ok(out)
    }

    /// `(kind, feed)` -> `{txn_id: ts}` of the ids remembered, each feed's
    /// in the order of their times (then of the ids), whatever the table's.
    #[getter]
    fn seen<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let out = PyDict::new(py);
        for ((kind, feed), f) in self.inner.feeds() {
            let mut ids: Vec<(&TxnId, i64)> = f.seen.iter().map(|(k, t)| (k, *t)).collect();
            ids.sort_unstable_by(|a, b| {
                a.1.cmp(&b.1)
                    .then_with(|| a.0.as_bytes().cmp(b.0.as_bytes()))
            });
            let held = PyDict::new(py);
            for (id, ts) in ids {
                held.set_item(text_of(py, id.as_bytes())?, ts)?;
            }
            out.set_item(feed_key(py, kind, feed)?, held)?;
        }
        Ok(out)
    }

    /// Takes the state `watermarks`, `seen` and `len` gave.
    fn load(
        &mut self,
        watermarks: &Bound<'_, PyDict>,
        seen: &Bound<'_, PyDict>,
        size: usize,
    ) -> PyResult<()> {
        let mut inner = Dedup::new(self.inner.horizon_ms);
        for (key, ids) in seen.iter() {
            let (kind, feed): (Bound<'_, PyString>, Bound<'_, PyString>) = key.extract()?;
            let state = inner.feed_mut(&utf8_of(&kind)?, &utf8_of(&feed)?);
            state.mark = match watermarks.get_item(&key)? {
                Some(m) => m.extract()?,
                None => -1,
            };
            for (id, ts) in ids.cast::<PyDict>()?.iter() {
                let id = id.cast_into::<PyString>()?;
                state.seen.insert(TxnId::new(&utf8_of(&id)?), ts.extract()?);
            }
        }
        for (key, mark) in watermarks.iter() {
            let (kind, feed): (Bound<'_, PyString>, Bound<'_, PyString>) = key.extract()?;
            if !seen.contains(&key)? {
                inner.feed_mut(&utf8_of(&kind)?, &utf8_of(&feed)?).mark = mark.extract()?;
            }
        }
        inner.set_len(size);
        self.inner = inner;
        Ok(())
    }
}
