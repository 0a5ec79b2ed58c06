//! Text between Python and the core's tables, which key by bytes: a
//! string's UTF-8, or for a string with no UTF-8 form (a lone surrogate,
//! as text read with `errors="surrogateescape"` holds) the bytes
//! `surrogatepass` gives, which are not UTF-8 and so no other string's.

use std::borrow::Cow;

use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyString};

/// The bytes `s` is keyed by.
pub(crate) fn utf8_of<'a>(s: &'a Bound<'_, PyString>) -> PyResult<Cow<'a, [u8]>> {
    match s.to_str() {
        Ok(t) => Ok(Cow::Borrowed(t.as_bytes())),
        Err(_) => {
            let py = s.py();
            let b = s.call_method1(intern!(py, "encode"), ("utf-8", "surrogatepass"))?;
            Ok(Cow::Owned(b.cast::<PyBytes>()?.as_bytes().to_vec()))
        }
    }
}

/// The string keyed by `b`.
pub(crate) fn text_of<'py>(py: Python<'py>, b: &[u8]) -> PyResult<Bound<'py, PyString>> {
    match std::str::from_utf8(b) {
        Ok(t) => Ok(PyString::new(py, t)),
        Err(_) => Ok(PyBytes::new(py, b)
            .call_method1(intern!(py, "decode"), ("utf-8", "surrogatepass"))?
            .cast_into::<PyString>()?),
    }
}
