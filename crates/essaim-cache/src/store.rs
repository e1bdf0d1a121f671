//! One cache node's memory: values by key, bounded in bytes, least recently used first
//! out, each with an optional time to live.
//!
//! A value is charged its key, its bytes and [`ENTRY_OVERHEAD_BYTES`] (the maps'
//! bookkeeping), so a flood of tiny entries cannot exceed the bound either. A value
//! larger than the value limit is refused (the runtime answers 413) rather than
//! evicting everything else. Expired entries are removed when read, and evicted like
//! any other when memory runs short; both are counted apart from evictions. Recency is
//! a counter, not a clock: the order of uses is all LRU needs.

use std::collections::{BTreeMap, HashMap};

use bytes::Bytes;
use serde::Serialize;

/// Bytes charged per entry besides its key and value.
pub const ENTRY_OVERHEAD_BYTES: u64 = 64;

/// Longest key, in bytes.
pub const MAX_KEY_BYTES: usize = 1024;

/// Why a value was not stored.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PutError {
    /// The key is empty.
    #[error("the key is empty")]
    EmptyKey,
    /// The key is longer than [`MAX_KEY_BYTES`].
    #[error("the key is {bytes} bytes long, over the limit of {MAX_KEY_BYTES}")]
    KeyTooLong {
        /// Its length.
        bytes: usize,
    },
    /// The value is over the limit.
    #[error("the value is {bytes} bytes, over the limit of {limit}")]
    ValueTooLarge {
        /// Its size.
        bytes: usize,
        /// The limit.
        limit: usize,
    },
}

/// A value read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// The bytes.
    pub value: Bytes,
    /// The tag the writer gave (the proxy's placement epoch).
    pub tag: u64,
    /// Milliseconds left to live, if it expires.
    pub ttl_left_ms: Option<u64>,
}

/// Counters and sizes of a store.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct StoreStats {
    /// Entries held.
    pub entries: u64,
    /// Bytes charged.
    pub bytes: u64,
    /// Reads that found a live value.
    pub hits: u64,
    /// Reads that found nothing (or an expired value).
    pub misses: u64,
    /// Entries removed to make room.
    pub evictions: u64,
    /// Entries removed because their time to live had passed.
    pub expirations: u64,
}

#[derive(Debug)]
struct Entry {
    value: Bytes,
    tag: u64,
    expires_at_ms: Option<u64>,
    last_use: u64,
}

impl Entry {
    fn charge(&self, key: &str) -> u64 {
        key.len() as u64 + self.value.len() as u64 + ENTRY_OVERHEAD_BYTES
    }
}

/// A memory-bounded LRU store with TTLs.
#[derive(Debug)]
pub struct Store {
    max_bytes: u64,
    max_value_bytes: usize,
    entries: HashMap<String, Entry>,
    /// Last use → key: the first entry is the least recently used.
    recency: BTreeMap<u64, String>,
    uses: u64,
    stats: StoreStats,
}

impl Store {
    /// Returns an empty store of at most `max_bytes`, refusing values over
    /// `max_value_bytes`.
    pub fn new(max_bytes: u64, max_value_bytes: usize) -> Self {
        Self {
            max_bytes,
            max_value_bytes,
            entries: HashMap::new(),
            recency: BTreeMap::new(),
            uses: 0,
            stats: StoreStats::default(),
        }
    }

    /// Returns the largest value accepted.
    pub fn max_value_bytes(&self) -> usize {
        self.max_value_bytes
    }

    /// Returns the counters and sizes.
    pub fn stats(&self) -> StoreStats {
        StoreStats {
            entries: self.entries.len() as u64,
            ..self.stats
        }
    }

    fn touch(&mut self) -> u64 {
        self.uses += 1;
        self.uses
    }

    /// Returns the live value of `key` at `now_ms`, marking it recently used.
    pub fn get(&mut self, key: &str, now_ms: u64) -> Option<Found> {
        let expired = match self.entries.get(key) {
            None => {
                self.stats.misses += 1;
                return None;
            }
            Some(entry) => entry.expires_at_ms.is_some_and(|at| at <= now_ms),
        };
        if expired {
            self.remove(key);
            self.stats.expirations += 1;
            self.stats.misses += 1;
            return None;
        }
        let use_ = self.touch();
        let entry = self.entries.get_mut(key).expect("checked above");
        self.recency.remove(&entry.last_use);
        self.recency.insert(use_, key.to_owned());
        entry.last_use = use_;
        self.stats.hits += 1;
        Some(Found {
            value: entry.value.clone(),
            tag: entry.tag,
            ttl_left_ms: entry.expires_at_ms.map(|at| at - now_ms),
        })
    }

    /// Returns the tag of the live value of `key` at `now_ms`, without counting a read
    /// or changing its recency (for a conditional fill).
    pub fn tag_of(&self, key: &str, now_ms: u64) -> Option<u64> {
        let entry = self.entries.get(key)?;
        let live = entry.expires_at_ms.is_none_or(|at| at > now_ms);
        live.then_some(entry.tag)
    }

    /// Stores `value` under `key` at `now_ms`, living `ttl_ms` if given; returns how many
    /// entries were evicted to make room.
    pub fn put(
        &mut self,
        key: &str,
        value: Bytes,
        tag: u64,
        ttl_ms: Option<u64>,
        now_ms: u64,
    ) -> Result<u64, PutError> {
        check_key(key)?;
        if value.len() > self.max_value_bytes {
            return Err(PutError::ValueTooLarge {
                bytes: value.len(),
                limit: self.max_value_bytes,
            });
        }
        self.remove(key);
        let use_ = self.touch();
        let entry = Entry {
            value,
            tag,
            expires_at_ms: ttl_ms.map(|ttl| now_ms.saturating_add(ttl)),
            last_use: use_,
        };
        let charge = entry.charge(key);
        let mut evicted = 0;
        while self.stats.bytes + charge > self.max_bytes {
            let Some((_, oldest)) = self.recency.pop_first() else {
                break;
            };
            let expired = self.entries.get(&oldest).and_then(|e| e.expires_at_ms);
            self.remove_unlisted(&oldest);
            if expired.is_some_and(|at| at <= now_ms) {
                self.stats.expirations += 1;
            } else {
                self.stats.evictions += 1;
                evicted += 1;
            }
        }
        if self.stats.bytes + charge > self.max_bytes {
            // Larger than the whole store: not kept, as if evicted at once.
            self.stats.evictions += 1;
            return Ok(evicted + 1);
        }
        self.stats.bytes += charge;
        self.recency.insert(use_, key.to_owned());
        self.entries.insert(key.to_owned(), entry);
        Ok(evicted)
    }

    /// Removes `key`; returns whether it was there.
    pub fn delete(&mut self, key: &str) -> bool {
        self.remove(key)
    }

    fn remove(&mut self, key: &str) -> bool {
        match self.entries.get(key) {
            Some(entry) => {
                let last_use = entry.last_use;
                self.recency.remove(&last_use);
                self.remove_unlisted(key);
                true
            }
            None => false,
        }
    }

    /// Removes an entry already taken out of `recency`.
    fn remove_unlisted(&mut self, key: &str) {
        if let Some(entry) = self.entries.remove(key) {
            self.stats.bytes -= entry.charge(key);
        }
    }
}

/// Checks a key's length.
pub fn check_key(key: &str) -> Result<(), PutError> {
    if key.is_empty() {
        return Err(PutError::EmptyKey);
    }
    if key.len() > MAX_KEY_BYTES {
        return Err(PutError::KeyTooLong { bytes: key.len() });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(bytes: usize) -> Bytes {
        Bytes::from(vec![b'v'; bytes])
    }

    /// Charge of a one-letter key with a value of `bytes`.
    fn charge(bytes: usize) -> u64 {
        1 + bytes as u64 + ENTRY_OVERHEAD_BYTES
    }

    #[test]
    fn the_least_recently_used_goes_first_and_bytes_stay_bounded() {
        let mut store = Store::new(3 * charge(100), 1000);
        for key in ["a", "b", "c"] {
            assert_eq!(store.put(key, value(100), 1, None, 0), Ok(0));
        }
        assert!(store.get("a", 0).is_some(), "a is now the most recent");
        assert_eq!(store.put("d", value(100), 1, None, 0), Ok(1));
        assert!(store.get("b", 0).is_none(), "b was the least recently used");
        for key in ["a", "c", "d"] {
            assert!(store.get(key, 0).is_some(), "{key}");
        }
        // A larger value evicts as many as it needs.
        assert_eq!(store.put("e", value(250), 1, None, 0), Ok(2));
        let stats = store.stats();
        assert!(stats.bytes <= 3 * charge(100), "{stats:?}");
        assert_eq!(stats.evictions, 3);
        assert_eq!(stats.entries, 2);
    }

    #[test]
    fn an_entry_expires_after_its_ttl() {
        let mut store = Store::new(10_000, 1000);
        store.put("a", value(10), 7, Some(500), 1_000).unwrap();
        let found = store.get("a", 1_200).unwrap();
        assert_eq!((found.tag, found.ttl_left_ms), (7, Some(300)));
        assert!(store.get("a", 1_500).is_none());
        let stats = store.stats();
        assert_eq!((stats.hits, stats.misses, stats.expirations), (1, 1, 1));
        assert_eq!((stats.entries, stats.bytes), (0, 0));
    }

    #[test]
    fn bad_keys_and_values_over_the_limit_are_refused() {
        let mut store = Store::new(10_000, 100);
        assert_eq!(
            store.put("a", value(101), 0, None, 0),
            Err(PutError::ValueTooLarge {
                bytes: 101,
                limit: 100
            })
        );
        assert_eq!(store.put("", value(1), 0, None, 0), Err(PutError::EmptyKey));
        let long = "k".repeat(MAX_KEY_BYTES + 1);
        assert!(matches!(
            store.put(&long, value(1), 0, None, 0),
            Err(PutError::KeyTooLong { .. })
        ));
        assert_eq!(store.stats().entries, 0);
    }

    #[test]
    fn overwriting_and_deleting_keep_the_byte_count_exact() {
        let mut store = Store::new(10_000, 1000);
        store.put("a", value(100), 0, None, 0).unwrap();
        store.put("a", value(10), 0, None, 0).unwrap();
        assert_eq!(store.stats().bytes, charge(10));
        assert_eq!(store.tag_of("a", 0), Some(0));
        assert_eq!(store.stats().hits, 0, "peeking at a tag is no read");
        assert!(store.delete("a"));
        assert!(!store.delete("a"));
        assert_eq!(store.stats().bytes, 0);
    }

    #[test]
    fn a_random_workload_never_exceeds_the_bound() {
        let mut rng = essaim_core::rng::SeededRng::new(16);
        let bound = 5_000;
        let mut store = Store::new(bound, 400);
        for step in 0..20_000u64 {
            let key = format!("k{}", rng.next_u64() % 200);
            match rng.next_u64() % 3 {
                0 => {
                    let bytes = (rng.next_u64() % 400) as usize;
                    let ttl = rng
                        .next_u64()
                        .is_multiple_of(2)
                        .then_some(rng.next_u64() % 50);
                    store.put(&key, value(bytes), 0, ttl, step).unwrap();
                }
                1 => {
                    store.get(&key, step);
                }
                _ => {
                    store.delete(&key);
                }
            }
            let stats = store.stats();
            assert!(stats.bytes <= bound, "step {step}: {stats:?}");
            let charged: u64 = store.entries.iter().map(|(k, e)| e.charge(k)).sum();
            assert_eq!(charged, stats.bytes, "step {step}");
            assert_eq!(store.recency.len(), store.entries.len(), "step {step}");
        }
    }
}
