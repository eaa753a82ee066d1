//! An id -> position map for large catalogues: open addressing, a fast
//! non-cryptographic hash, and every key's bytes in one contiguous arena, so that
//! checking a key does not chase a pointer to a scattered heap string (on 100k
//! MIND ids this lookup is several times faster than `HashMap<String, usize>`).

#[derive(Clone, Copy, Debug)]
struct Slot {
    /// High hash bits, to skip most key comparisons.
    tag: u32,
    /// Key length, saturated at `u32::MAX` (the arena holds the whole key).
    klen: u32,
    /// The key's first 8 bytes, zero-padded: keys of up to 8 bytes compare without
    /// reading the arena.
    prefix: u64,
    off: usize,
    /// `usize::MAX` marks an empty slot.
    pos: usize,
}

const EMPTY: Slot = Slot {
    tag: 0,
    klen: 0,
    prefix: 0,
    off: 0,
    pos: usize::MAX,
};

#[derive(Clone, Debug, Default)]
pub(crate) struct IdIndex {
    arena: Vec<u8>,
    slots: Vec<Slot>,
    len: usize,
}

fn prefix(key: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    let n = key.len().min(8);
    b[..n].copy_from_slice(&key[..n]);
    u64::from_le_bytes(b)
}

fn klen(key: &[u8]) -> u32 {
    u32::try_from(key.len()).unwrap_or(u32::MAX)
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
    // Final avalanche so that the low bits (the slot) depend on every byte.
    h ^= h >> 32;
    h = h.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    h ^ (h >> 29)
}

impl IdIndex {
    /// The key of slot `s`, whose length is `len`.
    fn key(&self, s: &Slot, len: usize) -> &[u8] {
        self.arena.get(s.off..s.off + len).unwrap_or(&[])
    }

    /// Slot index holding `key`, or the empty slot where it would go.
    fn find(&self, key: &[u8], h: u64) -> usize {
        let mask = self.slots.len() - 1;
        let tag = (h >> 32) as u32;
        let (len, pre) = (klen(key), prefix(key));
        let mut i = (h as usize) & mask;
        loop {
            let s = &self.slots[i];
            if s.pos == usize::MAX
                || (s.tag == tag
                    && s.klen == len
                    && s.prefix == pre
                    && (key.len() <= 8 || self.key(s, key.len()).get(8..) == key.get(8..)))
            {
                return i;
            }
            i = (i + 1) & mask;
        }
    }

    pub fn get(&self, key: &str) -> Option<usize> {
        if self.slots.is_empty() {
            return None;
        }
        let s = &self.slots[self.find(key.as_bytes(), hash(key.as_bytes()))];
        (s.pos != usize::MAX).then_some(s.pos)
    }

    /// Inserts `key -> pos` unless the key is present; returns the present position.
    pub fn insert(&mut self, key: &str, pos: usize) -> Option<usize> {
        if (self.len + 1) * 8 > self.slots.len() * 7 {
            self.grow();
        }
        let key = key.as_bytes();
        let h = hash(key);
        let i = self.find(key, h);
        if self.slots[i].pos != usize::MAX {
            return Some(self.slots[i].pos);
        }
        let off = self.arena.len();
        self.arena.extend_from_slice(key);
        self.slots[i] = Slot {
            tag: (h >> 32) as u32,
            klen: klen(key),
            prefix: prefix(key),
            off,
            pos,
        };
        self.len += 1;
        None
    }

    fn grow(&mut self) {
        let cap = (self.slots.len() * 2).max(16);
        let old = std::mem::replace(&mut self.slots, vec![EMPTY; cap]);
        for s in old.into_iter().filter(|s| s.pos != usize::MAX) {
            let h = hash(self.key(&s, s.klen as usize));
            let mut i = (h as usize) & (cap - 1);
            while self.slots[i].pos != usize::MAX {
                i = (i + 1) & (cap - 1);
            }
            self.slots[i] = s;
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
            assert_eq!(ix.insert(&format!("N{i}"), i), None);
        }
        assert_eq!(ix.insert("N5", 99), Some(5));
        assert_eq!(ix.len, 10_000);
        for i in 0..10_000 {
            assert_eq!(ix.get(&format!("N{i}")), Some(i));
        }
        assert_eq!(ix.get("N10000"), None);
        assert_eq!(ix.get(""), None);
        ix.insert("", 7);
        assert_eq!(ix.get(""), Some(7));
        let long = "x".repeat(100);
        ix.insert(&long, 8);
        assert_eq!(ix.get(&long), Some(8));
        assert_eq!(ix.get(&long[..99]), None);
    }
}
