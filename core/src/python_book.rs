//! `fundflow._core.AlertBook`: the alert book of [`crate::book`] holding
//! Python builders, the base of `detectors.alerting.AlertBook`.
//!
//! `AlertBook(growth_pct, ranks, make)`: `ranks` maps each severity to its
//! rank; `make(alert_id, subject_id, severity, amount, first_ts, last_ts,
//! revision, build)` makes the alert of a finding stated (it calls
//! `build`), which the book appends to `out`. `make` must not call back
//! into the book.

use pyo3::exceptions::{PyKeyError, PyOverflowError, PyValueError};
use pyo3::gc::PyVisit;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyString};
use pyo3::PyTraverseError;

use crate::book::{Book, BookError, Emit, Entry, Said, NO_END};
use crate::python_text::{text_of, utf8_of};

impl From<BookError> for PyErr {
    fn from(e: BookError) -> PyErr {
        match e {
            BookError::Amount(a) => PyOverflowError::new_err(format!(
                "amount {a} fen is beyond what an alert can state"
            )),
        }
    }
}

#[pyclass(subclass, module = "fundflow._core", name = "AlertBook")]
pub struct AlertBook {
    inner: Book<Py<PyAny>>,
    make: Py<PyAny>,
    out: Py<PyList>,
    /// The severities' names, as Python strings, by index.
    names: Vec<Py<PyString>>,
}

impl AlertBook {
    fn severity(&self, name: &Bound<'_, PyString>) -> PyResult<usize> {
        self.inner
            .severity(&utf8_of(name)?)
            .ok_or_else(|| PyKeyError::new_err(name.clone().unbind()))
    }

    /// Runs `f` with the book and an `emit` that makes each stated alert
    /// and appends it to `out`.
    fn with_emit<R>(
        &mut self,
        py: Python<'_>,
        f: impl FnOnce(
            &mut Book<Py<PyAny>>,
            &mut dyn FnMut(&Emit<'_, Py<PyAny>>) -> PyResult<()>,
        ) -> PyResult<R>,
    ) -> PyResult<R> {
        let make = self.make.bind(py);
        let out = self.out.bind(py);
        let names = &self.names;
        let mut emit = |e: &Emit<'_, Py<PyAny>>| -> PyResult<()> {
            let args = (
                text_of(py, e.alert_id)?,
                text_of(py, e.subject_id)?,
                names[e.severity].bind(py),
                e.amount,
                e.first_ts,
                e.last_ts,
                e.revision,
                e.build.bind(py),
            );
            out.append(make.call1(args)?)
        };
        f(&mut self.inner, &mut emit)
    }
}

/// A waiting entry as a checkpoint holds it: `[severity, amount,
/// first_ts, last_ts, build, ends]`.
fn entry_of(book: &AlertBook, e: &Bound<'_, PyAny>) -> PyResult<Entry<Py<PyAny>>> {
    let items = e.try_iter()?.collect::<PyResult<Vec<_>>>()?;
    let [severity, amount, first_ts, last_ts, build, ends] = &items[..] else {
        return Err(PyValueError::new_err(format!(
            "a waiting offer holds 6 figures, not {}",
            items.len()
        )));
    };
    Ok(Entry {
        severity: book.severity(severity.cast::<PyString>()?)?,
        amount: amount.extract()?,
        first_ts: first_ts.extract()?,
        last_ts: last_ts.extract()?,
        build: build.clone().unbind(),
        ends: ends.extract()?,
    })
}

#[pymethods]
impl AlertBook {
    #[new]
    fn new(
        py: Python<'_>,
        growth_pct: i64,
        ranks: &Bound<'_, PyDict>,
        make: Bound<'_, PyAny>,
    ) -> PyResult<Self> {
        let mut severities = Vec::new();
        let mut names = Vec::new();
        for (name, rank) in ranks.iter() {
            let name = name.cast_into::<PyString>()?;
            severities.push((name.to_str()?.to_owned(), rank.extract::<i64>()?));
            names.push(name.unbind());
        }
        Ok(AlertBook {
            inner: Book::new(growth_pct as i128, severities),
            make: make.unbind(),
            out: PyList::empty(py).unbind(),
            names,
        })
    }

    #[getter]
    fn growth_pct(&self) -> i64 {
        self.inner.growth_pct as i64
    }

    /// The alerts stated and not taken yet.
    #[getter]
    fn get_out(&self, py: Python<'_>) -> Py<PyList> {
        self.out.clone_ref(py)
    }

    #[setter]
    fn set_out(&mut self, out: Bound<'_, PyList>) {
        self.out = out.unbind();
    }

    /// The alerts stated since the last drain (a new list takes their place).
    fn drain(&mut self, py: Python<'_>) -> Py<PyList> {
        std::mem::replace(&mut self.out, PyList::empty(py).unbind())
    }

    /// Offers a finding's current figures; `True` when an alert was stated.
    #[pyo3(signature = (alert_id, subject_id, severity, amount, first_ts, last_ts, build, *, r#final = false, ends = NO_END))]
    #[allow(clippy::too_many_arguments)]
    fn offer(
        &mut self,
        py: Python<'_>,
        alert_id: &Bound<'_, PyString>,
        subject_id: &Bound<'_, PyString>,
        severity: &Bound<'_, PyString>,
        amount: i128,
        first_ts: i64,
        last_ts: i64,
        build: Bound<'_, PyAny>,
        r#final: bool,
        ends: i64,
    ) -> PyResult<bool> {
        let sev = self.severity(severity)?;
        let (aid, subject) = (utf8_of(alert_id)?, utf8_of(subject_id)?);
        let build = build.unbind();
        self.with_emit(py, |book, mut emit| {
            book.offer(
                &aid, &subject, sev, amount, first_ts, last_ts, build, r#final, ends, &mut emit,
            )
        })
    }

    /// `subject_id`'s clock is at `now`: settles its waiting offers whose
    /// episode ended before it.
    fn settle(
        &mut self,
        py: Python<'_>,
        subject_id: &Bound<'_, PyString>,
        now: i64,
    ) -> PyResult<()> {
        let subject = utf8_of(subject_id)?;
        self.with_emit(py, |book, mut emit| book.settle(&subject, now, &mut emit))
    }

    /// The episode of `alert_id` has just ended at a record: settles its
    /// waiting offer now.
    fn close(
        &mut self,
        py: Python<'_>,
        subject_id: &Bound<'_, PyString>,
        alert_id: &Bound<'_, PyString>,
    ) -> PyResult<()> {
        let (subject, aid) = (utf8_of(subject_id)?, utf8_of(alert_id)?);
        self.with_emit(py, |book, mut emit| book.close(&subject, &aid, &mut emit))
    }

    /// Every subject's clock is at `now`: settles what ended before it.
    fn settle_due(&mut self, py: Python<'_>, now: i64) -> PyResult<()> {
        self.with_emit(py, |book, mut emit| book.settle_due(now, &mut emit))
    }

    /// The end of a stream: settles every waiting offer.
    fn settle_open(&mut self, py: Python<'_>) -> PyResult<()> {
        self.with_emit(py, |book, mut emit| book.settle_open(&mut emit))
    }

    /// `[(alert_id, revision, severity, amount, last_ts)]`: what was said
    /// under each id, in the order first said.
    fn said_items<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let out = PyList::empty(py);
        for (aid, s) in self.inner.said() {
            out.append((
                text_of(py, aid)?,
                s.revision,
                self.names[s.severity].bind(py),
                s.amount,
                s.last_ts,
            ))?;
        }
        Ok(out)
    }

    /// Replaces what was said with `items` (as `said_items` gives them).
    fn load_said(&mut self, items: &Bound<'_, PyAny>) -> PyResult<()> {
        let mut said = Vec::new();
        for item in items.try_iter()? {
            let (aid, revision, severity, amount, last_ts): (
                Bound<'_, PyString>,
                i64,
                Bound<'_, PyString>,
                i128,
                i64,
            ) = item?.extract()?;
            said.push((
                utf8_of(&aid)?.into_owned().into_boxed_slice(),
                Said {
                    revision,
                    severity: self.severity(&severity)?,
                    amount,
                    last_ts,
                },
            ));
        }
        self.inner.load_said(said);
        Ok(())
    }

    /// `[(subject_id, [(alert_id, severity, amount, first_ts, last_ts,
    /// build, ends)])]`: the waiting offers, in the order they came.
    fn waiting_items<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let out = PyList::empty(py);
        for (subject, per) in self.inner.waiting() {
            let entries = PyList::empty(py);
            for (aid, e) in per.iter() {
                entries.append((
                    text_of(py, aid)?,
                    self.names[e.severity].bind(py),
                    e.amount,
                    e.first_ts,
                    e.last_ts,
                    e.build.bind(py),
                    e.ends,
                ))?;
            }
            out.append((text_of(py, subject)?, entries))?;
        }
        Ok(out)
    }

    /// Replaces the waiting offers with `state`: subject -> alert id ->
    /// `[severity, amount, first_ts, last_ts, build, ends]`.
    fn load_waiting(&mut self, state: &Bound<'_, PyDict>) -> PyResult<()> {
        let mut waiting = Vec::new();
        for (subject, per) in state.iter() {
            let subject = subject.cast_into::<PyString>()?;
            let mut entries = Vec::new();
            for (aid, e) in per.cast_into::<PyDict>()?.iter() {
                let aid = aid.cast_into::<PyString>()?;
                entries.push((
                    utf8_of(&aid)?.into_owned().into_boxed_slice(),
                    entry_of(self, &e)?,
                ));
            }
            waiting.push((utf8_of(&subject)?.into_owned().into_boxed_slice(), entries));
        }
        self.inner.load_waiting(waiting);
        Ok(())
    }

    /// Waiting offers held.
    fn waiting_len(&self) -> usize {
        self.inner.waiting_len()
    }

    /// The object and what its tables hold on the heap, in bytes (the
    /// builders and alerts are objects of their own).
    fn __sizeof__(&self) -> usize {
        std::mem::size_of::<Self>()
            + self.inner.heap_bytes()
            + self.names.capacity() * std::mem::size_of::<Py<PyString>>()
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        visit.call(&self.make)?;
        visit.call(&self.out)?;
        for b in self.inner.builders() {
            visit.call(b)?;
        }
        Ok(())
    }

    fn __clear__(&mut self) {
        // The builders close over their detectors, which hold this book.
        self.inner.drop_waiting();
    }
}
