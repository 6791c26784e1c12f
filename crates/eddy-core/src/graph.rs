//! The JobGraph: what the client hands to the runtime.
//!
//! A JobGraph is plain, serializable data: vertices (chains of operators that run as one task),
//! and edges (with a partitioner) between them. It holds no user code. User functions stay in
//! the program binary, in a registry keyed by [`OperatorId`]; a worker that runs the same binary
//! rebuilds the same graph and finds the same functions under the same ids, which it verifies
//! with [`JobGraph::fingerprint`].

use serde::{Deserialize, Serialize};

use crate::config::Configuration;
use crate::ids::{JobId, JobVertexId, OperatorId};

/// How records are routed from the subtasks of one vertex to the subtasks of the next.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum PartitionerKind {
    /// Subtask `i` sends to subtask `i`; both sides have the same parallelism.
    Forward,
    /// Round-robin over all downstream subtasks.
    Rebalance,
    /// Round-robin over a local subset of downstream subtasks (pointwise).
    Rescale,
    /// Uniformly random downstream subtask.
    Shuffle,
    /// Every record to every downstream subtask.
    Broadcast,
    /// Every record to downstream subtask 0.
    Global,
    /// By key group of the record's key (`key_by`).
    KeyGroup,
}

impl PartitionerKind {
    /// Whether each upstream subtask connects to only some downstream subtasks (Flink's
    /// POINTWISE distribution) rather than to all of them.
    pub fn is_pointwise(self) -> bool {
        matches!(self, PartitionerKind::Forward | PartitionerKind::Rescale)
    }

    /// The name Flink shows for the ship strategy (`FORWARD`, `HASH`, ...).
    pub fn ship_strategy_name(self) -> &'static str {
        match self {
            PartitionerKind::Forward => "FORWARD",
            PartitionerKind::Rebalance => "REBALANCE",
            PartitionerKind::Rescale => "RESCALE",
            PartitionerKind::Shuffle => "SHUFFLE",
            PartitionerKind::Broadcast => "BROADCAST",
            PartitionerKind::Global => "GLOBAL",
            PartitionerKind::KeyGroup => "HASH",
        }
    }
}

/// The semantics a job runs with, after AUTOMATIC has been resolved.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ExecutionMode {
    /// Incremental results, watermarks, checkpoints.
    Streaming,
    /// Final results only; all sources bounded.
    Batch,
}

/// A chained (in-task) edge from one operator of a vertex to another.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ChainedEdge {
    /// Index (into the vertex's `operators`) of the downstream operator.
    pub target: u32,
    /// Edge id in the stream graph.
    pub stream_edge_id: u32,
    /// The side output this edge carries, if it is not the main output.
    pub side_output: Option<String>,
}

/// One operator inside a vertex's chain.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ChainedOperator {
    /// Stable id: from `uid`, or derived from the topology.
    pub operator_id: OperatorId,
    /// The user's uid, if set.
    pub uid: Option<String>,
    /// Display name (`Map`, `Source: Collection Source`, ...).
    pub name: String,
    /// The chained operators this one feeds.
    pub chained_outputs: Vec<ChainedEdge>,
    /// Indices (into the graph's `edges`) of the network edges this one feeds.
    pub network_outputs: Vec<u32>,
}

/// A vertex: a chain of operators that runs as one task per parallel subtask.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JobVertex {
    /// The vertex id: its head operator's id.
    pub id: JobVertexId,
    /// `Head -> Next -> ...`, as Flink names chained tasks.
    pub name: String,
    /// Number of parallel subtasks.
    pub parallelism: u32,
    /// Number of key groups.
    pub max_parallelism: u32,
    /// Slot sharing group.
    pub slot_sharing_group: String,
    /// The chain; `operators[0]` is the head that reads the vertex's inputs.
    pub operators: Vec<ChainedOperator>,
    /// Whether the head is a source.
    pub is_source: bool,
    /// Number of logical inputs of the head (0 for sources, 1 or 2).
    pub num_inputs: u8,
}

/// A network edge between two vertices.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JobEdge {
    /// Edge id in the stream graph, the key for the edge's partitioner in the registry.
    pub stream_edge_id: u32,
    /// Index of the producing vertex.
    pub source_vertex: u32,
    /// Index, in the producing vertex's chain, of the operator that writes this edge.
    pub source_operator: u32,
    /// Index of the consuming vertex.
    pub target_vertex: u32,
    /// Which input of the consuming head this edge feeds (0, or 1 for a two-input operator's
    /// second input).
    pub target_input: u8,
    /// How records are routed.
    pub partitioner: PartitionerKind,
    /// The side output tag this edge carries, if it is not the main output.
    pub side_output: Option<String>,
}

/// The whole job, ready to schedule.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JobGraph {
    /// This submission's id.
    pub job_id: JobId,
    /// The job's name.
    pub name: String,
    /// Streaming or batch.
    pub mode: ExecutionMode,
    /// Vertices in topological order: every edge goes from a lower to a higher index.
    pub vertices: Vec<JobVertex>,
    /// Network edges.
    pub edges: Vec<JobEdge>,
    /// The job's configuration.
    pub config: Configuration,
}

impl JobGraph {
    /// A hash of the graph's structure (everything but the job id and the configuration), used
    /// to check that a worker rebuilt exactly the graph the client submitted.
    pub fn fingerprint(&self) -> u64 {
        #[derive(Serialize)]
        struct Shape<'a> {
            name: &'a str,
            mode: ExecutionMode,
            vertices: &'a [JobVertex],
            edges: &'a [JobEdge],
        }
        let bytes = postcard::to_stdvec(&Shape {
            name: &self.name,
            mode: self.mode,
            vertices: &self.vertices,
            edges: &self.edges,
        })
        .unwrap_or_default();
        xxhash_rust::xxh3::xxh3_64(&bytes)
    }

    /// The edges feeding vertex `v`, in edge order.
    pub fn inputs_of(&self, v: u32) -> impl Iterator<Item = (u32, &JobEdge)> {
        self.edges
            .iter()
            .enumerate()
            .filter(move |(_, e)| e.target_vertex == v)
            .map(|(i, e)| (i as u32, e))
    }

    /// The total number of subtasks (tasks) in the job.
    pub fn num_tasks(&self) -> u32 {
        self.vertices.iter().map(|v| v.parallelism).sum()
    }

    /// The highest parallelism of any vertex: the slots the job needs with slot sharing.
    pub fn max_vertex_parallelism(&self) -> u32 {
        self.vertices
            .iter()
            .map(|v| v.parallelism)
            .max()
            .unwrap_or(0)
    }
}

/// Which upstream subtasks feed which downstream subtasks, for pointwise edges (Flink's
/// `POINTWISE` distribution pattern).
///
/// Returns, for each upstream subtask, the downstream subtasks it sends to.
pub fn pointwise_targets(upstream: u32, downstream: u32) -> Vec<Vec<u32>> {
    (0..upstream)
        .map(|i| {
            if upstream == downstream {
                vec![i]
            } else if upstream > downstream {
                // Several upstream subtasks share one downstream subtask.
                vec![(u64::from(i) * u64::from(downstream) / u64::from(upstream)) as u32]
            } else {
                // Each upstream subtask feeds a contiguous range of downstream subtasks.
                let start = (u64::from(i) * u64::from(downstream)).div_ceil(u64::from(upstream));
                let end = (u64::from(i + 1) * u64::from(downstream)).div_ceil(u64::from(upstream));
                (start as u32..end as u32).collect()
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pointwise_covers_every_downstream_once() {
        for up in 1..9u32 {
            for down in 1..9u32 {
                let t = pointwise_targets(up, down);
                let mut seen = vec![0; down as usize];
                for targets in &t {
                    assert!(!targets.is_empty(), "up={up} down={down}");
                    for &d in targets {
                        seen[d as usize] += 1;
                    }
                }
                assert!(seen.iter().all(|&c| c >= 1), "up={up} down={down} {t:?}");
                if up <= down {
                    assert!(seen.iter().all(|&c| c == 1), "up={up} down={down} {t:?}");
                }
            }
        }
    }
}
