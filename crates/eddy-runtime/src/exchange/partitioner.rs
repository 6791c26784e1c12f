//! Partitioners: which channel each record goes to.

use std::sync::Arc;

use eddy_core::element::StreamRecord;
use eddy_core::keys::{
    Key, encode_key_into, hash_key_bytes, key_group_for_hash, operator_index_for_key_group,
};
use rand::Rng;

use crate::error::Result;

/// Chooses the output channel of each record.
pub trait Partitioner<T> {
    /// The channel (0-based, below `num_channels`) for `record`.
    fn select_channel(&mut self, record: &StreamRecord<T>, num_channels: usize) -> Result<usize>;

    /// Whether every record goes to every channel instead.
    fn is_broadcast(&self) -> bool {
        false
    }
}

/// Everything to channel 0: used for forward edges (one channel per writer) and `global()`.
#[derive(Debug, Default)]
pub struct ForwardPartitioner;

impl<T> Partitioner<T> for ForwardPartitioner {
    #[inline]
    fn select_channel(&mut self, _: &StreamRecord<T>, _: usize) -> Result<usize> {
        Ok(0)
    }
}

/// Round-robin over the writer's channels, starting at a random one (Flink's
/// `RebalancePartitioner`; also `rescale()`, whose writers only hold their local subset).
#[derive(Debug)]
pub struct RebalancePartitioner {
    next: usize,
}

impl RebalancePartitioner {
    /// Starts at a random channel, so that many upstream subtasks do not all hit channel 0 first.
    pub fn new(num_channels: usize) -> Self {
        RebalancePartitioner {
            next: rand::rng().random_range(0..num_channels.max(1)),
        }
    }
}

impl<T> Partitioner<T> for RebalancePartitioner {
    #[inline]
    fn select_channel(&mut self, _: &StreamRecord<T>, num_channels: usize) -> Result<usize> {
        self.next += 1;
        if self.next >= num_channels {
            self.next = 0;
        }
        Ok(self.next)
    }
}

/// A uniformly random channel per record.
#[derive(Debug)]
pub struct ShufflePartitioner {
    rng: rand::rngs::SmallRng,
}

impl Default for ShufflePartitioner {
    fn default() -> Self {
        use rand::SeedableRng;
        ShufflePartitioner {
            rng: rand::rngs::SmallRng::from_rng(&mut rand::rng()),
        }
    }
}

impl<T> Partitioner<T> for ShufflePartitioner {
    #[inline]
    fn select_channel(&mut self, _: &StreamRecord<T>, num_channels: usize) -> Result<usize> {
        Ok(self.rng.random_range(0..num_channels))
    }
}

/// Every record to every channel.
#[derive(Debug, Default)]
pub struct BroadcastPartitioner;

impl<T> Partitioner<T> for BroadcastPartitioner {
    fn select_channel(&mut self, _: &StreamRecord<T>, _: usize) -> Result<usize> {
        Ok(0)
    }
    fn is_broadcast(&self) -> bool {
        true
    }
}

/// By the key group of the record's key: the channel of the subtask that owns the group.
pub struct KeyGroupPartitioner<T, K> {
    key_selector: Arc<dyn Fn(&T) -> K + Send + Sync>,
    max_parallelism: u32,
    buf: Vec<u8>,
}

impl<T, K> KeyGroupPartitioner<T, K> {
    /// A partitioner for a downstream operator with `max_parallelism` key groups.
    pub fn new(key_selector: Arc<dyn Fn(&T) -> K + Send + Sync>, max_parallelism: u32) -> Self {
        KeyGroupPartitioner {
            key_selector,
            max_parallelism,
            buf: Vec::with_capacity(32),
        }
    }
}

impl<T, K: Key> Partitioner<T> for KeyGroupPartitioner<T, K> {
    #[inline]
    fn select_channel(&mut self, record: &StreamRecord<T>, num_channels: usize) -> Result<usize> {
        let key = (self.key_selector)(&record.value);
        self.buf.clear();
        encode_key_into(&key, &mut self.buf)?;
        let kg = key_group_for_hash(hash_key_bytes(&self.buf), self.max_parallelism);
        Ok(operator_index_for_key_group(self.max_parallelism, num_channels as u32, kg) as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use eddy_core::keys::assign_to_key_group;

    #[test]
    fn rebalance_cycles_through_channels() {
        let mut p = RebalancePartitioner::new(3);
        let r = StreamRecord::new(());
        let picks: Vec<usize> = (0..6).map(|_| p.select_channel(&r, 3).unwrap()).collect();
        for c in 0..3 {
            assert_eq!(picks.iter().filter(|&&x| x == c).count(), 2);
        }
        assert_ne!(picks[0], picks[1]);
    }

    #[test]
    fn key_group_partitioner_agrees_with_key_group_ranges() {
        let mut p = KeyGroupPartitioner::new(Arc::new(|s: &String| s.clone()), 128);
        for w in ["a", "b", "hello", "world"] {
            let ch = p
                .select_channel(&StreamRecord::new(w.to_string()), 4)
                .unwrap();
            let kg = assign_to_key_group(w, 128).unwrap();
            assert!(eddy_core::keys::KeyGroupRange::for_operator(128, 4, ch as u32).contains(kg));
        }
    }
}
