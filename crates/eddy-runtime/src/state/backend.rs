//! The keyed state backend of one operator subtask.

use std::any::Any;
use std::cell::{Cell, Ref, RefCell};
use std::collections::BTreeMap;
use std::rc::Rc;

use eddy_core::keys::{KeyGroupRange, encode_key_into, hash_key_bytes, key_group_for_hash};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::table::{SharedStateTable, StateTable};
use crate::error::{Result, RuntimeError};

/// Snapshot and restore of one state table, independent of its value type.
pub(crate) trait ErasedTable {
    /// Appends the postcard encoding of one key group's entries to `out`.
    fn snapshot_group(&self, key_group: u32, out: &mut Vec<u8>) -> Result<()>;
    /// Adds the entries encoded in `bytes` to one key group.
    fn restore_group(&self, key_group: u32, bytes: &[u8]) -> Result<()>;
}

impl<V: Serialize + DeserializeOwned> ErasedTable for RefCell<StateTable<V>> {
    fn snapshot_group(&self, key_group: u32, out: &mut Vec<u8>) -> Result<()> {
        let table = self.borrow();
        let entries: Vec<(&[u8], &V)> = table.group_entries(key_group).collect();
        let bytes = postcard::to_stdvec(&entries)
            .map_err(|e| RuntimeError::Serialization(e.to_string()))?;
        out.extend_from_slice(&bytes);
        Ok(())
    }

    fn restore_group(&self, key_group: u32, bytes: &[u8]) -> Result<()> {
        let entries: Vec<(super::KeyBytes, V)> =
            postcard::from_bytes(bytes).map_err(|e| RuntimeError::Serialization(e.to_string()))?;
        self.borrow_mut().set_group(key_group, entries);
        Ok(())
    }
}

struct Registered {
    typed: Rc<dyn Any>,
    erased: Rc<dyn ErasedTable>,
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
    /// A backend owning `range` out of `max_parallelism` key groups.
    pub fn new(range: KeyGroupRange, max_parallelism: u32) -> Self {
        KeyedStateBackend {
            inner: Rc::new(BackendInner {
                range,
                max_parallelism,
                current: RefCell::new(Vec::with_capacity(32)),
                current_group: Cell::new(range.start),
                has_key: Cell::new(false),
                tables: RefCell::new(BTreeMap::new()),
                clock: RefCell::new(Rc::new(eddy_core::time::now_millis)),
            }),
        }
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

    /// The table behind state `name`, created on first use. Asking for the same name with a
    /// different value type is an error.
    pub fn table<V>(&self, name: &str) -> Result<SharedStateTable<V>>
    where
        V: Serialize + DeserializeOwned + 'static,
    {
        let mut tables = self.inner.tables.borrow_mut();
        if let Some(t) = tables.get(name) {
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
        let t = Rc::new(RefCell::new(StateTable::<V>::new(self.inner.range)));
        tables.insert(
            name.to_string(),
            Registered {
                typed: t.clone(),
                erased: t.clone(),
            },
        );
        Ok(t)
    }

    /// The names of every registered state.
    pub fn state_names(&self) -> Vec<String> {
        self.inner.tables.borrow().keys().cloned().collect()
    }

    /// Appends the encoding of state `name`'s entries in `key_group` to `out`.
    pub fn snapshot_group(&self, name: &str, key_group: u32, out: &mut Vec<u8>) -> Result<()> {
        let erased = self
            .inner
            .tables
            .borrow()
            .get(name)
            .map(|t| t.erased.clone());
        match erased {
            Some(t) => t.snapshot_group(key_group, out),
            None => Err(RuntimeError::Internal(format!("no state named '{name}'"))),
        }
    }

    /// Restores state `name`'s entries of `key_group` from `bytes`. The state must have been
    /// registered (with its type) first.
    pub fn restore_group(&self, name: &str, key_group: u32, bytes: &[u8]) -> Result<()> {
        let erased = self
            .inner
            .tables
            .borrow()
            .get(name)
            .map(|t| t.erased.clone());
        match erased {
            Some(t) => t.restore_group(key_group, bytes),
            None => Err(RuntimeError::Internal(format!("no state named '{name}'"))),
        }
    }
}
