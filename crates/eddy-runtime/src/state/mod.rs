//! Keyed state, timers and operator state.
//!
//! Keyed state lives in a [`KeyedStateBackend`], one per keyed operator subtask. Its tables are
//! split by key group, so that a checkpoint can be divided and redistributed when a job is
//! rescaled. Keys are stored in their stable encoding, so neither the backend nor the state
//! handles depend on the key type. User functions reach their state through a
//! [`KeyedStateStore`]; keyed operators keep their timers in an [`InternalTimerService`].

mod backend;
mod handles;
mod key_bytes;
mod lsm;
mod operator_state;
mod snapshot;
mod table;
mod timers;

pub use backend::{
    BackendConfig, BackendKind, KeyedParticipant, KeyedStateBackend, RawStateEntries,
};
pub use handles::{
    AggregateFunction, AggregatingState, AggregatingStateDescriptor, KeyedStateStore, ListState,
    ListStateDescriptor, MapState, MapStateDescriptor, ReduceFn, ReducingState,
    ReducingStateDescriptor, Stamped, StateMap, StateTtlConfig, StateTtlConfigBuilder,
    StateVisibility, UpdateType, ValueState, ValueStateDescriptor,
};
pub use key_bytes::KeyBytes;
pub use lsm::LsmOptions;
pub use operator_state::{
    BroadcastState, ListSnapshot, OperatorListState, OperatorStateStore, Redistribution,
    RestoredList,
};
pub use snapshot::{
    GroupSink, HeapSnapshot, KeyedRestore, KeyedSnapshotJob, RestoreFile, WrittenKeyedState,
};
pub use table::{SharedStateTable, StateTable, split_composite};
pub use timers::{InternalTimerService, Timer, TimerQueue};

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

use eddy_core::keys::KeyGroupRange;

use crate::error::Result;

/// What one operator subtask restores.
#[derive(Default)]
pub struct OperatorRestore {
    /// Keyed state, for keyed operators.
    pub keyed: Option<KeyedRestore>,
    /// Operator (list, union, broadcast) state, already redistributed to this subtask.
    pub lists: BTreeMap<String, RestoredList>,
}

/// The synchronous part of one operator subtask's snapshot.
pub struct OperatorSnapshotJob {
    /// Keyed state, if the operator has a backend.
    pub keyed: Option<KeyedSnapshotJob>,
    /// Operator state.
    pub lists: Vec<ListSnapshot>,
}

/// The state an operator subtask may use: a keyed backend (created by keyed operators on first
/// use) and its operator state.
#[derive(Clone)]
pub struct StateContext {
    inner: Rc<StateContextInner>,
}

struct StateContextInner {
    key_group_range: KeyGroupRange,
    max_parallelism: u32,
    config: BackendConfig,
    label: String,
    keyed: RefCell<Option<KeyedStateBackend>>,
    keyed_restore: RefCell<Option<KeyedRestore>>,
    operator: OperatorStateStore,
    restored: bool,
}

impl StateContext {
    /// The state context of a subtask owning `key_group_range` out of `max_parallelism` groups,
    /// on the heap backend, without restored state.
    pub fn new(key_group_range: KeyGroupRange, max_parallelism: u32) -> Self {
        Self::with_restore(
            key_group_range,
            max_parallelism,
            BackendConfig::default(),
            String::new(),
            None,
        )
    }

    /// A state context on the backend `config` describes, restored from `restore` if given;
    /// `label` names the backend's local files.
    pub fn with_restore(
        key_group_range: KeyGroupRange,
        max_parallelism: u32,
        config: BackendConfig,
        label: String,
        restore: Option<OperatorRestore>,
    ) -> Self {
        let restored = restore.is_some();
        let (keyed_restore, operator) = match restore {
            Some(r) => (r.keyed, OperatorStateStore::restored(r.lists)),
            None => (None, OperatorStateStore::default()),
        };
        StateContext {
            inner: Rc::new(StateContextInner {
                key_group_range,
                max_parallelism,
                config,
                label,
                keyed: RefCell::new(None),
                keyed_restore: RefCell::new(keyed_restore),
                operator,
                restored,
            }),
        }
    }

    /// The key groups this subtask owns.
    pub fn key_group_range(&self) -> KeyGroupRange {
        self.inner.key_group_range
    }

    /// Whether the subtask was restored from a checkpoint or savepoint (Flink's
    /// `isRestored()`).
    pub fn is_restored(&self) -> bool {
        self.inner.restored
    }

    /// The keyed state backend, created (and restored) on first use.
    pub fn keyed_backend(&self) -> Result<KeyedStateBackend> {
        if let Some(b) = self.inner.keyed.borrow().as_ref() {
            return Ok(b.clone());
        }
        let restore = self.inner.keyed_restore.borrow_mut().take();
        let backend = KeyedStateBackend::create(
            self.inner.key_group_range,
            self.inner.max_parallelism,
            &self.inner.config,
            &self.inner.label,
            restore.unwrap_or_default(),
        )?;
        *self.inner.keyed.borrow_mut() = Some(backend.clone());
        Ok(backend)
    }

    /// The keyed backend if the operator created one.
    pub fn existing_keyed_backend(&self) -> Option<KeyedStateBackend> {
        self.inner.keyed.borrow().clone()
    }

    /// The operator state.
    pub fn operator_state(&self) -> &OperatorStateStore {
        &self.inner.operator
    }

    /// The synchronous part of a snapshot of everything this subtask holds.
    pub fn snapshot(&self, checkpoint_id: u64, savepoint: bool) -> Result<OperatorSnapshotJob> {
        // Restored keyed state that no operator asked for is carried on.
        let has_pending = self.inner.keyed_restore.borrow().is_some();
        let backend = match self.existing_keyed_backend() {
            Some(b) => Some(b),
            None if has_pending => Some(self.keyed_backend()?),
            None => None,
        };
        Ok(OperatorSnapshotJob {
            keyed: backend
                .map(|b| b.snapshot(checkpoint_id, savepoint))
                .transpose()?,
            lists: self.inner.operator.snapshot()?,
        })
    }

    /// Checkpoint `checkpoint_id` completed.
    pub fn notify_checkpoint_complete(&self, checkpoint_id: u64) {
        if let Some(b) = self.existing_keyed_backend() {
            b.notify_checkpoint_complete(checkpoint_id);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;
    use std::time::Duration;

    use super::*;

    fn backend_with_clock() -> (KeyedStateBackend, Rc<Cell<i64>>) {
        let b = KeyedStateBackend::new(KeyGroupRange::new(0, 127), 128);
        let now = Rc::new(Cell::new(1_000));
        let n = now.clone();
        b.set_ttl_clock(Rc::new(move || n.get()));
        (b, now)
    }

    #[test]
    fn value_state_is_scoped_to_the_current_key() {
        let (b, _) = backend_with_clock();
        let store = KeyedStateStore::new(b.clone());
        let s = store
            .get_state(&ValueStateDescriptor::with_default("count", 0i64))
            .unwrap();
        b.set_current_key("a").unwrap();
        assert_eq!(s.value().unwrap(), Some(0));
        s.update(5).unwrap();
        b.set_current_key("b").unwrap();
        assert_eq!(s.value().unwrap(), Some(0));
        s.update(7).unwrap();
        b.set_current_key("a").unwrap();
        assert_eq!(s.value().unwrap(), Some(5));
        assert_eq!(b.current_key::<String>().unwrap(), "a");
        s.clear().unwrap();
        assert_eq!(s.value().unwrap(), Some(0));
        assert!(
            store
                .get_state(&ValueStateDescriptor::<String>::new("count"))
                .is_err()
        );
    }

    #[test]
    fn list_map_reducing_and_aggregating_state() {
        let (b, _) = backend_with_clock();
        let store = KeyedStateStore::new(b.clone());
        b.set_current_key(&7u32).unwrap();
        let list = store
            .get_list_state(&ListStateDescriptor::<i32>::new("l"))
            .unwrap();
        list.add(1).unwrap();
        list.add_all([2, 3]).unwrap();
        assert_eq!(list.get().unwrap(), vec![1, 2, 3]);
        list.update(vec![9]).unwrap();
        assert_eq!(list.get().unwrap(), vec![9]);

        let map = store
            .get_map_state(&MapStateDescriptor::<String, i64>::new("m"))
            .unwrap();
        map.put("x".into(), 1).unwrap();
        map.put("y".into(), 2).unwrap();
        map.remove(&"x".into()).unwrap();
        assert_eq!(map.entries().unwrap(), vec![("y".to_string(), 2)]);
        assert!(!map.contains(&"x".into()).unwrap());

        let red = store
            .get_reducing_state(&ReducingStateDescriptor::new("r", |a: i64, b: i64| {
                a.max(b)
            }))
            .unwrap();
        for v in [3, 9, 4] {
            red.add(v).unwrap();
        }
        assert_eq!(red.get().unwrap(), Some(9));

        struct Avg;
        impl AggregateFunction<i64, (i64, i64), f64> for Avg {
            fn create_accumulator(&self) -> (i64, i64) {
                (0, 0)
            }
            fn add(&self, v: i64, acc: &mut (i64, i64)) {
                acc.0 += v;
                acc.1 += 1;
            }
            fn get_result(&self, acc: &(i64, i64)) -> f64 {
                acc.0 as f64 / acc.1 as f64
            }
            fn merge(&self, a: (i64, i64), b: (i64, i64)) -> (i64, i64) {
                (a.0 + b.0, a.1 + b.1)
            }
        }
        let agg = store
            .get_aggregating_state(&AggregatingStateDescriptor::new("a", Avg))
            .unwrap();
        agg.add(1).unwrap();
        agg.add(2).unwrap();
        assert_eq!(agg.get().unwrap(), Some(1.5));
        b.set_current_key(&8u32).unwrap();
        assert_eq!(agg.get().unwrap(), None, "another key has nothing");
        assert!(list.get().unwrap().is_empty());
    }

    #[test]
    fn expired_values_are_never_returned() {
        let (b, now) = backend_with_clock();
        let store = KeyedStateStore::new(b.clone());
        let ttl = StateTtlConfig::new_builder(Duration::from_millis(100)).build();
        let v = store
            .get_state(&ValueStateDescriptor::<i32>::new("v").enable_time_to_live(ttl))
            .unwrap();
        let l = store
            .get_list_state(&ListStateDescriptor::<i32>::new("l").enable_time_to_live(ttl))
            .unwrap();
        let m = store
            .get_map_state(&MapStateDescriptor::<i32, i32>::new("m").enable_time_to_live(ttl))
            .unwrap();
        b.set_current_key("k").unwrap();
        v.update(1).unwrap();
        l.add(1).unwrap();
        m.put(1, 1).unwrap();
        now.set(1_050);
        l.add(2).unwrap();
        m.put(2, 2).unwrap();
        // Reads do not extend the TTL (OnCreateAndWrite).
        assert_eq!(v.value().unwrap(), Some(1));
        now.set(1_099);
        assert_eq!(v.value().unwrap(), Some(1), "not yet expired at 99 ms");
        now.set(1_100);
        assert_eq!(v.value().unwrap(), None, "expired at exactly the TTL");
        assert_eq!(l.get().unwrap(), vec![2], "elements expire one by one");
        assert_eq!(m.entries().unwrap(), vec![(2, 2)]);
        now.set(1_150);
        assert!(l.get().unwrap().is_empty());
        assert!(m.is_empty().unwrap());
        // A write restarts the clock.
        v.update(3).unwrap();
        now.set(1_249);
        assert_eq!(v.value().unwrap(), Some(3));

        // OnReadAndWrite: reading extends the life.
        let ttl = StateTtlConfig::new_builder(Duration::from_millis(100))
            .set_update_type(UpdateType::OnReadAndWrite)
            .build();
        let r = store
            .get_state(&ValueStateDescriptor::<i32>::new("r").enable_time_to_live(ttl))
            .unwrap();
        r.update(1).unwrap();
        for t in [1_300, 1_390, 1_480] {
            now.set(t);
            assert_eq!(r.value().unwrap(), Some(1), "read at {t} keeps it alive");
        }
        now.set(1_580);
        assert_eq!(r.value().unwrap(), None);
    }

    #[test]
    fn namespaced_state_is_separate_per_namespace() {
        let (b, _) = backend_with_clock();
        let ns = Rc::new(RefCell::new(Vec::new()));
        let store = KeyedStateStore::with_namespace(b.clone(), ns.clone(), "w:");
        let global = KeyedStateStore::new(b.clone());
        let d = ValueStateDescriptor::<i32>::new("s");
        let per_window = store.get_state(&d).unwrap();
        let g = global.get_state(&d).unwrap();
        b.set_current_key("k").unwrap();
        *ns.borrow_mut() = vec![1];
        per_window.update(1).unwrap();
        *ns.borrow_mut() = vec![2];
        per_window.update(2).unwrap();
        g.update(3).unwrap();
        *ns.borrow_mut() = vec![1];
        assert_eq!(per_window.value().unwrap(), Some(1));
        assert_eq!(g.value().unwrap(), Some(3));
    }

    #[test]
    fn heap_snapshot_restores_into_a_new_backend() {
        use crate::checkpoint::format::{StateFileWriter, checksum};
        use crate::checkpoint::metadata::StateFile;

        let (b, _) = backend_with_clock();
        let store = KeyedStateStore::new(b.clone());
        let s = store
            .get_state(&ValueStateDescriptor::<String>::new("s"))
            .unwrap();
        b.set_current_key("key").unwrap();
        s.update("value".into()).unwrap();
        let mut w = StateFileWriter::new();
        let written = b.snapshot(1, false).unwrap().write(&mut w).unwrap();
        let bytes = w.into_bytes();
        let file = StateFile {
            path: "f".into(),
            size: bytes.len() as u64,
            checksum: checksum(&bytes),
        };
        let keyed = written.finish(&file);
        assert_eq!(keyed.files.len(), 1);
        let restore = KeyedRestore {
            files: vec![RestoreFile {
                bytes: bytes.into(),
                shown: "f".into(),
                key_groups: (0, 127),
                states: keyed.files[0].states.clone(),
                sections: keyed.files[0].sections.clone(),
            }],
            chain: None,
        };
        let b2 = KeyedStateBackend::create(
            KeyGroupRange::new(0, 127),
            128,
            &BackendConfig::default(),
            "",
            restore,
        )
        .unwrap();
        let store2 = KeyedStateStore::new(b2.clone());
        let s2 = store2
            .get_state(&ValueStateDescriptor::<String>::new("s"))
            .unwrap();
        b2.set_current_key("key").unwrap();
        assert_eq!(s2.value().unwrap(), Some("value".into()));
    }
}
