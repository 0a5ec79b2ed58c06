//! The reference data's compact keyed table: rows of fixed-size fields
//! under a text key, packed, not as objects.
//!
//! A table is made with one [`Kind`] a field after the key:
//!
//! - [`Kind::Value`]: a value kept once per distinct value by the caller
//!   (ids of banks, platforms, roles, licence lists), stored as its 4-byte
//!   index;
//! - [`Kind::Text`]: text or none (ids that are mostly distinct, such as an
//!   account's owner), kept in the table's arena; 8 bytes a row plus the
//!   text;
//! - [`Kind::Int`]: an integer of 63 bits or none; 8 bytes a row.
//!
//! A row is `[key text (8)][hash (4)][4-byte fields][pad][8-byte fields]`,
//! so an account (key, owner as text, bank, role and platform as values,
//! opening time as an int) takes 40 bytes plus its two ids' text. Rows live
//! in chunks of [`CHUNK_ROWS`] and text in blocks of [`BLOCK_BYTES`]:
//! nothing is moved or copied as the table grows but the index of 4-byte
//! slots, kept at most two thirds full. Rows are never removed; a key set
//! again is updated in place, and a text field given the text it holds
//! keeps it where it is.
//!
//! Keys and text are bytes (the Python binding hands a string's UTF-8, or
//! for one with a lone surrogate what `surrogatepass` gives). The index
//! probes by SipHash-1-3 of the key under a key drawn at random for each
//! table (std's `RandomState`, as its `HashMap` does): account ids come
//! from outside, and ids chosen to collide must not turn look-ups into
//! scans. A table's state ([`Table::state`]) holds no hash.
//!
//! ```
//! use fundflow_core::table::{Field, Kind, Table};
//! let mut t = Table::new(&[Kind::Text, Kind::Value, Kind::Int]);
//! t.set(b"A1", &[Field::Text(Some(b"E1")), Field::Value(0), Field::Int(None)]).unwrap();
//! let row = t.find(b"A1").unwrap();
//! assert_eq!(t.field(row, 0), Field::Text(Some(b"E1")));
//! assert_eq!(t.find(b"A2"), None);
//! ```

use std::hash::{BuildHasher, RandomState};

/// Rows a chunk holds.
pub const CHUNK_ROWS: usize = 8192;
/// Bytes of text a block holds (a longer text gets a block of its own).
pub const BLOCK_BYTES: usize = 1 << 20;
/// The most fields after the key.
pub const MAX_FIELDS: usize = 16;

const EMPTY: u32 = u32::MAX;
const NO_TEXT: u64 = u64::MAX;
const NO_INT: i64 = i64::MIN;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Value,
    Text,
    Int,
}

impl Kind {
    /// The kind a letter names: `o` a value, `s` text, `i` an int.
    pub fn of_letter(c: char) -> Option<Kind> {
        match c {
            'o' => Some(Kind::Value),
            's' => Some(Kind::Text),
            'i' => Some(Kind::Int),
            _ => None,
        }
    }
}

/// One field of a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field<'a> {
    Value(u32),
    Text(Option<&'a [u8]>),
    Int(Option<i64>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TableError {
    /// A field of the wrong kind, or too many or too few fields.
    Shape(String),
    /// More rows than the index can number, or an int that is the "none"
    /// marker, or a text too long for a 4-byte length.
    Overflow(&'static str),
    /// A state that ends inside a row.
    Truncated,
    /// A state whose value index is past the values given.
    MissingValue,
}

impl std::fmt::Display for TableError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TableError::Shape(s) => f.write_str(s),
            TableError::Overflow(s) => f.write_str(s),
            TableError::Truncated => f.write_str("table state is truncated"),
            TableError::MissingValue => f.write_str("table state names a missing value"),
        }
    }
}

impl std::error::Error for TableError {}

/// Text, each a 1-byte length (under 255) or 255 and a 4-byte length, then
/// its bytes; referred to by `block << 32 | offset`.
#[derive(Debug, Default)]
struct Arena {
    blocks: Vec<Vec<u8>>,
    bytes: usize,
}

impl Arena {
    fn put(&mut self, text: &[u8]) -> Result<u64, TableError> {
        if text.len() > u32::MAX as usize - 5 {
            return Err(TableError::Overflow("text too long for a table"));
        }
        let head = if text.len() < 255 { 1 } else { 5 };
        let need = head + text.len();
        let fits = self
            .blocks
            .last()
            .is_some_and(|b| b.capacity() - b.len() >= need);
        if !fits {
            let size = need.max(BLOCK_BYTES);
            let block = Vec::with_capacity(size);
            self.bytes += block.capacity();
            self.blocks.push(block);
        }
        let index = self.blocks.len() - 1;
        let block = &mut self.blocks[index];
        let offset = block.len();
        if head == 1 {
            block.push(text.len() as u8);
        } else {
            block.push(255);
            block.extend_from_slice(&(text.len() as u32).to_le_bytes());
        }
        block.extend_from_slice(text);
        Ok(((index as u64) << 32) | offset as u64)
    }

    fn get(&self, at: u64) -> &[u8] {
        let block = &self.blocks[(at >> 32) as usize];
        let p = &block[(at & 0xffff_ffff) as usize..];
        if p[0] == 255 {
            let n = u32::from_le_bytes([p[1], p[2], p[3], p[4]]) as usize;
            &p[5..5 + n]
        } else {
            &p[1..1 + p[0] as usize]
        }
    }
}

/// A table whose index hashes keys with `S` (std's keyed SipHash by
/// default; the tests give a poor one, for long probe chains).
#[derive(Debug)]
pub struct Table<S = RandomState> {
    kinds: Vec<Kind>,
    off: Vec<usize>,
    row_size: usize,
    chunks: Vec<Box<[u8]>>,
    count: u32,
    arena: Arena,
    slots: Vec<u32>,
    hasher: S,
}

fn read_u32(r: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(r[at..at + 4].try_into().unwrap())
}

fn read_u64(r: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(r[at..at + 8].try_into().unwrap())
}

/// Reads from a state, refusing one that ends too soon.
struct Reader<'a> {
    p: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], TableError> {
        if self.p.len() < n {
            return Err(TableError::Truncated);
        }
        let (head, rest) = self.p.split_at(n);
        self.p = rest;
        Ok(head)
    }

    fn u32(&mut self) -> Result<u32, TableError> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().unwrap()))
    }
}

impl Table {
    /// A table with fields of `kinds` after the key (at most [`MAX_FIELDS`]).
    pub fn new(kinds: &[Kind]) -> Table {
        Table::with_hasher(kinds, RandomState::new())
    }
}

impl<S: BuildHasher> Table<S> {
    /// A table whose index hashes keys with `hasher`.
    pub fn with_hasher(kinds: &[Kind], hasher: S) -> Table<S> {
        assert!(
            kinds.len() <= MAX_FIELDS,
            "a table has at most {MAX_FIELDS} fields"
        );
        let mut off = vec![0; kinds.len()];
        let mut pos = 12;
        for (f, k) in kinds.iter().enumerate() {
            if *k == Kind::Value {
                off[f] = pos;
                pos += 4;
            }
        }
        pos = (pos + 7) & !7;
        for (f, k) in kinds.iter().enumerate() {
            if *k != Kind::Value {
                off[f] = pos;
                pos += 8;
            }
        }
        Table {
            kinds: kinds.to_vec(),
            off,
            row_size: (pos + 7) & !7,
            chunks: Vec::new(),
            count: 0,
            arena: Arena::default(),
            slots: vec![EMPTY; 8],
            hasher,
        }
    }

    pub fn kinds(&self) -> &[Kind] {
        &self.kinds
    }

    /// Rows held.
    pub fn len(&self) -> usize {
        self.count as usize
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Bytes of one row.
    pub fn row_size(&self) -> usize {
        self.row_size
    }

    fn row(&self, row: u32) -> &[u8] {
        let i = row as usize;
        let at = (i % CHUNK_ROWS) * self.row_size;
        &self.chunks[i / CHUNK_ROWS][at..at + self.row_size]
    }

    fn row_mut(&mut self, row: u32) -> &mut [u8] {
        let i = row as usize;
        let at = (i % CHUNK_ROWS) * self.row_size;
        &mut self.chunks[i / CHUNK_ROWS][at..at + self.row_size]
    }

    /// The key of row `row`.
    pub fn key(&self, row: u32) -> &[u8] {
        self.arena.get(read_u64(self.row(row), 0))
    }

    /// Field `f` of row `row`.
    pub fn field(&self, row: u32, f: usize) -> Field<'_> {
        self.field_of(self.row(row), f)
    }

    /// The fields of row `row`, in order, each given to `each`.
    pub fn fields<E>(
        &self,
        row: u32,
        mut each: impl FnMut(Field<'_>) -> Result<(), E>,
    ) -> Result<(), E> {
        let r = self.row(row);
        for f in 0..self.kinds.len() {
            each(self.field_of(r, f))?;
        }
        Ok(())
    }

    fn field_of<'a>(&'a self, r: &[u8], f: usize) -> Field<'a> {
        let at = self.off[f];
        match self.kinds[f] {
            Kind::Value => Field::Value(read_u32(r, at)),
            Kind::Text => match read_u64(r, at) {
                NO_TEXT => Field::Text(None),
                t => Field::Text(Some(self.arena.get(t))),
            },
            Kind::Int => match read_u64(r, at) as i64 {
                NO_INT => Field::Int(None),
                x => Field::Int(Some(x)),
            },
        }
    }

    fn hash(&self, key: &[u8]) -> u32 {
        self.hasher.hash_one(key) as u32
    }

    /// The slot holding `key`, or the empty slot where it would go.
    fn slot(&self, hash: u32, key: &[u8]) -> usize {
        let mask = self.slots.len() - 1;
        let mut i = hash as usize & mask;
        let mut perturb = hash;
        loop {
            let s = self.slots[i];
            if s == EMPTY {
                return i;
            }
            let r = self.row(s);
            if read_u32(r, 8) == hash && self.arena.get(read_u64(r, 0)) == key {
                return i;
            }
            perturb >>= 5;
            i = (i.wrapping_mul(5) + perturb as usize + 1) & mask;
        }
    }

    /// The row of `key`, if it is held.
    pub fn find(&self, key: &[u8]) -> Option<u32> {
        match self.slots[self.slot(self.hash(key), key)] {
            EMPTY => None,
            row => Some(row),
        }
    }

    /// Writes `fields` into the row bytes `r`, text into the arena (text
    /// equal to what `r` holds stays where it is).
    fn put_fields(&mut self, r: &mut [u8], fields: &[Field<'_>]) -> Result<(), TableError> {
        if fields.len() != self.kinds.len() {
            return Err(TableError::Shape(format!(
                "a row of this table has {} fields, not {}",
                self.kinds.len(),
                fields.len()
            )));
        }
        for (f, (kind, field)) in self.kinds.iter().zip(fields).enumerate() {
            let at = self.off[f];
            match (kind, field) {
                (Kind::Value, Field::Value(i)) => r[at..at + 4].copy_from_slice(&i.to_le_bytes()),
                (Kind::Text, Field::Text(t)) => {
                    let old = read_u64(r, at);
                    let new = match t {
                        None => NO_TEXT,
                        Some(t) if old != NO_TEXT && self.arena.get(old) == *t => old,
                        Some(t) => self.arena.put(t)?,
                    };
                    r[at..at + 8].copy_from_slice(&new.to_le_bytes());
                }
                (Kind::Int, Field::Int(x)) => {
                    let v = match x {
                        None => NO_INT,
                        Some(NO_INT) => {
                            return Err(TableError::Overflow("int too small for a table field"))
                        }
                        Some(x) => *x,
                    };
                    r[at..at + 8].copy_from_slice(&v.to_le_bytes());
                }
                _ => {
                    return Err(TableError::Shape(format!(
                        "field {f} is of kind {kind:?}, not {field:?}"
                    )))
                }
            }
        }
        Ok(())
    }

    /// Sets `key` to `fields`: its row, updated in place when it is held.
    /// A field that cannot be stored leaves the table as it was, but for
    /// text already put in the arena.
    pub fn set(&mut self, key: &[u8], fields: &[Field<'_>]) -> Result<u32, TableError> {
        let hash = self.hash(key);
        let slot = self.slot(hash, key);
        let held = self.slots[slot];
        let mut tmp = [0u8; 8 * (MAX_FIELDS + 2)];
        let size = self.row_size;
        if held != EMPTY {
            tmp[..size].copy_from_slice(self.row(held));
            self.put_fields(&mut tmp[..size], fields)?;
            self.row_mut(held).copy_from_slice(&tmp[..size]);
            return Ok(held);
        }
        if self.count >= EMPTY - 1 {
            return Err(TableError::Overflow("table full"));
        }
        for f in 0..self.kinds.len() {
            if self.kinds[f] == Kind::Text {
                let at = self.off[f];
                tmp[at..at + 8].copy_from_slice(&NO_TEXT.to_le_bytes());
            }
        }
        self.put_fields(&mut tmp[..size], fields)?;
        let text = self.arena.put(key)?;
        tmp[..8].copy_from_slice(&text.to_le_bytes());
        tmp[8..12].copy_from_slice(&hash.to_le_bytes());
        let row = self.count;
        if row as usize / CHUNK_ROWS >= self.chunks.len() {
            self.chunks
                .push(vec![0u8; size * CHUNK_ROWS].into_boxed_slice());
        }
        self.row_mut(row).copy_from_slice(&tmp[..size]);
        self.slots[slot] = row;
        self.count += 1;
        if self.count as usize * 3 >= self.slots.len() * 2 {
            self.grow_index();
        }
        Ok(row)
    }

    fn grow_index(&mut self) {
        let n = self.slots.len() * 2;
        let mask = n - 1;
        let mut slots = vec![EMPTY; n];
        for row in 0..self.count {
            let hash = read_u32(self.row(row), 8);
            let mut i = hash as usize & mask;
            let mut perturb = hash;
            while slots[i] != EMPTY {
                perturb >>= 5;
                i = (i.wrapping_mul(5) + perturb as usize + 1) & mask;
            }
            slots[i] = row;
        }
        self.slots = slots;
    }

    /// Bytes held on the heap: row chunks, text blocks and the index.
    pub fn heap_bytes(&self) -> usize {
        self.chunks.len() * self.row_size * CHUNK_ROWS
            + self.chunks.capacity() * std::mem::size_of::<Box<[u8]>>()
            + self.arena.bytes
            + self.arena.blocks.capacity() * std::mem::size_of::<Vec<u8>>()
            + self.slots.len() * 4
    }

    /// The rows as bytes, in insertion order: each its key (a 4-byte length
    /// and the bytes), then its fields (a value as its 4-byte index, text
    /// as a 4-byte length, or `0xffffffff` for none, and the bytes, an int
    /// as 8 bytes, `i64::MIN` for none), little-endian. No hash: the
    /// loading table hashes the keys with its own key.
    pub fn state(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for row in 0..self.count {
            let key = self.key(row);
            out.extend_from_slice(&(key.len() as u32).to_le_bytes());
            out.extend_from_slice(key);
            for f in 0..self.kinds.len() {
                match self.field(row, f) {
                    Field::Value(i) => out.extend_from_slice(&i.to_le_bytes()),
                    Field::Text(None) => out.extend_from_slice(&u32::MAX.to_le_bytes()),
                    Field::Text(Some(t)) => {
                        out.extend_from_slice(&(t.len() as u32).to_le_bytes());
                        out.extend_from_slice(t);
                    }
                    Field::Int(x) => out.extend_from_slice(&x.unwrap_or(NO_INT).to_le_bytes()),
                }
            }
        }
        out
    }

    /// Adds the rows of `state` ([`Table::state`]); values must be indices
    /// below `values`. A damaged state is refused where the damage is
    /// found, the rows before it kept.
    pub fn load(&mut self, state: &[u8], values: u32) -> Result<(), TableError> {
        let mut p = Reader { p: state };
        let mut fields: Vec<Field<'_>> = Vec::with_capacity(self.kinds.len());
        while !p.p.is_empty() {
            let n = p.u32()? as usize;
            let key = p.take(n)?;
            fields.clear();
            for f in 0..self.kinds.len() {
                fields.push(match self.kinds[f] {
                    Kind::Value => {
                        let i = p.u32()?;
                        if i >= values {
                            return Err(TableError::MissingValue);
                        }
                        Field::Value(i)
                    }
                    Kind::Text => match p.u32()? {
                        u32::MAX => Field::Text(None),
                        m => Field::Text(Some(p.take(m as usize)?)),
                    },
                    Kind::Int => {
                        let x = i64::from_le_bytes(p.take(8)?.try_into().unwrap());
                        Field::Int(if x == NO_INT { None } else { Some(x) })
                    }
                });
            }
            self.set(key, &fields)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::hash::{BuildHasherDefault, Hasher};

    /// A poor hash on purpose: 256 values, so long probe chains.
    #[derive(Default)]
    struct Poor(u32);

    impl Hasher for Poor {
        fn finish(&self) -> u64 {
            (self.0 & 0xff) as u64
        }

        fn write(&mut self, bytes: &[u8]) {
            for b in bytes {
                self.0 = self.0.wrapping_mul(31).wrapping_add(*b as u32);
            }
        }
    }

    fn poor(kinds: &[Kind]) -> Table<BuildHasherDefault<Poor>> {
        Table::with_hasher(kinds, BuildHasherDefault::default())
    }

    fn account(owner: &str, bank: u32, opened: Option<i64>) -> [Field<'_>; 3] {
        [
            Field::Text(Some(owner.as_bytes())),
            Field::Value(bank),
            Field::Int(opened),
        ]
    }

    #[test]
    fn rows_agree_with_a_map_through_updates() {
        let kinds = [Kind::Text, Kind::Value, Kind::Int];
        let mut t = poor(&kinds);
        let mut model: HashMap<String, (String, u32, Option<i64>)> = HashMap::new();
        let mut x = 12345u64;
        for step in 0..60_000u32 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let key = format!("62{:017}", x % 3000);
            if x % 3 == 0 {
                let owner = format!("E{}", step % 97);
                let opened = if step % 5 == 0 {
                    None
                } else {
                    Some(step as i64 - 30_000)
                };
                t.set(key.as_bytes(), &account(&owner, step % 7, opened))
                    .unwrap();
                model.insert(key, (owner, step % 7, opened));
            } else {
                let got = t.find(key.as_bytes());
                match model.get(&key) {
                    None => assert_eq!(got, None),
                    Some((o, b, i)) => {
                        let row = got.unwrap();
                        assert_eq!(t.key(row), key.as_bytes());
                        assert_eq!(t.field(row, 0), Field::Text(Some(o.as_bytes())));
                        assert_eq!(t.field(row, 1), Field::Value(*b));
                        assert_eq!(t.field(row, 2), Field::Int(*i));
                    }
                }
            }
        }
        assert_eq!(t.len(), model.len());
        assert!(t.slots.len() * 2 > t.len() * 3);
    }

    #[test]
    fn the_same_text_set_again_takes_no_arena() {
        let mut t = Table::new(&[Kind::Text, Kind::Value, Kind::Int]);
        t.set(b"A", &account("E1", 0, Some(5))).unwrap();
        let before = t.heap_bytes();
        let used = t.arena.blocks[0].len();
        t.set(b"A", &account("E1", 1, None)).unwrap();
        assert_eq!((t.heap_bytes(), t.arena.blocks[0].len()), (before, used));
        t.set(b"A", &account("E2", 1, None)).unwrap();
        assert_eq!(t.arena.blocks[0].len(), used + 3);
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn a_field_that_cannot_be_stored_leaves_the_row() {
        let mut t = Table::new(&[Kind::Text, Kind::Value, Kind::Int]);
        t.set(b"A", &account("E1", 0, Some(5))).unwrap();
        let bad = [
            Field::Text(Some(b"E9")),
            Field::Value(3),
            Field::Int(Some(i64::MIN)),
        ];
        assert_eq!(
            t.set(b"A", &bad),
            Err(TableError::Overflow("int too small for a table field"))
        );
        assert!(matches!(t.set(b"B", &bad), Err(TableError::Overflow(_))));
        assert!(matches!(
            t.set(b"B", &[Field::Int(None), Field::Value(0), Field::Int(None)]),
            Err(TableError::Shape(_))
        ));
        assert_eq!((t.len(), t.find(b"B")), (1, None));
        assert_eq!(t.field(0, 0), Field::Text(Some(b"E1")));
        assert_eq!(t.field(0, 2), Field::Int(Some(5)));
    }

    #[test]
    fn an_account_row_is_forty_bytes() {
        let t = Table::new(&[Kind::Text, Kind::Value, Kind::Value, Kind::Value, Kind::Int]);
        assert_eq!(t.row_size(), 40);
        assert_eq!(t.off, vec![24, 12, 16, 20, 32]);
    }

    #[test]
    fn state_round_trips_and_damage_is_refused() {
        let mut t = poor(&[Kind::Text, Kind::Value, Kind::Int]);
        let long = "9".repeat(BLOCK_BYTES + 10);
        let edges: Vec<String> = [254, 255, 256].iter().map(|n| "k".repeat(*n)).collect();
        t.set(b"A", &account("E1", 1, None)).unwrap();
        t.set(long.as_bytes(), &account(&long, 0, Some(-1)))
            .unwrap();
        for k in &edges {
            t.set(k.as_bytes(), &account(k, 0, Some(1))).unwrap();
        }
        t.set(
            b"N",
            &[Field::Text(None), Field::Value(0), Field::Int(None)],
        )
        .unwrap();
        let state = t.state();
        let mut back = Table::new(t.kinds());
        back.load(&state, 2).unwrap();
        assert_eq!(back.len(), t.len());
        for row in 0..t.count {
            assert_eq!(back.key(row), t.key(row));
            for f in 0..3 {
                assert_eq!(back.field(row, f), t.field(row, f));
            }
        }
        assert_eq!(back.state(), state);
        for row in 0..t.count {
            // Found again under the loading table's own hash.
            assert_eq!(back.find(t.key(row)), Some(row));
        }
        let mut cut = Table::new(t.kinds());
        let got = cut.load(&state[..state.len() - 3], 2);
        assert_eq!(got, Err(TableError::Truncated));
        let mut few = Table::new(t.kinds());
        let got = few.load(&state, 1);
        assert_eq!(got, Err(TableError::MissingValue));
    }
}
