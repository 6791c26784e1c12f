//! The heap keyed state backend: one hash map per key group and state.

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::rc::Rc;

use eddy_core::keys::{Key, KeyGroupRange, assign_to_key_group};
use hashbrown::{Equivalent, HashMap};
use rustc_hash::FxBuildHasher;

use crate::error::{Result, RuntimeError};

/// A borrowed `(key, namespace)` that looks up an owned `(K, N)` without cloning.
struct KeyRef<'a, K, N>(&'a K, &'a N);

impl<K: Hash, N: Hash> Hash for KeyRef<'_, K, N> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // Must match the derived `Hash` of the tuple `(K, N)`.
        self.0.hash(state);
        self.1.hash(state);
    }
}

impl<K: Eq, N: Eq> Equivalent<(K, N)> for KeyRef<'_, K, N> {
    fn equivalent(&self, key: &(K, N)) -> bool {
        *self.0 == key.0 && *self.1 == key.1
    }
}

/// The values of one state, per key group, per (key, namespace).
///
/// The namespace separates state of the same key that belongs to different windows; user state
/// outside windows uses the namespace `()`.
pub struct StateTable<K, N, V> {
    range: KeyGroupRange,
    groups: Vec<HashMap<(K, N), V, FxBuildHasher>>,
}

impl<K: Key, N: Hash + Eq + Clone, V> StateTable<K, N, V> {
    fn new(range: KeyGroupRange) -> Self {
        StateTable {
            range,
            groups: (0..range.len()).map(|_| HashMap::default()).collect(),
        }
    }

    #[inline]
    fn group(&self, key_group: u32) -> &HashMap<(K, N), V, FxBuildHasher> {
        &self.groups[(key_group - self.range.start) as usize]
    }

    #[inline]
    fn group_mut(&mut self, key_group: u32) -> &mut HashMap<(K, N), V, FxBuildHasher> {
        &mut self.groups[(key_group - self.range.start) as usize]
    }

    /// The value of `(key, namespace)` in `key_group`.
    #[inline]
    pub fn get(&self, key_group: u32, key: &K, namespace: &N) -> Option<&V> {
        self.group(key_group).get(&KeyRef(key, namespace))
    }

    /// The value of `(key, namespace)`, mutably.
    #[inline]
    pub fn get_mut(&mut self, key_group: u32, key: &K, namespace: &N) -> Option<&mut V> {
        self.group_mut(key_group).get_mut(&KeyRef(key, namespace))
    }

    /// Sets the value of `(key, namespace)`.
    #[inline]
    pub fn insert(&mut self, key_group: u32, key: K, namespace: N, value: V) {
        self.group_mut(key_group).insert((key, namespace), value);
    }

    /// Removes and returns the value of `(key, namespace)`.
    #[inline]
    pub fn remove(&mut self, key_group: u32, key: &K, namespace: &N) -> Option<V> {
        self.group_mut(key_group).remove(&KeyRef(key, namespace))
    }

    /// Number of entries over all key groups.
    pub fn len(&self) -> usize {
        self.groups.iter().map(HashMap::len).sum()
    }

    /// Whether no entry exists.
    pub fn is_empty(&self) -> bool {
        self.groups.iter().all(HashMap::is_empty)
    }

    /// Every entry, grouped by key group.
    pub fn iter(&self) -> impl Iterator<Item = (u32, &K, &N, &V)> {
        self.groups.iter().enumerate().flat_map(move |(i, g)| {
            let kg = self.range.start + i as u32;
            g.iter().map(move |((k, n), v)| (kg, k, n, v))
        })
    }

    /// Removes every entry, returning them.
    pub fn drain(&mut self) -> impl Iterator<Item = (K, N, V)> + '_ {
        self.groups
            .iter_mut()
            .flat_map(|g| g.drain().map(|((k, n), v)| (k, n, v)))
    }
}

/// A state table shared between an operator and its backend.
pub type SharedStateTable<K, N, V> = Rc<RefCell<StateTable<K, N, V>>>;

pub(crate) struct BackendInner<K> {
    range: KeyGroupRange,
    max_parallelism: u32,
    current_key: RefCell<Option<K>>,
    current_group: Cell<u32>,
    tables: RefCell<BTreeMap<String, Rc<dyn Any>>>,
}

/// The keyed state of one operator subtask, for keys of type `K`.
///
/// The operator sets the current key before it calls user code; every state handle then reads
/// and writes the value of that key.
pub struct KeyedStateBackend<K> {
    inner: Rc<BackendInner<K>>,
}

impl<K> Clone for KeyedStateBackend<K> {
    fn clone(&self) -> Self {
        KeyedStateBackend {
            inner: self.inner.clone(),
        }
    }
}

impl<K: Key> KeyedStateBackend<K> {
    pub(crate) fn new(range: KeyGroupRange, max_parallelism: u32) -> Self {
        KeyedStateBackend {
            inner: Rc::new(BackendInner {
                range,
                max_parallelism,
                current_key: RefCell::new(None),
                current_group: Cell::new(range.start),
                tables: RefCell::new(BTreeMap::new()),
            }),
        }
    }

    pub(crate) fn from_inner(inner: Rc<BackendInner<K>>) -> Self {
        KeyedStateBackend { inner }
    }

    pub(crate) fn inner_any(&self) -> Rc<dyn Any> {
        self.inner.clone()
    }

    /// The key groups this backend holds.
    pub fn key_group_range(&self) -> KeyGroupRange {
        self.inner.range
    }

    /// The key group of `key`, checked to belong to this subtask.
    #[inline]
    pub fn key_group_of(&self, key: &K) -> Result<u32> {
        let kg = assign_to_key_group(key, self.inner.max_parallelism)?;
        if !self.inner.range.contains(kg) {
            return Err(RuntimeError::Internal(format!(
                "key {key:?} belongs to key group {kg}, which this subtask ({:?}) does not own",
                self.inner.range
            )));
        }
        Ok(kg)
    }

    /// Makes `key` the current key.
    pub fn set_current_key(&self, key: K) -> Result<()> {
        let kg = self.key_group_of(&key)?;
        self.inner.current_group.set(kg);
        *self.inner.current_key.borrow_mut() = Some(key);
        Ok(())
    }

    /// The current key, if one is set.
    pub fn current_key(&self) -> Option<K> {
        self.inner.current_key.borrow().clone()
    }

    /// The current key's group.
    pub fn current_key_group(&self) -> u32 {
        self.inner.current_group.get()
    }

    /// The table behind state `name`, created on first use. Asking for the same name with a
    /// different namespace or value type is an error.
    pub fn table<N, V>(&self, name: &str) -> Result<SharedStateTable<K, N, V>>
    where
        N: Hash + Eq + Clone + 'static,
        V: 'static,
    {
        let mut tables = self.inner.tables.borrow_mut();
        if let Some(t) = tables.get(name) {
            return t
                .clone()
                .downcast::<RefCell<StateTable<K, N, V>>>()
                .map_err(|_| {
                    RuntimeError::user(format!(
                        "state '{name}' was registered before with a different type"
                    ))
                });
        }
        let t = Rc::new(RefCell::new(StateTable::<K, N, V>::new(self.inner.range)));
        tables.insert(name.to_string(), t.clone());
        Ok(t)
    }

    /// The value state described by `descriptor`, scoped to the current key.
    pub fn value_state<V: Clone + 'static>(
        &self,
        descriptor: &ValueStateDescriptor<V>,
    ) -> Result<ValueState<V>> {
        let table = self.table::<(), V>(&descriptor.name)?;
        Ok(ValueState {
            access: Rc::new(HeapValueState {
                backend: self.clone(),
                table,
                default: descriptor.default.clone(),
            }),
        })
    }
}

/// Describes a value state: its name and an optional default (Flink's `ValueStateDescriptor`).
#[derive(Clone, Debug)]
pub struct ValueStateDescriptor<V> {
    /// The state's name, unique within the operator.
    pub name: String,
    /// Returned by `value()` when the key has no value.
    pub default: Option<V>,
}

impl<V> ValueStateDescriptor<V> {
    /// A descriptor without default.
    pub fn new(name: impl Into<String>) -> Self {
        ValueStateDescriptor {
            name: name.into(),
            default: None,
        }
    }

    /// A descriptor whose state reads as `default` when unset.
    pub fn with_default(name: impl Into<String>, default: V) -> Self {
        ValueStateDescriptor {
            name: name.into(),
            default: Some(default),
        }
    }
}

trait ValueAccess<V> {
    fn value(&self) -> Result<Option<V>>;
    fn update(&self, v: V) -> Result<()>;
    fn clear(&self) -> Result<()>;
}

struct HeapValueState<K, V> {
    backend: KeyedStateBackend<K>,
    table: SharedStateTable<K, (), V>,
    default: Option<V>,
}

impl<K: Key, V: Clone> HeapValueState<K, V> {
    fn with_key<R>(&self, f: impl FnOnce(&K, u32) -> R) -> Result<R> {
        let key = self.backend.inner.current_key.borrow();
        let key = key
            .as_ref()
            .ok_or_else(|| RuntimeError::user("keyed state accessed outside of a keyed context"))?;
        Ok(f(key, self.backend.inner.current_group.get()))
    }
}

impl<K: Key, V: Clone> ValueAccess<V> for HeapValueState<K, V> {
    fn value(&self) -> Result<Option<V>> {
        self.with_key(|k, kg| {
            self.table
                .borrow()
                .get(kg, k, &())
                .cloned()
                .or_else(|| self.default.clone())
        })
    }

    fn update(&self, v: V) -> Result<()> {
        self.with_key(|k, kg| self.table.borrow_mut().insert(kg, k.clone(), (), v))
    }

    fn clear(&self) -> Result<()> {
        self.with_key(|k, kg| {
            self.table.borrow_mut().remove(kg, k, &());
        })
    }
}

/// A single value per key (Flink's `ValueState`).
pub struct ValueState<V> {
    access: Rc<dyn ValueAccess<V>>,
}

impl<V> Clone for ValueState<V> {
    fn clone(&self) -> Self {
        ValueState {
            access: self.access.clone(),
        }
    }
}

impl<V> ValueState<V> {
    /// The current key's value, or the descriptor's default.
    pub fn value(&self) -> Result<Option<V>> {
        self.access.value()
    }

    /// Sets the current key's value.
    pub fn update(&self, value: V) -> Result<()> {
        self.access.update(value)
    }

    /// Removes the current key's value.
    pub fn clear(&self) -> Result<()> {
        self.access.clear()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn value_state_is_scoped_to_current_key() {
        let b = KeyedStateBackend::<String>::new(KeyGroupRange::new(0, 127), 128);
        let s = b
            .value_state(&ValueStateDescriptor::with_default("count", 0i64))
            .unwrap();
        b.set_current_key("a".into()).unwrap();
        assert_eq!(s.value().unwrap(), Some(0));
        s.update(5).unwrap();
        b.set_current_key("b".into()).unwrap();
        assert_eq!(s.value().unwrap(), Some(0));
        s.update(7).unwrap();
        b.set_current_key("a".into()).unwrap();
        assert_eq!(s.value().unwrap(), Some(5));
        s.clear().unwrap();
        assert_eq!(s.value().unwrap(), Some(0));
        assert!(b.table::<(), String>("count").is_err());
    }

    #[test]
    fn keys_outside_range_are_rejected() {
        let b = KeyedStateBackend::<u64>::new(KeyGroupRange::new(0, 0), 128);
        let outside = (0..100u64)
            .find(|k| assign_to_key_group(k, 128).unwrap() != 0)
            .unwrap();
        let err = b.set_current_key(outside).unwrap_err().to_string();
        assert!(err.contains("does not own"), "{err}");
    }
}
