//! The LSM state backend's storage: an embedded `fjall` LSM tree per operator subtask, on local
//! disk, for keyed state larger than memory.
//!
//! Each state is one keyspace of the tree. Keys are the key group (two bytes, big-endian) then
//! the composite key, so one key group's entries are contiguous and can be scanned alone; values
//! are the postcard encoding of the state's value type.
//!
//! In front of the tree each table keeps a bounded cache of deserialized values, so that the
//! operators' read-modify-write pattern (`get_mut` on the current key) costs one lookup in the
//! tree per key while it stays hot. Changed values are written back when the cache is full and
//! at every checkpoint. The tree's durability does not matter (its files are thrown away when
//! the subtask ends): checkpoints are what make state durable.
//!
//! For incremental checkpoints, each state remembers which keys changed since the last
//! snapshot; an incremental snapshot writes only those keys' current values (or tombstones).

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::rc::Rc;

use foldhash::fast::FixedState;
use hashbrown::HashMap;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::key_bytes::KeyBytes;
use crate::error::{Result, RuntimeError};

/// Keys changed since the last snapshot, with their key-group prefix.
pub(crate) type ChangedKeys = HashSet<KeyBytes, FixedState>;

fn lsm_err(e: impl std::fmt::Display) -> RuntimeError {
    RuntimeError::StateBackend(e.to_string())
}

fn decode<V: DeserializeOwned>(bytes: &[u8]) -> Result<V> {
    postcard::from_bytes(bytes)
        .map_err(|e| RuntimeError::Serialization(format!("corrupt state value: {e}")))
}

fn encode<V: Serialize>(value: &V) -> Result<Vec<u8>> {
    postcard::to_stdvec(value).map_err(|e| RuntimeError::Serialization(e.to_string()))
}

/// Writes the tree key of (`key_group`, `composite`) into `out`.
#[inline]
pub(crate) fn tree_key(key_group: u32, composite: &[u8], out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(&(key_group as u16).to_be_bytes());
    out.extend_from_slice(composite);
}

/// Settings of the LSM backend.
#[derive(Clone, Debug)]
pub struct LsmOptions {
    /// The directory under which each subtask creates its tree.
    pub base_dir: PathBuf,
    /// Deserialized values cached per state.
    pub cache_entries: usize,
    /// Memtable size per state.
    pub memtable_size: u64,
    /// Block cache per subtask.
    pub block_cache_size: u64,
    /// Whether changed keys are recorded for incremental snapshots.
    pub track_changes: bool,
}

/// One state's keyspace and its change tracking.
#[derive(Clone)]
pub(crate) struct LsmState {
    pub(crate) keyspace: fjall::Keyspace,
    pub(crate) changed: Rc<RefCell<ChangedKeys>>,
}

/// The LSM tree of one operator subtask.
pub(crate) struct LsmStore {
    db: fjall::Database,
    states: RefCell<BTreeMap<String, LsmState>>,
    next_id: Cell<u32>,
    options: LsmOptions,
}

impl LsmStore {
    /// Creates an empty tree in a new directory under `options.base_dir`.
    pub(crate) fn open(options: &LsmOptions, label: &str) -> Result<Self> {
        let label: String = label
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect();
        let dir = options.base_dir.join(format!(
            "eddy-lsm-{label}-{}",
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::create_dir_all(&options.base_dir).map_err(|e| {
            RuntimeError::io(
                format!(
                    "cannot create the LSM state directory {}",
                    options.base_dir.display()
                ),
                e,
            )
        })?;
        let db = fjall::Database::builder(&dir)
            .temporary(true)
            .manual_journal_persist(true)
            .worker_threads(1)
            .cache_size(options.block_cache_size)
            .open()
            .map_err(|e| {
                RuntimeError::StateBackend(format!(
                    "cannot open an LSM tree in {}: {e}",
                    dir.display()
                ))
            })?;
        Ok(LsmStore {
            db,
            states: RefCell::new(BTreeMap::new()),
            next_id: Cell::new(0),
            options: options.clone(),
        })
    }

    /// State `name`'s keyspace, created on first use.
    pub(crate) fn state(&self, name: &str) -> Result<LsmState> {
        if let Some(s) = self.states.borrow().get(name) {
            return Ok(s.clone());
        }
        let id = self.next_id.get();
        self.next_id.set(id + 1);
        let memtable = self.options.memtable_size;
        let keyspace = self
            .db
            .keyspace(&format!("s{id}"), || {
                fjall::KeyspaceCreateOptions::default().max_memtable_size(memtable)
            })
            .map_err(lsm_err)?;
        let state = LsmState {
            keyspace,
            changed: Rc::new(RefCell::new(ChangedKeys::default())),
        };
        self.states
            .borrow_mut()
            .insert(name.to_string(), state.clone());
        Ok(state)
    }

    /// Every state with its keyspace.
    pub(crate) fn states(&self) -> Vec<(String, LsmState)> {
        self.states
            .borrow()
            .iter()
            .map(|(n, s)| (n.clone(), s.clone()))
            .collect()
    }

    /// A table over state `name`.
    pub(crate) fn table<V: Serialize + DeserializeOwned>(&self, name: &str) -> Result<LsmTable<V>> {
        let state = self.state(name)?;
        Ok(LsmTable {
            db: self.db.clone(),
            keyspace: state.keyspace,
            changed: state.changed,
            cache: HashMap::default(),
            capacity: self.options.cache_entries.max(1),
            scratch: Vec::with_capacity(48),
            track: self.options.track_changes,
            encode: encode::<V>,
            decode: decode::<V>,
        })
    }

    /// A consistent view of every keyspace as of now.
    pub(crate) fn snapshot(&self) -> fjall::Snapshot {
        self.db.snapshot()
    }

    /// Applies restored entries of one key group: with `full`, the key group's earlier entries
    /// are removed first. Restored entries are not changes (the next incremental snapshot
    /// builds on the restored files).
    pub(crate) fn restore(
        &self,
        name: &str,
        key_group: u32,
        full: bool,
        entries: &mut dyn Iterator<Item = (Vec<u8>, Option<Vec<u8>>)>,
    ) -> Result<()> {
        let state = self.state(name)?;
        let prefix = (key_group as u16).to_be_bytes();
        let mut batch = self.db.batch();
        if full {
            for guard in state.keyspace.prefix(prefix) {
                let key = guard.key().map_err(lsm_err)?;
                batch.remove(&state.keyspace, key);
            }
        }
        let mut key = Vec::new();
        for (composite, value) in entries {
            tree_key(key_group, &composite, &mut key);
            match value {
                Some(v) => batch.insert(&state.keyspace, key.as_slice(), v),
                None => batch.remove(&state.keyspace, key.as_slice()),
            }
            if batch.len() >= 16_384 {
                std::mem::replace(&mut batch, self.db.batch())
                    .commit()
                    .map_err(lsm_err)?;
            }
        }
        batch.commit().map_err(lsm_err)
    }

    /// Approximate bytes on disk.
    pub(crate) fn disk_space(&self) -> u64 {
        self.db.disk_space().unwrap_or(0)
    }
}

struct Slot<V> {
    value: Option<V>,
    /// Differs from the tree.
    dirty: bool,
    /// Recorded in the changed keys since the last snapshot.
    tracked: bool,
    /// Used since the last eviction (the clock bit).
    used: bool,
}

/// A state table in the LSM tree, with a cache of deserialized values in front.
pub(crate) struct LsmTable<V> {
    db: fjall::Database,
    keyspace: fjall::Keyspace,
    changed: Rc<RefCell<ChangedKeys>>,
    cache: HashMap<KeyBytes, Slot<V>, FixedState>,
    capacity: usize,
    scratch: Vec<u8>,
    track: bool,
    encode: fn(&V) -> Result<Vec<u8>>,
    decode: fn(&[u8]) -> Result<V>,
}

impl<V> LsmTable<V> {
    /// Makes sure the entry for the key in `scratch` is cached.
    fn load(&mut self) -> Result<()> {
        if let Some(slot) = self.cache.get_mut(self.scratch.as_slice()) {
            slot.used = true;
            return Ok(());
        }
        if self.cache.len() >= self.capacity {
            self.evict()?;
        }
        let value = match self.keyspace.get(&self.scratch).map_err(lsm_err)? {
            Some(bytes) => Some((self.decode)(&bytes)?),
            None => None,
        };
        self.cache.insert(
            KeyBytes::new(&self.scratch),
            Slot {
                value,
                dirty: false,
                tracked: false,
                used: true,
            },
        );
        Ok(())
    }

    /// The cached slot of the key in `scratch`, marked changed.
    fn changed_slot(&mut self) -> Result<&mut Slot<V>> {
        let slot = self
            .cache
            .get_mut(self.scratch.as_slice())
            .ok_or_else(|| RuntimeError::Internal("a cached state entry vanished".into()))?;
        slot.dirty = true;
        if self.track && !slot.tracked {
            slot.tracked = true;
            self.changed
                .borrow_mut()
                .insert(KeyBytes::new(&self.scratch));
        }
        Ok(slot)
    }

    pub(crate) fn get(&mut self, key_group: u32, composite: &[u8]) -> Result<Option<&V>> {
        tree_key(key_group, composite, &mut self.scratch);
        self.load()?;
        Ok(self
            .cache
            .get(self.scratch.as_slice())
            .and_then(|s| s.value.as_ref()))
    }

    pub(crate) fn get_mut(&mut self, key_group: u32, composite: &[u8]) -> Result<Option<&mut V>> {
        tree_key(key_group, composite, &mut self.scratch);
        self.load()?;
        let present = self
            .cache
            .get(self.scratch.as_slice())
            .is_some_and(|s| s.value.is_some());
        if !present {
            return Ok(None);
        }
        Ok(self.changed_slot()?.value.as_mut())
    }

    pub(crate) fn get_or_insert_with(
        &mut self,
        key_group: u32,
        composite: &[u8],
        make: impl FnOnce() -> V,
    ) -> Result<&mut V> {
        tree_key(key_group, composite, &mut self.scratch);
        self.load()?;
        let slot = self.changed_slot()?;
        Ok(slot.value.get_or_insert_with(make))
    }

    fn set(&mut self, value: Option<V>) -> Result<()> {
        if !self.cache.contains_key(self.scratch.as_slice()) {
            if self.cache.len() >= self.capacity {
                self.evict()?;
            }
            self.cache.insert(
                KeyBytes::new(&self.scratch),
                Slot {
                    value: None,
                    dirty: false,
                    tracked: false,
                    used: true,
                },
            );
        }
        self.changed_slot()?.value = value;
        Ok(())
    }

    pub(crate) fn insert(&mut self, key_group: u32, composite: &[u8], value: V) -> Result<()> {
        tree_key(key_group, composite, &mut self.scratch);
        self.set(Some(value))
    }

    pub(crate) fn remove(&mut self, key_group: u32, composite: &[u8]) -> Result<()> {
        tree_key(key_group, composite, &mut self.scratch);
        self.set(None)
    }

    pub(crate) fn take(&mut self, key_group: u32, composite: &[u8]) -> Result<Option<V>> {
        tree_key(key_group, composite, &mut self.scratch);
        self.load()?;
        if self
            .cache
            .get(self.scratch.as_slice())
            .is_none_or(|s| s.value.is_none())
        {
            return Ok(None);
        }
        Ok(self.changed_slot()?.value.take())
    }

    /// Writes every changed cached value to the tree.
    pub(crate) fn write_back(&mut self) -> Result<()> {
        let mut batch = self.db.batch();
        for (key, slot) in self.cache.iter_mut().filter(|(_, s)| s.dirty) {
            match &slot.value {
                Some(v) => batch.insert(&self.keyspace, &**key, (self.encode)(v)?),
                None => batch.remove(&self.keyspace, &**key),
            }
            slot.dirty = false;
        }
        if batch.is_empty() {
            return Ok(());
        }
        batch.commit().map_err(lsm_err)
    }

    /// Encodes the cached entries whose tree keys are in `keys` (removing them from `keys`).
    pub(crate) fn capture(
        &mut self,
        keys: &mut ChangedKeys,
        out: &mut Vec<(KeyBytes, Option<Vec<u8>>)>,
    ) -> Result<()> {
        if keys.len() < self.cache.len() {
            let mut failed = None;
            keys.retain(|key| match self.cache.get(key) {
                Some(slot) => {
                    match slot.value.as_ref().map(|v| (self.encode)(v)).transpose() {
                        Ok(value) => out.push((key.clone(), value)),
                        Err(e) => failed = Some(e),
                    }
                    false
                }
                None => true,
            });
            return failed.map_or(Ok(()), Err);
        }
        for (key, slot) in &self.cache {
            if keys.remove(key) {
                let value = slot.value.as_ref().map(|v| (self.encode)(v)).transpose()?;
                out.push((key.clone(), value));
            }
        }
        Ok(())
    }

    /// Forgets which cached keys were recorded as changed (after a snapshot took them).
    pub(crate) fn reset_tracking(&mut self) {
        self.cache.values_mut().for_each(|s| s.tracked = false);
    }

    /// Makes room: writes changes back, then keeps at most half of the entries, those used
    /// since the last eviction first (a clock).
    fn evict(&mut self) -> Result<()> {
        self.write_back()?;
        let mut keep = self.capacity / 2;
        self.cache.retain(|_, s| {
            let used = std::mem::replace(&mut s.used, false);
            if used && keep > 0 {
                keep -= 1;
                true
            } else {
                false
            }
        });
        Ok(())
    }

    pub(crate) fn for_each(
        &mut self,
        mut f: impl FnMut(u32, &[u8], &V) -> Result<()>,
    ) -> Result<()> {
        self.write_back()?;
        for guard in self.keyspace.iter() {
            let (k, v) = guard.into_inner().map_err(lsm_err)?;
            let kg = u16::from_be_bytes([k[0], k[1]]) as u32;
            f(kg, &k[2..], &(self.decode)(&v)?)?;
        }
        Ok(())
    }

    pub(crate) fn take_all(&mut self) -> Result<Vec<(KeyBytes, V)>> {
        self.write_back()?;
        self.cache.clear();
        let mut out = Vec::new();
        let mut batch = self.db.batch();
        let mut changed = self.changed.borrow_mut();
        for guard in self.keyspace.iter() {
            let (k, v) = guard.into_inner().map_err(lsm_err)?;
            out.push((KeyBytes::new(&k[2..]), (self.decode)(&v)?));
            batch.remove(&self.keyspace, k.clone());
            if self.track {
                changed.insert(KeyBytes::new(&k));
            }
        }
        batch.commit().map_err(lsm_err)?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(cache: usize) -> (tempfile::TempDir, LsmStore) {
        let dir = tempfile::tempdir().unwrap();
        let opts = LsmOptions {
            base_dir: dir.path().to_path_buf(),
            cache_entries: cache,
            memtable_size: 1 << 20,
            block_cache_size: 1 << 20,
            track_changes: true,
        };
        let s = LsmStore::open(&opts, "test op (1/2)").unwrap();
        (dir, s)
    }

    #[test]
    fn values_survive_eviction_and_changes_are_tracked() {
        let (_dir, store) = store(4);
        let mut t = store.table::<Vec<u32>>("list").unwrap();
        for i in 0..100u32 {
            let k = i.to_be_bytes();
            t.get_or_insert_with(i % 8, &k, Vec::new).unwrap().push(i);
            t.get_mut(i % 8, &k).unwrap().unwrap().push(i + 1);
        }
        for i in 0..100u32 {
            assert_eq!(
                t.get(i % 8, &i.to_be_bytes()).unwrap(),
                Some(&vec![i, i + 1])
            );
        }
        t.remove(3, &3u32.to_be_bytes()).unwrap();
        assert_eq!(t.get(3, &3u32.to_be_bytes()).unwrap(), None);
        assert_eq!(t.take(4, &4u32.to_be_bytes()).unwrap(), Some(vec![4, 5]));
        assert_eq!(t.get(4, &4u32.to_be_bytes()).unwrap(), None);
        assert_eq!(t.get_mut(9, b"missing").unwrap(), None);
        assert_eq!(store.state("list").unwrap().changed.borrow().len(), 100);
        let mut n = 0;
        t.for_each(|kg, k, v| {
            let i = u32::from_be_bytes(k.try_into().unwrap());
            assert_eq!(kg, i % 8);
            assert_eq!(v, &vec![i, i + 1]);
            n += 1;
            Ok(())
        })
        .unwrap();
        assert_eq!(n, 98);
        assert_eq!(t.take_all().unwrap().len(), 98);
        assert_eq!(t.get(1, &1u32.to_be_bytes()).unwrap(), None);
    }

    #[test]
    fn restore_replaces_a_key_group() {
        let (_dir, store) = store(16);
        let mut t = store.table::<u64>("v").unwrap();
        t.insert(1, b"a", 1).unwrap();
        t.insert(2, b"b", 2).unwrap();
        t.write_back().unwrap();
        let enc = |v: u64| Some(postcard::to_stdvec(&v).unwrap());
        store
            .restore("v", 1, true, &mut vec![(b"c".to_vec(), enc(3))].into_iter())
            .unwrap();
        store
            .restore("v", 2, false, &mut vec![(b"b".to_vec(), None)].into_iter())
            .unwrap();
        let mut t = store.table::<u64>("v").unwrap();
        assert_eq!(t.get(1, b"a").unwrap(), None);
        assert_eq!(t.get(1, b"c").unwrap(), Some(&3));
        assert_eq!(t.get(2, b"b").unwrap(), None);
    }
}
