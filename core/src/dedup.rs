//! The deduplicator of `detectors/engine.py`: transaction ids remembered
//! for a horizon of event time, per feed.
//!
//! A feed is one subject's ordered stream of transactions of one kind.
//! Each has its own watermark, so what is too late never depends on how
//! feeds interleave. A transaction older than its feed's watermark less
//! the horizon is `TooLate`; an id the feed remembers is a `Duplicate`
//! (the watermark does not move); any other is `New`, remembered with its
//! time. A feed's first transaction sets its watermark; after that one
//! transaction moves it forward by at most one horizon, so a lone
//! far-future time cannot refuse the honest records after it. Ids older
//! than their feed's horizon are swept out whenever the table has doubled
//! since the last sweep (at least 65,536 ids apart): memory stays within
//! about twice what the horizons hold, at O(1) amortised per id.
//!
//! Kinds, feeds and ids are the UTF-8 of their text (the Python binding
//! hands a string with no UTF-8 form, a lone surrogate, as the bytes
//! `surrogatepass` gives, which no other string has). An id of up to 22
//! bytes is held inline (24 bytes with its length); a longer one on the
//! heap.
//!
//! ```
//! use fundflow_core::dedup::{Dedup, Verdict};
//! let mut d = Dedup::new(10);
//! assert_eq!(d.admit(b"custody_txn", b"P", b"T1", 100), Verdict::New);
//! assert_eq!(d.admit(b"custody_txn", b"P", b"T1", 100), Verdict::Duplicate);
//! assert_eq!(d.admit(b"custody_txn", b"P", b"T0", 89), Verdict::TooLate);
//! assert_eq!(d.admit(b"clearing_txn", b"P", b"T1", 100), Verdict::New);
//! ```

use std::collections::hash_map::Entry;
use std::collections::HashMap;

/// The least number of ids between two sweeps.
const SWEEP_MIN: usize = 1 << 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    New,
    Duplicate,
    TooLate,
}

const INLINE: usize = 22;

/// A transaction id, inline when short.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum TxnId {
    Inline { len: u8, bytes: [u8; INLINE] },
    Heap(Box<[u8]>),
}

impl TxnId {
    pub fn new(id: &[u8]) -> Self {
        if id.len() <= INLINE {
            let mut bytes = [0u8; INLINE];
            bytes[..id.len()].copy_from_slice(id);
            TxnId::Inline {
                len: id.len() as u8,
                bytes,
            }
        } else {
            TxnId::Heap(id.into())
        }
    }

    pub fn as_bytes(&self) -> &[u8] {
        match self {
            TxnId::Inline { len, bytes } => &bytes[..*len as usize],
            TxnId::Heap(s) => s,
        }
    }
}

/// One feed: its watermark (-1 before its first transaction) and the ids
/// it remembers with their times.
#[derive(Debug, Default)]
pub struct Feed {
    pub mark: i64,
    pub seen: HashMap<TxnId, i64>,
}

/// A kind's or a feed's name (its UTF-8).
type Name = Box<[u8]>;

/// The feeds, by `(kind, feed)`, in the order they first appeared.
#[derive(Debug)]
pub struct Dedup {
    pub horizon_ms: i64,
    // kind -> feed -> its position in `feeds` (a handful of kinds).
    index: Vec<(Name, HashMap<Name, usize>)>,
    feeds: Vec<([Name; 2], Feed)>,
    size: usize,
    sweep_at: usize,
}

impl Dedup {
    pub fn new(horizon_ms: i64) -> Self {
        Dedup {
            horizon_ms,
            index: Vec::new(),
            feeds: Vec::new(),
            size: 0,
            sweep_at: SWEEP_MIN,
        }
    }

    /// Ids remembered.
    pub fn len(&self) -> usize {
        self.size
    }

    pub fn is_empty(&self) -> bool {
        self.size == 0
    }

    /// `((kind, feed), Feed)` in the order the feeds first appeared.
    pub fn feeds(&self) -> impl Iterator<Item = ((&[u8], &[u8]), &Feed)> {
        self.feeds.iter().map(|([k, f], s)| ((&**k, &**f), s))
    }

    fn find(&self, kind: &[u8], feed: &[u8]) -> Option<usize> {
        let (_, feeds) = self.index.iter().find(|(k, _)| **k == *kind)?;
        feeds.get(feed).copied()
    }

    /// The feed `(kind, feed)`, added with no watermark if new.
    pub fn feed_mut(&mut self, kind: &[u8], feed: &[u8]) -> &mut Feed {
        let i = match self.find(kind, feed) {
            Some(i) => i,
            None => {
                let i = self.feeds.len();
                let at = match self.index.iter().position(|(k, _)| **k == *kind) {
                    Some(at) => at,
                    None => {
                        self.index.push((kind.into(), HashMap::new()));
                        self.index.len() - 1
                    }
                };
                self.index[at].1.insert(feed.into(), i);
                self.feeds.push((
                    [kind.into(), feed.into()],
                    Feed {
                        mark: -1,
                        seen: HashMap::new(),
                    },
                ));
                i
            }
        };
        &mut self.feeds[i].1
    }

    /// Bytes the tables take on the heap (each hash table's slots and
    /// control bytes at its capacity, the ids too long to be inline, the
    /// names): what `sys.getsizeof` reports beside the object.
    pub fn heap_bytes(&self) -> usize {
        let slot = std::mem::size_of::<(TxnId, i64)>() + 1;
        let mut total = self.feeds.capacity() * std::mem::size_of::<([Name; 2], Feed)>();
        for ([kind, feed], state) in &self.feeds {
            total += 2 * (kind.len() + feed.len());
            total += state.seen.capacity() * slot;
            total += state
                .seen
                .keys()
                .map(|k| match k {
                    TxnId::Heap(b) => b.len(),
                    TxnId::Inline { .. } => 0,
                })
                .sum::<usize>();
        }
        for (_, feeds) in &self.index {
            total += feeds.capacity() * (std::mem::size_of::<(Name, usize)>() + 1);
        }
        total
    }

    /// Sets the count of ids remembered (a checkpoint's).
    pub fn set_len(&mut self, size: usize) {
        self.size = size;
    }

    /// The verdict on transaction `txn_id` at `ts` of feed `(kind, feed)`.
    pub fn admit(&mut self, kind: &[u8], feed: &[u8], txn_id: &[u8], ts: i64) -> Verdict {
        let horizon = self.horizon_ms;
        let found = self.find(kind, feed);
        let mark = found.map_or(-1, |i| self.feeds[i].1.mark);
        if ts < mark - horizon {
            return Verdict::TooLate;
        }
        let state = match found {
            Some(i) => &mut self.feeds[i].1,
            None => self.feed_mut(kind, feed),
        };
        match state.seen.entry(TxnId::new(txn_id)) {
            // Before the watermark moves: a redelivered far-future record
            // must not pull it forward again.
            Entry::Occupied(_) => return Verdict::Duplicate,
            Entry::Vacant(slot) => {
                slot.insert(ts);
            }
        }
        if ts > mark {
            state.mark = if mark >= 0 && ts - mark > horizon {
                mark + horizon
            } else {
                ts
            };
        }
        self.size += 1;
        if self.size > self.sweep_at {
            self.sweep();
        }
        Verdict::New
    }

    fn sweep(&mut self) {
        let mut size = 0;
        for (_, state) in &mut self.feeds {
            let horizon = state.mark - self.horizon_ms;
            state.seen.retain(|_, t| *t >= horizon);
            state.seen.shrink_to_fit();
            size += state.seen.len();
        }
        self.size = size;
        self.sweep_at = SWEEP_MIN.max(2 * size);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: i64 = 72 * 3_600_000;

    #[test]
    fn short_and_long_ids_are_the_ids_they_were_made_from() {
        for id in [
            "",
            "T1",
            "交易0000001",
            &"x".repeat(22),
            &"y".repeat(23),
            &"长".repeat(30),
        ] {
            let t = TxnId::new(id.as_bytes());
            assert_eq!(t.as_bytes(), id.as_bytes());
            assert_eq!(matches!(t, TxnId::Inline { .. }), id.len() <= 22);
        }
        assert_ne!(TxnId::new(b"T1"), TxnId::new(b"T1\0"));
        assert_eq!(std::mem::size_of::<TxnId>(), 24);
    }

    #[test]
    fn a_far_future_record_moves_its_feeds_watermark_one_horizon_only() {
        let mut d = Dedup::new(H);
        assert_eq!(d.admit(b"custody_txn", b"P", b"T1", 0), Verdict::New);
        let far = 4_000_000_000_000;
        for i in 0..3 {
            assert_eq!(
                d.admit(b"custody_txn", b"P", format!("BAD{i}").as_bytes(), far + i),
                Verdict::New
            );
            assert_eq!(d.feeds().next().unwrap().1.mark, (i + 1) * H);
        }
        assert_eq!(d.admit(b"custody_txn", b"P", b"T2", 2 * H), Verdict::New);
        assert_eq!(
            d.admit(b"custody_txn", b"P", b"T3", 2 * H - 1),
            Verdict::TooLate
        );
        assert_eq!(
            d.admit(b"custody_txn", b"P", b"BAD0", far),
            Verdict::Duplicate
        );
        assert_eq!(d.feeds().next().unwrap().1.mark, 3 * H);
        assert_eq!(d.len(), 5);
    }

    #[test]
    fn a_feeds_first_record_sets_its_watermark_and_feeds_are_apart() {
        let mut d = Dedup::new(H);
        assert_eq!(d.admit(b"custody_txn", b"P", b"BAD", 100 * H), Verdict::New);
        assert_eq!(d.admit(b"custody_txn", b"P", b"T1", 0), Verdict::TooLate);
        assert_eq!(d.admit(b"custody_txn", b"Q", b"T1", 0), Verdict::New);
        assert_eq!(d.admit(b"clearing_txn", b"P", b"T1", 0), Verdict::New);
        let feeds: Vec<(&[u8], &[u8])> = d.feeds().map(|(k, _)| k).collect();
        let want: [(&[u8], &[u8]); 3] = [
            (b"custody_txn", b"P"),
            (b"custody_txn", b"Q"),
            (b"clearing_txn", b"P"),
        ];
        assert_eq!(feeds, want);
    }

    #[test]
    fn memory_stays_within_about_twice_what_the_horizon_holds() {
        let mut d = Dedup::new(H);
        let minute = 60_000;
        let per_horizon = (H / minute) as usize; // 4,320 ids a horizon
        for i in 0..400_000i64 {
            assert_eq!(
                d.admit(
                    b"custody_txn",
                    b"P",
                    format!("T{i:07}").as_bytes(),
                    i * minute
                ),
                Verdict::New
            );
            assert!(d.len() <= SWEEP_MIN.max(2 * per_horizon) + 1);
        }
        let held: usize = d.feeds().map(|(_, f)| f.seen.len()).sum();
        assert_eq!(held, d.len());
        // 33 bytes a slot (the id inline, its time, a control byte), at
        // most twice the slots in use after a sweep's shrink and growth.
        assert!(d.heap_bytes() >= 33 * d.len());
        assert!(
            d.heap_bytes() <= 33 * 4 * (SWEEP_MIN + 1) + 1024,
            "{}",
            d.heap_bytes()
        );
        // An id swept out is too late, never new again.
        assert_eq!(
            d.admit(b"custody_txn", b"P", b"T0000000", 0),
            Verdict::TooLate
        );
    }
}
