//! The map side's sort buffer: emitted pairs are copied into one arena and indexed by
//! small fixed-size entries, which are what gets sorted.
//!
//! Sorting entries instead of records moves 32 bytes per swap whatever the record's
//! size, and the first eight key bytes live in the entry (big-endian, as a `u64`), so
//! most comparisons never touch the arena: for TeraSort's 10-byte random keys the
//! prefix alone decides almost every comparison. Ties on equal keys are broken by a
//! sequence number that grows with emission order: the order of a key's values is the
//! mapper's, whatever sort algorithm runs.
//!
//! The buffer's bytes (arena plus index) stay under its capacity, so a map task's
//! memory depends on the configuration, not on its input. A record too large to fit an
//! empty buffer is still accepted alone (the caller spills it at once); the largest
//! accepted record is bounded by [`crate::format::MAX_RECORD_BYTES`].

mod collector;

pub use collector::{MAP_OUTPUT_FILE, MapOutputCollector, MapOutputFile};

use std::cmp::Ordering;

/// One record of the buffer.
#[derive(Debug, Clone, Copy)]
struct SortEntry {
    /// The key's first eight bytes, big-endian, zero-padded.
    prefix: u64,
    partition: u32,
    key_len: u32,
    /// Where the key starts in the arena; the value follows it.
    offset: usize,
    value_len: u32,
    /// Emission order within the buffer: the tie-breaker of equal keys. (The arena
    /// offset is not enough: records of zero bytes share theirs.)
    sequence: u32,
}

/// Bytes one record costs in the index.
pub const SORT_ENTRY_BYTES: usize = std::mem::size_of::<SortEntry>();

/// Smallest arena allocation, so that small buffers do not reallocate for every record.
const MIN_ARENA_BYTES: usize = 64 * 1024;

/// Emitted pairs waiting to be sorted and spilled.
#[derive(Debug)]
pub struct SortBuffer {
    arena: Vec<u8>,
    entries: Vec<SortEntry>,
    capacity_bytes: usize,
}

#[inline]
fn key_prefix(key: &[u8]) -> u64 {
    let mut bytes = [0u8; 8];
    let len = key.len().min(8);
    bytes[..len].copy_from_slice(&key[..len]);
    u64::from_be_bytes(bytes)
}

impl SortBuffer {
    /// Returns an empty buffer that holds up to `capacity_bytes` of records and index.
    pub fn new(capacity_bytes: usize) -> Self {
        Self {
            arena: Vec::new(),
            entries: Vec::new(),
            capacity_bytes,
        }
    }

    /// Returns the bytes used: records plus their index entries.
    pub fn used_bytes(&self) -> usize {
        self.arena.len() + self.entries.len() * SORT_ENTRY_BYTES
    }

    /// Returns true when a record of `record_bytes` (key plus value) fits.
    #[inline]
    pub fn fits(&self, record_bytes: usize) -> bool {
        self.used_bytes() + record_bytes + SORT_ENTRY_BYTES <= self.capacity_bytes
            && self.entries.len() < u32::MAX as usize
    }

    /// Returns true when the buffer holds no record.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Returns the number of records.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Adds a record. The caller checks [`SortBuffer::fits`] first, except for a record
    /// too large for an empty buffer, which it spills at once.
    #[inline]
    pub fn push(&mut self, partition: u32, key: &[u8], value: &[u8]) {
        let record_bytes = key.len() + value.len();
        if self.arena.len() + record_bytes > self.arena.capacity() {
            self.grow_arena(record_bytes);
        }
        let offset = self.arena.len();
        self.arena.extend_from_slice(key);
        self.arena.extend_from_slice(value);
        self.entries.push(SortEntry {
            prefix: key_prefix(key),
            partition,
            key_len: key.len() as u32,
            offset,
            value_len: value.len() as u32,
            sequence: self.entries.len() as u32,
        });
    }

    /// Grows the arena geometrically, but never past the buffer's capacity unless one
    /// record needs it: `Vec`'s own doubling could allocate twice the configured bytes.
    #[cold]
    fn grow_arena(&mut self, record_bytes: usize) {
        let needed = self.arena.len() + record_bytes;
        let target = (self.arena.capacity() * 2)
            .max(MIN_ARENA_BYTES)
            .min(self.capacity_bytes)
            .max(needed);
        self.arena.reserve_exact(target - self.arena.len());
    }

    /// Sorts the records by partition, then key bytes, then emission order.
    pub fn sort(&mut self) {
        let arena = &self.arena;
        self.entries.sort_unstable_by(|left, right| {
            left.partition
                .cmp(&right.partition)
                .then(left.prefix.cmp(&right.prefix))
                .then_with(|| compare_after_prefix(arena, left, right))
                .then(left.sequence.cmp(&right.sequence))
        });
    }

    /// Returns the records in their current order: (partition, key, value).
    pub fn records(&self) -> impl Iterator<Item = (u32, &[u8], &[u8])> + '_ {
        self.entries
            .iter()
            .map(|entry| (entry.partition, self.key(entry), self.value(entry)))
    }

    /// Returns the partition of each record, in order (to find partition runs).
    fn partition_of(&self, index: usize) -> u32 {
        self.entries[index].partition
    }

    #[inline]
    fn key(&self, entry: &SortEntry) -> &[u8] {
        &self.arena[entry.offset..entry.offset + entry.key_len as usize]
    }

    #[inline]
    fn value(&self, entry: &SortEntry) -> &[u8] {
        let start = entry.offset + entry.key_len as usize;
        &self.arena[start..start + entry.value_len as usize]
    }

    /// Empties the buffer, keeping its allocations.
    pub fn clear(&mut self) {
        self.arena.clear();
        self.entries.clear();
    }
}

/// Compares two keys whose eight-byte prefixes are equal.
///
/// Equal zero-padded prefixes mean the keys agree on their first `min(8, len)` bytes
/// and the shorter one, if under eight bytes, is followed by zeros in the other: it is
/// a prefix of the other, so the lengths decide. Otherwise the bytes after the eighth
/// decide.
#[inline]
fn compare_after_prefix(arena: &[u8], left: &SortEntry, right: &SortEntry) -> Ordering {
    if left.key_len < 8 || right.key_len < 8 {
        return left.key_len.cmp(&right.key_len);
    }
    let left_rest = &arena[left.offset + 8..left.offset + left.key_len as usize];
    let right_rest = &arena[right.offset + 8..right.offset + right.key_len as usize];
    left_rest.cmp(right_rest)
}

/// The sorted records of one partition of a buffer, as a [`crate::merge::SortedRecords`]
/// stream (what a combiner reads while spilling).
pub(crate) struct BufferPartition<'a> {
    buffer: &'a SortBuffer,
    /// Index of the next record.
    next: usize,
    end: usize,
    current: usize,
}

impl<'a> BufferPartition<'a> {
    /// Returns the records of `start..end` (a run of one partition, sorted).
    fn new(buffer: &'a SortBuffer, start: usize, end: usize) -> Self {
        Self {
            buffer,
            next: start,
            end,
            current: start,
        }
    }
}

impl crate::merge::SortedRecords for BufferPartition<'_> {
    #[inline]
    fn advance(&mut self) -> crate::error::TaskResult<bool> {
        if self.next >= self.end {
            return Ok(false);
        }
        self.current = self.next;
        self.next += 1;
        Ok(true)
    }

    #[inline]
    fn key(&self) -> &[u8] {
        self.buffer.key(&self.buffer.entries[self.current])
    }

    #[inline]
    fn value(&self) -> &[u8] {
        self.buffer.value(&self.buffer.entries[self.current])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use essaim_core::rng::SeededRng;

    #[test]
    fn sorting_matches_a_stable_sort_by_partition_and_key() {
        for seed in 0..30 {
            let mut rng = SeededRng::new(seed);
            let mut buffer = SortBuffer::new(1 << 20);
            let mut oracle = Vec::new();
            for _ in 0..rng.below(2000) {
                let partition = rng.below(3) as u32;
                // Short alphabets and lengths around 8 make prefix ties and keys that
                // are prefixes of others common.
                let key_len = rng.below(14) as usize;
                let key = rng.bytes(key_len, b"\0ab");
                let value_len = rng.below(5) as usize;
                let value = rng.bytes(value_len, b"xyz");
                buffer.push(partition, &key, &value);
                oracle.push((partition, key, value));
            }
            buffer.sort();
            // `sort_by` is stable: equal keys keep their emission order.
            oracle.sort_by(|left, right| (left.0, &left.1).cmp(&(right.0, &right.1)));
            let sorted: Vec<_> = buffer
                .records()
                .map(|(partition, key, value)| (partition, key.to_vec(), value.to_vec()))
                .collect();
            let first_difference = sorted
                .iter()
                .zip(&oracle)
                .position(|(left, right)| left != right);
            assert_eq!(
                first_difference.map(|index| (&sorted[index], &oracle[index])),
                None,
                "seed {seed}"
            );
            assert_eq!(sorted, oracle, "seed {seed}");
        }
    }

    #[test]
    fn the_buffer_counts_records_and_index_against_its_capacity() {
        let mut buffer = SortBuffer::new(100 + 2 * SORT_ENTRY_BYTES);
        assert!(buffer.fits(100));
        assert!(!buffer.fits(101 + SORT_ENTRY_BYTES));
        buffer.push(0, b"key", b"value");
        assert_eq!(buffer.used_bytes(), 8 + SORT_ENTRY_BYTES);
        assert!(buffer.fits(100 - 8));
        assert!(!buffer.fits(100 - 7));
        buffer.clear();
        assert!(buffer.is_empty());
    }
}
