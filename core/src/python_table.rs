//! `fundflow._core.Table`: the compact table of [`crate::table`] holding
//! Python records, for the reference data (`detectors/reference.py`).
//!
//! `Table(factory, names, kinds, defaults=None)` maps a str key to a
//! record built by `factory(**{names[0]: key, names[1]: ..., ...},
//! **defaults)`: `defaults` are fields not stored, the same in every
//! record. The record is not kept: its fields are stored packed, and a
//! look-up builds a new record (the last built for each of 512 hash
//! buckets is kept, so hot keys, a platform's own accounts, are not built
//! again). `kinds` gives one letter a field after the key:
//!
//! - `o`: any hashable value, kept once per distinct value (ids of banks,
//!   platforms, roles, licence lists); values equal but printing apart
//!   (`Decimal("0.1")` and `Decimal("0.10")`, `1` and `True`) are kept
//!   apart, as a value other than a str or `None` is keyed by its type and
//!   repr;
//! - `s`: a str or `None`, kept as UTF-8 in the table's arena;
//! - `i`: an int that fits 63 bits, or `None`.
//!
//! Lone surrogates (which JSON escapes can carry) are kept as they came,
//! through `surrogatepass`. A record is read by attribute (`names[1:]`), so
//! any object with those attributes can be stored. Pickled as `(Table,
//! (factory, names, kinds, defaults), (values, rows))`, `rows` the bytes
//! of [`crate::table::Table::state`] (the state the C table this replaced
//! wrote); the index is rebuilt on load.

use pyo3::exceptions::{PyKeyError, PyOverflowError, PyRuntimeError, PyTypeError, PyValueError};
use pyo3::ffi;
use pyo3::gc::PyVisit;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyString, PyTuple};
use pyo3::PyTraverseError;

use crate::python_text::{text_of, utf8_of};
use crate::table::{self, Field, Kind, TableError, MAX_FIELDS};

const CACHE_SIZE: usize = 512;

/// A new reference to the str of the bytes `t` (UTF-8, or what
/// `surrogatepass` gives of a lone surrogate), decoded in one pass.
fn text_ptr(py: Python<'_>, t: &[u8]) -> PyResult<*mut ffi::PyObject> {
    // SAFETY: the pointer and length are those of `t`; the error-handler
    // name is a NUL-terminated C string; the call returns a new reference
    // or NULL with the exception set.
    unsafe {
        let s = ffi::PyUnicode_DecodeUTF8(
            t.as_ptr().cast(),
            t.len() as ffi::Py_ssize_t,
            c"surrogatepass".as_ptr(),
        );
        if s.is_null() {
            Err(PyErr::fetch(py))
        } else {
            Ok(s)
        }
    }
}

impl From<TableError> for PyErr {
    fn from(e: TableError) -> PyErr {
        match e {
            TableError::Overflow(_) => PyOverflowError::new_err(e.to_string()),
            TableError::Shape(_) => PyTypeError::new_err(e.to_string()),
            TableError::Truncated | TableError::MissingValue => {
                PyValueError::new_err(e.to_string())
            }
        }
    }
}

struct Cached {
    key: Py<PyString>,
    record: Py<PyAny>,
    row: u32,
    hash: u32,
}

/// A field as read from a record, before it is stored.
enum Staged<'a> {
    Value(u32),
    Text(Option<std::borrow::Cow<'a, [u8]>>),
    Int(Option<i64>),
}

#[pyclass(module = "fundflow._core", name = "Table")]
pub struct Table {
    rows: table::Table,
    factory: Py<PyAny>,
    names: Py<PyTuple>,
    /// `names[1:]`: the attribute each field is read from.
    field_names: Vec<Py<PyString>>,
    kinds: Py<PyString>,
    defaults: Py<PyAny>,
    /// `names`, then the defaults' names: the record call's keywords.
    kwnames: Py<PyTuple>,
    default_values: Vec<Py<PyAny>>,
    /// The distinct `o` values, and each one's index by its key.
    values: Py<PyList>,
    index_of: Py<PyDict>,
    cache: Vec<Option<Cached>>,
}

/// Whether two strings hold the same text (`str.__eq__`, without the
/// rich-comparison dispatch).
fn same_text(a: &Bound<'_, PyString>, b: &Bound<'_, PyString>) -> bool {
    // SAFETY: both are str objects; comparing two str cannot fail.
    unsafe { ffi::PyUnicode_Compare(a.as_ptr(), b.as_ptr()) == 0 }
}

/// The 32 bits of Python's hash of `key` that pick its cache bucket.
fn hash_of(key: &Bound<'_, PyString>) -> PyResult<u32> {
    Ok(key.hash()? as u32)
}

fn str_key<'a, 'py>(key: &'a Bound<'py, PyAny>) -> Option<&'a Bound<'py, PyString>> {
    key.cast::<PyString>().ok()
}

impl Table {
    fn value_index(&self, py: Python<'_>, v: &Bound<'_, PyAny>) -> PyResult<u32> {
        let key = if v.is_none() || v.is_exact_instance_of::<PyString>() {
            v.clone()
        } else {
            PyTuple::new(py, [v.get_type().into_any(), v.repr()?.into_any()])?.into_any()
        };
        let index_of = self.index_of.bind(py);
        if let Some(found) = index_of.get_item(&key)? {
            return found.extract();
        }
        let values = self.values.bind(py);
        let i = values.len();
        if i >= u32::MAX as usize {
            return Err(PyOverflowError::new_err(
                "too many distinct values for a table",
            ));
        }
        index_of.set_item(key, i)?;
        values.append(v)?;
        Ok(i as u32)
    }

    fn field_error(&self, py: Python<'_>, f: usize, want: &str, v: &Bound<'_, PyAny>) -> PyErr {
        let name = self.names.bind(py).get_item(f + 1).ok();
        let name = name.map(|n| n.repr().map(|r| r.to_string()).unwrap_or_default());
        let type_name = v
            .get_type()
            .name()
            .map(|n| n.to_string())
            .unwrap_or_default();
        PyTypeError::new_err(format!(
            "field {} must be {want} or None, not {type_name}",
            name.unwrap_or_default()
        ))
    }

    fn stage<'a>(&self, py: Python<'_>, f: usize, v: &'a Bound<'_, PyAny>) -> PyResult<Staged<'a>> {
        Ok(match self.rows.kinds()[f] {
            Kind::Value => Staged::Value(self.value_index(py, v)?),
            Kind::Text if v.is_none() => Staged::Text(None),
            Kind::Text => match v.cast::<PyString>() {
                Ok(s) => Staged::Text(Some(utf8_of(s)?)),
                Err(_) => return Err(self.field_error(py, f, "a str", v)),
            },
            Kind::Int if v.is_none() => Staged::Int(None),
            Kind::Int => {
                if !v.is_instance_of::<pyo3::types::PyInt>() {
                    return Err(self.field_error(py, f, "an int", v));
                }
                let x: i64 = v.extract()?;
                if x == i64::MIN {
                    return Err(PyOverflowError::new_err("int too small for a table field"));
                }
                Staged::Int(Some(x))
            }
        })
    }

    /// Sets `key` to the field values `vals` (every field's, in order;
    /// held on the stack).
    fn set_values(
        &mut self,
        py: Python<'_>,
        key: &Bound<'_, PyAny>,
        vals: &[Option<Bound<'_, PyAny>>],
    ) -> PyResult<()> {
        let Some(key) = str_key(key) else {
            let t = key.get_type().name()?;
            return Err(PyTypeError::new_err(format!("table keys are str, not {t}")));
        };
        let hash = hash_of(key)?;
        let mut staged: [Option<Staged<'_>>; MAX_FIELDS] = Default::default();
        for (f, v) in vals.iter().enumerate() {
            staged[f] = Some(self.stage(py, f, v.as_ref().expect("a value a field"))?);
        }
        let mut fields = [Field::Int(None); MAX_FIELDS];
        for (f, s) in staged[..vals.len()].iter().enumerate() {
            fields[f] = match s.as_ref().expect("staged") {
                Staged::Value(i) => Field::Value(*i),
                Staged::Text(t) => Field::Text(t.as_deref()),
                Staged::Int(x) => Field::Int(*x),
            };
        }
        let row = self.rows.set(&utf8_of(key)?, &fields[..vals.len()])?;
        let c = &mut self.cache[hash as usize % CACHE_SIZE];
        if c.as_ref().is_some_and(|c| c.row == row) {
            *c = None;
        }
        Ok(())
    }

    /// The record of row `row`, named by `key`: one keyword call of the
    /// factory, its arguments on the stack.
    fn make_record<'py>(
        &self,
        py: Python<'py>,
        row: u32,
        key: Bound<'py, PyString>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let values = self.values.bind(py);
        let nfields = self.rows.kinds().len();
        let mut args = [std::ptr::null_mut::<ffi::PyObject>(); 2 * MAX_FIELDS + 1];
        // Owned references to the key and the fields, released on leaving.
        struct Owned([*mut ffi::PyObject; MAX_FIELDS + 1], usize);
        impl Drop for Owned {
            fn drop(&mut self) {
                for p in &self.0[..self.1] {
                    // SAFETY: each of the first `self.1` pointers is a new
                    // reference this guard owns, released once.
                    unsafe { ffi::Py_DECREF(*p) }
                }
            }
        }
        let mut owned = Owned([std::ptr::null_mut(); MAX_FIELDS + 1], 0);
        owned.0[0] = key.into_ptr();
        owned.1 = 1;
        self.rows.fields(row, |field| {
            let v = match field {
                // SAFETY: a value index stored in a row is below the length
                // of `values`, which only grows.
                Field::Value(i) => unsafe { values.get_item_unchecked(i as usize) }.into_ptr(),
                Field::Text(None) | Field::Int(None) => py.None().into_ptr(),
                Field::Text(Some(t)) => text_ptr(py, t)?,
                Field::Int(Some(x)) => x.into_pyobject(py)?.into_ptr(),
            };
            owned.0[owned.1] = v;
            owned.1 += 1;
            Ok::<(), PyErr>(())
        })?;
        args[..=nfields].copy_from_slice(&owned.0[..=nfields]);
        for (d, v) in self.default_values.iter().enumerate() {
            args[nfields + 1 + d] = v.as_ptr();
        }
        // SAFETY: `args` holds one borrowed reference per keyword name, kept
        // alive by `owned` and `self.default_values` for the call; the call
        // returns a new reference or NULL with the exception set.
        unsafe {
            let got = ffi::PyObject_Vectorcall(
                self.factory.as_ptr(),
                args.as_ptr(),
                0,
                self.kwnames.as_ptr(),
            );
            Bound::from_owned_ptr_or_err(py, got)
        }
    }

    /// The record of `key`, if it is held.
    fn lookup<'py>(
        &mut self,
        py: Python<'py>,
        key: &Bound<'py, PyAny>,
    ) -> PyResult<Option<Bound<'py, PyAny>>> {
        let Some(key) = str_key(key) else {
            return Ok(None);
        };
        let hash = hash_of(key)?;
        let at = hash as usize % CACHE_SIZE;
        if let Some(c) = &self.cache[at] {
            if c.hash == hash && (c.key.is(key) || same_text(c.key.bind(py), key)) {
                return Ok(Some(c.record.bind(py).clone()));
            }
        }
        let Some(row) = self.rows.find(&utf8_of(key)?) else {
            return Ok(None);
        };
        let record = self.make_record(py, row, key.clone())?;
        self.cache[at] = Some(Cached {
            key: key.clone().unbind(),
            record: record.clone().unbind(),
            row,
            hash,
        });
        Ok(Some(record))
    }
}

#[pymethods]
impl Table {
    #[new]
    #[pyo3(signature = (factory, names, kinds, defaults = None))]
    fn new(
        py: Python<'_>,
        factory: Bound<'_, PyAny>,
        names: Bound<'_, PyTuple>,
        kinds: Bound<'_, PyString>,
        defaults: Option<Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        let defaults = defaults.unwrap_or_else(|| py.None().into_bound(py));
        let default_dict = if defaults.is_none() {
            None
        } else {
            match defaults.cast::<PyDict>() {
                Ok(d) if d.len() <= MAX_FIELDS => Some(d.clone()),
                _ => {
                    return Err(PyTypeError::new_err(format!(
                        "Table defaults must be a dict of at most {MAX_FIELDS} fields, or None"
                    )))
                }
            }
        };
        let letters = kinds.to_str()?;
        let nk = letters.chars().count();
        if nk > MAX_FIELDS || names.len() != nk + 1 {
            return Err(PyValueError::new_err(format!(
                "Table takes a key name and one name per kind (at most {MAX_FIELDS}), got {} \
                 names for {nk} kinds",
                names.len()
            )));
        }
        if names.iter().any(|n| !n.is_instance_of::<PyString>()) {
            return Err(PyTypeError::new_err("Table names must be str"));
        }
        let kind_list = letters
            .chars()
            .map(|c| {
                Kind::of_letter(c).ok_or_else(|| {
                    PyValueError::new_err(format!("unknown field kind {letters:?} (o, s or i)"))
                })
            })
            .collect::<PyResult<Vec<_>>>()?;
        let (kwnames, default_values) = match &default_dict {
            None => (names.clone(), Vec::new()),
            Some(d) => {
                let mut all: Vec<Bound<'_, PyAny>> = names.iter().collect();
                let mut vals = Vec::new();
                for (k, v) in d.iter() {
                    if !k.is_instance_of::<PyString>() {
                        return Err(PyTypeError::new_err("Table defaults' names must be str"));
                    }
                    all.push(k);
                    vals.push(v.unbind());
                }
                (PyTuple::new(py, all)?, vals)
            }
        };
        Ok(Table {
            rows: table::Table::new(&kind_list),
            factory: factory.unbind(),
            field_names: names
                .iter()
                .skip(1)
                .map(|n| Ok(n.cast_into::<PyString>()?.unbind()))
                .collect::<PyResult<_>>()?,
            names: names.unbind(),
            kinds: kinds.unbind(),
            defaults: defaults.unbind(),
            kwnames: kwnames.unbind(),
            default_values,
            values: PyList::empty(py).unbind(),
            index_of: PyDict::new(py).unbind(),
            cache: (0..CACHE_SIZE).map(|_| None).collect(),
        })
    }

    fn __len__(&self) -> usize {
        self.rows.len()
    }

    fn __getitem__<'py>(
        &mut self,
        py: Python<'py>,
        key: Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        match self.lookup(py, &key)? {
            Some(r) => Ok(r),
            None => Err(PyKeyError::new_err(key.unbind())),
        }
    }

    fn __setitem__(
        &mut self,
        py: Python<'_>,
        key: Bound<'_, PyAny>,
        record: Bound<'_, PyAny>,
    ) -> PyResult<()> {
        let n = self.field_names.len();
        let mut vals: [Option<Bound<'_, PyAny>>; MAX_FIELDS] = Default::default();
        for (f, name) in self.field_names.iter().enumerate() {
            vals[f] = Some(record.getattr(name.bind(py))?);
        }
        self.set_values(py, &key, &vals[..n])
    }

    fn __delitem__(&mut self, _key: Bound<'_, PyAny>) -> PyResult<()> {
        Err(PyTypeError::new_err("rows of a Table are not removed"))
    }

    fn __contains__(&self, key: Bound<'_, PyAny>) -> PyResult<bool> {
        let Some(key) = str_key(&key) else {
            return Ok(false);
        };
        Ok(self.rows.find(&utf8_of(key)?).is_some())
    }

    /// `get(key, default=None)`: the record of key, or default.
    #[pyo3(signature = (key, default = None))]
    fn get<'py>(
        &mut self,
        py: Python<'py>,
        key: Bound<'py, PyAny>,
        default: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        Ok(match self.lookup(py, &key)? {
            Some(r) => r,
            None => default.unwrap_or_else(|| py.None().into_bound(py)),
        })
    }

    /// The keys, in insertion order.
    fn keys(slf: Bound<'_, Self>) -> TableIter {
        TableIter::new(slf, Items::Keys)
    }

    /// The records, in insertion order.
    fn values(slf: Bound<'_, Self>) -> TableIter {
        TableIter::new(slf, Items::Values)
    }

    /// `(key, record)` pairs, in insertion order.
    fn items(slf: Bound<'_, Self>) -> TableIter {
        TableIter::new(slf, Items::Pairs)
    }

    fn __iter__(slf: Bound<'_, Self>) -> TableIter {
        TableIter::new(slf, Items::Keys)
    }

    /// How many distinct `o` values are kept.
    #[getter]
    fn distinct_values(&self, py: Python<'_>) -> usize {
        self.values.bind(py).len()
    }

    /// Bytes held: rows, text, index, the cache's slots and the object.
    fn __sizeof__(&self) -> usize {
        std::mem::size_of::<Self>()
            + self.rows.heap_bytes()
            + self.cache.capacity() * std::mem::size_of::<Option<Cached>>()
            + self.default_values.capacity() * std::mem::size_of::<Py<PyAny>>()
    }

    fn __reduce__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        let args = PyTuple::new(
            py,
            [
                self.factory.bind(py).clone(),
                self.names.bind(py).clone().into_any(),
                self.kinds.bind(py).clone().into_any(),
                self.defaults.bind(py).clone(),
            ],
        )?;
        let state = PyTuple::new(
            py,
            [
                self.values.bind(py).clone().into_any(),
                PyBytes::new(py, &self.rows.state()).into_any(),
            ],
        )?;
        PyTuple::new(
            py,
            [
                py.get_type::<Table>().into_any(),
                args.into_any(),
                state.into_any(),
            ],
        )
    }

    fn __setstate__(&mut self, py: Python<'_>, state: Bound<'_, PyTuple>) -> PyResult<()> {
        let (values, rows): (Bound<'_, PyList>, Bound<'_, PyBytes>) = state.extract()?;
        if !self.rows.is_empty() || !self.values.bind(py).is_empty() {
            return Err(PyRuntimeError::new_err(
                "__setstate__ on a Table that holds rows",
            ));
        }
        for (i, v) in values.iter().enumerate() {
            if self.value_index(py, &v)? as usize != i {
                return Err(PyValueError::new_err("table state holds a value twice"));
            }
        }
        let n = values.len() as u32;
        Ok(self.rows.load(rows.as_bytes(), n)?)
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        visit.call(&self.factory)?;
        visit.call(&self.names)?;
        for n in &self.field_names {
            visit.call(n)?;
        }
        visit.call(&self.kinds)?;
        visit.call(&self.defaults)?;
        visit.call(&self.kwnames)?;
        for v in &self.default_values {
            visit.call(v)?;
        }
        visit.call(&self.values)?;
        visit.call(&self.index_of)?;
        for c in self.cache.iter().flatten() {
            visit.call(&c.key)?;
            visit.call(&c.record)?;
        }
        Ok(())
    }

    fn __clear__(&mut self) {
        // What the table owns alone (its values' list and index) the
        // collector clears itself; the records built last may hold anything.
        for c in self.cache.iter_mut() {
            *c = None;
        }
    }
}

#[derive(Clone, Copy)]
enum Items {
    Keys,
    Values,
    Pairs,
}

/// Keys, records or pairs of a [`Table`], in insertion order; rows added
/// while iterating are reached too.
#[pyclass(module = "fundflow._core", name = "TableIterator")]
pub struct TableIter {
    table: Py<Table>,
    next: u32,
    what: Items,
}

impl TableIter {
    fn new(table: Bound<'_, Table>, what: Items) -> Self {
        TableIter {
            table: table.unbind(),
            next: 0,
            what,
        }
    }
}

#[pymethods]
impl TableIter {
    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__<'py>(&mut self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyAny>>> {
        let table = self.table.bind(py).borrow();
        if self.next as usize >= table.rows.len() {
            return Ok(None);
        }
        let row = self.next;
        self.next += 1;
        let key = text_of(py, table.rows.key(row))?;
        Ok(Some(match self.what {
            Items::Keys => key.into_any(),
            Items::Values => table.make_record(py, row, key)?,
            Items::Pairs => {
                let record = table.make_record(py, row, key.clone())?;
                PyTuple::new(py, [key.into_any(), record])?.into_any()
            }
        }))
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        visit.call(&self.table)
    }
}
