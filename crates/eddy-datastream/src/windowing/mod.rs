//! Windows: assigners, triggers, evictors, window functions, and the operators that evaluate
//! them with Flink's semantics.

mod assigners;
mod evictors;
mod functions;
mod operator;
mod panes;
mod stream;
mod triggers;
mod window;

pub use assigners::{
    EventTimeSessionWindows, GlobalWindows, ProcessingTimeSessionWindows, SlidingEventTimeWindows,
    SlidingProcessingTimeWindows, TumblingEventTimeWindows, TumblingProcessingTimeWindows,
    WindowAssigner,
};
pub use evictors::{CountEvictor, DeltaEvictor, Evictor, TimeEvictor};
pub use functions::{ProcessWindowContext, ProcessWindowFunction};
pub use stream::{AllWindowedStream, ProcessAllWindowFunction, WindowedStream};
pub use triggers::{
    ContinuousEventTimeTrigger, ContinuousProcessingTimeTrigger, CountTrigger, DeltaFunction,
    DeltaTrigger, EventTimeTrigger, NeverTrigger, ProcessingTimeTrigger, PurgingTrigger, Trigger,
    TriggerContext, TriggerResult,
};
pub use window::{GlobalWindow, TimeWindow, Window};
