//! A bounded cache of the strings a decoder has made, so that a value that
//! recurs (a currency, a clearing system, a bank, an initiator, an account)
//! is one object shared by the records that hold it, not a new one per
//! record: records held by the ordering stage and the detectors' windows
//! cost about half the memory, and a cached value is cheaper to hand out
//! than a new one is to make.
//!
//! Direct-mapped: each string has one slot (by a hash of its bytes); a
//! string met in its slot is a hit, any other takes the slot. The memory is
//! bounded by the slot count whatever the stream (the cache keeps a hash and
//! a reference per slot, the text is the value's own), and a value met once
//! costs one slot until another takes it.

/// Slots of `(hash, value)`; a value is compared with a text by the
/// caller's `eq` (a Python string's own UTF-8, with no copy kept here).
pub struct StrCache<V> {
    slots: Vec<Option<(u64, V)>>,
    mask: usize,
}

/// FNV-1a, 64 bits, then MurmurHash3's finalizer: FNV alone leaves short
/// strings that differ in one byte ("B1", "I1") in one slot.
fn hash(s: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in s.as_bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

/// Where a text goes: its hash, for [`StrCache::get`] and [`StrCache::put`].
#[derive(Clone, Copy)]
pub struct Key(u64);

impl Key {
    pub fn of(s: &str) -> Key {
        Key(hash(s))
    }
}

impl<V> StrCache<V> {
    /// A cache of `slots` slots (rounded up to a power of two, at least 1).
    pub fn new(slots: usize) -> Self {
        let n = slots.max(1).next_power_of_two();
        StrCache {
            slots: (0..n).map(|_| None).collect(),
            mask: n - 1,
        }
    }

    fn slot(&self, key: Key) -> usize {
        key.0 as usize & self.mask
    }

    /// The value cached for text `s` (of `key`), if it holds its slot:
    /// same hash, and `eq(value, s)`.
    pub fn get(&self, key: Key, s: &str, eq: impl Fn(&V, &str) -> bool) -> Option<&V> {
        match &self.slots[self.slot(key)] {
            Some((h, v)) if *h == key.0 && eq(v, s) => Some(v),
            _ => None,
        }
    }

    /// Caches `value` for the text of `key`, in place of what held its slot.
    pub fn put(&mut self, key: Key, value: V) {
        let i = self.slot(key);
        self.slots[i] = Some((key.0, value));
    }

    /// The number of slots.
    pub fn capacity(&self) -> usize {
        self.slots.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn same(v: &String, s: &str) -> bool {
        v == s
    }

    fn put(c: &mut StrCache<String>, s: &str) {
        c.put(Key::of(s), s.to_string());
    }

    fn get<'a>(c: &'a StrCache<String>, s: &str) -> Option<&'a String> {
        c.get(Key::of(s), s, same)
    }

    #[test]
    fn a_string_put_is_found_until_another_takes_its_slot() {
        let mut c: StrCache<String> = StrCache::new(1000);
        assert_eq!(c.capacity(), 1024);
        assert_eq!(get(&c, "CNY"), None);
        put(&mut c, "CNY");
        put(&mut c, "CNAPS");
        assert_eq!(get(&c, "CNY").map(String::as_str), Some("CNY"));
        assert_eq!(get(&c, "CNAPS").map(String::as_str), Some("CNAPS"));
        assert_eq!(get(&c, "CNZ"), None);
        // One slot: every string shares it, the last put holds it.
        let mut one: StrCache<String> = StrCache::new(0);
        assert_eq!(one.capacity(), 1);
        put(&mut one, "a");
        put(&mut one, "b");
        assert_eq!(get(&one, "a"), None);
        assert_eq!(get(&one, "b").map(String::as_str), Some("b"));
    }

    #[test]
    fn a_value_is_compared_not_only_hashed() {
        // A slot holding another text under the same hash is a miss.
        let mut c: StrCache<String> = StrCache::new(16);
        c.put(Key::of("A1"), "not A1".to_string());
        assert_eq!(get(&c, "A1"), None);
    }

    #[test]
    fn the_memory_is_bounded_by_the_slots_whatever_is_put() {
        let mut c: StrCache<String> = StrCache::new(64);
        for i in 0..100_000 {
            put(&mut c, &format!("TX{i:09}"));
        }
        let held = c.slots.iter().filter(|s| s.is_some()).count();
        assert!(held <= 64, "{held}");
        // The last one put is always found; most earlier ones are gone.
        assert!(get(&c, "TX000099999").is_some());
        let found = (0..100_000)
            .filter(|i| get(&c, &format!("TX{i:09}")).is_some())
            .count();
        assert!(found <= 64);
    }

    #[test]
    fn short_ids_that_differ_in_one_byte_take_slots_of_their_own() {
        let c: StrCache<String> = StrCache::new(16_384);
        let mut ids: Vec<String> = Vec::new();
        for a in b'A'..=b'Z' {
            for d in b'0'..=b'9' {
                ids.push(String::from_utf8(vec![a, d]).unwrap());
            }
        }
        let slots: std::collections::HashSet<usize> =
            ids.iter().map(|s| c.slot(Key::of(s))).collect();
        // 260 ids in 16,384 slots: a few may share by chance, not whole rows
        assert!(slots.len() >= 255, "{}", slots.len());
    }

    #[test]
    fn equal_text_in_another_allocation_is_a_hit() {
        let mut c: StrCache<String> = StrCache::new(16);
        put(&mut c, &String::from("ACC-U017601"));
        let again: String = ["ACC-", "U017601"].concat();
        assert_eq!(get(&c, &again).map(String::as_str), Some("ACC-U017601"));
    }
}
