//! A fast hasher for maps and sets keyed by row ids (i64/i32), which are not attacker-chosen
//! in a way that matters here: the maps live for one call over one task's rows. std's SipHash
//! showed up in profiles of the per-task functions.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};

/// Multiplicative (Fibonacci) hashing of the integer written.
#[derive(Default, Clone, Copy)]
pub struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(5) ^ u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }

    fn write_i64(&mut self, n: i64) {
        self.0 = (self.0.rotate_left(5) ^ n as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }

    fn write_u64(&mut self, n: u64) {
        self.write_i64(n as i64);
    }

    fn write_i32(&mut self, n: i32) {
        self.write_i64(i64::from(n));
    }

    fn write_usize(&mut self, n: usize) {
        self.write_i64(n as i64);
    }

    fn write_u32(&mut self, n: u32) {
        self.write_i64(i64::from(n));
    }
}

pub type IdMap<K, V> = HashMap<K, V, BuildHasherDefault<IdHasher>>;

/// A set of ids with [`IdHasher`].
pub type IdSet<K> = HashSet<K, BuildHasherDefault<IdHasher>>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_behave_like_maps() {
        let mut m: IdMap<i64, i64> = IdMap::default();
        for i in -1000..1000 {
            m.insert(i * 7919, i);
        }
        assert_eq!(m.len(), 2000);
        assert!((-1000..1000).all(|i| m[&(i * 7919)] == i));
        assert!(!m.contains_key(&1));
    }
}
