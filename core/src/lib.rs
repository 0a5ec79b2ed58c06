//! fundflow's compiled per-record core: the JSON-lines wire decoder of
//! `schemas/decode.py`, ported rule for rule so that the two give the same
//! records and the same dead letters for the same bytes; and four of the
//! engine's mechanisms: the event-time ordering stage of
//! `detectors/ordering.py` ([`order`]), which holds the records of each
//! feed until their place is settled, the deduplicator ([`dedup`]), the
//! reference data's record table ([`table`]) and the alert book
//! ([`book`]).
//!
//! ```
//! use fundflow_core::decode::{Decoded, Decoder};
//! let dec = Decoder::new("Asia/Shanghai", 1 << 20, None).unwrap();
//! let line = br#"{"type":"balance","account_id":"A1","as_of":"2026-03-01T00:00:00+08:00","balance":"12.30"}"#;
//! let Decoded::Record(rec) = dec.decode(line) else { panic!() };
//! assert_eq!(rec.fields[2].0, "balance");
//! ```

pub mod book;
pub mod decode;
pub mod dedup;
pub mod isotime;
pub mod json;
pub mod order;
pub mod pytext;
pub mod strcache;
pub mod table;
pub mod unprintable;
pub mod wire;

#[cfg(feature = "python")]
mod python;
#[cfg(feature = "python")]
mod python_book;
#[cfg(feature = "python")]
mod python_dedup;
#[cfg(feature = "python")]
mod python_order;
#[cfg(feature = "python")]
mod python_table;
#[cfg(feature = "python")]
mod python_text;
