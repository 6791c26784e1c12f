//! Operator (non-keyed) state: list state redistributed on rescaling, and broadcast state.

use std::any::Any;
use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::hash::Hash;
use std::rc::Rc;

use foldhash::fast::FixedState;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::handles::{ListStateDescriptor, MapStateDescriptor};
use crate::error::{Result, RuntimeError};

/// How list state is redistributed when a job resumes at another parallelism.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Redistribution {
    /// The elements of all subtasks are dealt out among the new subtasks (Flink's
    /// `getListState`).
    EvenSplit,
    /// Every new subtask gets all elements of all subtasks (`getUnionListState`).
    Union,
    /// Every subtask holds the same value; one copy is restored everywhere (broadcast state).
    Broadcast,
    /// In-flight data of an unaligned checkpoint: it belongs to the subtask's channels and is
    /// restored to the same subtask, which needs the same parallelism.
    InFlight,
}

/// Encodes a state's elements, one byte string each.
type Snapshotter = Rc<dyn Fn() -> Result<Vec<Vec<u8>>>>;

struct Registered {
    typed: Rc<dyn Any>,
    mode: Redistribution,
    snapshot: Snapshotter,
}

/// Elements of one list state restored from a snapshot, each encoded.
pub type RestoredList = (Redistribution, Vec<Vec<u8>>);

/// One list state in a snapshot: its name, how it is redistributed, its encoded elements.
pub type ListSnapshot = (String, Redistribution, Vec<Vec<u8>>);

/// The operator state of one operator subtask.
#[derive(Clone, Default)]
pub struct OperatorStateStore {
    states: Rc<RefCell<BTreeMap<String, Registered>>>,
    /// Restored states that no one has asked for yet.
    restored: Rc<RefCell<BTreeMap<String, RestoredList>>>,
}

fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>> {
    postcard::to_stdvec(value).map_err(|e| RuntimeError::Serialization(e.to_string()))
}

fn decode<T: DeserializeOwned>(bytes: &[u8], name: &str) -> Result<T> {
    postcard::from_bytes(bytes).map_err(|e| {
        RuntimeError::Serialization(format!(
            "cannot decode restored operator state '{name}': {e}"
        ))
    })
}

/// A list held by one operator subtask (Flink's operator `ListState`).
pub struct OperatorListState<V> {
    values: Rc<RefCell<Vec<V>>>,
}

impl<V> Clone for OperatorListState<V> {
    fn clone(&self) -> Self {
        OperatorListState {
            values: self.values.clone(),
        }
    }
}

impl<V: Clone> OperatorListState<V> {
    /// The elements.
    pub fn get(&self) -> Vec<V> {
        self.values.borrow().clone()
    }

    /// Appends an element.
    pub fn add(&self, value: V) {
        self.values.borrow_mut().push(value);
    }

    /// Replaces the elements.
    pub fn update(&self, values: Vec<V>) {
        *self.values.borrow_mut() = values;
    }

    /// Removes every element.
    pub fn clear(&self) {
        self.values.borrow_mut().clear();
    }
}

/// A map that every subtask of an operator holds identically (Flink's `BroadcastState`).
pub struct BroadcastState<K, V> {
    map: Rc<RefCell<HashMap<K, V, FixedState>>>,
}

impl<K, V> Clone for BroadcastState<K, V> {
    fn clone(&self) -> Self {
        BroadcastState {
            map: self.map.clone(),
        }
    }
}

impl<K: Hash + Eq + Clone, V: Clone> BroadcastState<K, V> {
    /// The value for `key`.
    pub fn get(&self, key: &K) -> Option<V> {
        self.map.borrow().get(key).cloned()
    }

    /// Whether `key` has a value.
    pub fn contains(&self, key: &K) -> bool {
        self.map.borrow().contains_key(key)
    }

    /// Sets the value for `key`.
    pub fn put(&self, key: K, value: V) {
        self.map.borrow_mut().insert(key, value);
    }

    /// Removes `key`.
    pub fn remove(&self, key: &K) {
        self.map.borrow_mut().remove(key);
    }

    /// Every entry.
    pub fn entries(&self) -> Vec<(K, V)> {
        self.map
            .borrow()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// Removes every entry.
    pub fn clear(&self) {
        self.map.borrow_mut().clear();
    }
}

impl OperatorStateStore {
    /// A store holding `restored` states until operators ask for them.
    pub fn restored(restored: BTreeMap<String, RestoredList>) -> Self {
        OperatorStateStore {
            states: Rc::default(),
            restored: Rc::new(RefCell::new(restored)),
        }
    }

    fn get_or_register<T: 'static>(
        &self,
        name: &str,
        mode: Redistribution,
        make: impl FnOnce(Vec<Vec<u8>>) -> Result<(Rc<T>, Snapshotter)>,
    ) -> Result<Rc<T>> {
        let mut states = self.states.borrow_mut();
        if let Some(r) = states.get(name) {
            if r.mode != mode {
                return Err(RuntimeError::user(format!(
                    "operator state '{name}' was registered before with another redistribution ({:?})",
                    r.mode
                )));
            }
            return r.typed.clone().downcast::<T>().map_err(|_| {
                RuntimeError::user(format!(
                    "operator state '{name}' was registered before with a different type"
                ))
            });
        }
        let elements = match self.restored.borrow_mut().remove(name) {
            Some((restored_mode, _)) if restored_mode != mode => {
                return Err(RuntimeError::Restore(format!(
                    "cannot restore: operator state '{name}' was snapshotted as {restored_mode:?} state and is now asked for as {mode:?}"
                )));
            }
            Some((_, elements)) => elements,
            None => Vec::new(),
        };
        let (typed, snapshot) = make(elements)?;
        states.insert(
            name.to_string(),
            Registered {
                typed: typed.clone(),
                mode,
                snapshot,
            },
        );
        Ok(typed)
    }

    fn list<V>(&self, name: &str, mode: Redistribution) -> Result<OperatorListState<V>>
    where
        V: Clone + Serialize + DeserializeOwned + 'static,
    {
        let values = self.get_or_register(name, mode, |elements| {
            let restored = elements
                .iter()
                .map(|e| decode::<V>(e, name))
                .collect::<Result<Vec<V>>>()?;
            let values = Rc::new(RefCell::new(restored));
            let v = values.clone();
            let snap: Snapshotter = Rc::new(move || v.borrow().iter().map(encode).collect());
            Ok((values, snap))
        })?;
        Ok(OperatorListState { values })
    }

    /// List state redistributed by even split on rescaling.
    pub fn get_list_state<V>(&self, d: &ListStateDescriptor<V>) -> Result<OperatorListState<V>>
    where
        V: Clone + Serialize + DeserializeOwned + 'static,
    {
        self.list(&d.name, Redistribution::EvenSplit)
    }

    /// List state of which every subtask gets the union on restore.
    pub fn get_union_list_state<V>(
        &self,
        d: &ListStateDescriptor<V>,
    ) -> Result<OperatorListState<V>>
    where
        V: Clone + Serialize + DeserializeOwned + 'static,
    {
        self.list(&d.name, Redistribution::Union)
    }

    /// Broadcast state.
    pub fn get_broadcast_state<K, V>(
        &self,
        d: &MapStateDescriptor<K, V>,
    ) -> Result<BroadcastState<K, V>>
    where
        K: Hash + Eq + Clone + Serialize + DeserializeOwned + 'static,
        V: Clone + Serialize + DeserializeOwned + 'static,
    {
        let name = d.name.as_str();
        let map = self.get_or_register(name, Redistribution::Broadcast, |elements| {
            let mut restored = HashMap::<K, V, FixedState>::default();
            for e in &elements {
                let (k, v) = decode::<(K, V)>(e, name)?;
                restored.insert(k, v);
            }
            let map = Rc::new(RefCell::new(restored));
            let m = map.clone();
            let snap: Snapshotter =
                Rc::new(move || m.borrow().iter().map(|e| encode(&e)).collect());
            Ok((map, snap))
        })?;
        Ok(BroadcastState { map })
    }

    /// Encodes every state, registered or restored and not yet claimed:
    /// `(name, redistribution, elements)`.
    pub fn snapshot(&self) -> Result<Vec<ListSnapshot>> {
        let mut out: Vec<ListSnapshot> = self
            .states
            .borrow()
            .iter()
            .map(|(name, r)| Ok((name.clone(), r.mode, (r.snapshot)()?)))
            .collect::<Result<_>>()?;
        for (name, (mode, elements)) in self.restored.borrow().iter() {
            out.push((name.clone(), *mode, elements.clone()));
        }
        Ok(out)
    }

    /// The elements of state `name` as restored, if it was and no one has asked for it;
    /// it is then no longer carried into snapshots.
    pub fn take_restored(&self, name: &str) -> Option<Vec<Vec<u8>>> {
        self.restored.borrow_mut().remove(name).map(|(_, e)| e)
    }

    /// Whether state `name` was restored and not yet asked for.
    pub fn has_restored(&self, name: &str) -> bool {
        self.restored.borrow().contains_key(name)
    }
}
