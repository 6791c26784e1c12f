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

    /// For each upstream subtask of edge `edge`, the downstream subtasks it sends to: the
    /// pointwise ones for forward and rescale edges, all of them otherwise.
    pub fn edge_targets(&self, edge: usize) -> Vec<Vec<u32>> {
        let e = &self.edges[edge];
        let upstream = self.vertices[e.source_vertex as usize].parallelism;
        let downstream = self.vertices[e.target_vertex as usize].parallelism;
        if e.partitioner.is_pointwise() {
            pointwise_targets(upstream, downstream)
        } else {
            (0..upstream).map(|_| (0..downstream).collect()).collect()
        }
    }

    /// The job's pipelined regions (Flink's `SchedulingPipelinedRegion`): the sets of subtasks
    /// that exchange data with one another, directly or through others. Every exchange of a
    /// streaming job is pipelined, so a region is a connected component of the subtask graph;
    /// a failure needs to restart only its own region. Each region lists its subtasks as
    /// `(vertex, subtask)`, sorted; regions are ordered by their first subtask.
    pub fn pipelined_regions(&self) -> Vec<Vec<(u32, u32)>> {
        let first: Vec<usize> = self
            .vertices
            .iter()
            .scan(0usize, |next, v| {
                let at = *next;
                *next += v.parallelism as usize;
                Some(at)
            })
            .collect();
        let mut parent: Vec<usize> = (0..self.num_tasks() as usize).collect();
        fn root(parent: &mut [usize], mut i: usize) -> usize {
            while parent[i] != i {
                parent[i] = parent[parent[i]];
                i = parent[i];
            }
            i
        }
        for (ei, e) in self.edges.iter().enumerate() {
            for (s, targets) in self.edge_targets(ei).into_iter().enumerate() {
                let a = first[e.source_vertex as usize] + s;
                for t in targets {
                    let b = first[e.target_vertex as usize] + t as usize;
                    let (ra, rb) = (root(&mut parent, a), root(&mut parent, b));
                    parent[ra.max(rb)] = ra.min(rb);
                }
            }
        }
        let mut regions: std::collections::BTreeMap<usize, Vec<(u32, u32)>> =
            std::collections::BTreeMap::new();
        for (v, vertex) in self.vertices.iter().enumerate() {
            for s in 0..vertex.parallelism {
                let r = root(&mut parent, first[v] + s as usize);
                regions.entry(r).or_default().push((v as u32, s));
            }
        }
        regions.into_values().collect()
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

    /// A graph of vertices with these parallelisms and edges `(from, to, partitioner)`.
    fn graph(parallelism: &[u32], edges: &[(u32, u32, PartitionerKind)]) -> JobGraph {
        JobGraph {
            job_id: JobId(1),
            name: "regions".into(),
            mode: ExecutionMode::Streaming,
            vertices: parallelism
                .iter()
                .enumerate()
                .map(|(i, &p)| JobVertex {
                    id: JobVertexId(i as u128),
                    name: format!("v{i}"),
                    parallelism: p,
                    max_parallelism: 128,
                    slot_sharing_group: "default".into(),
                    operators: Vec::new(),
                    is_source: false,
                    num_inputs: 1,
                })
                .collect(),
            edges: edges
                .iter()
                .enumerate()
                .map(|(i, &(from, to, partitioner))| JobEdge {
                    stream_edge_id: i as u32,
                    source_vertex: from,
                    source_operator: 0,
                    target_vertex: to,
                    target_input: 0,
                    partitioner,
                    side_output: None,
                })
                .collect(),
            config: Configuration::default(),
        }
    }

    #[test]
    fn an_all_to_all_edge_makes_one_region() {
        let g = graph(&[2, 3], &[(0, 1, PartitionerKind::KeyGroup)]);
        assert_eq!(
            g.pipelined_regions(),
            vec![vec![(0, 0), (0, 1), (1, 0), (1, 1), (1, 2)]]
        );
    }

    #[test]
    fn forward_edges_make_a_region_per_subtask_and_independent_pipelines_stay_apart() {
        use PartitionerKind::*;
        // Two pipelines: 0 -> 1 forward at parallelism 2; 2 -> 3 by key.
        let g = graph(&[2, 2, 2, 1], &[(0, 1, Forward), (2, 3, KeyGroup)]);
        assert_eq!(
            g.pipelined_regions(),
            vec![
                vec![(0, 0), (1, 0)],
                vec![(0, 1), (1, 1)],
                vec![(2, 0), (2, 1), (3, 0)],
            ]
        );
        // Rescale from 4 to 2: subtasks 0 and 1 feed 0, 2 and 3 feed 1.
        let g = graph(&[4, 2], &[(0, 1, Rescale)]);
        assert_eq!(
            g.pipelined_regions(),
            vec![vec![(0, 0), (0, 1), (1, 0)], vec![(0, 2), (0, 3), (1, 1)]]
        );
        // An unconnected vertex is a region per subtask.
        assert_eq!(graph(&[2], &[]).pipelined_regions().len(), 2);
    }

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
