//! An id -> position map for large catalogues and user tables: open addressing
//! over one 8-byte word per slot, with ids of up to 7 bytes (MIND's `N12345`,
//! `U123456`) packed whole into the word, so that checking one reads a single
//! word and hashes nothing but it. Longer ids keep a 56-bit hash in the word and
//! their bytes in one contiguous arena, compared only when the hashes agree.
//! Positions sit in a parallel array that only [`IdIndex::get`] reads, so that a
//! membership check ([`IdIndex::contains`]) touches the small word array alone.
//!
//! Positions are given in insertion order: the first new key gets 0, the next 1.

/// An empty slot. No key's word is this: a short key's top byte is its length
/// (0..=7), and a long key's word has its lowest bit clear.
const EMPTY: u64 = u64::MAX;

/// Top byte of a long key's word.
const LONG: u64 = 0xff << 56;

#[derive(Clone, Debug, Default)]
pub(crate) struct IdIndex {
    /// Every key's bytes, in position order.
    arena: Vec<u8>,
    /// End of each position's key in the arena.
    ends: Vec<usize>,
    /// Slot words ([`word`]), or [`EMPTY`].
    words: Vec<u64>,
    /// Position of the key in the same slot of `words`.
    positions: Vec<usize>,
    /// `64 - log2(words.len())`: the slot is the top bits of the mixed word.
    shift: u32,
}

/// A key of up to 7 bytes as one word: its bytes, and its length in the top byte.
/// Built from two overlapping loads rather than a loop over the bytes: a loop of
/// varying length mispredicts its end, which also stops the loads of the keys
/// after it from overlapping ([`IdIndex::contains_each`]).
fn pack(key: &[u8]) -> Option<u64> {
    let n = key.len();
    let bytes = match n {
        8.. => return None,
        4.. => {
            let first = key.first_chunk::<4>().map_or(0, |b| u32::from_le_bytes(*b));
            let last = key.last_chunk::<4>().map_or(0, |b| u32::from_le_bytes(*b));
            u64::from(first) | (u64::from(last) << (8 * (n - 4)))
        }
        2.. => {
            let first = key.first_chunk::<2>().map_or(0, |b| u16::from_le_bytes(*b));
            let last = key.last_chunk::<2>().map_or(0, |b| u16::from_le_bytes(*b));
            u64::from(first) | (u64::from(last) << (8 * (n - 2)))
        }
        1 => u64::from(key[0]),
        0 => 0,
    };
    Some(bytes | ((n as u64) << 56))
}

fn hash(key: &[u8]) -> u64 {
    const K: u64 = 0x517c_c1b7_2722_0a95;
    let mut h = key.len() as u64;
    let mut chunks = key.chunks_exact(8);
    for c in &mut chunks {
        let mut b = [0u8; 8];
        b.copy_from_slice(c);
        h = (h.rotate_left(5) ^ u64::from_le_bytes(b)).wrapping_mul(K);
    }
    let rem = chunks.remainder();
    if !rem.is_empty() {
        let mut b = [0u8; 8];
        b[..rem.len()].copy_from_slice(rem);
        h = (h.rotate_left(5) ^ u64::from_le_bytes(b)).wrapping_mul(K);
    }
    h ^= h >> 32;
    h = h.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    h ^ (h >> 29)
}

/// The slot word of a key.
fn word(key: &[u8]) -> u64 {
    pack(key).unwrap_or_else(|| (hash(key) & !LONG & !1) | LONG)
}

/// Spreads a word over the top bits (Fibonacci hashing), which pick the slot.
fn mix(word: u64) -> u64 {
    (word ^ (word >> 31)).wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

impl IdIndex {
    /// Number of keys.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    fn key(&self, pos: usize) -> &[u8] {
        let start = if pos == 0 { 0 } else { self.ends[pos - 1] };
        &self.arena[start..self.ends[pos]]
    }

    /// Slot holding `key` (whose word is `w`), or the empty slot where it would go.
    /// The table is never full (see [`Self::insert`]).
    fn find(&self, key: &[u8], w: u64) -> usize {
        let mask = self.words.len() - 1;
        let mut i = self.home(w);
        loop {
            let s = self.words[i];
            if s == EMPTY || (s == w && (w & LONG != LONG || self.key(self.positions[i]) == key)) {
                return i;
            }
            i = (i + 1) & mask;
        }
    }

    fn slot(&self, key: &[u8]) -> Option<usize> {
        if self.words.is_empty() {
            return None;
        }
        let i = self.find(key, word(key));
        (self.words[i] != EMPTY).then_some(i)
    }

    pub fn get(&self, key: &str) -> Option<usize> {
        self.slot(key.as_bytes()).map(|i| self.positions[i])
    }

    pub fn contains(&self, key: &str) -> bool {
        self.slot(key.as_bytes()).is_some()
    }

    /// The first slot `key` would probe.
    fn home(&self, w: u64) -> usize {
        (mix(w) >> self.shift) as usize
    }

    /// Membership of each of `keys`, into `out` (cleared first). The first slot of
    /// every key in a group is read before any key is compared, so that the cache
    /// misses of a large table overlap rather than follow one another.
    pub fn contains_each(&self, keys: &[&str], out: &mut Vec<bool>) {
        out.clear();
        if self.words.is_empty() {
            out.resize(keys.len(), false);
            return;
        }
        const GROUP: usize = 32;
        let mut first = [(0u64, 0u64); GROUP];
        for group in keys.chunks(GROUP) {
            for (f, k) in first.iter_mut().zip(group) {
                let w = word(k.as_bytes());
                *f = (w, self.words[self.home(w)]);
            }
            out.extend(group.iter().zip(&first).map(|(k, &(w, first))| {
                if first == EMPTY {
                    false
                } else if first == w && w & LONG != LONG {
                    true
                } else {
                    self.words[self.find(k.as_bytes(), w)] != EMPTY
                }
            }));
        }
    }

    /// The position of `key` when it sits in its first slot (as most keys do), read
    /// with two independent loads; `None` when it does not (it may still be
    /// present). Reading it for many keys before inserting them overlaps their
    /// cache misses.
    pub fn home_position(&self, key: &[u8]) -> Option<usize> {
        if self.words.is_empty() {
            return None;
        }
        let w = word(key);
        let i = self.home(w);
        let (s, pos) = (self.words[i], self.positions[i]);
        (s == w && (w & LONG != LONG || self.key(pos) == key)).then_some(pos)
    }

    /// Inserts `key` at the next position ([`Self::len`]) unless it is present.
    /// Returns the key's position and whether it was new.
    pub fn insert(&mut self, key: &str) -> (usize, bool) {
        self.insert_bytes(key.as_bytes())
    }

    /// [`Self::insert`] for a key given as bytes.
    pub fn insert_bytes(&mut self, key: &[u8]) -> (usize, bool) {
        // At most 5/8 full. Fuller tables are smaller, but then a third of the keys
        // are not in their first slot, and the mispredicted branches and extra
        // probes cost more than the larger table's cache misses (on 100k MIND ids,
        // 7/8 full: ~12 ns a membership check, 5/8 full: ~8 ns).
        if (self.len() + 1) * 8 > self.words.len() * 5 {
            self.grow();
        }
        let w = word(key);
        let i = self.find(key, w);
        if self.words[i] != EMPTY {
            return (self.positions[i], false);
        }
        let pos = self.len();
        self.arena.extend_from_slice(key);
        self.ends.push(self.arena.len());
        self.words[i] = w;
        self.positions[i] = pos;
        (pos, true)
    }

    fn grow(&mut self) {
        let cap = (self.words.len() * 2).max(16);
        self.shift = 64 - cap.trailing_zeros();
        let words = std::mem::replace(&mut self.words, vec![EMPTY; cap]);
        let positions = std::mem::replace(&mut self.positions, vec![0; cap]);
        for (w, pos) in words
            .into_iter()
            .zip(positions)
            .filter(|&(w, _)| w != EMPTY)
        {
            let mut i = (mix(w) >> self.shift) as usize;
            while self.words[i] != EMPTY {
                i = (i + 1) & (cap - 1);
            }
            self.words[i] = w;
            self.positions[i] = pos;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inserts_finds_and_keeps_first_position() {
        let mut ix = IdIndex::default();
        assert_eq!(ix.get("a"), None);
        for i in 0..10_000 {
            assert_eq!(ix.insert(&format!("N{i}")), (i, true));
        }
        assert_eq!(ix.insert("N5"), (5, false));
        assert_eq!(ix.len(), 10_000);
        for i in 0..10_000 {
            assert_eq!(ix.get(&format!("N{i}")), Some(i));
        }
        assert_eq!(ix.get("N10000"), None);
        assert_eq!(ix.get(""), None);
        assert_eq!(ix.insert(""), (10_000, true));
        assert_eq!(ix.get(""), Some(10_000));
        let long = "x".repeat(100);
        assert_eq!(ix.insert(&long), (10_001, true));
        assert_eq!(ix.get(&long), Some(10_001));
        assert_eq!(ix.get(&long[..99]), None);
    }

    #[test]
    fn contains_each_agrees_with_contains() {
        let mut ix = IdIndex::default();
        let mut out = vec![true];
        ix.contains_each(&["N1"], &mut out);
        assert_eq!(out, vec![false]);
        let long = |i: u32| format!("a-long-id-{i}");
        for i in 0..3_000 {
            ix.insert(&format!("N{i}"));
            ix.insert(&long(i));
        }
        let owned: Vec<String> = (0..6_000)
            .flat_map(|i| [format!("N{i}"), long(i), format!("M{i}")])
            .collect();
        let keys: Vec<&str> = owned.iter().map(String::as_str).collect();
        ix.contains_each(&keys, &mut out);
        assert_eq!(out.len(), keys.len());
        for (k, &got) in keys.iter().zip(&out) {
            assert_eq!(got, ix.contains(k), "{k}");
        }
        assert_eq!(out.iter().filter(|&&b| b).count(), 6_000);
    }

    #[test]
    fn pack_puts_each_byte_in_place() {
        for n in 0..=7 {
            let key: Vec<u8> = (1..=n as u8).map(|i| i * 17).collect();
            let mut want = (n as u64) << 56;
            for (j, &b) in key.iter().enumerate() {
                want |= u64::from(b) << (8 * j);
            }
            assert_eq!(pack(&key), Some(want), "{key:?}");
        }
        assert_eq!(pack(b"12345678"), None);
    }

    #[test]
    fn short_keys_differ_by_length_and_trailing_zero_bytes() {
        let mut ix = IdIndex::default();
        for k in [
            "N1",
            "N1\0",
            "N1\0\0\0\0\0",
            "N1\0\0\0\0\0\0",
            "1234567",
            "12345678",
        ] {
            assert!(ix.insert(k).1, "{k:?}");
        }
        assert_eq!(ix.get("N1\0"), Some(1));
        assert_eq!(ix.get("N1\0\0\0\0\0\0"), Some(3));
        assert_eq!(ix.get("N1\0\0"), None);
        assert_eq!(ix.get("12345678"), Some(5));
        assert_eq!(ix.get("123456789"), None);
    }

    #[test]
    fn long_keys_with_one_prefix_stay_apart() {
        let mut ix = IdIndex::default();
        let keys: Vec<String> = (0..5_000).map(|i| format!("B0{i:08}XYZ")).collect();
        for (i, k) in keys.iter().enumerate() {
            assert_eq!(ix.insert(k), (i, true));
        }
        for (i, k) in keys.iter().enumerate() {
            assert_eq!(ix.get(k), Some(i));
            assert_eq!(ix.insert(k), (i, false));
        }
        assert_eq!(ix.get("B000000000XY"), None);
    }
}
