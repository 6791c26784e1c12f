//! Watermark strategies: how timestamps are assigned and watermarks generated.
//!
//! The types live in the runtime (`eddy_runtime::watermark`), which runs them in sources and in
//! `assign_timestamps_and_watermarks`; they are re-exported here for programs.

pub use eddy_runtime::watermark::{
    BoundedOutOfOrdernessWatermarks, NoWatermarksGenerator, WatermarkGenerator, WatermarkOutput,
    WatermarkStrategy,
};
