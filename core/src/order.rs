//! The event-time ordering stage of `detectors/ordering.py`: per-feed
//! queues released in event-time order. The rule is the module docstring's
//! there; this is its one implementation, generic over the id that breaks
//! ties and the item held, so that the Python binding holds references and
//! these tests hold plain strings.
//!
//! Each feed has a high-water mark, the latest event time it has shown,
//! moved at most one allowed lateness forward by one record. A record
//! leaves once its feed's mark is more than the allowed lateness past its
//! event time, in the order of its key (event time, kind rank, id), records
//! with equal keys in arrival order. A record whose key is before the last
//! its feed released is refused.
//!
//! ```
//! use fundflow_core::order::{Key, Order, Plain};
//! let mut o: Order<String, i64> = Order::new(10);
//! for ts in [5, 3, 9, 17] {
//!     o.push(b"P", Key { ts, rank: 0, id: ts.to_string() }, ts, &Plain);
//! }
//! assert_eq!(o.ready(b"P"), Some(vec![3, 5]));
//! ```

use std::cmp::Ordering;
use std::collections::{HashMap, VecDeque};

/// Above every event time: the bound of a release with no bound.
pub const NO_BOUND: i64 = 1 << 62;

/// A record's place: `(event time, kind rank, id)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Key<I> {
    pub ts: i64,
    pub rank: i64,
    pub id: I,
}

/// A queued item, its key and its arrival number.
#[derive(Debug)]
pub struct Entry<I, V> {
    pub key: Key<I>,
    pub seq: u64,
    pub item: V,
}

/// One feed: its mark, the key it released last, what it holds in
/// `(key, arrival)` order.
#[derive(Debug)]
pub struct Feed<I, V> {
    pub mark: i64,
    pub last: Option<Key<I>>,
    pub queue: VecDeque<Entry<I, V>>,
}

/// How ids are compared and copied: [`Plain`] for ids that do both
/// themselves; the Python binding's need the interpreter.
pub trait Ids<I> {
    fn cmp(&self, a: &I, b: &I) -> Ordering;
    fn dup(&self, a: &I) -> I;
}

/// Ids that are `Ord` and `Clone`.
pub struct Plain;

impl<I: Ord + Clone> Ids<I> for Plain {
    fn cmp(&self, a: &I, b: &I) -> Ordering {
        a.cmp(b)
    }
    fn dup(&self, a: &I) -> I {
        a.clone()
    }
}

/// Compares two keys, ids by `by`.
pub fn cmp_keys<I>(a: &Key<I>, b: &Key<I>, by: &impl Ids<I>) -> Ordering {
    a.ts.cmp(&b.ts)
        .then(a.rank.cmp(&b.rank))
        .then_with(|| by.cmp(&a.id, &b.id))
}

/// A feed's name (its UTF-8) and its queue.
type Named<I, V> = (Box<[u8]>, Feed<I, V>);

/// The stage: feeds in the order they first appeared.
#[derive(Debug)]
pub struct Order<I, V> {
    pub lateness_ms: i64,
    names: HashMap<Box<[u8]>, usize>,
    feeds: Vec<Named<I, V>>,
    pub seq: u64,
    held: usize,
}

impl<I, V> Order<I, V> {
    pub fn new(lateness_ms: i64) -> Self {
        Order {
            lateness_ms,
            names: HashMap::new(),
            feeds: Vec::new(),
            seq: 0,
            held: 0,
        }
    }

    /// Items held.
    pub fn len(&self) -> usize {
        self.held
    }

    pub fn is_empty(&self) -> bool {
        self.held == 0
    }

    /// The feeds (their names' UTF-8), in the order they first appeared.
    pub fn feeds(&self) -> impl Iterator<Item = (&[u8], &Feed<I, V>)> {
        self.feeds.iter().map(|(n, f)| (&**n, f))
    }

    /// Bytes the queues and names take on the heap, at their capacity
    /// (what an item references is its own).
    pub fn heap_bytes(&self) -> usize {
        let mut total = self.feeds.capacity() * std::mem::size_of::<Named<I, V>>();
        for (name, f) in &self.feeds {
            total += 2 * name.len() + f.queue.capacity() * std::mem::size_of::<Entry<I, V>>();
        }
        total + self.names.capacity() * (std::mem::size_of::<(Box<[u8]>, usize)>() + 1)
    }

    fn index(&self, feed: &[u8]) -> Option<usize> {
        self.names.get(feed).copied()
    }

    /// Adds a feed as a checkpoint kept it (its entries in any order).
    pub fn restore_feed(
        &mut self,
        name: &[u8],
        mark: i64,
        last: Option<Key<I>>,
        mut entries: Vec<Entry<I, V>>,
        by: &impl Ids<I>,
    ) {
        entries.sort_by(|a, b| cmp_keys(&a.key, &b.key, by).then(a.seq.cmp(&b.seq)));
        self.held += entries.len();
        let feed = Feed {
            mark,
            last,
            queue: entries.into(),
        };
        match self.index(name) {
            Some(i) => {
                self.held -= self.feeds[i].1.queue.len();
                self.feeds[i].1 = feed;
            }
            None => {
                self.names.insert(name.into(), self.feeds.len());
                self.feeds.push((name.into(), feed));
            }
        }
    }

    /// Queues `item` in `feed` (the mark moved) unless the feed has already
    /// released a later key: then it is handed back. Returns the feed's
    /// index.
    fn queue(
        &mut self,
        feed: &[u8],
        key: Key<I>,
        item: V,
        by: &impl Ids<I>,
    ) -> Result<usize, (Key<I>, V)> {
        let lateness = self.lateness_ms;
        let i = match self.index(feed) {
            Some(i) => {
                let f = &mut self.feeds[i].1;
                if let Some(last) = &f.last {
                    if cmp_keys(&key, last, by) == Ordering::Less {
                        return Err((key, item));
                    }
                }
                if key.ts > f.mark {
                    f.mark = if key.ts - f.mark > lateness {
                        f.mark + lateness
                    } else {
                        key.ts
                    };
                }
                i
            }
            None => {
                let i = self.feeds.len();
                self.names.insert(feed.into(), i);
                self.feeds.push((
                    feed.into(),
                    Feed {
                        mark: key.ts,
                        last: None,
                        queue: VecDeque::new(),
                    },
                ));
                i
            }
        };
        self.seq += 1;
        let entry = Entry {
            key,
            seq: self.seq,
            item,
        };
        let q = &mut self.feeds[i].1.queue;
        // Most records arrive in order: appended after one comparison. A
        // late one goes after every entry with a key not above its own.
        let in_order = match q.back() {
            None => true,
            Some(b) => cmp_keys(&entry.key, &b.key, by) != Ordering::Less,
        };
        if in_order {
            q.push_back(entry);
        } else {
            let at = q.partition_point(|e| cmp_keys(&e.key, &entry.key, by) != Ordering::Greater);
            q.insert(at, entry);
        }
        self.held += 1;
        Ok(i)
    }

    /// Queues `item`; `false` (the item dropped) when the feed has already
    /// released a later key.
    pub fn push(&mut self, feed: &[u8], key: Key<I>, item: V, by: &impl Ids<I>) -> bool {
        self.queue(feed, key, item, by).is_ok()
    }

    /// [`Order::push`] then what the feed releases now; `None` when refused.
    pub fn offer(&mut self, feed: &[u8], key: Key<I>, item: V, by: &impl Ids<I>) -> Option<Vec<V>> {
        let i = self.queue(feed, key, item, by).ok()?;
        Some(self.release(i, None, false))
    }

    /// What `feed`'s mark releases now, in order; `None` for a feed never seen.
    pub fn ready(&mut self, feed: &[u8]) -> Option<Vec<V>> {
        let i = self.index(feed)?;
        Some(self.release(i, None, false))
    }

    /// The entries of feed `i` before `bound` (its mark less the lateness
    /// when `None`; at the bound too when `inclusive`), in order; the
    /// feed's last release moves to the last of them.
    fn drain(&mut self, i: usize, bound: Option<i64>, inclusive: bool) -> Vec<Entry<I, V>> {
        let lateness = self.lateness_ms;
        let f = &mut self.feeds[i].1;
        let cut = bound.unwrap_or(f.mark - lateness);
        let n = f
            .queue
            .iter()
            .position(|e| e.key.ts > cut || (e.key.ts == cut && !inclusive))
            .unwrap_or(f.queue.len());
        if n == 0 {
            return Vec::new();
        }
        let out: Vec<Entry<I, V>> = f.queue.drain(..n).collect();
        // A burst held past leaves its room behind: give it back once most is spent.
        if f.queue.capacity() > 1024 && f.queue.len() * 4 < f.queue.capacity() {
            f.queue.shrink_to(f.queue.len() * 2);
        }
        self.held -= out.len();
        out
    }

    fn release(&mut self, i: usize, bound: Option<i64>, inclusive: bool) -> Vec<V> {
        let taken = self.drain(i, bound, inclusive);
        let mut out = Vec::with_capacity(taken.len());
        let mut last = None;
        for e in taken {
            out.push(e.item);
            last = Some(e.key);
        }
        if last.is_some() {
            self.feeds[i].1.last = last;
        }
        out
    }

    /// What every feed holds before `bound` (each feed's own mark less the
    /// lateness when `None`; at the bound too when `inclusive`), in key
    /// order across feeds, arrival order among equal keys.
    pub fn taken(&mut self, bound: Option<i64>, inclusive: bool, by: &impl Ids<I>) -> Vec<V> {
        let mut all: Vec<Entry<I, V>> = Vec::new();
        for i in 0..self.feeds.len() {
            let mut got = self.drain(i, bound, inclusive);
            if let Some(e) = got.last() {
                let last = Key {
                    ts: e.key.ts,
                    rank: e.key.rank,
                    id: by.dup(&e.key.id),
                };
                self.feeds[i].1.last = Some(last);
                all.append(&mut got);
            }
        }
        all.sort_by(|a, b| cmp_keys(&a.key, &b.key, by).then(a.seq.cmp(&b.seq)));
        all.into_iter().map(|e| e.item).collect()
    }

    /// Removes what `feed` holds, as `(key, item)` in order; the feed keeps
    /// its mark and its last release.
    pub fn take(&mut self, feed: &[u8]) -> Vec<(Key<I>, V)> {
        let Some(i) = self.index(feed) else {
            return Vec::new();
        };
        let q = std::mem::take(&mut self.feeds[i].1.queue);
        self.held -= q.len();
        q.into_iter().map(|e| (e.key, e.item)).collect()
    }

    /// Calls `f` on every item held, feed by feed in order, until it fails.
    pub fn try_each<E>(&self, mut f: impl FnMut(&V) -> Result<(), E>) -> Result<(), E> {
        for (_, feed) in &self.feeds {
            for e in &feed.queue {
                f(&e.item)?;
            }
        }
        Ok(())
    }

    /// The earliest event time held.
    pub fn oldest(&self) -> Option<i64> {
        self.feeds
            .iter()
            .filter_map(|(_, f)| f.queue.front().map(|e| e.key.ts))
            .min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(ts: i64, id: &str) -> Key<String> {
        Key {
            ts,
            rank: 0,
            id: id.to_string(),
        }
    }

    fn push(o: &mut Order<String, String>, feed: &str, ts: i64, id: &str) -> bool {
        o.push(
            feed.as_bytes(),
            key(ts, id),
            format!("{feed}{ts}{id}"),
            &Plain,
        )
    }

    #[test]
    fn a_feed_releases_what_its_mark_is_more_than_the_lateness_past() {
        // The module docstring's example of `detectors/ordering.py`.
        let mut o: Order<String, i64> = Order::new(10);
        for ts in [5, 3, 9, 17] {
            assert!(o.push(b"P", key(ts, &ts.to_string()), ts, &Plain));
        }
        assert_eq!(o.ready(b"P"), Some(vec![3, 5]));
        assert!(!o.push(b"P", key(4, "4"), 4, &Plain));
        assert!(o.push(b"P", key(8, "8"), 8, &Plain));
        assert_eq!(o.offer(b"Q", key(20, "20"), 20, &Plain), Some(vec![]));
        let taken: Vec<i64> = o.take(b"P").into_iter().map(|(_, v)| v).collect();
        assert_eq!((taken, o.len()), (vec![8, 9, 17], 1));
        assert!(o.push(b"Q", key(9, "9"), 9, &Plain));
        assert_eq!(o.taken(Some(NO_BOUND), true, &Plain), vec![9, 20]);
        assert!(o.is_empty());
        assert_eq!(o.ready(b"R"), None);
    }

    #[test]
    fn one_record_moves_the_mark_one_lateness_at_most() {
        let mut o: Order<String, String> = Order::new(10);
        push(&mut o, "P", 0, "a");
        push(&mut o, "P", 1_000, "far");
        assert_eq!(o.feeds().next().unwrap().1.mark, 10);
        // 0 is not more than the lateness behind 10: still held.
        assert_eq!(o.ready(b"P"), Some(vec![]));
        push(&mut o, "P", 1_000, "far2");
        assert_eq!(o.ready(b"P"), Some(vec!["P0a".to_string()]));
    }

    #[test]
    fn equal_keys_leave_in_arrival_order_and_a_late_record_in_its_place() {
        let mut o: Order<String, String> = Order::new(100);
        push(&mut o, "P", 5, "b");
        push(&mut o, "P", 7, "a");
        o.push(b"P", key(5, "b"), "again".into(), &Plain);
        push(&mut o, "P", 5, "a");
        push(&mut o, "P", 6, "z");
        let out = o.taken(Some(NO_BOUND), true, &Plain);
        assert_eq!(out, ["P5a", "P5b", "again", "P6z", "P7a"]);
        // The last release is (7, "a"): an earlier key is refused, an equal one not.
        assert!(!push(&mut o, "P", 7, "0"));
        assert!(push(&mut o, "P", 7, "a"));
    }

    #[test]
    fn a_release_of_every_feed_merges_them_in_key_order() {
        let mut o: Order<String, String> = Order::new(10);
        for (feed, ts) in [("A", 3), ("B", 1), ("A", 30), ("B", 2), ("C", 40)] {
            push(&mut o, feed, ts, "x");
        }
        // Marks: A 13 (one lateness from 3), B 2, C 40: none is more
        // than the lateness past a record of its own.
        assert!(o.taken(None, false, &Plain).is_empty());
        push(&mut o, "A", 14, "x");
        assert_eq!(o.taken(None, false, &Plain), ["A3x"]);
        assert_eq!(
            o.taken(Some(30), true, &Plain),
            ["B1x", "B2x", "A14x", "A30x"]
        );
        assert_eq!(o.oldest(), Some(40));
        assert_eq!(o.len(), 1);
        assert!(!push(&mut o, "A", 29, "x"));
        assert!(push(&mut o, "B", 29, "x"));
    }

    #[test]
    fn a_restored_feed_is_put_in_order_and_counted() {
        let mut o: Order<String, String> = Order::new(10);
        let entries = [(9, 1), (5, 2), (7, 3)]
            .map(|(ts, seq)| Entry {
                key: key(ts, "k"),
                seq,
                item: ts.to_string(),
            })
            .into();
        o.restore_feed(b"F", 9, None, entries, &Plain);
        o.seq = 3;
        assert_eq!((o.len(), o.oldest()), (3, Some(5)));
        assert_eq!(
            o.offer(b"F", key(30, "z"), "30".into(), &Plain),
            Some(vec!["5".into(), "7".into()])
        );
        assert_eq!(o.taken(Some(NO_BOUND), true, &Plain), ["9", "30"]);
    }

    #[test]
    fn a_spent_burst_gives_its_room_back() {
        let mut o: Order<String, String> = Order::new(10);
        for ts in 0..100_000 {
            push(&mut o, "P", 0, &format!("{ts:06}"));
        }
        push(&mut o, "P", 20, "end");
        push(&mut o, "P", 30, "end");
        assert_eq!(o.ready(b"P").unwrap().len(), 100_000);
        assert!(o.feeds().next().unwrap().1.queue.capacity() < 1024);
    }
}
