//! Checkpoints and savepoints: storage, file formats, and the machinery that takes and restores
//! them.
//!
//! - [`storage`]: directories in an object store (local, `file://`, `s3://`);
//! - [`format`](mod@format): the state file format (sections of keyed and operator state);
//! - [`metadata`]: the `_metadata` file that lists a checkpoint's state files;
//! - [`coordinator`]: triggers checkpoints, collects acknowledgements, keeps the last few;
//! - [`restore`]: matches a snapshot's operators with a job's and redistributes their state.
//!
//! The task side — barrier alignment and snapshots — is in [`crate::task`].

pub mod coordinator;
pub mod format;
pub mod metadata;
pub mod restore;
pub mod storage;
pub mod store;
