//! The record writer: partitions records into per-channel buffers and sends full buffers.

use std::any::Any;
use std::cell::Cell;
use std::rc::Rc;
use std::sync::Arc;

use eddy_core::element::{
    CheckpointBarrier, LatencyMarker, StopMode, StreamElement, StreamRecord, Watermark,
    WatermarkStatus,
};

use super::channel::{ChannelSender, TaskSignals};
use super::partitioner::Partitioner;
use crate::chain::ChainOutput;
use crate::error::Result;
use crate::operator::Output;

/// Writes one network edge of a task: one buffer and one channel per downstream subtask.
pub struct RecordWriter<T> {
    channels: Vec<ChannelSender<T>>,
    buffers: Vec<Vec<StreamRecord<T>>>,
    partitioner: Box<dyn Partitioner<T>>,
    broadcast: bool,
    batch_size: usize,
    signals: Arc<TaskSignals>,
    dirty: Rc<Cell<bool>>,
    /// End-of-partition has been sent: the downstream tasks count these channels as finished
    /// and may already be gone, so nothing more is sent (a barrier that still reaches this task
    /// from an upstream that has not finished yet, for instance).
    partition_ended: bool,
    /// End-of-data has been sent: a barrier goes in-band behind it, so that the receiver's
    /// snapshot follows its end of input (the checkpoint after which a finished task may exit).
    data_ended: bool,
}

impl<T: Clone> RecordWriter<T> {
    /// A writer over `channels`. `dirty` is set whenever records wait in a buffer, so the task
    /// knows a timed flush is due.
    pub fn new(
        channels: Vec<ChannelSender<T>>,
        partitioner: Box<dyn Partitioner<T>>,
        batch_size: usize,
        signals: Arc<TaskSignals>,
        dirty: Rc<Cell<bool>>,
    ) -> Self {
        let broadcast = partitioner.is_broadcast();
        RecordWriter {
            buffers: channels.iter().map(|_| Vec::new()).collect(),
            channels,
            partitioner,
            broadcast,
            batch_size: batch_size.max(1),
            signals,
            dirty,
            partition_ended: false,
            data_ended: false,
        }
    }

    #[inline]
    fn send_buffer(&mut self, channel: usize) -> Result<()> {
        let batch = std::mem::replace(
            &mut self.buffers[channel],
            Vec::with_capacity(self.batch_size),
        );
        self.channels[channel].send(StreamElement::Records(batch), &self.signals)
    }

    fn flush_all(&mut self) -> Result<()> {
        for c in 0..self.channels.len() {
            if !self.buffers[c].is_empty() {
                let batch = std::mem::take(&mut self.buffers[c]);
                self.channels[c].send(StreamElement::Records(batch), &self.signals)?;
            }
        }
        Ok(())
    }

    fn broadcast_event(&mut self, element: StreamElement<T>) -> Result<()> {
        if self.partition_ended {
            return Ok(());
        }
        self.flush_all()?;
        for ch in &self.channels {
            ch.send(element.clone(), &self.signals)?;
        }
        Ok(())
    }

    fn collect_single_channel(&mut self, mut batch: Vec<StreamRecord<T>>) -> Result<()> {
        let buf = &mut self.buffers[0];
        if buf.is_empty() && batch.len() >= self.batch_size / 2 {
            // Large enough to send as it is: no copy.
            return self.channels[0].send(StreamElement::Records(batch), &self.signals);
        }
        if buf.capacity() == 0 {
            buf.reserve(self.batch_size);
        }
        if buf.len() + batch.len() <= self.batch_size {
            buf.append(&mut batch);
            if buf.len() == self.batch_size {
                self.send_buffer(0)?;
            } else {
                self.dirty.set(true);
            }
            return Ok(());
        }
        for r in batch {
            self.buffers[0].push(r);
            if self.buffers[0].len() >= self.batch_size {
                self.send_buffer(0)?;
            }
        }
        if !self.buffers[0].is_empty() {
            self.dirty.set(true);
        }
        Ok(())
    }
}

impl<T: Clone> Output<T> for RecordWriter<T> {
    fn collect(&mut self, batch: Vec<StreamRecord<T>>) -> Result<()> {
        let n = self.channels.len();
        if self.broadcast {
            for c in 0..n {
                let buf = &mut self.buffers[c];
                buf.extend(batch.iter().cloned());
                if buf.len() >= self.batch_size {
                    self.send_buffer(c)?;
                }
            }
        } else if n == 1 {
            return self.collect_single_channel(batch);
        } else {
            for r in batch {
                let c = self.partitioner.select_channel(&r, n)?;
                let buf = &mut self.buffers[c];
                if buf.capacity() == 0 {
                    buf.reserve(self.batch_size);
                }
                buf.push(r);
                if buf.len() >= self.batch_size {
                    self.send_buffer(c)?;
                }
            }
        }
        if self.buffers.iter().any(|b| !b.is_empty()) {
            self.dirty.set(true);
        }
        Ok(())
    }

    fn emit_watermark(&mut self, watermark: Watermark) -> Result<()> {
        self.broadcast_event(StreamElement::Watermark(watermark))
    }

    fn emit_watermark_status(&mut self, status: WatermarkStatus) -> Result<()> {
        self.broadcast_event(StreamElement::WatermarkStatus(status))
    }

    fn emit_latency_marker(&mut self, marker: LatencyMarker) -> Result<()> {
        // A latency marker goes to one random channel, as in Flink, without flushing records.
        let c = rand::random_range(0..self.channels.len().max(1));
        match self.channels.get(c).filter(|_| !self.partition_ended) {
            Some(ch) => ch.send(StreamElement::LatencyMarker(marker), &self.signals),
            None => Ok(()),
        }
    }

    fn collect_side(&mut self, _tag: &str, _records: Box<dyn Any>) -> Result<()> {
        Ok(())
    }
}

impl<T: Clone> ChainOutput<T> for RecordWriter<T> {
    fn emit_barrier(&mut self, barrier: CheckpointBarrier) -> Result<()> {
        if !barrier.unaligned || self.data_ended {
            if barrier.announce && !self.data_ended && !self.partition_ended {
                // Where the barrier will be on each channel: after the buffer, if any.
                for (c, ch) in self.channels.iter().enumerate() {
                    let at = ch.sent() + u64::from(!self.buffers[c].is_empty());
                    ch.announce(barrier, at)?;
                }
            }
            return self.broadcast_event(StreamElement::Barrier(barrier));
        }
        if self.partition_ended {
            return Ok(());
        }
        // Ahead of everything queued, with the records buffered here: they precede the
        // barrier, and the receiver reads them in their place.
        for (c, ch) in self.channels.iter().enumerate() {
            let overtaken = std::mem::take(&mut self.buffers[c]);
            ch.send_priority(barrier, overtaken)?;
        }
        Ok(())
    }

    fn emit_end_of_data(&mut self, mode: StopMode) -> Result<()> {
        self.data_ended = true;
        self.broadcast_event(StreamElement::EndOfData(mode))
    }

    fn emit_end_of_partition(&mut self) -> Result<()> {
        self.broadcast_event(StreamElement::EndOfPartition)?;
        self.partition_ended = true;
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        self.flush_all()
    }

    fn is_available(&self) -> bool {
        self.partition_ended || self.channels.iter().all(ChannelSender::has_room)
    }
}

#[cfg(test)]
mod tests {
    use eddy_core::element::SnapshotKind;

    use super::*;
    use crate::exchange::{ForwardPartitioner, local_channel};

    #[test]
    fn nothing_is_sent_after_end_of_partition() {
        let (tx, rx) = local_channel::<u32>(4);
        let mut writer = RecordWriter::new(
            vec![tx],
            Box::new(ForwardPartitioner),
            16,
            Arc::new(TaskSignals::default()),
            Rc::new(Cell::new(false)),
        );
        writer.emit_end_of_partition().unwrap();
        // The downstream task has seen end-of-partition on every channel and exited; a
        // barrier that still reaches this task from its own upstream must not fail it.
        drop(rx);
        let barrier = CheckpointBarrier {
            id: 7,
            timestamp: 0,
            kind: SnapshotKind::Checkpoint,
            unaligned: false,
            announce: false,
        };
        writer.emit_barrier(barrier).unwrap();
        writer.emit_watermark(Watermark(5)).unwrap();
    }
}
