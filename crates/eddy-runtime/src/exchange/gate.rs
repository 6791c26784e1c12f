//! The input gate: all channels of one logical input of a task.
//!
//! For unaligned checkpoints the gate also records in-flight data: from the moment a task
//! takes checkpoint *n*'s snapshot, every batch of a channel before that channel's barrier *n*
//! (which arrives on the priority lane, with the number of data elements sent before it, or
//! in-band) is encoded and kept, and so are the records the barrier carried past the data lane.
//! Once a barrier's sequence is known, what precedes it is taken from the data lane at once
//! (and read later), so the recording does not wait for the task to work through it. When
//! every channel's barrier has arrived and everything before it is recorded, the recording is
//! complete and goes into the checkpoint.

use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Select};
use eddy_core::element::{CheckpointBarrier, StreamElement, StreamRecord};

use super::channel::{ChannelReceiver, Polled};
use crate::error::{Result, RuntimeError};

/// Encodes and decodes batches of a gate's records: the in-flight data of unaligned
/// checkpoints.
pub struct RecordCodec<T> {
    /// Encodes one batch.
    pub encode: fn(&[StreamRecord<T>]) -> Result<Vec<u8>>,
    /// Decodes one batch.
    pub decode: fn(&[u8]) -> Result<Vec<StreamRecord<T>>>,
}

impl<T> Clone for RecordCodec<T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for RecordCodec<T> {}

impl<T> RecordCodec<T>
where
    T: serde::Serialize + serde::de::DeserializeOwned,
{
    /// The postcard codec.
    pub fn postcard() -> Self {
        RecordCodec {
            encode: |batch| {
                postcard::to_stdvec(batch).map_err(|e| RuntimeError::Serialization(e.to_string()))
            },
            decode: |bytes| {
                postcard::from_bytes(bytes).map_err(|e| {
                    RuntimeError::Serialization(format!(
                        "cannot decode the in-flight data of an unaligned checkpoint: {e}"
                    ))
                })
            },
        }
    }
}

/// The in-flight data of one unaligned checkpoint on one channel.
#[derive(Default)]
struct ChannelRecording {
    /// The number of data elements sent before the barrier, once it arrived.
    end: Option<u64>,
    /// Everything before the barrier has been read (or the channel ended).
    done: bool,
    /// Encoded batches with the index of the data element each came in (`None` for records a
    /// barrier carried, which always precede their own barrier).
    batches: Vec<(Option<u64>, Vec<u8>)>,
}

struct Recording {
    checkpoint_id: u64,
    channels: Vec<ChannelRecording>,
}

/// The channels of one input, read round-robin. Channels can be blocked (during barrier
/// alignment) and are retired once they deliver end-of-partition.
pub struct InputGate<T> {
    channels: Vec<ChannelReceiver<T>>,
    blocked: Vec<bool>,
    finished: Vec<bool>,
    num_finished: usize,
    next: usize,
    codec: Option<RecordCodec<T>>,
    recordings: Vec<Recording>,
    /// Where the last batch read came from: its channel, its data-lane index (`None` for
    /// records a barrier carried) and the checkpoint of that barrier.
    last: Option<(usize, Option<u64>, u64)>,
}

impl<T> InputGate<T> {
    /// A gate over `channels`.
    pub fn new(channels: Vec<ChannelReceiver<T>>) -> Self {
        let n = channels.len();
        InputGate {
            channels,
            blocked: vec![false; n],
            finished: vec![false; n],
            num_finished: 0,
            next: 0,
            codec: None,
            recordings: Vec::new(),
            last: None,
        }
    }

    /// The gate with `codec` for its records, which unaligned checkpoints need.
    pub fn with_codec(mut self, codec: Option<RecordCodec<T>>) -> Self {
        self.codec = codec;
        self
    }

    /// Prepares the gate for unaligned checkpoints; fails if its records cannot be encoded.
    pub fn enable_unaligned(&mut self) -> Result<()> {
        if self.codec.is_none() {
            return Err(RuntimeError::InvalidJob(format!(
                "unaligned checkpoints need the records of every edge to be serializable, and \
                 {} is not: set execution.checkpointing.unaligned.enabled: false",
                std::any::type_name::<T>()
            )));
        }
        for ch in &mut self.channels {
            ch.watch_priority();
        }
        Ok(())
    }

    /// The next barrier that arrived on a channel's priority lane: the channel, the barrier,
    /// and the number of data elements sent on the channel before it.
    pub fn poll_priority(&mut self) -> Option<(usize, CheckpointBarrier, u64)> {
        // Finished channels too: a barrier may have been taken from the lane together with
        // the channel's last element.
        for c in 0..self.channels.len() {
            if let Some((barrier, sequence)) = self.channels[c].try_recv_priority() {
                return Some((c, barrier, sequence));
            }
        }
        None
    }

    /// Whether a barrier from a priority lane waits for the task: it must take the barrier
    /// (with [`InputGate::poll_priority`]) before it waits for input.
    pub fn has_pending_barriers(&self) -> bool {
        self.channels.iter().any(ChannelReceiver::has_barriers)
    }

    /// Whether a batch has been read and a barrier waits on a priority lane (or was taken
    /// from one) for the task.
    pub fn has_priority_waiting(&self) -> bool {
        self.last.is_some()
            && self
                .channels
                .iter()
                .any(|ch| ch.has_barriers() || !ch.priority.is_empty())
    }

    /// `rest`, the part of the last batch read that the task has not handed on yet, goes into
    /// the recordings of checkpoints newer than `since`: their snapshots were taken while the
    /// task was working through the batch, which precedes their barriers.
    pub fn record_rest(&mut self, since: u64, rest: &[StreamRecord<T>]) -> Result<()> {
        match self.last {
            Some((c, index, by)) => {
                record_into(&mut self.recordings, &self.codec, c, index, by, since, rest)
            }
            None => Ok(()),
        }
    }

    /// Starts recording checkpoint `id`'s in-flight data: its snapshot has just been taken.
    pub fn start_recording(&mut self, id: u64) {
        let channels = (0..self.channels.len())
            .map(|c| ChannelRecording {
                done: self.finished[c],
                ..Default::default()
            })
            .collect();
        self.recordings.push(Recording {
            checkpoint_id: id,
            channels,
        });
    }

    /// Whether checkpoint `id`'s in-flight data is being recorded.
    pub fn is_recording(&self, id: u64) -> bool {
        self.recordings.iter().any(|r| r.checkpoint_id == id)
    }

    /// Channel `c` delivered checkpoint `id`'s barrier after `end` data elements: what came
    /// later is not in-flight data of `id`, and what came before is taken from the channel
    /// now, into its checkpoint, to be read later. Nothing happens if `id` is not being
    /// recorded.
    pub fn end_recording(&mut self, id: u64, c: usize, end: u64) -> Result<()> {
        if let Some(r) = self.recordings.iter_mut().find(|r| r.checkpoint_id == id) {
            let ch = &mut r.channels[c];
            ch.end = Some(end);
            ch.batches
                .retain(|(index, _)| index.is_none_or(|i| i < end));
        }
        self.prefetch(c)
    }

    /// Channel `c` delivered checkpoint `id`'s barrier in-band, as the last element read.
    pub fn end_recording_here(&mut self, id: u64, c: usize) -> Result<()> {
        let end = self.channels[c].taken();
        self.end_recording(id, c, end)
    }

    /// Takes, on every channel, what has arrived before a barrier whose checkpoint is being
    /// recorded, into that checkpoint (elements cross a network connection after their
    /// barrier's sequence is known).
    pub fn prefetch_all(&mut self) -> Result<()> {
        for c in 0..self.channels.len() {
            self.prefetch(c)?;
        }
        Ok(())
    }

    fn prefetch(&mut self, c: usize) -> Result<()> {
        let Some(end) = self
            .recordings
            .iter()
            .filter(|r| !r.channels[c].done)
            .filter_map(|r| r.channels[c].end)
            .max()
        else {
            return Ok(());
        };
        let newest = self
            .recordings
            .iter()
            .map(|r| r.checkpoint_id)
            .max()
            .unwrap_or(0);
        let (channel, recordings, codec) =
            (&mut self.channels[c], &mut self.recordings, &self.codec);
        channel.take_up_to(end);
        for (index, e, recorded) in channel.queued.iter_mut() {
            if let StreamElement::Records(batch) = e {
                record_into(recordings, codec, c, Some(*index), 0, *recorded, batch)?;
            }
            *recorded = newest;
        }
        for o in channel.overtaken.iter_mut() {
            record_into(
                recordings,
                codec,
                c,
                None,
                o.checkpoint_id,
                o.recorded,
                &o.records,
            )?;
            o.recorded = newest;
        }
        self.update_done(c);
        Ok(())
    }

    /// Marks channel `c` done in every recording that holds everything before its barrier.
    fn update_done(&mut self, c: usize) {
        let channel = &self.channels[c];
        for r in &mut self.recordings {
            let ch = &mut r.channels[c];
            if let (false, Some(end)) = (ch.done, ch.end) {
                let id = r.checkpoint_id;
                ch.done = channel.taken() >= end
                    && channel.queued.iter().all(|q| q.0 >= end || q.2 >= id)
                    && channel
                        .overtaken
                        .iter()
                        .all(|o| o.checkpoint_id > id || o.recorded >= id);
            }
        }
    }

    /// Whether checkpoint `id`'s in-flight data is complete on every channel.
    pub fn is_recording_complete(&self, id: u64) -> bool {
        self.recordings
            .iter()
            .find(|r| r.checkpoint_id == id)
            .is_none_or(|r| r.channels.iter().all(|c| c.done))
    }

    /// Takes checkpoint `id`'s in-flight data: encoded batches, channel by channel.
    pub fn take_recording(&mut self, id: u64) -> Vec<Vec<u8>> {
        match self.recordings.iter().position(|r| r.checkpoint_id == id) {
            Some(i) => self
                .recordings
                .remove(i)
                .channels
                .into_iter()
                .flat_map(|c| c.batches.into_iter().map(|(_, b)| b))
                .collect(),
            None => Vec::new(),
        }
    }

    /// Stops recording checkpoint `id` and everything older (they were aborted).
    pub fn abort_recordings(&mut self, id: u64) {
        self.recordings.retain(|r| r.checkpoint_id > id);
    }

    /// Decodes a batch of in-flight data restored from a checkpoint.
    pub fn decode(&self, bytes: &[u8]) -> Result<Vec<StreamRecord<T>>> {
        match &self.codec {
            Some(codec) => (codec.decode)(bytes),
            None => Err(RuntimeError::Restore(format!(
                "in-flight data of records of type {} cannot be decoded",
                std::any::type_name::<T>()
            ))),
        }
    }

    /// Number of channels.
    pub fn num_channels(&self) -> usize {
        self.channels.len()
    }

    /// The next element from any readable channel, without waiting.
    #[inline]
    pub fn try_next(&mut self) -> Result<Option<(usize, StreamElement<T>)>> {
        let n = self.channels.len();
        for i in 0..n {
            let c = (self.next + i) % n;
            if self.blocked[c] || self.finished[c] {
                continue;
            }
            match self.channels[c].try_recv() {
                Polled::Element(index, e, recorded) => {
                    self.next = c + 1;
                    self.last = Some((c, Some(index), 0));
                    if !self.recordings.is_empty() {
                        if let StreamElement::Records(batch) = &e {
                            let codec = &self.codec;
                            record_into(
                                &mut self.recordings,
                                codec,
                                c,
                                Some(index),
                                0,
                                recorded,
                                batch,
                            )?;
                        }
                        self.update_done(c);
                    }
                    return Ok(Some((c, e)));
                }
                Polled::Overtaken(id, records, recorded) => {
                    self.next = c + 1;
                    self.last = Some((c, None, id));
                    if !self.recordings.is_empty() {
                        let codec = &self.codec;
                        record_into(&mut self.recordings, codec, c, None, id, recorded, &records)?;
                        self.update_done(c);
                    }
                    return Ok(Some((c, StreamElement::Records(records))));
                }
                Polled::Empty => {}
                Polled::Closed => return Err(RuntimeError::ChannelClosed),
            }
        }
        Ok(None)
    }

    /// Stops reading channel `c` until [`InputGate::unblock_all`].
    pub fn block(&mut self, c: usize) {
        self.blocked[c] = true;
    }

    /// Whether channel `c` is blocked.
    pub fn is_blocked(&self, c: usize) -> bool {
        self.blocked[c]
    }

    /// Reads every channel again.
    pub fn unblock_all(&mut self) {
        self.blocked.iter_mut().for_each(|b| *b = false);
    }

    /// Retires channel `c` after its end-of-partition.
    pub fn finish_channel(&mut self, c: usize) {
        if !self.finished[c] {
            self.finished[c] = true;
            self.num_finished += 1;
        }
        for r in &mut self.recordings {
            r.channels[c].done = true;
        }
    }

    /// Whether channel `c` has delivered end-of-partition.
    pub fn is_channel_finished(&self, c: usize) -> bool {
        self.finished[c]
    }

    /// Whether every channel has delivered end-of-partition.
    pub fn is_finished(&self) -> bool {
        self.num_finished == self.channels.len()
    }

    /// Number of channels that are neither finished nor blocked.
    pub fn num_readable(&self) -> usize {
        (0..self.channels.len())
            .filter(|&c| !self.blocked[c] && !self.finished[c])
            .count()
    }
}

/// Adds a batch from channel `c` to the recordings it belongs to that do not hold it yet
/// (those of checkpoints newer than `recorded`): a data element at `index` belongs where it
/// precedes the channel's barrier (or that barrier has not arrived), records a barrier of
/// checkpoint `overtaken_by` carried belong to that checkpoint and newer ones.
#[cold]
fn record_into<T>(
    recordings: &mut [Recording],
    codec: &Option<RecordCodec<T>>,
    c: usize,
    index: Option<u64>,
    overtaken_by: u64,
    recorded: u64,
    batch: &[StreamRecord<T>],
) -> Result<()> {
    if batch.is_empty() {
        return Ok(());
    }
    let mut encoded: Option<Vec<u8>> = None;
    for r in recordings.iter_mut().filter(|r| r.checkpoint_id > recorded) {
        let ch = &mut r.channels[c];
        let belongs = !ch.done
            && match index {
                Some(i) => ch.end.is_none_or(|end| i < end),
                None => overtaken_by <= r.checkpoint_id,
            };
        if !belongs {
            continue;
        }
        let bytes = match &encoded {
            Some(b) => b.clone(),
            None => {
                let codec = codec.as_ref().ok_or_else(|| {
                    RuntimeError::Internal("unaligned checkpoint without a codec".into())
                })?;
                let b = (codec.encode)(batch)?;
                encoded = Some(b.clone());
                b
            }
        };
        ch.batches.push((index, bytes));
    }
    Ok(())
}

/// Something a task can wait on: the readable channels of a gate.
pub trait Waitable {
    /// Adds a receive operation for each readable channel and each priority lane.
    fn register<'a>(&'a self, select: &mut Select<'a>);
    /// Adds a receive operation for each priority lane only.
    fn register_priority<'a>(&'a self, select: &mut Select<'a>);
}

impl<T> Waitable for InputGate<T> {
    fn register<'a>(&'a self, select: &mut Select<'a>) {
        for (c, ch) in self.channels.iter().enumerate() {
            if !self.finished[c] {
                if !self.blocked[c] {
                    select.recv(&ch.rx);
                }
                select.recv(&ch.priority);
            }
        }
    }

    fn register_priority<'a>(&'a self, select: &mut Select<'a>) {
        for (c, ch) in self.channels.iter().enumerate() {
            if !self.finished[c] {
                select.recv(&ch.priority);
            }
        }
    }
}

/// Blocks until a readable channel of one of `gates` or the mailbox has something, or until
/// `deadline`. Returns without consuming anything; the caller then polls.
pub fn wait_for_input<M>(
    gates: &[&dyn Waitable],
    mailbox: &Receiver<M>,
    deadline: Option<Instant>,
) {
    let mut select = Select::new();
    select.recv(mailbox);
    for g in gates {
        g.register(&mut select);
    }
    match deadline {
        Some(d) => {
            let _ = select.ready_deadline(d);
        }
        None => {
            select.ready();
        }
    }
}

/// How long a task whose outputs are full waits before it looks at them again.
const OUTPUT_POLL: Duration = Duration::from_millis(1);

/// With unaligned checkpoints, a task whose outputs are full reads no input: it waits here for
/// a barrier on a priority lane or a message, or a millisecond, and looks at its outputs again.
pub fn wait_for_output(gates: &[&dyn Waitable], mailbox: &Receiver<impl Sized>) {
    let mut select = Select::new();
    select.recv(mailbox);
    for g in gates {
        g.register_priority(&mut select);
    }
    let _ = select.ready_timeout(OUTPUT_POLL);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exchange::TaskSignals;
    use crate::exchange::local_channel;

    #[test]
    fn round_robin_blocking_and_finish() {
        let signals = TaskSignals::default();
        let (tx0, rx0) = local_channel::<u32>(4);
        let (tx1, rx1) = local_channel::<u32>(4);
        let mut gate = InputGate::new(vec![rx0, rx1]);
        tx0.send(
            StreamElement::Watermark(eddy_core::element::Watermark(1)),
            &signals,
        )
        .unwrap();
        tx0.send(
            StreamElement::Watermark(eddy_core::element::Watermark(2)),
            &signals,
        )
        .unwrap();
        tx1.send(
            StreamElement::Watermark(eddy_core::element::Watermark(3)),
            &signals,
        )
        .unwrap();
        let (c, _) = gate.try_next().unwrap().unwrap();
        assert_eq!(c, 0);
        let (c, _) = gate.try_next().unwrap().unwrap();
        assert_eq!(c, 1, "round robin moves on to the next channel");
        gate.block(0);
        assert!(gate.try_next().unwrap().is_none(), "channel 0 is blocked");
        gate.unblock_all();
        assert!(gate.try_next().unwrap().is_some());
        gate.finish_channel(0);
        gate.finish_channel(1);
        assert!(gate.is_finished());
        drop(tx0);
        drop(tx1);
    }

    fn barrier(id: u64) -> CheckpointBarrier {
        CheckpointBarrier {
            id,
            timestamp: 0,
            kind: eddy_core::element::SnapshotKind::Checkpoint,
            unaligned: true,
            announce: false,
        }
    }

    fn records(values: &[u32]) -> StreamElement<u32> {
        StreamElement::Records(values.iter().map(|v| StreamRecord::new(*v)).collect())
    }

    fn values(e: StreamElement<u32>) -> Vec<u32> {
        match e {
            StreamElement::Records(b) => b.into_iter().map(|r| r.value).collect(),
            other => panic!("expected records, got {other:?}"),
        }
    }

    fn unaligned_gate(rx: Vec<ChannelReceiver<u32>>) -> InputGate<u32> {
        let mut gate = InputGate::new(rx).with_codec(Some(RecordCodec::postcard()));
        gate.enable_unaligned().unwrap();
        gate
    }

    #[test]
    fn an_unaligned_barrier_overtakes_the_queue_and_what_it_overtook_is_recorded() {
        let signals = TaskSignals::default();
        let (tx, rx) = local_channel::<u32>(8);
        let mut gate = unaligned_gate(vec![rx]);
        tx.send(records(&[1, 2]), &signals).unwrap();
        tx.send(records(&[3]), &signals).unwrap();
        tx.send_priority(barrier(1), vec![StreamRecord::new(4)])
            .unwrap();
        tx.send(records(&[5]), &signals).unwrap();

        let (c, b, sequence) = gate.poll_priority().expect("the barrier comes first");
        assert_eq!((c, b.id, sequence), (0, 1, 2));
        gate.start_recording(1);
        gate.end_recording(1, 0, sequence).unwrap();
        assert!(
            gate.is_recording_complete(1),
            "what precedes the barrier is taken into the checkpoint before it is read"
        );
        let mut read = Vec::new();
        while let Some((_, e)) = gate.try_next().unwrap() {
            read.extend(values(e));
        }
        assert_eq!(
            read,
            [1, 2, 3, 4, 5],
            "the overtaken records come in their place"
        );
        let recorded: Vec<u32> = gate
            .take_recording(1)
            .iter()
            .flat_map(|b| gate.decode(b).unwrap())
            .map(|r| r.value)
            .collect();
        assert_eq!(
            recorded,
            [1, 2, 3, 4],
            "what precedes the barrier, not what follows"
        );
    }

    #[test]
    fn records_sent_after_an_unaligned_barrier_wait_for_the_records_it_carried() {
        let signals = TaskSignals::default();
        let (tx, rx) = local_channel::<u32>(8);
        let mut gate = unaligned_gate(vec![rx]);
        tx.send(records(&[1]), &signals).unwrap();
        tx.send_priority(barrier(1), vec![StreamRecord::new(2)])
            .unwrap();
        tx.send(records(&[3]), &signals).unwrap();
        // The task reads before it looks at the priority lane: the order still holds, and the
        // barrier is waiting for it after the first element.
        assert_eq!(values(gate.try_next().unwrap().unwrap().1), [1]);
        let (_, b, sequence) = gate.poll_priority().unwrap();
        assert_eq!((b.id, sequence), (1, 1));
        gate.start_recording(1);
        gate.end_recording(1, 0, sequence).unwrap();
        assert!(gate.is_recording_complete(1));
        assert_eq!(values(gate.try_next().unwrap().unwrap().1), [2]);
        assert_eq!(values(gate.try_next().unwrap().unwrap().1), [3]);
        assert_eq!(gate.take_recording(1).len(), 1, "only the carried record");
    }

    #[test]
    fn a_record_sent_after_a_barrier_waits_until_the_task_has_taken_the_barrier() {
        let signals = TaskSignals::default();
        let (tx, rx) = local_channel::<u32>(8);
        let mut gate = unaligned_gate(vec![rx]);
        tx.send_priority(barrier(2), Vec::new()).unwrap();
        tx.send(records(&[7]), &signals).unwrap();
        // Read before the priority lane was looked at: the record is held back.
        assert!(gate.try_next().unwrap().is_none());
        assert!(gate.has_pending_barriers());
        let (c, b, sequence) = gate.poll_priority().unwrap();
        assert_eq!((c, b.id, sequence), (0, 2, 0));
        gate.start_recording(2);
        gate.end_recording(2, c, sequence).unwrap();
        assert!(gate.is_recording_complete(2));
        assert_eq!(values(gate.try_next().unwrap().unwrap().1), [7]);
        assert!(
            gate.take_recording(2).is_empty(),
            "the record follows the barrier"
        );
    }

    #[test]
    fn recording_on_several_channels_ends_at_each_barrier() {
        let signals = TaskSignals::default();
        let (tx0, rx0) = local_channel::<u32>(8);
        let (tx1, rx1) = local_channel::<u32>(8);
        let mut gate = unaligned_gate(vec![rx0, rx1]);
        tx0.send_priority(barrier(3), Vec::new()).unwrap();
        tx0.send(records(&[10]), &signals).unwrap();
        tx1.send(records(&[20]), &signals).unwrap();
        let (c, b, sequence) = gate.poll_priority().unwrap();
        assert_eq!((c, sequence), (0, 0));
        gate.start_recording(b.id);
        gate.end_recording(b.id, c, sequence).unwrap();
        // Channel 1 has not delivered its barrier: what it delivers is in flight.
        let mut seen = Vec::new();
        while let Some((_, e)) = gate.try_next().unwrap() {
            seen.extend(values(e));
        }
        seen.sort();
        assert_eq!(seen, [10, 20]);
        assert!(!gate.is_recording_complete(3));
        tx1.send(
            StreamElement::Barrier(CheckpointBarrier {
                unaligned: false,
                announce: false,
                ..barrier(3)
            }),
            &signals,
        )
        .unwrap();
        let (c, e) = gate.try_next().unwrap().unwrap();
        assert!(matches!(e, StreamElement::Barrier(_)));
        gate.end_recording_here(3, c).unwrap();
        assert!(gate.is_recording_complete(3));
        let recorded: Vec<u32> = gate
            .take_recording(3)
            .iter()
            .flat_map(|b| gate.decode(b).unwrap())
            .map(|r| r.value)
            .collect();
        assert_eq!(recorded, [20], "channel 0's record followed its barrier");
    }

    #[test]
    fn dropped_sender_without_end_of_partition_is_an_error() {
        let (tx, rx) = local_channel::<u32>(1);
        let mut gate = InputGate::new(vec![rx]);
        drop(tx);
        assert!(matches!(gate.try_next(), Err(RuntimeError::ChannelClosed)));
    }

    #[test]
    fn wait_returns_at_deadline() {
        let (_tx, rx) = local_channel::<u32>(1);
        let gate = InputGate::new(vec![rx]);
        let (_mtx, mrx) = crossbeam_channel::unbounded::<()>();
        let start = Instant::now();
        wait_for_input(
            &[&gate],
            &mrx,
            Some(start + std::time::Duration::from_millis(30)),
        );
        assert!(start.elapsed() >= std::time::Duration::from_millis(25));
    }
}
