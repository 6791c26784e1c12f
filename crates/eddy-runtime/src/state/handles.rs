//! The state handles user functions use: value, list, map, reducing and aggregating state, each
//! scoped to the current key (and, inside windows, to the current window), with optional TTL.

use std::cell::RefCell;
use std::collections::HashMap;
use std::hash::Hash;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use foldhash::fast::FixedState;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::backend::{BackendInner, KeyedStateBackend};
use super::table::SharedStateTable;
use crate::error::{Result, RuntimeError};

/// When a value's TTL clock restarts (Flink's `StateTtlConfig.UpdateType`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum UpdateType {
    /// TTL is off.
    Disabled,
    /// On creation and on every write.
    OnCreateAndWrite,
    /// On creation, write and read.
    OnReadAndWrite,
}

/// Whether expired values that are still stored may be returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum StateVisibility {
    /// An expired value is never returned.
    NeverReturnExpired,
    /// An expired value is returned until it is cleaned up.
    ReturnExpiredIfNotCleanedUp,
}

/// Time-to-live of state values, in processing time (Flink's `StateTtlConfig`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateTtlConfig {
    /// How long a value lives after its last update.
    pub ttl: Duration,
    /// What resets the clock.
    pub update_type: UpdateType,
    /// Whether expired values may still be read.
    pub state_visibility: StateVisibility,
}

impl StateTtlConfig {
    /// A builder with Flink's defaults: update on create and write, never return expired values.
    pub fn new_builder(ttl: Duration) -> StateTtlConfigBuilder {
        StateTtlConfigBuilder(StateTtlConfig {
            ttl,
            update_type: UpdateType::OnCreateAndWrite,
            state_visibility: StateVisibility::NeverReturnExpired,
        })
    }

    fn enabled(&self) -> bool {
        self.update_type != UpdateType::Disabled
    }

    fn expired(&self, stamp: i64, now: i64) -> bool {
        self.enabled() && stamp.saturating_add(self.ttl.as_millis() as i64) <= now
    }
}

/// Builds a [`StateTtlConfig`].
#[derive(Clone, Copy, Debug)]
pub struct StateTtlConfigBuilder(StateTtlConfig);

impl StateTtlConfigBuilder {
    /// Sets what resets the clock.
    pub fn set_update_type(mut self, update_type: UpdateType) -> Self {
        self.0.update_type = update_type;
        self
    }

    /// Sets whether expired values may be read.
    pub fn set_state_visibility(mut self, visibility: StateVisibility) -> Self {
        self.0.state_visibility = visibility;
        self
    }

    /// The configuration.
    pub fn build(self) -> StateTtlConfig {
        self.0
    }
}

/// A value with the processing time of its last TTL update.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Stamped<V> {
    /// The value.
    pub value: V,
    /// Last update, in ms of processing time.
    pub stamp: i64,
}

/// Where a handle's values live: the current key (from the backend) and an optional namespace.
struct Scope {
    backend: Rc<BackendInner>,
    namespace: Option<Rc<RefCell<Vec<u8>>>>,
    scratch: RefCell<Vec<u8>>,
    ttl: Option<StateTtlConfig>,
}

impl Scope {
    fn new(
        backend: &KeyedStateBackend,
        ttl: Option<StateTtlConfig>,
        namespace: Option<Rc<RefCell<Vec<u8>>>>,
    ) -> Self {
        Scope {
            backend: backend.inner.clone(),
            namespace,
            scratch: RefCell::new(Vec::with_capacity(48)),
            ttl: ttl.filter(StateTtlConfig::enabled),
        }
    }

    /// Calls `f` with the key group and composite key of the current key and namespace.
    #[inline]
    fn with<R>(&self, f: impl FnOnce(u32, &[u8]) -> Result<R>) -> Result<R> {
        if !self.backend.has_key.get() {
            return Err(RuntimeError::user(
                "keyed state used outside a keyed context (no current key)",
            ));
        }
        let kg = self.backend.current_group.get();
        match &self.namespace {
            None => f(kg, &self.backend.current.borrow()),
            Some(ns) => {
                let mut buf = self.scratch.borrow_mut();
                buf.clear();
                buf.extend_from_slice(&self.backend.current.borrow());
                buf.extend_from_slice(&ns.borrow());
                f(kg, &buf)
            }
        }
    }

    fn now(&self) -> i64 {
        (self.backend.clock.borrow())()
    }

    /// Whether a value stamped `stamp` must be hidden.
    fn hidden(&self, stamp: i64, now: i64) -> bool {
        self.ttl.is_some_and(|t| {
            t.state_visibility == StateVisibility::NeverReturnExpired && t.expired(stamp, now)
        })
    }

    fn refresh_on_read(&self) -> bool {
        self.ttl
            .is_some_and(|t| t.update_type == UpdateType::OnReadAndWrite)
    }
}

macro_rules! descriptor_ttl {
    () => {
        /// Gives the state's values a time-to-live.
        pub fn enable_time_to_live(mut self, ttl: StateTtlConfig) -> Self {
            self.ttl = Some(ttl);
            self
        }
    };
}

/// Describes a value state (Flink's `ValueStateDescriptor`).
#[derive(Clone, Debug)]
pub struct ValueStateDescriptor<V> {
    /// Unique within the operator.
    pub name: String,
    /// Returned by `value()` when the key has no value.
    pub default: Option<V>,
    /// Time-to-live, if any.
    pub ttl: Option<StateTtlConfig>,
}

impl<V> ValueStateDescriptor<V> {
    /// A descriptor without default.
    pub fn new(name: impl Into<String>) -> Self {
        ValueStateDescriptor {
            name: name.into(),
            default: None,
            ttl: None,
        }
    }

    /// A descriptor whose state reads as `default` when unset.
    pub fn with_default(name: impl Into<String>, default: V) -> Self {
        ValueStateDescriptor {
            name: name.into(),
            default: Some(default),
            ttl: None,
        }
    }

    descriptor_ttl!();
}

/// One value per key (Flink's `ValueState`).
pub struct ValueState<V> {
    scope: Rc<Scope>,
    table: SharedStateTable<Stamped<V>>,
    default: Rc<Option<V>>,
}

impl<V> Clone for ValueState<V> {
    fn clone(&self) -> Self {
        ValueState {
            scope: self.scope.clone(),
            table: self.table.clone(),
            default: self.default.clone(),
        }
    }
}

impl<V: Clone> ValueState<V> {
    /// The current key's value, or the descriptor's default.
    pub fn value(&self) -> Result<Option<V>> {
        let now = self.scope.now();
        let found = self.scope.with(|kg, c| {
            let mut t = self.table.borrow_mut();
            let refresh = self.scope.refresh_on_read();
            let hide = match t.get(kg, c)? {
                None => return Ok(None),
                Some(s) if self.scope.hidden(s.stamp, now) => true,
                Some(s) if !refresh => return Ok(Some(s.value.clone())),
                Some(_) => false,
            };
            if hide {
                t.remove(kg, c)?;
                return Ok(None);
            }
            Ok(t.get_mut(kg, c)?.map(|s| {
                s.stamp = now;
                s.value.clone()
            }))
        })?;
        Ok(found.or_else(|| (*self.default).clone()))
    }

    /// Sets the current key's value.
    pub fn update(&self, value: V) -> Result<()> {
        let stamp = self.scope.now();
        self.scope.with(|kg, c| {
            self.table
                .borrow_mut()
                .insert(kg, c, Stamped { value, stamp })
        })
    }

    /// Removes the current key's value.
    pub fn clear(&self) -> Result<()> {
        self.scope
            .with(|kg, c| self.table.borrow_mut().remove(kg, c))
    }
}

/// Describes a list state (Flink's `ListStateDescriptor`).
#[derive(Clone, Debug)]
pub struct ListStateDescriptor<V> {
    /// Unique within the operator.
    pub name: String,
    /// Time-to-live of each element, if any.
    pub ttl: Option<StateTtlConfig>,
    _v: std::marker::PhantomData<fn() -> V>,
}

impl<V> ListStateDescriptor<V> {
    /// A descriptor.
    pub fn new(name: impl Into<String>) -> Self {
        ListStateDescriptor {
            name: name.into(),
            ttl: None,
            _v: std::marker::PhantomData,
        }
    }

    descriptor_ttl!();
}

/// A list of values per key (Flink's `ListState`). With TTL, each element expires on its own.
#[derive(Clone)]
pub struct ListState<V> {
    scope: Rc<Scope>,
    table: SharedStateTable<Vec<Stamped<V>>>,
}

impl<V: Clone> ListState<V> {
    /// The current key's elements, in insertion order (empty if none).
    pub fn get(&self) -> Result<Vec<V>> {
        let now = self.scope.now();
        self.scope.with(|kg, c| {
            let mut t = self.table.borrow_mut();
            let Some(list) = t.get(kg, c)? else {
                return Ok(Vec::new());
            };
            let untouched = self.scope.ttl.is_none();
            if untouched {
                return Ok(list.iter().map(|s| s.value.clone()).collect());
            }
            let Some(list) = t.get_mut(kg, c)? else {
                return Ok(Vec::new());
            };
            list.retain(|s| !self.scope.hidden(s.stamp, now));
            if self.scope.refresh_on_read() {
                list.iter_mut().for_each(|s| s.stamp = now);
            }
            let out = list.iter().map(|s| s.value.clone()).collect();
            if list.is_empty() {
                t.remove(kg, c)?;
            }
            Ok(out)
        })
    }

    /// Appends an element.
    pub fn add(&self, value: V) -> Result<()> {
        let stamp = self.scope.now();
        self.scope.with(|kg, c| {
            self.table
                .borrow_mut()
                .get_or_insert_with(kg, c, Vec::new)?
                .push(Stamped { value, stamp });
            Ok(())
        })
    }

    /// Appends several elements.
    pub fn add_all(&self, values: impl IntoIterator<Item = V>) -> Result<()> {
        let stamp = self.scope.now();
        self.scope.with(|kg, c| {
            self.table
                .borrow_mut()
                .get_or_insert_with(kg, c, Vec::new)?
                .extend(values.into_iter().map(|value| Stamped { value, stamp }));
            Ok(())
        })
    }

    /// Replaces the elements.
    pub fn update(&self, values: Vec<V>) -> Result<()> {
        let stamp = self.scope.now();
        self.scope.with(|kg, c| {
            let list: Vec<_> = values
                .into_iter()
                .map(|value| Stamped { value, stamp })
                .collect();
            let mut t = self.table.borrow_mut();
            if list.is_empty() {
                t.remove(kg, c)
            } else {
                t.insert(kg, c, list)
            }
        })
    }

    /// Removes every element.
    pub fn clear(&self) -> Result<()> {
        self.scope
            .with(|kg, c| self.table.borrow_mut().remove(kg, c))
    }
}

/// Describes a map state (Flink's `MapStateDescriptor`).
#[derive(Clone, Debug)]
pub struct MapStateDescriptor<UK, UV> {
    /// Unique within the operator.
    pub name: String,
    /// Time-to-live of each entry, if any.
    pub ttl: Option<StateTtlConfig>,
    _t: std::marker::PhantomData<fn() -> (UK, UV)>,
}

impl<UK, UV> MapStateDescriptor<UK, UV> {
    /// A descriptor.
    pub fn new(name: impl Into<String>) -> Self {
        MapStateDescriptor {
            name: name.into(),
            ttl: None,
            _t: std::marker::PhantomData,
        }
    }

    descriptor_ttl!();
}

/// The per-key map stored by a [`MapState`].
pub type StateMap<UK, UV> = HashMap<UK, Stamped<UV>, FixedState>;

/// A map per key (Flink's `MapState`). With TTL, each entry expires on its own.
#[derive(Clone)]
pub struct MapState<UK, UV> {
    scope: Rc<Scope>,
    table: SharedStateTable<StateMap<UK, UV>>,
}

impl<UK: Hash + Eq + Clone, UV: Clone> MapState<UK, UV> {
    /// The value for `key`.
    pub fn get(&self, key: &UK) -> Result<Option<UV>> {
        let now = self.scope.now();
        self.scope.with(|kg, c| {
            let mut t = self.table.borrow_mut();
            let refresh = self.scope.refresh_on_read();
            let hide = match t.get(kg, c)?.and_then(|m| m.get(key)) {
                None => return Ok(None),
                Some(s) if self.scope.hidden(s.stamp, now) => true,
                Some(s) if !refresh => return Ok(Some(s.value.clone())),
                Some(_) => false,
            };
            let Some(map) = t.get_mut(kg, c)? else {
                return Ok(None);
            };
            if hide {
                map.remove(key);
                if map.is_empty() {
                    t.remove(kg, c)?;
                }
                return Ok(None);
            }
            Ok(map.get_mut(key).map(|s| {
                s.stamp = now;
                s.value.clone()
            }))
        })
    }

    /// Sets the value for `key`.
    pub fn put(&self, key: UK, value: UV) -> Result<()> {
        let stamp = self.scope.now();
        self.scope.with(|kg, c| {
            self.table
                .borrow_mut()
                .get_or_insert_with(kg, c, HashMap::default)?
                .insert(key, Stamped { value, stamp });
            Ok(())
        })
    }

    /// Sets several entries.
    pub fn put_all(&self, entries: impl IntoIterator<Item = (UK, UV)>) -> Result<()> {
        let stamp = self.scope.now();
        self.scope.with(|kg, c| {
            let mut t = self.table.borrow_mut();
            let map = t.get_or_insert_with(kg, c, HashMap::default)?;
            for (k, value) in entries {
                map.insert(k, Stamped { value, stamp });
            }
            Ok(())
        })
    }

    /// Removes `key`.
    pub fn remove(&self, key: &UK) -> Result<()> {
        self.scope.with(|kg, c| {
            let mut t = self.table.borrow_mut();
            if !t.get(kg, c)?.is_some_and(|m| m.contains_key(key)) {
                return Ok(());
            }
            if let Some(map) = t.get_mut(kg, c)? {
                map.remove(key);
                if map.is_empty() {
                    t.remove(kg, c)?;
                }
            }
            Ok(())
        })
    }

    /// Whether `key` has a (visible) value.
    pub fn contains(&self, key: &UK) -> Result<bool> {
        Ok(self.get(key)?.is_some())
    }

    /// Every visible entry, in no particular order.
    pub fn entries(&self) -> Result<Vec<(UK, UV)>> {
        let now = self.scope.now();
        self.scope.with(|kg, c| {
            let mut t = self.table.borrow_mut();
            let Some(map) = t.get(kg, c)? else {
                return Ok(Vec::new());
            };
            if self.scope.ttl.is_none() {
                return Ok(map
                    .iter()
                    .map(|(k, s)| (k.clone(), s.value.clone()))
                    .collect());
            }
            let Some(map) = t.get_mut(kg, c)? else {
                return Ok(Vec::new());
            };
            map.retain(|_, s| !self.scope.hidden(s.stamp, now));
            if self.scope.refresh_on_read() {
                map.values_mut().for_each(|s| s.stamp = now);
            }
            let out = map
                .iter()
                .map(|(k, s)| (k.clone(), s.value.clone()))
                .collect();
            if map.is_empty() {
                t.remove(kg, c)?;
            }
            Ok(out)
        })
    }

    /// Every visible key.
    pub fn keys(&self) -> Result<Vec<UK>> {
        Ok(self.entries()?.into_iter().map(|(k, _)| k).collect())
    }

    /// Every visible value.
    pub fn values(&self) -> Result<Vec<UV>> {
        Ok(self.entries()?.into_iter().map(|(_, v)| v).collect())
    }

    /// Whether the map has no visible entry.
    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.entries()?.is_empty())
    }

    /// Removes every entry.
    pub fn clear(&self) -> Result<()> {
        self.scope
            .with(|kg, c| self.table.borrow_mut().remove(kg, c))
    }
}

/// The reduce function of a [`ReducingState`].
pub type ReduceFn<V> = Arc<dyn Fn(V, V) -> V + Send + Sync>;

/// Describes a reducing state (Flink's `ReducingStateDescriptor`).
#[derive(Clone)]
pub struct ReducingStateDescriptor<V> {
    /// Unique within the operator.
    pub name: String,
    /// Combines two values.
    pub reduce: ReduceFn<V>,
    /// Time-to-live, if any.
    pub ttl: Option<StateTtlConfig>,
}

impl<V> ReducingStateDescriptor<V> {
    /// A descriptor with its reduce function.
    pub fn new(
        name: impl Into<String>,
        reduce: impl Fn(V, V) -> V + Send + Sync + 'static,
    ) -> Self {
        ReducingStateDescriptor {
            name: name.into(),
            reduce: Arc::new(reduce),
            ttl: None,
        }
    }

    descriptor_ttl!();
}

/// A value per key that every `add` combines with a reduce function (Flink's `ReducingState`).
#[derive(Clone)]
pub struct ReducingState<V> {
    scope: Rc<Scope>,
    table: SharedStateTable<Stamped<V>>,
    reduce: ReduceFn<V>,
}

impl<V: Clone> ReducingState<V> {
    /// The reduced value, if any was added.
    pub fn get(&self) -> Result<Option<V>> {
        let now = self.scope.now();
        self.scope.with(|kg, c| {
            let mut t = self.table.borrow_mut();
            match t.get(kg, c)? {
                Some(s) if self.scope.hidden(s.stamp, now) => {}
                Some(s) => return Ok(Some(s.value.clone())),
                None => return Ok(None),
            }
            t.remove(kg, c)?;
            Ok(None)
        })
    }

    /// Reduces `value` into the state.
    pub fn add(&self, value: V) -> Result<()> {
        let now = self.scope.now();
        self.scope.with(|kg, c| {
            let mut t = self.table.borrow_mut();
            let new = match t.take(kg, c)? {
                Some(s) if !self.scope.hidden(s.stamp, now) => (self.reduce)(s.value, value),
                _ => value,
            };
            t.insert(
                kg,
                c,
                Stamped {
                    value: new,
                    stamp: now,
                },
            )
        })
    }

    /// Removes the value.
    pub fn clear(&self) -> Result<()> {
        self.scope
            .with(|kg, c| self.table.borrow_mut().remove(kg, c))
    }
}

/// Incremental aggregation with an accumulator (Flink's `AggregateFunction`).
pub trait AggregateFunction<IN, ACC, OUT>: Send + Sync + 'static {
    /// A new, empty accumulator.
    fn create_accumulator(&self) -> ACC;
    /// Adds a value to the accumulator.
    fn add(&self, value: IN, accumulator: &mut ACC);
    /// The result of an accumulator.
    fn get_result(&self, accumulator: &ACC) -> OUT;
    /// Merges two accumulators (used when windows merge and when panes combine).
    fn merge(&self, a: ACC, b: ACC) -> ACC;
}

/// Describes an aggregating state (Flink's `AggregatingStateDescriptor`).
pub struct AggregatingStateDescriptor<IN, ACC, OUT> {
    /// Unique within the operator.
    pub name: String,
    /// The aggregation.
    pub function: Arc<dyn AggregateFunction<IN, ACC, OUT>>,
    /// Time-to-live, if any.
    pub ttl: Option<StateTtlConfig>,
}

impl<IN, ACC, OUT> Clone for AggregatingStateDescriptor<IN, ACC, OUT> {
    fn clone(&self) -> Self {
        AggregatingStateDescriptor {
            name: self.name.clone(),
            function: self.function.clone(),
            ttl: self.ttl,
        }
    }
}

impl<IN, ACC, OUT> AggregatingStateDescriptor<IN, ACC, OUT> {
    /// A descriptor with its aggregate function.
    pub fn new(name: impl Into<String>, function: impl AggregateFunction<IN, ACC, OUT>) -> Self {
        AggregatingStateDescriptor {
            name: name.into(),
            function: Arc::new(function),
            ttl: None,
        }
    }

    descriptor_ttl!();
}

trait AggregatingAccess<IN, OUT> {
    fn get(&self) -> Result<Option<OUT>>;
    fn add(&self, value: IN) -> Result<()>;
    fn clear(&self) -> Result<()>;
}

struct AggregatingImpl<IN, ACC, OUT> {
    scope: Rc<Scope>,
    table: SharedStateTable<Stamped<ACC>>,
    function: Arc<dyn AggregateFunction<IN, ACC, OUT>>,
}

impl<IN: 'static, ACC: 'static, OUT: 'static> AggregatingAccess<IN, OUT>
    for AggregatingImpl<IN, ACC, OUT>
{
    fn get(&self) -> Result<Option<OUT>> {
        let now = self.scope.now();
        self.scope.with(|kg, c| {
            let mut t = self.table.borrow_mut();
            match t.get(kg, c)? {
                Some(s) if self.scope.hidden(s.stamp, now) => {}
                Some(s) => return Ok(Some(self.function.get_result(&s.value))),
                None => return Ok(None),
            }
            t.remove(kg, c)?;
            Ok(None)
        })
    }

    fn add(&self, value: IN) -> Result<()> {
        let now = self.scope.now();
        self.scope.with(|kg, c| {
            let mut t = self.table.borrow_mut();
            let expired = t
                .get(kg, c)?
                .is_some_and(|s| self.scope.hidden(s.stamp, now));
            if expired {
                t.remove(kg, c)?;
            }
            let s = t.get_or_insert_with(kg, c, || Stamped {
                value: self.function.create_accumulator(),
                stamp: now,
            })?;
            self.function.add(value, &mut s.value);
            s.stamp = now;
            Ok(())
        })
    }

    fn clear(&self) -> Result<()> {
        self.scope
            .with(|kg, c| self.table.borrow_mut().remove(kg, c))
    }
}

/// A value per key that every `add` folds into an accumulator (Flink's `AggregatingState`).
pub struct AggregatingState<IN, OUT> {
    access: Rc<dyn AggregatingAccess<IN, OUT>>,
}

impl<IN, OUT> Clone for AggregatingState<IN, OUT> {
    fn clone(&self) -> Self {
        AggregatingState {
            access: self.access.clone(),
        }
    }
}

impl<IN, OUT> AggregatingState<IN, OUT> {
    /// The aggregate's result, if anything was added.
    pub fn get(&self) -> Result<Option<OUT>> {
        self.access.get()
    }

    /// Adds a value.
    pub fn add(&self, value: IN) -> Result<()> {
        self.access.add(value)
    }

    /// Removes the accumulator.
    pub fn clear(&self) -> Result<()> {
        self.access.clear()
    }
}

/// Creates state handles on a backend, optionally inside a namespace (a window).
#[derive(Clone)]
pub struct KeyedStateStore {
    backend: KeyedStateBackend,
    namespace: Option<Rc<RefCell<Vec<u8>>>>,
    prefix: &'static str,
}

impl KeyedStateStore {
    /// Handles on `backend` for the current key.
    pub fn new(backend: KeyedStateBackend) -> Self {
        KeyedStateStore {
            backend,
            namespace: None,
            prefix: "",
        }
    }

    /// Handles on `backend` for the current key and the namespace held in `namespace`, which the
    /// operator updates (a window's per-window state). `prefix` keeps these states apart from the
    /// global ones of the same name.
    pub fn with_namespace(
        backend: KeyedStateBackend,
        namespace: Rc<RefCell<Vec<u8>>>,
        prefix: &'static str,
    ) -> Self {
        KeyedStateStore {
            backend,
            namespace: Some(namespace),
            prefix,
        }
    }

    /// The backend.
    pub fn backend(&self) -> &KeyedStateBackend {
        &self.backend
    }

    fn scope(&self, ttl: Option<StateTtlConfig>) -> Rc<Scope> {
        Rc::new(Scope::new(&self.backend, ttl, self.namespace.clone()))
    }

    fn name(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    /// A value state.
    pub fn get_state<V>(&self, d: &ValueStateDescriptor<V>) -> Result<ValueState<V>>
    where
        V: Clone + Serialize + DeserializeOwned + Send + Sync + 'static,
    {
        Ok(ValueState {
            scope: self.scope(d.ttl),
            table: self.backend.table(&self.name(&d.name))?,
            default: Rc::new(d.default.clone()),
        })
    }

    /// A list state.
    pub fn get_list_state<V>(&self, d: &ListStateDescriptor<V>) -> Result<ListState<V>>
    where
        V: Clone + Serialize + DeserializeOwned + Send + Sync + 'static,
    {
        Ok(ListState {
            scope: self.scope(d.ttl),
            table: self.backend.table(&self.name(&d.name))?,
        })
    }

    /// A map state.
    pub fn get_map_state<UK, UV>(&self, d: &MapStateDescriptor<UK, UV>) -> Result<MapState<UK, UV>>
    where
        UK: Hash + Eq + Clone + Serialize + DeserializeOwned + Send + Sync + 'static,
        UV: Clone + Serialize + DeserializeOwned + Send + Sync + 'static,
    {
        Ok(MapState {
            scope: self.scope(d.ttl),
            table: self.backend.table(&self.name(&d.name))?,
        })
    }

    /// A reducing state.
    pub fn get_reducing_state<V>(&self, d: &ReducingStateDescriptor<V>) -> Result<ReducingState<V>>
    where
        V: Clone + Serialize + DeserializeOwned + Send + Sync + 'static,
    {
        Ok(ReducingState {
            scope: self.scope(d.ttl),
            table: self.backend.table(&self.name(&d.name))?,
            reduce: d.reduce.clone(),
        })
    }

    /// An aggregating state.
    pub fn get_aggregating_state<IN, ACC, OUT>(
        &self,
        d: &AggregatingStateDescriptor<IN, ACC, OUT>,
    ) -> Result<AggregatingState<IN, OUT>>
    where
        IN: 'static,
        ACC: Clone + Serialize + DeserializeOwned + Send + Sync + 'static,
        OUT: 'static,
    {
        Ok(AggregatingState {
            access: Rc::new(AggregatingImpl {
                scope: self.scope(d.ttl),
                table: self.backend.table(&self.name(&d.name))?,
                function: d.function.clone(),
            }),
        })
    }
}
