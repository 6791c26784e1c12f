//! Watermark strategies: how a source assigns event timestamps and generates watermarks.

use std::marker::PhantomData;

/// How a source assigns timestamps and generates watermarks (Flink's `WatermarkStrategy`).
pub struct WatermarkStrategy<T> {
    _t: PhantomData<fn(&T)>,
}

impl<T> WatermarkStrategy<T> {
    /// No timestamps and no watermarks: for processing-time programs.
    pub fn no_watermarks() -> Self {
        WatermarkStrategy { _t: PhantomData }
    }
}
