//! [`ItemId`]: the id of an item in a sequence. A large dataset holds tens of
//! millions of them (MIND-large: ~20M history and impression ids), so an id takes
//! 16 bytes and no heap allocation when it has up to 15 bytes, as item ids do
//! (`N12345`, `B07GTS7SWK`); longer ids live on the heap.

use std::borrow::Borrow;
use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::ops::Deref;

/// An item id: a string that derefs to `&str`, compares with `&str` and `String`,
/// and reads and writes as a plain JSON string.
#[derive(Clone)]
pub struct ItemId(Repr);

#[derive(Clone)]
enum Repr {
    Inline(Inline),
    /// Boxed twice so that the variant is one pointer, placed beside [`Inline::len`]:
    /// the unused values of that byte tell the variants apart, and `ItemId` stays at
    /// 16 bytes.
    #[allow(clippy::box_collection, clippy::redundant_allocation)]
    Heap(Box<Box<str>>),
}

/// Bytes an id may have and stay inline.
const INLINE: usize = 15;

#[derive(Clone, Copy)]
#[repr(C)]
struct Inline {
    /// The id's bytes, then zeros.
    bytes: [u8; INLINE],
    len: Len,
}

/// The length of an inline id: 0..=15, so that the other byte values are free.
#[derive(Clone, Copy)]
#[repr(u8)]
enum Len {
    L0,
    L1,
    L2,
    L3,
    L4,
    L5,
    L6,
    L7,
    L8,
    L9,
    L10,
    L11,
    L12,
    L13,
    L14,
    L15,
}

const LENS: [Len; INLINE + 1] = [
    Len::L0,
    Len::L1,
    Len::L2,
    Len::L3,
    Len::L4,
    Len::L5,
    Len::L6,
    Len::L7,
    Len::L8,
    Len::L9,
    Len::L10,
    Len::L11,
    Len::L12,
    Len::L13,
    Len::L14,
    Len::L15,
];

const _: () = assert!(std::mem::size_of::<ItemId>() == 16);

/// Up to 8 bytes as a little-endian word.
fn le_word(b: &[u8]) -> u64 {
    let mut w = 0u64;
    for (i, &x) in b.iter().take(8).enumerate() {
        w |= u64::from(x) << (8 * i);
    }
    w
}

impl ItemId {
    // Inlined, so that the id is written straight where it goes (a vector's slot):
    // returned through the stack, its pieces would be read back as a whole right
    // after being written, which stalls the CPU.
    #[inline]
    pub fn new(id: &str) -> Self {
        let b = id.as_bytes();
        if b.len() > INLINE {
            return Self::heap(id);
        }
        // Assembled in two words and stored from them: bytes copied into an array
        // would be read back right after being written in pieces, which stalls the
        // CPU (this runs once per id of a large load).
        let (lo, hi) = match b.split_first_chunk::<8>() {
            Some((first, rest)) => (u64::from_le_bytes(*first), le_word(rest)),
            None => (le_word(b), 0),
        };
        let [l0, l1, l2, l3, l4, l5, l6, l7] = lo.to_le_bytes();
        let [h0, h1, h2, h3, h4, h5, h6, _] = hi.to_le_bytes();
        let bytes = [l0, l1, l2, l3, l4, l5, l6, l7, h0, h1, h2, h3, h4, h5, h6];
        ItemId(Repr::Inline(Inline {
            bytes,
            len: LENS[b.len()],
        }))
    }

    #[cold]
    #[inline(never)]
    fn heap(id: &str) -> Self {
        ItemId(Repr::Heap(Box::new(id.into())))
    }

    pub fn as_str(&self) -> &str {
        match &self.0 {
            // The bytes came from a `&str` whole: always UTF-8.
            Repr::Inline(i) => std::str::from_utf8(&i.bytes[..i.len as usize]).unwrap_or_default(),
            Repr::Heap(s) => s,
        }
    }
}

impl Default for ItemId {
    fn default() -> Self {
        ItemId::new("")
    }
}

impl Deref for ItemId {
    type Target = str;

    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for ItemId {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl Borrow<str> for ItemId {
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

impl fmt::Debug for ItemId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for ItemId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<&str> for ItemId {
    fn from(id: &str) -> Self {
        ItemId::new(id)
    }
}

impl From<&String> for ItemId {
    fn from(id: &String) -> Self {
        ItemId::new(id)
    }
}

impl From<String> for ItemId {
    fn from(id: String) -> Self {
        if id.len() > INLINE {
            ItemId(Repr::Heap(Box::new(id.into_boxed_str())))
        } else {
            ItemId::new(&id)
        }
    }
}

impl From<ItemId> for String {
    fn from(id: ItemId) -> Self {
        id.as_str().to_string()
    }
}

impl PartialEq for ItemId {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for ItemId {}

impl Hash for ItemId {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl PartialOrd for ItemId {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for ItemId {
    fn cmp(&self, other: &Self) -> Ordering {
        self.as_str().cmp(other.as_str())
    }
}

macro_rules! eq_with_str {
    ($($t:ty),*) => {$(
        impl PartialEq<$t> for ItemId {
            fn eq(&self, other: &$t) -> bool {
                self.as_str() == AsRef::<str>::as_ref(other)
            }
        }
        impl PartialEq<ItemId> for $t {
            fn eq(&self, other: &ItemId) -> bool {
                AsRef::<str>::as_ref(self) == other.as_str()
            }
        }
    )*};
}

eq_with_str!(str, &str, String);

impl serde::Serialize for ItemId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for ItemId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit;
        impl serde::de::Visitor<'_> for Visit {
            type Value = ItemId;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an item id (a string)")
            }

            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<ItemId, E> {
                Ok(ItemId::new(v))
            }

            fn visit_string<E: serde::de::Error>(self, v: String) -> Result<ItemId, E> {
                Ok(ItemId::from(v))
            }
        }
        d.deserialize_str(Visit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_of_every_length_read_back_and_compare_as_strings() {
        let text = "αβγ-0123456789abcdefghijklmnopqrstuvwxyz";
        let mut ids = Vec::new();
        for end in (0..=text.len()).filter(|&e| text.is_char_boundary(e)) {
            let s = &text[..end];
            let id = ItemId::new(s);
            assert_eq!(id.as_str(), s);
            assert_eq!(id.len(), s.len());
            assert_eq!(id, s);
            assert_eq!(s, id);
            assert_eq!(id, s.to_string());
            assert_eq!(id, ItemId::from(s.to_string()));
            assert_eq!(String::from(id.clone()), s);
            assert_eq!(format!("{id}"), s);
            assert_eq!(format!("{id:?}"), format!("{s:?}"));
            ids.push(id);
        }
        // Longer ids sort after their prefixes, as strings do.
        assert!(ids.windows(2).all(|w| w[0] < w[1]));
        assert_ne!(ItemId::new("N1"), ItemId::new("N1\0"));
        assert_eq!(ItemId::default(), "");
    }

    #[test]
    fn hashes_as_its_str_so_str_lookups_find_it() {
        let set: std::collections::HashSet<ItemId> =
            ["N1", "a-much-longer-item-id-than-fifteen-bytes"]
                .into_iter()
                .map(ItemId::from)
                .collect();
        assert!(set.contains("N1"));
        assert!(set.contains("a-much-longer-item-id-than-fifteen-bytes"));
        assert!(!set.contains("N2"));
    }

    #[test]
    fn reads_and_writes_as_a_json_string() {
        let ids = vec![ItemId::new("N1"), ItemId::new(&"x".repeat(40))];
        let json = serde_json::to_string(&ids).unwrap();
        assert_eq!(json, format!("[\"N1\",\"{}\"]", "x".repeat(40)));
        let back: Vec<ItemId> = serde_json::from_str(&json).unwrap();
        assert_eq!(back, ids);
        // Escapes make serde_json hand over an owned string.
        let back: ItemId = serde_json::from_str("\"N\\u0031\"").unwrap();
        assert_eq!(back, "N1");
        assert!(serde_json::from_str::<ItemId>("12").is_err());
    }
}
