//! State tables: the values of one state, per key group, keyed by the encoded (key, namespace).
//!
//! A table lives on the heap (one hash map per key group) or in the backend's LSM tree (with a
//! bounded cache of deserialized values in front). Both are used through [`StateTable`], whose
//! methods return `Result` because the LSM tree can fail where a hash map cannot.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

use eddy_core::keys::KeyGroupRange;
use foldhash::fast::FixedState;
use hashbrown::HashMap;

use super::key_bytes::KeyBytes;
use super::lsm::LsmTable;
use crate::error::{Result, RuntimeError};

/// A state table shared between an operator and its backend.
pub type SharedStateTable<V> = Rc<RefCell<StateTable<V>>>;

/// The values of one state, per key group.
///
/// Entries are keyed by the *composite key*: the current key's encoding (with a two-byte length
/// prefix) followed by the namespace's encoding. The namespace separates state of one key that
/// belongs to different windows; state outside windows has an empty namespace.
pub struct StateTable<V> {
    imp: Imp<V>,
}

enum Imp<V> {
    Heap(HeapTable<V>),
    Lsm(LsmTable<V>),
}

impl<V> StateTable<V> {
    pub(crate) fn heap(range: KeyGroupRange) -> Self
    where
        V: Clone,
    {
        StateTable {
            imp: Imp::Heap(HeapTable::new(range)),
        }
    }

    pub(crate) fn lsm(table: LsmTable<V>) -> Self {
        StateTable {
            imp: Imp::Lsm(table),
        }
    }

    /// The value under `composite` in `key_group`.
    #[inline]
    pub fn get(&mut self, key_group: u32, composite: &[u8]) -> Result<Option<&V>> {
        match &mut self.imp {
            Imp::Heap(t) => Ok(t.group(key_group).get(composite)),
            Imp::Lsm(t) => t.get(key_group, composite),
        }
    }

    /// The value under `composite`, mutably.
    #[inline]
    pub fn get_mut(&mut self, key_group: u32, composite: &[u8]) -> Result<Option<&mut V>> {
        match &mut self.imp {
            Imp::Heap(t) => Ok(t.group_mut(key_group).get_mut(composite)),
            Imp::Lsm(t) => t.get_mut(key_group, composite),
        }
    }

    /// The value under `composite`, inserting `make()` first if there is none.
    #[inline]
    pub fn get_or_insert_with(
        &mut self,
        key_group: u32,
        composite: &[u8],
        make: impl FnOnce() -> V,
    ) -> Result<&mut V> {
        match &mut self.imp {
            Imp::Heap(t) => {
                let group = t.group_mut(key_group);
                if !group.contains_key(composite) {
                    group.insert(KeyBytes::new(composite), make());
                }
                group.get_mut(composite).ok_or_else(|| {
                    RuntimeError::Internal("a state entry vanished after insertion".into())
                })
            }
            Imp::Lsm(t) => t.get_or_insert_with(key_group, composite, make),
        }
    }

    /// Sets the value under `composite`.
    #[inline]
    pub fn insert(&mut self, key_group: u32, composite: &[u8], value: V) -> Result<()> {
        match &mut self.imp {
            Imp::Heap(t) => {
                let group = t.group_mut(key_group);
                match group.get_mut(composite) {
                    Some(slot) => *slot = value,
                    None => {
                        group.insert(KeyBytes::new(composite), value);
                    }
                }
                Ok(())
            }
            Imp::Lsm(t) => t.insert(key_group, composite, value),
        }
    }

    /// Removes the value under `composite`.
    #[inline]
    pub fn remove(&mut self, key_group: u32, composite: &[u8]) -> Result<()> {
        match &mut self.imp {
            Imp::Heap(t) => {
                t.group_mut(key_group).remove(composite);
                Ok(())
            }
            Imp::Lsm(t) => t.remove(key_group, composite),
        }
    }

    /// Removes and returns the value under `composite`.
    #[inline]
    pub fn take(&mut self, key_group: u32, composite: &[u8]) -> Result<Option<V>> {
        match &mut self.imp {
            Imp::Heap(t) => Ok(t.group_mut(key_group).remove(composite)),
            Imp::Lsm(t) => t.take(key_group, composite),
        }
    }

    /// Calls `f` with every entry and its key group, in no particular order.
    pub fn for_each(&mut self, mut f: impl FnMut(u32, &[u8], &V) -> Result<()>) -> Result<()> {
        match &mut self.imp {
            Imp::Heap(t) => {
                for (kg, g) in t.groups() {
                    for (k, v) in g {
                        f(kg, k, v)?;
                    }
                }
                Ok(())
            }
            Imp::Lsm(t) => t.for_each(f),
        }
    }

    /// Removes every entry, returning them.
    pub fn take_all(&mut self) -> Result<Vec<(KeyBytes, V)>> {
        match &mut self.imp {
            Imp::Heap(t) => {
                let range = t.range;
                let mut all = Vec::new();
                for kg in range.start..=range.end {
                    all.extend(t.group_mut(kg).drain());
                }
                Ok(all)
            }
            Imp::Lsm(t) => t.take_all(),
        }
    }

    /// The heap table, if this is one.
    pub(crate) fn as_heap(&self) -> Option<&HeapTable<V>> {
        match &self.imp {
            Imp::Heap(t) => Some(t),
            Imp::Lsm(_) => None,
        }
    }

    /// The heap table, mutably, if this is one.
    pub(crate) fn as_heap_mut(&mut self) -> Option<&mut HeapTable<V>> {
        match &mut self.imp {
            Imp::Heap(t) => Some(t),
            Imp::Lsm(_) => None,
        }
    }

    /// The LSM table, mutably, if this is one.
    pub(crate) fn as_lsm_mut(&mut self) -> Option<&mut LsmTable<V>> {
        match &mut self.imp {
            Imp::Heap(_) => None,
            Imp::Lsm(t) => Some(t),
        }
    }
}

/// The entries of one key group.
pub(crate) type GroupMap<V> = HashMap<KeyBytes, V, FixedState>;

/// A key group's map: owned, or shared with a snapshot being written (copy on write).
enum Group<V> {
    Owned(GroupMap<V>),
    Shared(Arc<GroupMap<V>>),
}

/// A table on the heap: one hash map per key group.
///
/// A snapshot takes the key groups' maps by reference count, in constant time; the first write
/// to a group that a snapshot still holds copies that group (copy on write, per key group), so
/// the task goes on while the snapshot is encoded and written.
pub(crate) struct HeapTable<V> {
    range: KeyGroupRange,
    groups: Vec<Group<V>>,
    clone_group: fn(&GroupMap<V>) -> GroupMap<V>,
}

impl<V> HeapTable<V> {
    pub(crate) fn new(range: KeyGroupRange) -> Self
    where
        V: Clone,
    {
        HeapTable {
            range,
            groups: (0..range.len())
                .map(|_| Group::Owned(HashMap::default()))
                .collect(),
            clone_group: GroupMap::<V>::clone,
        }
    }

    #[inline]
    fn group(&self, key_group: u32) -> &GroupMap<V> {
        match &self.groups[(key_group - self.range.start) as usize] {
            Group::Owned(m) => m,
            Group::Shared(m) => m,
        }
    }

    #[inline]
    pub(crate) fn group_mut(&mut self, key_group: u32) -> &mut GroupMap<V> {
        let clone_group = self.clone_group;
        let slot = &mut self.groups[(key_group - self.range.start) as usize];
        if let Group::Shared(shared) = slot {
            // A snapshot held this group: take it back, copying it if the snapshot still has it.
            let shared = std::mem::take(shared);
            let map = Arc::try_unwrap(shared).unwrap_or_else(|s| clone_group(&s));
            *slot = Group::Owned(map);
        }
        match slot {
            Group::Owned(m) => m,
            Group::Shared(_) => unreachable!("the group was just made owned"),
        }
    }

    /// Every entry of one key group.
    pub(crate) fn group_entries(&self, key_group: u32) -> impl Iterator<Item = (&[u8], &V)> {
        self.group(key_group).iter().map(|(k, v)| (&**k, v))
    }

    /// The key groups.
    pub(crate) fn range(&self) -> KeyGroupRange {
        self.range
    }

    /// Shares every key group's map with a snapshot.
    pub(crate) fn share(&mut self) -> Vec<Arc<GroupMap<V>>> {
        self.groups
            .iter_mut()
            .map(|slot| {
                let arc = match std::mem::replace(slot, Group::Owned(HashMap::default())) {
                    Group::Owned(m) => Arc::new(m),
                    Group::Shared(a) => a,
                };
                *slot = Group::Shared(arc.clone());
                arc
            })
            .collect()
    }

    fn groups(&self) -> impl Iterator<Item = (u32, &GroupMap<V>)> {
        self.groups.iter().enumerate().map(|(i, g)| {
            let m: &GroupMap<V> = match g {
                Group::Owned(m) => m,
                Group::Shared(m) => m,
            };
            (self.range.start + i as u32, m)
        })
    }
}

/// Splits a composite key into the encoded key and the namespace bytes.
pub fn split_composite(composite: &[u8]) -> (&[u8], &[u8]) {
    let len = u16::from_be_bytes([composite[0], composite[1]]) as usize;
    (&composite[2..2 + len], &composite[2 + len..])
}
