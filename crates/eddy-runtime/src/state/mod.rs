//! Operator state and keyed state.
//!
//! Keyed state lives in a [`KeyedStateBackend`], one per keyed operator subtask, organised by
//! key group so that a checkpoint can be split and redistributed when the job is rescaled.
//! Operators reach their backend through the [`StateContext`] in their
//! [`OperatorContext`](crate::operator::OperatorContext).

mod keyed;

pub use keyed::{
    KeyedStateBackend, SharedStateTable, StateTable, ValueState, ValueStateDescriptor,
};

use std::any::Any;
use std::cell::RefCell;
use std::rc::Rc;

use eddy_core::keys::{Key, KeyGroupRange};

/// The state an operator may use: its keyed backend (for keyed operators).
#[derive(Clone)]
pub struct StateContext {
    inner: Rc<StateContextInner>,
}

struct StateContextInner {
    key_group_range: KeyGroupRange,
    max_parallelism: u32,
    keyed: RefCell<Option<Rc<dyn Any>>>,
}

impl StateContext {
    /// The state context of a subtask owning `key_group_range` out of `max_parallelism` groups.
    pub fn new(key_group_range: KeyGroupRange, max_parallelism: u32) -> Self {
        StateContext {
            inner: Rc::new(StateContextInner {
                key_group_range,
                max_parallelism,
                keyed: RefCell::new(None),
            }),
        }
    }

    /// The key groups this subtask owns.
    pub fn key_group_range(&self) -> KeyGroupRange {
        self.inner.key_group_range
    }

    /// The keyed state backend for keys of type `K`, created on first use.
    pub fn keyed_backend<K: Key>(&self) -> KeyedStateBackend<K> {
        let mut slot = self.inner.keyed.borrow_mut();
        if let Some(existing) = slot
            .as_ref()
            .and_then(|b| b.clone().downcast::<keyed::BackendInner<K>>().ok())
        {
            return KeyedStateBackend::from_inner(existing);
        }
        let backend =
            KeyedStateBackend::<K>::new(self.inner.key_group_range, self.inner.max_parallelism);
        *slot = Some(backend.inner_any());
        backend
    }
}
