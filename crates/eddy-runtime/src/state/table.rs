//! The heap state table: one hash map per key group, keyed by the encoded (key, namespace).

use std::cell::RefCell;
use std::rc::Rc;

use eddy_core::keys::KeyGroupRange;
use foldhash::fast::FixedState;

use super::key_bytes::KeyBytes;
use hashbrown::HashMap;

/// A state table shared between an operator and its backend.
pub type SharedStateTable<V> = Rc<RefCell<StateTable<V>>>;

/// The values of one state, per key group.
///
/// Entries are keyed by the *composite key*: the current key's encoding (with a two-byte length
/// prefix) followed by the namespace's encoding. The namespace separates state of one key that
/// belongs to different windows; state outside windows has an empty namespace.
pub struct StateTable<V> {
    range: KeyGroupRange,
    groups: Vec<HashMap<KeyBytes, V, FixedState>>,
}

impl<V> StateTable<V> {
    pub(crate) fn new(range: KeyGroupRange) -> Self {
        StateTable {
            range,
            groups: (0..range.len()).map(|_| HashMap::default()).collect(),
        }
    }

    /// The key groups this table holds.
    pub fn key_group_range(&self) -> KeyGroupRange {
        self.range
    }

    #[inline]
    fn group(&self, key_group: u32) -> &HashMap<KeyBytes, V, FixedState> {
        &self.groups[(key_group - self.range.start) as usize]
    }

    #[inline]
    fn group_mut(&mut self, key_group: u32) -> &mut HashMap<KeyBytes, V, FixedState> {
        &mut self.groups[(key_group - self.range.start) as usize]
    }

    /// The value under `composite` in `key_group`.
    #[inline]
    pub fn get(&self, key_group: u32, composite: &[u8]) -> Option<&V> {
        self.group(key_group).get(composite)
    }

    /// The value under `composite`, mutably.
    #[inline]
    pub fn get_mut(&mut self, key_group: u32, composite: &[u8]) -> Option<&mut V> {
        self.group_mut(key_group).get_mut(composite)
    }

    /// The value under `composite`, inserting `make()` first if there is none.
    #[inline]
    pub fn get_or_insert_with(
        &mut self,
        key_group: u32,
        composite: &[u8],
        make: impl FnOnce() -> V,
    ) -> &mut V {
        let group = self.group_mut(key_group);
        if !group.contains_key(composite) {
            group.insert(KeyBytes::new(composite), make());
        }
        // Present now: inserted above or already there.
        match group.get_mut(composite) {
            Some(v) => v,
            None => unreachable!("entry was just inserted"),
        }
    }

    /// Sets the value under `composite`.
    #[inline]
    pub fn insert(&mut self, key_group: u32, composite: &[u8], value: V) {
        let group = self.group_mut(key_group);
        match group.get_mut(composite) {
            Some(slot) => *slot = value,
            None => {
                group.insert(KeyBytes::new(composite), value);
            }
        }
    }

    /// Removes and returns the value under `composite`.
    #[inline]
    pub fn remove(&mut self, key_group: u32, composite: &[u8]) -> Option<V> {
        self.group_mut(key_group).remove(composite)
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.groups.iter().map(HashMap::len).sum()
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.groups.iter().all(HashMap::is_empty)
    }

    /// Every entry of one key group.
    pub fn group_entries(&self, key_group: u32) -> impl Iterator<Item = (&[u8], &V)> {
        self.group(key_group).iter().map(|(k, v)| (&**k, v))
    }

    /// Every entry, with its key group.
    pub fn iter(&self) -> impl Iterator<Item = (u32, &[u8], &V)> {
        self.groups.iter().enumerate().flat_map(move |(i, g)| {
            let kg = self.range.start + i as u32;
            g.iter().map(move |(k, v)| (kg, &**k, v))
        })
    }

    /// Removes every entry, returning them.
    pub fn drain(&mut self) -> impl Iterator<Item = (KeyBytes, V)> + '_ {
        self.groups.iter_mut().flat_map(|g| g.drain())
    }

    /// Keeps only the entries for which `keep` returns true.
    pub fn retain(&mut self, mut keep: impl FnMut(&[u8], &mut V) -> bool) {
        for g in &mut self.groups {
            g.retain(|k, v| keep(k, v));
        }
    }

    /// Replaces the contents of one key group.
    pub(crate) fn set_group(&mut self, key_group: u32, entries: Vec<(KeyBytes, V)>) {
        let g = self.group_mut(key_group);
        g.clear();
        g.extend(entries);
    }
}

/// Splits a composite key into the encoded key and the namespace bytes.
pub fn split_composite(composite: &[u8]) -> (&[u8], &[u8]) {
    let len = u16::from_be_bytes([composite[0], composite[1]]) as usize;
    (&composite[2..2 + len], &composite[2 + len..])
}
