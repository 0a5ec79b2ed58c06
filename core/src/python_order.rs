//! `fundflow._core.EventOrder`: the ordering stage of [`crate::order`]
//! holding Python records, the base of `detectors.ordering.EventOrder`.
//!
//! A held record costs its entry here (the key's time and rank as
//! integers, references to its id, item and source, its arrival number:
//! 48 bytes) where the stage in Python kept three tuples and an integer
//! besides: an item queued with its source leaves as the pair `(item,
//! source)`, made only then.
//! Ids are compared as Python compares strings, by code point: the UTF-8
//! bytes of two strings compare in that order, and a string that has no
//! UTF-8 form (a lone surrogate) is compared by Python itself.

use std::cmp::Ordering;

use pyo3::exceptions::{PyKeyError, PyTypeError, PyValueError};
use pyo3::gc::PyVisit;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyString, PyTuple};
use pyo3::PyTraverseError;

use crate::order::{Entry, Ids, Key, Order, NO_BOUND};
use crate::python_text::{text_of, utf8_of};

type Id = Py<PyString>;

struct PyIds<'py>(Python<'py>);

impl Ids<Id> for PyIds<'_> {
    fn cmp(&self, a: &Id, b: &Id) -> Ordering {
        let (a, b) = (a.bind(self.0), b.bind(self.0));
        if a.is(b) {
            return Ordering::Equal;
        }
        match (a.to_str(), b.to_str()) {
            (Ok(x), Ok(y)) => x.cmp(y),
            // Two strings always compare.
            _ => a.compare(b).unwrap_or(Ordering::Equal),
        }
    }

    fn dup(&self, a: &Id) -> Id {
        a.clone_ref(self.0)
    }
}

fn key_of(key: &Bound<'_, PyAny>) -> PyResult<Key<Id>> {
    let bad = || {
        PyTypeError::new_err(format!(
            "an ordering key is a tuple (event time, kind rank, id), not {}",
            key.repr().map(|r| r.to_string()).unwrap_or_default()
        ))
    };
    let t = key.cast::<PyTuple>().map_err(|_| bad())?;
    if t.len() != 3 {
        return Err(bad());
    }
    Ok(Key {
        ts: t.get_item(0)?.extract().map_err(|_| bad())?,
        rank: t.get_item(1)?.extract().map_err(|_| bad())?,
        id: t
            .get_item(2)?
            .cast_into::<PyString>()
            .map_err(|_| bad())?
            .unbind(),
    })
}

fn key_to_py<'py>(py: Python<'py>, key: &Key<Id>) -> PyResult<Bound<'py, PyTuple>> {
    PyTuple::new(
        py,
        [
            key.ts.into_pyobject(py)?.into_any(),
            key.rank.into_pyobject(py)?.into_any(),
            key.id.bind(py).clone().into_any(),
        ],
    )
}

/// A held item: queued with a source, it leaves as `(item, source)`, the
/// pair made only then (a record held costs no tuple).
struct Held {
    item: Py<PyAny>,
    source: Option<Py<PyAny>>,
}

impl Held {
    fn to_py<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let item = self.item.bind(py).clone();
        match &self.source {
            None => Ok(item),
            Some(src) => Ok(PyTuple::new(py, [item, src.bind(py).clone()])?.into_any()),
        }
    }
}

fn items<'py>(py: Python<'py>, items: Vec<Held>) -> PyResult<Bound<'py, PyList>> {
    let out = items
        .iter()
        .map(|h| h.to_py(py))
        .collect::<PyResult<Vec<_>>>()?;
    PyList::new(py, out)
}

/// `EventOrder(lateness_ms)`: per-feed queues released in event-time order
/// (see `detectors/ordering.py`). Keys are `(event time, kind rank, id)`
/// tuples, ids strings; items any object.
#[pyclass(subclass, module = "fundflow._core", name = "EventOrder")]
pub struct EventOrder {
    inner: Order<Id, Held>,
}

#[pymethods]
impl EventOrder {
    #[new]
    #[pyo3(signature = (lateness_ms = 0))]
    fn new(lateness_ms: i64) -> Self {
        EventOrder {
            inner: Order::new(lateness_ms),
        }
    }

    #[getter]
    fn lateness_ms(&self) -> i64 {
        self.inner.lateness_ms
    }

    /// Items held.
    fn __len__(&self) -> usize {
        self.inner.len()
    }

    /// The items held, for the cycle collector: a record that refers back
    /// to its stage is collected with it.
    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        self.inner.try_each(|h| {
            visit.call(&h.item)?;
            visit.call(&h.source)
        })
    }

    /// Drops what is held (the collector breaking a cycle).
    fn __clear__(&mut self) {
        self.inner = Order::new(self.inner.lateness_ms);
    }

    /// The object and what its tables hold on the heap, in bytes.
    fn __sizeof__(&self) -> usize {
        std::mem::size_of::<Self>() + self.inner.heap_bytes()
    }

    /// The feeds seen, in the order they first appeared.
    fn feeds<'py>(&self, py: Python<'py>) -> PyResult<Vec<Bound<'py, PyString>>> {
        self.inner.feeds().map(|(n, _)| text_of(py, n)).collect()
    }

    /// Queues `item` under `key` in `feed`; `False` when the feed has
    /// already released a later key. With `source`, the item leaves as
    /// `(item, source)`.
    #[pyo3(signature = (feed, key, item, source = None))]
    fn push(
        &mut self,
        py: Python<'_>,
        feed: &Bound<'_, PyString>,
        key: &Bound<'_, PyAny>,
        item: Py<PyAny>,
        source: Option<Py<PyAny>>,
    ) -> PyResult<bool> {
        let held = Held { item, source };
        Ok(self
            .inner
            .push(&utf8_of(feed)?, key_of(key)?, held, &PyIds(py)))
    }

    /// `push` then `ready` in one call: `None` when refused, else what the
    /// feed releases now. With `source`, the item leaves as `(item, source)`.
    #[pyo3(signature = (feed, key, item, source = None))]
    fn offer<'py>(
        &mut self,
        py: Python<'py>,
        feed: &Bound<'_, PyString>,
        key: &Bound<'py, PyAny>,
        item: Py<PyAny>,
        source: Option<Py<PyAny>>,
    ) -> PyResult<Option<Bound<'py, PyList>>> {
        let held = Held { item, source };
        match self
            .inner
            .offer(&utf8_of(feed)?, key_of(key)?, held, &PyIds(py))
        {
            None => Ok(None),
            Some(out) => Ok(Some(items(py, out)?)),
        }
    }

    /// What `feed`'s mark releases now, in order (often nothing).
    fn ready<'py>(
        &mut self,
        py: Python<'py>,
        feed: &Bound<'_, PyString>,
    ) -> PyResult<Bound<'py, PyList>> {
        match self.inner.ready(&utf8_of(feed)?) {
            None => Err(PyKeyError::new_err(feed.clone().unbind())),
            Some(out) => items(py, out),
        }
    }

    /// What every feed's mark releases now, in key order (feeds merged).
    fn ready_all<'py>(&mut self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let out = self.inner.taken(None, false, &PyIds(py));
        items(py, out)
    }

    /// Everything at or before event time `t` on every feed, in key order
    /// (feeds merged), whatever the marks.
    #[pyo3(signature = (t = NO_BOUND))]
    fn release_until<'py>(&mut self, py: Python<'py>, t: i64) -> PyResult<Bound<'py, PyList>> {
        let out = self.inner.taken(Some(t), true, &PyIds(py));
        items(py, out)
    }

    /// Removes and returns what `feed` holds, as `(key, item)` in key
    /// order; the feed keeps its mark and its last release.
    fn take<'py>(
        &mut self,
        py: Python<'py>,
        feed: &Bound<'_, PyString>,
    ) -> PyResult<Bound<'py, PyList>> {
        let out = self.inner.take(&utf8_of(feed)?);
        let pairs = out
            .iter()
            .map(|(k, v)| PyTuple::new(py, [key_to_py(py, k)?.into_any(), v.to_py(py)?]))
            .collect::<PyResult<Vec<_>>>()?;
        PyList::new(py, pairs)
    }

    /// The earliest event time held, or `None`.
    fn oldest(&self) -> Option<i64> {
        self.inner.oldest()
    }

    /// `{"lateness_ms", "feeds": {feed: [mark, last key or None, [(key,
    /// arrival, item), ...], 0]}, "seq"}`: the layout the stage has been
    /// checkpointed in since it kept each feed as a list.
    fn __getstate__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let feeds = PyDict::new(py);
        for (name, f) in self.inner.feeds() {
            let entries = f
                .queue
                .iter()
                .map(|e| {
                    PyTuple::new(
                        py,
                        [
                            key_to_py(py, &e.key)?.into_any(),
                            e.seq.into_pyobject(py)?.into_any(),
                            e.item.to_py(py)?,
                        ],
                    )
                })
                .collect::<PyResult<Vec<_>>>()?;
            let last = match &f.last {
                None => py.None().into_bound(py),
                Some(k) => key_to_py(py, k)?.into_any(),
            };
            let state = PyList::new(
                py,
                [
                    f.mark.into_pyobject(py)?.into_any(),
                    last,
                    PyList::new(py, entries)?.into_any(),
                    0i64.into_pyobject(py)?.into_any(),
                ],
            )?;
            feeds.set_item(text_of(py, name)?, state)?;
        }
        let out = PyDict::new(py);
        out.set_item("lateness_ms", self.inner.lateness_ms)?;
        out.set_item("feeds", feeds)?;
        out.set_item("seq", self.inner.seq)?;
        Ok(out)
    }

    /// Reads `__getstate__`'s layout, and a feed of a version that kept it
    /// as a heap (`[mark, last, entries]`, no head index).
    fn __setstate__(&mut self, py: Python<'_>, state: &Bound<'_, PyDict>) -> PyResult<()> {
        let bad = |what: &str| PyValueError::new_err(format!("an ordering stage's state: {what}"));
        let get = |k: &str| state.get_item(k)?.ok_or_else(|| bad(&format!("no {k:?}")));
        let mut inner = Order::new(get("lateness_ms")?.extract()?);
        let feeds = get("feeds")?;
        let feeds = feeds
            .cast::<PyDict>()
            .map_err(|_| bad("feeds are not a dict"))?;
        for (name, s) in feeds.iter() {
            let name = name
                .cast_into::<PyString>()
                .map_err(|_| bad("a feed is not named by a string"))?;
            let s: Vec<Bound<'_, PyAny>> = s.extract()?;
            if s.len() != 3 && s.len() != 4 {
                return Err(bad("a feed is [mark, last, entries, head]"));
            }
            let head: usize = if s.len() == 4 { s[3].extract()? } else { 0 };
            let last = if s[1].is_none() {
                None
            } else {
                Some(key_of(&s[1])?)
            };
            let listed: Vec<Bound<'_, PyAny>> = s[2].extract()?;
            let entries = listed
                .iter()
                .skip(head)
                .map(|e| {
                    let (key, seq, item): (Bound<'_, PyAny>, u64, Py<PyAny>) = e.extract()?;
                    Ok(Entry {
                        key: key_of(&key)?,
                        seq,
                        item: Held { item, source: None },
                    })
                })
                .collect::<PyResult<Vec<_>>>()?;
            inner.restore_feed(&utf8_of(&name)?, s[0].extract()?, last, entries, &PyIds(py));
        }
        inner.seq = get("seq")?.extract()?;
        self.inner = inner;
        Ok(())
    }
}
