//! The keyed state backend of one operator subtask.

use std::any::Any;
use std::cell::{Cell, Ref, RefCell};
use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use eddy_core::keys::{KeyGroupRange, encode_key_into, hash_key_bytes, key_group_for_hash};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::key_bytes::KeyBytes;
use super::lsm::{ChangedKeys, LsmOptions, LsmStore};
use super::snapshot::{
    GroupSink, HeapPart, HeapSnapshot, IncrementReport, KeyedRestore, KeyedSnapshotJob, LsmDelta,
    LsmJob, LsmStateJob, RawState, apply_raw,
};
use super::table::{GroupMap, SharedStateTable, StateTable};
use crate::checkpoint::format::{encode_entry, read_entries};
use crate::checkpoint::metadata::{KeyedFile, KeyedStateInfo, KeyedStateKind};
use crate::error::{Result, RuntimeError};

/// Which keyed state backend a job uses, and how it snapshots.
#[derive(Clone, Debug)]
pub struct BackendConfig {
    /// Heap or LSM.
    pub kind: BackendKind,
    /// Whether the LSM backend takes incremental snapshots.
    pub incremental: bool,
    /// Incremental snapshots after which the next one is full again.
    pub max_deltas: u32,
}

impl Default for BackendConfig {
    fn default() -> Self {
        BackendConfig {
            kind: BackendKind::HashMap,
            incremental: false,
            max_deltas: 10,
        }
    }
}

/// Where keyed state lives.
#[derive(Clone, Debug)]
pub enum BackendKind {
    /// Hash maps per key group, in memory.
    HashMap,
    /// An LSM tree on local disk.
    Lsm(LsmOptions),
}

/// Something a backend snapshots and restores with its keyed state: a state table, or state an
/// operator keeps in memory per key (timers).
pub trait KeyedParticipant {
    /// How the state is held.
    fn kind(&self) -> KeyedStateKind;
    /// Adds every entry held in memory to `sink` (nothing for tables in the LSM tree).
    fn snapshot_heap(&self, sink: &mut GroupSink) -> Result<()>;
    /// Hands the entries held in memory to the snapshot without encoding them now (copy on
    /// write); `None` if the participant cannot, and [`Self::snapshot_heap`] is used instead.
    fn share_heap(&self) -> Option<Box<dyn HeapSnapshot>> {
        None
    }
    /// Takes back entries restored from a snapshot.
    fn restore_raw(&self, raw: RawStateEntries) -> Result<()>;
    /// LSM tables: writes cached changes to the tree.
    fn write_back_lsm(&self) -> Result<()> {
        Ok(())
    }
    /// LSM tables: encodes the cached entries whose tree keys are in `keys`, removing them
    /// from `keys`.
    fn capture_lsm(
        &self,
        _keys: &mut ChangedKeys,
        _out: &mut Vec<(KeyBytes, Option<Vec<u8>>)>,
    ) -> Result<()> {
        Ok(())
    }
    /// LSM tables: the changes recorded so far belong to the snapshot being taken.
    fn reset_lsm_tracking(&self) {}
}

/// Restored entries of one state: per key group, encoded keys and values.
pub struct RawStateEntries(pub(crate) RawState);

impl RawStateEntries {
    /// Every entry: key group, encoded key, encoded value.
    pub fn iter(&self) -> impl Iterator<Item = (u32, &[u8], &[u8])> {
        self.0
            .iter()
            .flat_map(|(kg, g)| g.iter().map(move |(k, v)| (*kg, &**k, v.as_slice())))
    }
}

/// A heap table's key groups, encoded when the snapshot is written.
struct SharedTable<V> {
    start: u32,
    groups: Vec<Arc<GroupMap<V>>>,
}

impl<V: Serialize + Send + Sync> HeapSnapshot for SharedTable<V> {
    fn write_group(&self, key_group: u32, out: &mut Vec<u8>) -> Result<()> {
        let mut value = Vec::new();
        for (k, v) in self.groups[(key_group - self.start) as usize].iter() {
            value.clear();
            postcard::to_io(v, &mut value)
                .map_err(|e| RuntimeError::Serialization(e.to_string()))?;
            encode_entry(out, k, Some(&value))?;
        }
        Ok(())
    }
}

impl<V> KeyedParticipant for RefCell<StateTable<V>>
where
    V: Serialize + DeserializeOwned + Send + Sync + 'static,
{
    fn kind(&self) -> KeyedStateKind {
        KeyedStateKind::Table
    }

    fn share_heap(&self) -> Option<Box<dyn HeapSnapshot>> {
        let mut table = self.borrow_mut();
        let heap = table.as_heap_mut()?;
        let start = heap.range().start;
        Some(Box::new(SharedTable {
            start,
            groups: heap.share(),
        }))
    }

    fn snapshot_heap(&self, sink: &mut GroupSink) -> Result<()> {
        let table = self.borrow();
        let Some(heap) = table.as_heap() else {
            return Ok(());
        };
        let mut buf = Vec::new();
        let range = heap.range();
        for kg in range.start..=range.end {
            for (k, v) in heap.group_entries(kg) {
                buf.clear();
                postcard::to_io(v, &mut buf)
                    .map_err(|e| RuntimeError::Serialization(e.to_string()))?;
                sink.put(kg, k, &buf)?;
            }
        }
        Ok(())
    }

    fn restore_raw(&self, raw: RawStateEntries) -> Result<()> {
        let mut table = self.borrow_mut();
        let Some(heap) = table.as_heap_mut() else {
            return Ok(());
        };
        for (kg, group) in raw.0 {
            let g = heap.group_mut(kg);
            g.reserve(group.len());
            for (k, v) in group {
                let value: V = postcard::from_bytes(&v).map_err(|e| {
                    RuntimeError::Serialization(format!("cannot decode restored state: {e}"))
                })?;
                g.insert(k, value);
            }
        }
        Ok(())
    }

    fn write_back_lsm(&self) -> Result<()> {
        match self.borrow_mut().as_lsm_mut() {
            Some(t) => t.write_back(),
            None => Ok(()),
        }
    }

    fn capture_lsm(
        &self,
        keys: &mut ChangedKeys,
        out: &mut Vec<(KeyBytes, Option<Vec<u8>>)>,
    ) -> Result<()> {
        match self.borrow_mut().as_lsm_mut() {
            Some(t) => t.capture(keys, out),
            None => Ok(()),
        }
    }

    fn reset_lsm_tracking(&self) {
        if let Some(t) = self.borrow_mut().as_lsm_mut() {
            t.reset_tracking();
        }
    }
}

/// An event time held once per key group, so that it follows the key groups on rescaling (a
/// restored subtask takes the lowest of its key groups').
struct EventTime {
    time: Rc<Cell<i64>>,
    range: KeyGroupRange,
}

impl KeyedParticipant for EventTime {
    fn kind(&self) -> KeyedStateKind {
        KeyedStateKind::Heap
    }

    fn snapshot_heap(&self, sink: &mut GroupSink) -> Result<()> {
        let t = self.time.get().to_be_bytes();
        for kg in self.range.start..=self.range.end {
            sink.put(kg, &[], &t)?;
        }
        Ok(())
    }

    fn restore_raw(&self, raw: RawStateEntries) -> Result<()> {
        let mut lowest: Option<i64> = None;
        for (_, _, v) in raw.iter() {
            let bytes: [u8; 8] = v
                .try_into()
                .map_err(|_| RuntimeError::Serialization("corrupt restored event time".into()))?;
            let t = i64::from_be_bytes(bytes);
            lowest = Some(lowest.map_or(t, |l| l.min(t)));
        }
        if let Some(t) = lowest {
            self.time.set(self.time.get().max(t));
        }
        Ok(())
    }
}

struct Registered {
    typed: Rc<dyn Any>,
    participant: Rc<dyn KeyedParticipant>,
}

enum Storage {
    Heap,
    Lsm(LsmStore),
}

/// Snapshots of the LSM tree not yet known to be part of a completed checkpoint.
struct PendingSnapshot {
    report: IncrementReport,
    changed: BTreeMap<String, super::lsm::ChangedKeys>,
}

/// What incremental snapshots build on.
#[derive(Default)]
struct Chain {
    /// The files of the last completed checkpoint's snapshot.
    confirmed: Vec<KeyedFile>,
    pending: BTreeMap<u64, PendingSnapshot>,
}

pub(crate) struct BackendInner {
    pub(crate) range: KeyGroupRange,
    pub(crate) max_parallelism: u32,
    /// The current key: a two-byte big-endian length, then the key's stable encoding.
    pub(crate) current: RefCell<Vec<u8>>,
    pub(crate) current_group: Cell<u32>,
    pub(crate) has_key: Cell<bool>,
    tables: RefCell<BTreeMap<String, Registered>>,
    pub(crate) clock: RefCell<Rc<dyn Fn() -> i64>>,
    storage: Storage,
    config: BackendConfig,
    /// Restored state held in memory that no operator has claimed yet.
    restored: RefCell<BTreeMap<String, (KeyedStateKind, RawState)>>,
    chain: RefCell<Chain>,
}

/// The keyed state of one operator subtask.
///
/// Keys are stored in their stable encoding (postcard), the same bytes that are hashed to find
/// a key's group, so the backend does not depend on the key type: the operator sets the current
/// key before it calls user code, and every state handle reads and writes that key's value.
#[derive(Clone)]
pub struct KeyedStateBackend {
    pub(crate) inner: Rc<BackendInner>,
}

impl KeyedStateBackend {
    /// A heap backend owning `range` out of `max_parallelism` key groups.
    pub fn new(range: KeyGroupRange, max_parallelism: u32) -> Self {
        Self::create(
            range,
            max_parallelism,
            &BackendConfig::default(),
            "",
            KeyedRestore::default(),
        )
        .unwrap_or_else(|e| unreachable!("a heap backend without state cannot fail: {e}"))
    }

    /// A backend as `config` says, restored from `restore`; `label` names its files.
    pub fn create(
        range: KeyGroupRange,
        max_parallelism: u32,
        config: &BackendConfig,
        label: &str,
        restore: KeyedRestore,
    ) -> Result<Self> {
        let storage = match &config.kind {
            BackendKind::HashMap => Storage::Heap,
            BackendKind::Lsm(opts) => Storage::Lsm(LsmStore::open(opts, label)?),
        };
        let backend = KeyedStateBackend {
            inner: Rc::new(BackendInner {
                range,
                max_parallelism,
                current: RefCell::new(Vec::with_capacity(32)),
                current_group: Cell::new(range.start),
                has_key: Cell::new(false),
                tables: RefCell::new(BTreeMap::new()),
                clock: RefCell::new(Rc::new(eddy_core::time::now_millis)),
                storage,
                config: config.clone(),
                restored: RefCell::new(BTreeMap::new()),
                chain: RefCell::new(Chain::default()),
            }),
        };
        backend.restore(restore)?;
        Ok(backend)
    }

    fn restore(&self, restore: KeyedRestore) -> Result<()> {
        let range = self.inner.range;
        let mut restored = self.inner.restored.borrow_mut();
        for file in &restore.files {
            // Heap-held states are complete in every file that lists them.
            for info in file.states.iter().filter(|i| self.held_in_memory(i.kind)) {
                let entry = restored
                    .entry(info.name.clone())
                    .or_insert_with(|| (info.kind, RawState::new()));
                let (start, end) = file.key_groups;
                for kg in start.max(range.start)..=end.min(range.end) {
                    entry.1.remove(&kg);
                }
            }
        }
        restore.for_each_section(|name, kind, kg, full, bytes| {
            if !range.contains(kg) {
                return Ok(());
            }
            match &self.inner.storage {
                Storage::Lsm(store) if kind == KeyedStateKind::Table => {
                    let mut entries = Vec::new();
                    read_entries(bytes, |k, v| {
                        entries.push((k.to_vec(), v.map(<[u8]>::to_vec)));
                        Ok(())
                    })?;
                    store.restore(name, kg, full, &mut entries.into_iter())
                }
                _ => {
                    let entry = restored
                        .entry(name.to_string())
                        .or_insert_with(|| (kind, RawState::new()));
                    apply_raw(&mut entry.1, kg, full, bytes)
                }
            }
        })?;
        if let (Some(chain), Storage::Lsm(_)) = (restore.chain, &self.inner.storage)
            && self.inner.config.incremental
        {
            self.inner.chain.borrow_mut().confirmed = chain;
        }
        Ok(())
    }

    fn held_in_memory(&self, kind: KeyedStateKind) -> bool {
        kind == KeyedStateKind::Heap || matches!(self.inner.storage, Storage::Heap)
    }

    /// Replaces the processing-time clock used for state TTL (for tests).
    pub fn set_ttl_clock(&self, clock: Rc<dyn Fn() -> i64>) {
        *self.inner.clock.borrow_mut() = clock;
    }

    /// The key groups this backend holds.
    pub fn key_group_range(&self) -> KeyGroupRange {
        self.inner.range
    }

    /// Number of key groups of the job.
    pub fn max_parallelism(&self) -> u32 {
        self.inner.max_parallelism
    }

    /// Whether state lives in the LSM tree.
    pub fn is_lsm(&self) -> bool {
        matches!(self.inner.storage, Storage::Lsm(_))
    }

    /// Makes `key` the current key and returns its key group.
    #[inline]
    pub fn set_current_key<K: Serialize + ?Sized>(&self, key: &K) -> Result<u32> {
        let mut cur = self.inner.current.borrow_mut();
        cur.clear();
        cur.extend_from_slice(&[0, 0]);
        encode_key_into(key, &mut cur)?;
        let len = cur.len() - 2;
        if len > u16::MAX as usize {
            return Err(RuntimeError::user(format!(
                "a key encodes to {len} bytes; keys are limited to {} bytes",
                u16::MAX
            )));
        }
        cur[..2].copy_from_slice(&(len as u16).to_be_bytes());
        let kg = key_group_for_hash(hash_key_bytes(&cur[2..]), self.inner.max_parallelism);
        if !self.inner.range.contains(kg) {
            return Err(RuntimeError::Internal(format!(
                "a key belongs to key group {kg}, which this subtask ({}..={}) does not own",
                self.inner.range.start, self.inner.range.end
            )));
        }
        self.inner.current_group.set(kg);
        self.inner.has_key.set(true);
        Ok(kg)
    }

    /// The key group of `key` (without making it current).
    #[inline]
    pub fn key_group_of<K: Serialize + ?Sized>(
        &self,
        key: &K,
        scratch: &mut Vec<u8>,
    ) -> Result<u32> {
        scratch.clear();
        encode_key_into(key, scratch)?;
        Ok(key_group_for_hash(
            hash_key_bytes(scratch),
            self.inner.max_parallelism,
        ))
    }

    /// Makes the key stored in a timer or snapshot (length-prefixed encoding) current.
    pub fn set_current_key_bytes(&self, prefixed_key: &[u8], key_group: u32) {
        let mut cur = self.inner.current.borrow_mut();
        cur.clear();
        cur.extend_from_slice(prefixed_key);
        self.inner.current_group.set(key_group);
        self.inner.has_key.set(true);
    }

    /// The current key as stored: two-byte length prefix, then its encoding.
    pub fn current_key_bytes(&self) -> Ref<'_, Vec<u8>> {
        self.inner.current.borrow()
    }

    /// The current key's group.
    pub fn current_key_group(&self) -> u32 {
        self.inner.current_group.get()
    }

    /// The current key, decoded.
    pub fn current_key<K: DeserializeOwned>(&self) -> Result<K> {
        if !self.inner.has_key.get() {
            return Err(RuntimeError::user(
                "no current key: keyed state used outside a keyed context",
            ));
        }
        let cur = self.inner.current.borrow();
        postcard::from_bytes(&cur[2..]).map_err(|e| RuntimeError::Serialization(e.to_string()))
    }

    /// Writes the composite key (current key + `namespace`) into `buf`.
    #[inline]
    pub fn composite_key(&self, namespace: &[u8], buf: &mut Vec<u8>) {
        buf.clear();
        buf.extend_from_slice(&self.inner.current.borrow());
        buf.extend_from_slice(namespace);
    }

    /// The table behind state `name`, created on first use (and filled from the restored
    /// snapshot, if there is one). Asking for the same name with a different value type is an
    /// error.
    pub fn table<V>(&self, name: &str) -> Result<SharedStateTable<V>>
    where
        V: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
    {
        if let Some(t) = self.inner.tables.borrow().get(name) {
            return t
                .typed
                .clone()
                .downcast::<RefCell<StateTable<V>>>()
                .map_err(|_| {
                    RuntimeError::user(format!(
                        "state '{name}' was registered before with a different type"
                    ))
                });
        }
        let table = match &self.inner.storage {
            Storage::Heap => StateTable::<V>::heap(self.inner.range),
            Storage::Lsm(store) => StateTable::lsm(store.table::<V>(name)?),
        };
        let t = Rc::new(RefCell::new(table));
        self.register(name, t.clone(), t.clone())?;
        Ok(t)
    }

    /// Registers state an operator holds itself (timers), to be snapshotted with the keyed
    /// state; restored entries for `name` are handed to it at once.
    pub fn register_participant(
        &self,
        name: &str,
        participant: Rc<dyn KeyedParticipant>,
    ) -> Result<()> {
        if self.inner.tables.borrow().contains_key(name) {
            return Err(RuntimeError::Internal(format!(
                "keyed state '{name}' is registered twice"
            )));
        }
        self.register(name, Rc::new(()), participant)
    }

    fn register(
        &self,
        name: &str,
        typed: Rc<dyn Any>,
        participant: Rc<dyn KeyedParticipant>,
    ) -> Result<()> {
        let claimed = self.inner.restored.borrow_mut().remove(name);
        if let Some((_, raw)) = claimed {
            participant.restore_raw(RawStateEntries(raw))?;
        }
        self.inner
            .tables
            .borrow_mut()
            .insert(name.to_string(), Registered { typed, participant });
        Ok(())
    }

    /// An operator's event time (its current watermark), snapshotted with the keyed state under
    /// `name` and restored from it: after a restore the operator does not accept as on time
    /// what it had already treated as late. Starts at `i64::MIN`.
    pub fn event_time_state(&self, name: &str) -> Result<Rc<Cell<i64>>> {
        let cell = Rc::new(Cell::new(i64::MIN));
        self.register_participant(
            name,
            Rc::new(EventTime {
                time: cell.clone(),
                range: self.inner.range,
            }),
        )?;
        Ok(cell)
    }

    /// The names of every registered state.
    pub fn state_names(&self) -> Vec<String> {
        self.inner.tables.borrow().keys().cloned().collect()
    }

    /// The synchronous part of a snapshot. `savepoint` snapshots are always full and do not
    /// change what later incremental snapshots build on.
    pub fn snapshot(&self, checkpoint_id: u64, savepoint: bool) -> Result<KeyedSnapshotJob> {
        let range = self.inner.range;
        let tables: Vec<(String, Rc<dyn KeyedParticipant>)> = self
            .inner
            .tables
            .borrow()
            .iter()
            .map(|(n, r)| (n.clone(), r.participant.clone()))
            .collect();
        let mut heap = Vec::new();
        for (name, p) in &tables {
            if self.held_in_memory(p.kind()) {
                let part = match p.share_heap() {
                    Some(shared) => HeapPart::Shared(shared),
                    None => {
                        let mut sink = GroupSink::new(range);
                        p.snapshot_heap(&mut sink)?;
                        HeapPart::Encoded(sink.into_groups())
                    }
                };
                heap.push((
                    KeyedStateInfo {
                        name: name.clone(),
                        kind: p.kind(),
                    },
                    part,
                ));
            }
        }
        for (name, (kind, raw)) in self.inner.restored.borrow().iter() {
            let mut sink = GroupSink::new(range);
            for (kg, group) in raw {
                for (k, v) in group {
                    sink.put(*kg, k, v)?;
                }
            }
            heap.push((
                KeyedStateInfo {
                    name: name.clone(),
                    kind: *kind,
                },
                HeapPart::Encoded(sink.into_groups()),
            ));
        }
        let Storage::Lsm(store) = &self.inner.storage else {
            return Ok(KeyedSnapshotJob {
                range,
                heap,
                lsm: None,
                base: Vec::new(),
                report: None,
            });
        };
        let config = &self.inner.config;
        let mut chain = self.inner.chain.borrow_mut();
        let failed = chain
            .pending
            .values()
            .any(|p| p.report.failed.load(Ordering::Acquire));
        let incremental = config.incremental
            && !savepoint
            && !failed
            && !chain.confirmed.is_empty()
            && chain.confirmed.len() <= config.max_deltas as usize;
        let participant = |name: &str| tables.iter().find(|(n, _)| n == name).map(|(_, p)| p);
        let mut states = Vec::new();
        let mut changed_now = BTreeMap::new();
        for (name, state) in store.states() {
            let changed = if savepoint {
                state.changed.borrow().clone()
            } else {
                std::mem::take(&mut *state.changed.borrow_mut())
            };
            let delta = if incremental {
                // The keys changed since the last completed checkpoint: values still in the
                // cache are taken now, the others (written back when evicted) are read from
                // the tree later.
                let mut keys: ChangedKeys = changed.clone();
                for p in chain.pending.values() {
                    if let Some(c) = p.changed.get(&name) {
                        keys.extend(c.iter().cloned());
                    }
                }
                let mut captured = Vec::new();
                if let Some(p) = participant(&name) {
                    p.capture_lsm(&mut keys, &mut captured)?;
                }
                Some(LsmDelta {
                    captured,
                    from_tree: keys.into_iter().collect(),
                })
            } else {
                // A full snapshot scans the tree: write cached changes into it first.
                if let Some(p) = participant(&name) {
                    p.write_back_lsm()?;
                }
                None
            };
            states.push(LsmStateJob {
                name: name.clone(),
                keyspace: state.keyspace.clone(),
                delta,
            });
            changed_now.insert(name, changed);
        }
        if !savepoint {
            for (_, p) in &tables {
                p.reset_lsm_tracking();
            }
        }
        let report = (config.incremental && !savepoint).then(|| {
            let report = IncrementReport::default();
            chain.pending.insert(
                checkpoint_id,
                PendingSnapshot {
                    report: report.clone(),
                    changed: changed_now,
                },
            );
            report
        });
        Ok(KeyedSnapshotJob {
            range,
            heap,
            lsm: Some(LsmJob {
                snapshot: store.snapshot(),
                states,
            }),
            base: if incremental {
                chain.confirmed.clone()
            } else {
                Vec::new()
            },
            report,
        })
    }

    /// Checkpoint `checkpoint_id` completed: later incremental snapshots build on it.
    pub fn notify_checkpoint_complete(&self, checkpoint_id: u64) {
        let mut chain = self.inner.chain.borrow_mut();
        if let Some(p) = chain.pending.remove(&checkpoint_id)
            && !p.report.failed.load(Ordering::Acquire)
            && let Some(files) = p.report.files.lock().take()
        {
            chain.confirmed = files;
        }
        chain.pending.retain(|id, _| *id > checkpoint_id);
    }

    /// Bytes the LSM tree takes on local disk (0 for the heap backend).
    pub fn disk_space(&self) -> u64 {
        match &self.inner.storage {
            Storage::Heap => 0,
            Storage::Lsm(s) => s.disk_space(),
        }
    }
}
