//! Keys, the stable key hash, and key groups.
//!
//! Keyed state and keyed exchanges are organised in *key groups*, Flink's unit of state
//! redistribution. With `max_parallelism` key groups:
//!
//! - `key_group(key) = stable_hash(key) mod max_parallelism`;
//! - subtask `i` of an operator with parallelism `p` owns the contiguous range of key groups `g`
//!   with `g * p / max_parallelism == i` (Flink's formula).
//!
//! Rescaling a job from a savepoint only reassigns whole key groups, so state never has to be
//! re-hashed.
//!
//! # The stable hash
//!
//! The hash must give the same answer in every process, build, platform and release, because a
//! key's key group decides both which subtask receives it and where its state lives in a
//! checkpoint. So it is defined exactly:
//!
//! 1. the key is encoded with [postcard](https://postcard.jamesmunns.com/wire-format)'s 1.0 wire
//!    format (varint integers, length-prefixed UTF-8 strings, fields in declaration order);
//! 2. the bytes are hashed with XXH3-64 with seed 0.
//!
//! `std`'s `Hash` is never used for this: its output is allowed to change between releases and
//! `HashMap`'s hasher is randomized per process.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{CoreError, Result};

/// The default number of key groups, used when the job does not choose one.
pub const DEFAULT_MAX_PARALLELISM: u32 = 128;
/// The largest allowed max parallelism (Flink's `UPPER_BOUND_MAX_PARALLELISM`).
pub const UPPER_BOUND_MAX_PARALLELISM: u32 = 1 << 15;

/// A type usable as a key: encodable for the stable hash, comparable, cloneable and sendable.
///
/// Implemented for every type with the listed bounds; derive `Serialize`, `Deserialize`, `Hash`,
/// `Eq` and `Clone` on your own key types.
pub trait Key:
    Serialize
    + DeserializeOwned
    + std::hash::Hash
    + Eq
    + Clone
    + Send
    + Sync
    + std::fmt::Debug
    + 'static
{
}

impl<K> Key for K where
    K: Serialize
        + DeserializeOwned
        + std::hash::Hash
        + Eq
        + Clone
        + Send
        + Sync
        + std::fmt::Debug
        + 'static
{
}

/// A postcard flavor that appends to a caller's buffer, so that encoding a key per record
/// allocates nothing once the buffer has grown.
struct AppendTo<'a>(&'a mut Vec<u8>);

impl postcard::ser_flavors::Flavor for AppendTo<'_> {
    type Output = ();

    #[inline]
    fn try_push(&mut self, data: u8) -> postcard::Result<()> {
        self.0.push(data);
        Ok(())
    }

    #[inline]
    fn try_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
        self.0.extend_from_slice(data);
        Ok(())
    }

    fn finalize(self) -> postcard::Result<()> {
        Ok(())
    }
}

/// Appends the stable encoding of `key` (postcard's wire format) to `buf`.
#[inline]
pub fn encode_key_into<K: Serialize + ?Sized>(key: &K, buf: &mut Vec<u8>) -> Result<()> {
    postcard::serialize_with_flavor(key, AppendTo(buf))
        .map_err(|e| CoreError::KeyEncoding(e.to_string()))
}

/// The stable hash of an encoded key.
#[inline]
pub fn hash_key_bytes(bytes: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64(bytes)
}

/// The stable hash of a key (see the module docs for its exact definition).
pub fn stable_hash<K: Serialize + ?Sized>(key: &K) -> Result<u64> {
    let mut buf = Vec::with_capacity(32);
    encode_key_into(key, &mut buf)?;
    Ok(hash_key_bytes(&buf))
}

/// The key group of a key hash.
#[inline]
pub fn key_group_for_hash(hash: u64, max_parallelism: u32) -> u32 {
    (hash % u64::from(max_parallelism)) as u32
}

/// The key group of a key.
#[inline]
pub fn assign_to_key_group<K: Serialize + ?Sized>(key: &K, max_parallelism: u32) -> Result<u32> {
    Ok(key_group_for_hash(stable_hash(key)?, max_parallelism))
}

/// The operator subtask that owns `key_group` (Flink's `computeOperatorIndexForKeyGroup`).
#[inline]
pub fn operator_index_for_key_group(max_parallelism: u32, parallelism: u32, key_group: u32) -> u32 {
    (u64::from(key_group) * u64::from(parallelism) / u64::from(max_parallelism)) as u32
}

/// The default max parallelism for a job of the given parallelism (Flink's
/// `computeDefaultMaxParallelism`): 1.5 × parallelism rounded up to a power of two, at least 128,
/// at most 32768.
pub fn default_max_parallelism(parallelism: u32) -> u32 {
    let wanted = (u64::from(parallelism) * 3).div_ceil(2).next_power_of_two();
    wanted.clamp(
        u64::from(DEFAULT_MAX_PARALLELISM),
        u64::from(UPPER_BOUND_MAX_PARALLELISM),
    ) as u32
}

/// A contiguous, inclusive range of key groups.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct KeyGroupRange {
    /// First key group in the range.
    pub start: u32,
    /// Last key group in the range (inclusive). `end < start` means empty.
    pub end: u32,
}

impl KeyGroupRange {
    /// The range `[start, end]`.
    pub fn new(start: u32, end: u32) -> Self {
        KeyGroupRange { start, end }
    }

    /// The key groups subtask `index` owns (Flink's `computeKeyGroupRangeForOperatorIndex`).
    pub fn for_operator(max_parallelism: u32, parallelism: u32, index: u32) -> Self {
        let (m, p, i) = (
            u64::from(max_parallelism),
            u64::from(parallelism),
            u64::from(index),
        );
        let start = (i * m).div_ceil(p);
        let end = ((i + 1) * m - 1) / p;
        KeyGroupRange::new(start as u32, end as u32)
    }

    /// Number of key groups in the range.
    pub fn len(&self) -> usize {
        if self.end < self.start {
            0
        } else {
            (self.end - self.start + 1) as usize
        }
    }

    /// Whether the range holds no key group.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether `key_group` lies in the range.
    #[inline]
    pub fn contains(&self, key_group: u32) -> bool {
        key_group >= self.start && key_group <= self.end
    }

    /// The key groups in the range.
    pub fn iter(&self) -> impl Iterator<Item = u32> + use<> {
        self.start..self.start + self.len() as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stable_hash_is_pinned() {
        // These values are part of Eddy's compatibility promise: savepoints depend on them.
        // Values computed with the reference XXH3 implementation (python-xxhash), independently
        // of this crate: they pin both the encoding and the hash function.
        assert_eq!(stable_hash(&42u64).unwrap(), 0x79d0_3016_b7ae_ed0d);
        assert_eq!(stable_hash("hello").unwrap(), 0xcdba_870f_b04d_3213);
        assert_eq!(assign_to_key_group("hello", 128).unwrap(), 19);
        assert_eq!(stable_hash(&42u64).unwrap(), stable_hash_ref(&[42]));
        assert_eq!(stable_hash("hello").unwrap(), stable_hash_ref(b"\x05hello"));
        assert_eq!(
            stable_hash(&("a".to_string(), 1i32)).unwrap(),
            stable_hash_ref(b"\x01a\x02")
        );
        let long = "x".repeat(200);
        let mut enc = vec![0xc8, 0x01];
        enc.extend_from_slice(long.as_bytes());
        assert_eq!(stable_hash(&long).unwrap(), stable_hash_ref(&enc));
    }

    fn stable_hash_ref(bytes: &[u8]) -> u64 {
        xxhash_rust::xxh3::xxh3_64(bytes)
    }

    #[test]
    fn str_and_string_hash_alike() {
        assert_eq!(
            stable_hash("word").unwrap(),
            stable_hash(&"word".to_string()).unwrap()
        );
    }

    #[test]
    fn key_group_ranges_partition_all_groups() {
        for max_p in [1u32, 7, 128, 1000] {
            for p in 1..=max_p.min(20) {
                let mut next = 0;
                for i in 0..p {
                    let r = KeyGroupRange::for_operator(max_p, p, i);
                    assert_eq!(r.start, next, "max_p={max_p} p={p} i={i}");
                    for g in r.iter() {
                        assert_eq!(operator_index_for_key_group(max_p, p, g), i);
                    }
                    next = r.start + r.len() as u32;
                }
                assert_eq!(next, max_p);
            }
        }
    }

    #[test]
    fn default_max_parallelism_matches_flink() {
        assert_eq!(default_max_parallelism(1), 128);
        assert_eq!(default_max_parallelism(85), 128);
        assert_eq!(default_max_parallelism(86), 256);
        assert_eq!(
            default_max_parallelism(100_000),
            UPPER_BOUND_MAX_PARALLELISM
        );
    }
}
