//! The alert book of `detectors/alerting.py`: what each detector has said
//! under each alert id, when a growing finding is worth saying again, and
//! the settling of findings whose episode has ended in event time.
//!
//! **Offers.** A detector offers a finding's current figures (severity,
//! amount in fen, first and last event time) each time they change, with a
//! builder of its accounts, summary and evidence. The book states it (calls
//! the caller's `emit` with the builder) when the id is new, when the
//! severity rises, when the amount has grown by `growth_pct` per cent (and
//! is larger), or, for a final offer, when anything moved since the last
//! revision. A stated finding never steps down a band in place: the alert
//! keeps the worst severity seen. The builder is called only when stating.
//!
//! **Settling.** An offer declined while its figures moved waits, as the
//! finding's latest figures, with `ends`: the last event time at which its
//! episode can still change, or [`NO_END`] for an episode that ends at a
//! record ([`Book::close`]) or with the stream. When the subject's clock
//! passes `ends` ([`Book::settle`]; [`Book::settle_due`] for every subject
//! at once, in id order) the waiting offer is made once more as final;
//! [`Book::settle_open`] settles every waiting offer, subject by subject in
//! id order, each subject's in the order offered. An offer stated, or
//! equal to the last revision, leaves nothing waiting.
//!
//! Ids and subjects are bytes (the binding's UTF-8, or what `surrogatepass`
//! gives of a lone surrogate: in either, byte order is code-point order, so
//! "in id order" is Python's order of the strings). What was said and what
//! waits keep the order of their first insertion, as Python's dicts do.
//!
//! ```
//! use fundflow_core::book::{Book, BookError, Emit, NO_END};
//! let mut book: Book<&'static str> = Book::new(10, vec![("low".into(), 0), ("high".into(), 2)]);
//! let mut said = Vec::new();
//! let mut emit = |e: &Emit<'_, &'static str>| -> Result<(), BookError> {
//!     said.push((e.revision, e.amount, *e.build));
//!     Ok(())
//! };
//! let low = book.severity(b"low").unwrap();
//! assert!(book.offer(b"A1", b"P", low, 100, 0, 0, "first", false, 50, &mut emit).unwrap());
//! // Grown by less than 10 %: waits, until the subject's clock passes 50.
//! assert!(!book.offer(b"A1", b"P", low, 105, 0, 40, "grew", false, 50, &mut emit).unwrap());
//! book.settle(b"P", 51, &mut emit).unwrap();
//! assert_eq!(book.waiting_len(), 0);
//! // A finding with no end in event time waits for the stream's.
//! assert!(!book.offer(b"A1", b"P", low, 106, 0, 60, "open", false, NO_END, &mut emit).unwrap());
//! book.settle_open(&mut emit).unwrap();
//! drop(emit);
//! assert_eq!(said, vec![(1, 100, "first"), (2, 105, "grew"), (3, 106, "open")]);
//! ```

use std::collections::{BTreeMap, HashMap};

/// An episode with no end in event time.
pub const NO_END: i64 = -1;

/// Amounts the book compares: within this many fen (growth is computed
/// exactly in 128 bits below it).
pub const MAX_AMOUNT: i128 = 10i128.pow(30);

type Key = Box<[u8]>;

/// A map that keeps the order keys were first inserted in (a key set
/// again keeps its place; one removed and set again goes last), as
/// Python's dict does.
#[derive(Debug)]
pub struct Ordered<V> {
    next: u64,
    at: HashMap<Key, (u64, V)>,
    order: BTreeMap<u64, Key>,
}

impl<V> Default for Ordered<V> {
    fn default() -> Self {
        Ordered {
            next: 0,
            at: HashMap::new(),
            order: BTreeMap::new(),
        }
    }
}

impl<V> Ordered<V> {
    pub fn len(&self) -> usize {
        self.at.len()
    }

    pub fn is_empty(&self) -> bool {
        self.at.is_empty()
    }

    pub fn get(&self, k: &[u8]) -> Option<&V> {
        self.at.get(k).map(|(_, v)| v)
    }

    pub fn get_mut(&mut self, k: &[u8]) -> Option<&mut V> {
        self.at.get_mut(k).map(|(_, v)| v)
    }

    /// Sets `k` to `v`, in its place when it is held.
    pub fn insert(&mut self, k: &[u8], v: V) {
        if let Some(slot) = self.at.get_mut(k) {
            slot.1 = v;
            return;
        }
        let seq = self.next;
        self.next += 1;
        self.order.insert(seq, k.into());
        self.at.insert(k.into(), (seq, v));
    }

    /// The value of `k`, inserted with `make` when absent.
    pub fn get_or_insert_with(&mut self, k: &[u8], make: impl FnOnce() -> V) -> &mut V {
        if !self.at.contains_key(k) {
            self.insert(k, make());
        }
        &mut self.at.get_mut(k).unwrap().1
    }

    pub fn remove(&mut self, k: &[u8]) -> Option<V> {
        let (seq, v) = self.at.remove(k)?;
        self.order.remove(&seq);
        Some(v)
    }

    /// Keys and values in insertion order.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &V)> {
        self.order.values().map(|k| (&**k, &self.at[k].1))
    }

    pub fn values(&self) -> impl Iterator<Item = &V> {
        self.at.values().map(|(_, v)| v)
    }

    /// Bytes held on the heap but for what the values themselves hold:
    /// the hash table at its capacity (a control byte a slot), the keys
    /// (twice: the table's and the order's) and the order's entries.
    pub fn heap_bytes(&self) -> usize {
        let keys: usize = self.order.values().map(|k| k.len()).sum();
        self.at.capacity() * (std::mem::size_of::<(Key, (u64, V))>() + 1)
            + 2 * keys
            + self.order.len() * std::mem::size_of::<(u64, Key)>()
    }
}

/// What was last stated under one id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Said {
    pub revision: i64,
    pub severity: usize,
    pub amount: i128,
    pub last_ts: i64,
}

/// A declined offer's latest figures.
#[derive(Debug)]
pub struct Entry<B> {
    pub severity: usize,
    pub amount: i128,
    pub first_ts: i64,
    pub last_ts: i64,
    pub build: B,
    pub ends: i64,
}

/// A finding to state, handed to the caller's `emit`.
#[derive(Debug)]
pub struct Emit<'a, B> {
    pub alert_id: &'a [u8],
    pub subject_id: &'a [u8],
    pub severity: usize,
    pub amount: i128,
    pub first_ts: i64,
    pub last_ts: i64,
    pub revision: i64,
    pub build: &'a B,
}

impl<'a, B> Emit<'a, B> {
    /// The statement of `said`'s figures, from `first_ts`.
    fn of(
        alert_id: &'a [u8],
        subject_id: &'a [u8],
        said: &Said,
        first_ts: i64,
        build: &'a B,
    ) -> Self {
        Emit {
            alert_id,
            subject_id,
            severity: said.severity,
            amount: said.amount,
            first_ts,
            last_ts: said.last_ts,
            revision: said.revision,
            build,
        }
    }
}

/// What an offer comes to.
enum Decision {
    /// Not stated; `moved` when its figures differ from the last revision.
    Decline { moved: bool },
    /// Stated, with these figures (the severity the worst seen).
    State(Said),
}

/// Why an offer is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BookError {
    /// An amount beyond [`MAX_AMOUNT`].
    Amount(i128),
}

/// The book of one detector; `B` is what builds a stated finding.
#[derive(Debug)]
pub struct Book<B> {
    pub growth_pct: i128,
    /// Severity names and their ranks, in the caller's order.
    severities: Vec<(String, i64)>,
    said: Ordered<Said>,
    waiting: Ordered<Ordered<Entry<B>>>,
    /// Subject -> a lower bound of its waiting offers' earliest `ends`.
    due: HashMap<Key, i64>,
    /// A lower bound of every `due`, or [`NO_END`].
    pub earliest: i64,
}

impl<B> Book<B> {
    pub fn new(growth_pct: i128, severities: Vec<(String, i64)>) -> Self {
        Book {
            growth_pct,
            severities,
            said: Ordered::default(),
            waiting: Ordered::default(),
            due: HashMap::new(),
            earliest: NO_END,
        }
    }

    /// The index of severity `name`.
    pub fn severity(&self, name: &[u8]) -> Option<usize> {
        self.severities
            .iter()
            .position(|(n, _)| n.as_bytes() == name)
    }

    fn rank(&self, i: usize) -> i64 {
        self.severities[i].1
    }

    /// What an offer of these figures under `alert_id` comes to.
    fn decide(
        &self,
        alert_id: &[u8],
        mut severity: usize,
        amount: i128,
        last_ts: i64,
        final_: bool,
    ) -> Result<Decision, BookError> {
        if !(-MAX_AMOUNT..=MAX_AMOUNT).contains(&amount) {
            return Err(BookError::Amount(amount));
        }
        let revision = match self.said.get(alert_id) {
            None => 1,
            Some(said) => {
                let rank_up = self.rank(severity) > self.rank(said.severity);
                let grown =
                    amount * 100 >= said.amount * (100 + self.growth_pct) && amount > said.amount;
                let moved =
                    amount != said.amount || last_ts != said.last_ts || severity != said.severity;
                if !(rank_up || grown || (final_ && moved)) {
                    return Ok(Decision::Decline { moved });
                }
                if self.rank(severity) < self.rank(said.severity) {
                    severity = said.severity;
                }
                said.revision + 1
            }
        };
        Ok(Decision::State(Said {
            revision,
            severity,
            amount,
            last_ts,
        }))
    }

    /// Notes `said` as what `alert_id` last stated: nothing of it waits.
    fn noted(&mut self, alert_id: &[u8], subject_id: &[u8], said: Said) {
        self.said.insert(alert_id, said);
        self.unwait(alert_id, subject_id);
    }

    /// Offers a finding's current figures; `true` when it was stated.
    #[allow(clippy::too_many_arguments)]
    pub fn offer<E>(
        &mut self,
        alert_id: &[u8],
        subject_id: &[u8],
        severity: usize,
        amount: i128,
        first_ts: i64,
        last_ts: i64,
        build: B,
        final_: bool,
        ends: i64,
        emit: &mut impl FnMut(&Emit<'_, B>) -> Result<(), E>,
    ) -> Result<bool, E>
    where
        E: From<BookError>,
    {
        match self.decide(alert_id, severity, amount, last_ts, final_)? {
            Decision::Decline { moved: true } => {
                let entry = Entry {
                    severity,
                    amount,
                    first_ts,
                    last_ts,
                    build,
                    ends,
                };
                self.wait(alert_id, subject_id, entry);
                Ok(false)
            }
            Decision::Decline { moved: false } => {
                self.unwait(alert_id, subject_id);
                Ok(false)
            }
            Decision::State(said) => {
                emit(&Emit::of(alert_id, subject_id, &said, first_ts, &build))?;
                self.noted(alert_id, subject_id, said);
                Ok(true)
            }
        }
    }

    fn wait(&mut self, alert_id: &[u8], subject_id: &[u8], entry: Entry<B>) {
        let ends = entry.ends;
        self.waiting
            .get_or_insert_with(subject_id, Ordered::default)
            .insert(alert_id, entry);
        if ends != NO_END {
            match self.due.get_mut(subject_id) {
                Some(due) if ends >= *due => {}
                Some(due) => *due = ends,
                None => {
                    self.due.insert(subject_id.into(), ends);
                }
            }
            if self.earliest == NO_END || ends < self.earliest {
                self.earliest = ends;
            }
        }
    }

    fn unwait(&mut self, alert_id: &[u8], subject_id: &[u8]) {
        if let Some(per) = self.waiting.get_mut(subject_id) {
            if per.remove(alert_id).is_some() && per.is_empty() {
                self.waiting.remove(subject_id);
                self.due.remove(subject_id);
            }
        }
    }

    /// The waiting offer `alert_id` of `subject_id`, made once more as
    /// final: stated when it moved since the last revision, else dropped
    /// (a final offer never waits again). A failed statement leaves it
    /// waiting.
    fn finish<E: From<BookError>>(
        &mut self,
        alert_id: &[u8],
        subject_id: &[u8],
        emit: &mut impl FnMut(&Emit<'_, B>) -> Result<(), E>,
    ) -> Result<(), E> {
        let Some(e) = self
            .waiting
            .get(subject_id)
            .and_then(|per| per.get(alert_id))
        else {
            return Ok(());
        };
        let (severity, amount, first_ts, last_ts) = (e.severity, e.amount, e.first_ts, e.last_ts);
        match self.decide(alert_id, severity, amount, last_ts, true)? {
            Decision::Decline { .. } => self.unwait(alert_id, subject_id),
            Decision::State(said) => {
                emit(&Emit::of(alert_id, subject_id, &said, first_ts, &e.build))?;
                self.noted(alert_id, subject_id, said);
            }
        }
        Ok(())
    }

    /// Whether [`Book::settle`] of `subject_id` at `now` has anything to do.
    pub fn is_due(&self, subject_id: &[u8], now: i64) -> bool {
        matches!(self.due.get(subject_id), Some(due) if now > *due)
    }

    /// `subject_id`'s clock is at `now`: settles its waiting offers whose
    /// episode ended before it (`ends < now`). O(1) when none has.
    pub fn settle<E: From<BookError>>(
        &mut self,
        subject_id: &[u8],
        now: i64,
        emit: &mut impl FnMut(&Emit<'_, B>) -> Result<(), E>,
    ) -> Result<(), E> {
        if !self.is_due(subject_id, now) {
            return Ok(());
        }
        let ended: Vec<Key> = match self.waiting.get(subject_id) {
            Some(per) => per
                .iter()
                .filter(|(_, e)| e.ends != NO_END && e.ends < now)
                .map(|(k, _)| k.into())
                .collect(),
            None => Vec::new(),
        };
        for aid in &ended {
            self.finish(aid, subject_id, emit)?;
        }
        let Some(per) = self.waiting.get(subject_id) else {
            return Ok(());
        };
        match per.values().map(|e| e.ends).filter(|e| *e != NO_END).min() {
            Some(min) => {
                self.due.insert(subject_id.into(), min);
            }
            None => {
                self.due.remove(subject_id);
            }
        }
        Ok(())
    }

    /// The episode of `alert_id` has just ended at a record: settles its
    /// waiting offer now.
    pub fn close<E: From<BookError>>(
        &mut self,
        subject_id: &[u8],
        alert_id: &[u8],
        emit: &mut impl FnMut(&Emit<'_, B>) -> Result<(), E>,
    ) -> Result<(), E> {
        self.finish(alert_id, subject_id, emit)
    }

    /// Every subject's clock is at `now`: settles what ended before it,
    /// subject by subject in id order. O(1) when nothing has ended.
    pub fn settle_due<E: From<BookError>>(
        &mut self,
        now: i64,
        emit: &mut impl FnMut(&Emit<'_, B>) -> Result<(), E>,
    ) -> Result<(), E> {
        if self.earliest == NO_END || now <= self.earliest {
            return Ok(());
        }
        let mut subjects: Vec<Key> = self
            .due
            .iter()
            .filter(|(_, due)| **due < now)
            .map(|(s, _)| s.clone())
            .collect();
        subjects.sort_unstable();
        for s in &subjects {
            self.settle(s, now, emit)?;
        }
        self.earliest = self.due.values().copied().min().unwrap_or(NO_END);
        Ok(())
    }

    /// The end of a stream: settles every waiting offer, ended or not,
    /// subject by subject in id order, each subject's in the order offered.
    pub fn settle_open<E: From<BookError>>(
        &mut self,
        emit: &mut impl FnMut(&Emit<'_, B>) -> Result<(), E>,
    ) -> Result<(), E> {
        let mut subjects: Vec<Key> = self.waiting.iter().map(|(s, _)| s.into()).collect();
        subjects.sort_unstable();
        for s in &subjects {
            let aids: Vec<Key> = match self.waiting.get(s) {
                Some(per) => per.iter().map(|(a, _)| a.into()).collect(),
                None => continue,
            };
            for aid in &aids {
                self.finish(aid, s, emit)?;
            }
        }
        Ok(())
    }

    /// What was said, by id, in the order first said.
    pub fn said(&self) -> impl Iterator<Item = (&[u8], &Said)> {
        self.said.iter()
    }

    /// Replaces what was said.
    pub fn load_said(&mut self, said: impl IntoIterator<Item = (Key, Said)>) {
        self.said = Ordered::default();
        for (k, s) in said {
            self.said.insert(&k, s);
        }
    }

    /// The waiting offers by subject, each subject's in the order offered.
    pub fn waiting(&self) -> impl Iterator<Item = (&[u8], &Ordered<Entry<B>>)> {
        self.waiting.iter()
    }

    /// Waiting offers held.
    pub fn waiting_len(&self) -> usize {
        self.waiting.values().map(Ordered::len).sum()
    }

    /// Replaces the waiting offers (a checkpoint's), and with them the
    /// subjects' due times.
    pub fn load_waiting(&mut self, waiting: impl IntoIterator<Item = (Key, Vec<(Key, Entry<B>)>)>) {
        self.waiting = Ordered::default();
        self.due = HashMap::new();
        for (subject, entries) in waiting {
            let per = self.waiting.get_or_insert_with(&subject, Ordered::default);
            for (aid, e) in entries {
                per.insert(&aid, e);
            }
            let min = per.values().map(|e| e.ends).filter(|e| *e != NO_END).min();
            if let Some(min) = min {
                self.due.insert(subject, min);
            }
        }
        self.earliest = self.due.values().copied().min().unwrap_or(NO_END);
    }

    /// Every builder held, for a caller that must visit them.
    pub fn builders(&self) -> impl Iterator<Item = &B> {
        self.waiting
            .values()
            .flat_map(|per| per.values().map(|e| &e.build))
    }

    /// Bytes held on the heap (what the builders hold aside).
    pub fn heap_bytes(&self) -> usize {
        self.said.heap_bytes()
            + self.waiting.heap_bytes()
            + self
                .waiting
                .values()
                .map(Ordered::heap_bytes)
                .sum::<usize>()
            + self.due.capacity() * (std::mem::size_of::<(Key, i64)>() + 1)
            + self.due.keys().map(|k| k.len()).sum::<usize>()
            + self.severities.capacity() * std::mem::size_of::<(String, i64)>()
    }

    /// Drops every waiting offer (their builders), keeping what was said.
    pub fn drop_waiting(&mut self) {
        self.waiting = Ordered::default();
        self.due = HashMap::new();
        self.earliest = NO_END;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Said3 = (i64, String, i128, Vec<u8>);

    fn book() -> Book<u32> {
        Book::new(
            10,
            ["low", "medium", "high", "critical"]
                .iter()
                .enumerate()
                .map(|(i, n)| (n.to_string(), i as i64))
                .collect(),
        )
    }

    struct Log(Vec<Said3>);

    impl Log {
        fn emit(&mut self) -> impl FnMut(&Emit<'_, u32>) -> Result<(), BookError> + '_ {
            |e| {
                let name = ["low", "medium", "high", "critical"][e.severity];
                self.0
                    .push((e.revision, name.into(), e.amount, e.alert_id.to_vec()));
                Ok(())
            }
        }
    }

    #[test]
    fn grows_rises_and_never_steps_down() {
        let mut b = book();
        let mut log = Log(Vec::new());
        let (low, high) = (b.severity(b"low").unwrap(), b.severity(b"high").unwrap());
        assert!(b
            .offer(
                b"A",
                b"P",
                high,
                100,
                0,
                1,
                0,
                false,
                NO_END,
                &mut log.emit()
            )
            .unwrap());
        // 9 % more: not yet; 10 % more: stated; lower band: kept high.
        assert!(!b
            .offer(
                b"A",
                b"P",
                low,
                109,
                0,
                2,
                1,
                false,
                NO_END,
                &mut log.emit()
            )
            .unwrap());
        assert!(b
            .offer(
                b"A",
                b"P",
                low,
                110,
                0,
                3,
                2,
                false,
                NO_END,
                &mut log.emit()
            )
            .unwrap());
        // Same amount, higher band than said: stated.
        let crit = b.severity(b"critical").unwrap();
        assert!(b
            .offer(
                b"A",
                b"P",
                crit,
                110,
                0,
                3,
                3,
                false,
                NO_END,
                &mut log.emit()
            )
            .unwrap());
        assert_eq!(
            log.0,
            vec![
                (1, "high".into(), 100, b"A".to_vec()),
                (2, "high".into(), 110, b"A".to_vec()),
                (3, "critical".into(), 110, b"A".to_vec()),
            ]
        );
        // The declined 109 waited; the stated 110 took it away.
        assert_eq!(b.waiting_len(), 0);
    }

    #[test]
    fn settles_by_subject_clock_in_offer_and_id_order() {
        let mut b = book();
        let mut log = Log(Vec::new());
        let low = b.severity(b"low").unwrap();
        for (aid, subject) in [(&b"Z"[..], &b"Q"[..]), (b"Y", b"P"), (b"X", b"P")] {
            b.offer(aid, subject, low, 100, 0, 0, 0, false, 10, &mut log.emit())
                .unwrap();
            b.offer(aid, subject, low, 101, 0, 5, 1, false, 10, &mut log.emit())
                .unwrap();
        }
        assert_eq!((b.waiting_len(), b.earliest), (3, 10));
        b.settle(b"P", 10, &mut log.emit()).unwrap(); // not after 10 yet
        assert_eq!(log.0.len(), 3);
        b.settle_due(11, &mut log.emit()).unwrap();
        let order: Vec<&[u8]> = log.0[3..].iter().map(|s| &s.3[..]).collect();
        // Subject P before Q; within P, Y (offered first) before X.
        assert_eq!(order, vec![&b"Y"[..], b"X", b"Z"]);
        assert_eq!((b.waiting_len(), b.earliest), (0, NO_END));
    }

    #[test]
    fn an_open_episode_waits_for_its_close_or_the_end() {
        let mut b = book();
        let mut log = Log(Vec::new());
        let low = b.severity(b"low").unwrap();
        for aid in [&b"B"[..], b"A"] {
            b.offer(aid, b"P", low, 100, 0, 0, 0, false, NO_END, &mut log.emit())
                .unwrap();
            b.offer(aid, b"P", low, 102, 0, 1, 1, false, NO_END, &mut log.emit())
                .unwrap();
        }
        b.settle(b"P", i64::MAX, &mut log.emit()).unwrap();
        b.settle_due(i64::MAX, &mut log.emit()).unwrap();
        assert_eq!(log.0.len(), 2);
        b.close(b"P", b"A", &mut log.emit()).unwrap();
        assert_eq!(log.0[2], (2, "low".into(), 102, b"A".to_vec()));
        // Figures equal to the last revision: settled without a word.
        b.offer(
            b"A",
            b"P",
            low,
            102,
            0,
            1,
            2,
            false,
            NO_END,
            &mut log.emit(),
        )
        .unwrap();
        b.settle_open(&mut log.emit()).unwrap();
        assert_eq!(log.0[3], (2, "low".into(), 102, b"B".to_vec()));
        assert_eq!((log.0.len(), b.waiting_len()), (4, 0));
    }

    #[test]
    fn a_failed_statement_changes_nothing() {
        let mut b = book();
        let low = b.severity(b"low").unwrap();
        let mut fail = |_: &Emit<'_, u32>| -> Result<(), BookError> { Err(BookError::Amount(0)) };
        assert!(b
            .offer(b"A", b"P", low, 1, 0, 0, 0, false, 5, &mut fail)
            .is_err());
        assert_eq!((b.said().count(), b.waiting_len()), (0, 0));
        let too_big = MAX_AMOUNT + 1;
        let mut ok = |_: &Emit<'_, u32>| -> Result<(), BookError> { Ok(()) };
        assert_eq!(
            b.offer(b"A", b"P", low, too_big, 0, 0, 0, false, 5, &mut ok),
            Err(BookError::Amount(too_big))
        );
    }

    #[test]
    fn ordered_keeps_first_insertion_order() {
        let mut m: Ordered<u32> = Ordered::default();
        for (k, v) in [(&b"b"[..], 1), (b"a", 2), (b"c", 3), (b"b", 4)] {
            m.insert(k, v);
        }
        m.remove(b"a");
        m.insert(b"a", 5);
        let got: Vec<(&[u8], u32)> = m.iter().map(|(k, v)| (k, *v)).collect();
        assert_eq!(got, vec![(&b"b"[..], 4), (b"c", 3), (b"a", 5)]);
    }
}
