//! The StreamGraph (what the program wrote) and its translation into a JobGraph.
//!
//! The translation resolves parallelism and slot sharing groups, picks the default partitioner
//! of each edge (forward when both sides have the same parallelism, rebalance otherwise), chains
//! operators with Flink's rule, and assigns every operator its stable id.
//!
//! # Chaining
//!
//! An edge is chained when: chaining is enabled for the job; the downstream operator has exactly
//! this one input edge; both operators have the same parallelism and slot sharing group; the
//! edge is forward; the downstream operator neither disables chaining nor starts a new chain;
//! and the upstream operator does not disable chaining.
//!
//! # Operator ids
//!
//! `uid("x")` gives the id XXH3-128("x"). Without a uid, the id is XXH3-128 over the operator's
//! position in creation order, the ids of its inputs, and its number of chainable outputs —
//! deterministic for the same program, never derived from addresses or hash-map iteration.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use eddy_core::config::{Configuration, RuntimeMode, options};
use eddy_core::graph::{
    ChainedOperator, ExecutionMode, JobEdge, JobGraph, JobVertex, PartitionerKind,
};
use eddy_core::ids::{JobId, JobVertexId, OperatorId};
use eddy_core::keys::default_max_parallelism;
use serde::Serialize;

use crate::error::{Result, RuntimeError};
use crate::registry::{EdgeCode, OperatorFactory, OperatorKind, UserCodeRegistry};

/// How an operator takes part in chaining.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ChainingStrategy {
    /// Chain with the input and with the output when the rule allows.
    #[default]
    Always,
    /// Never chain (`disable_chaining()`).
    Never,
    /// Start a new chain here, but allow the outputs to chain to this (`start_new_chain()`).
    Head,
}

/// One operator of the program.
pub struct StreamNode {
    /// Creation order; the node's position in the graph.
    pub id: u32,
    /// Display name.
    pub name: String,
    /// The user's uid, if set.
    pub uid: Option<String>,
    /// Parallelism set on the operator, if any.
    pub parallelism: Option<u32>,
    /// Max parallelism (key groups) set on the operator, if any.
    pub max_parallelism: Option<u32>,
    /// Slot sharing group set on the operator, if any.
    pub slot_sharing_group: Option<String>,
    /// Chaining behaviour.
    pub chaining: ChainingStrategy,
    /// Creates the operator.
    pub factory: Arc<dyn OperatorFactory>,
}

/// One edge of the program.
pub struct StreamEdge {
    /// Creation order.
    pub id: u32,
    /// Upstream node.
    pub source: u32,
    /// Downstream node.
    pub target: u32,
    /// Which input of the target (0, or 1 for the second input of a two-input operator).
    pub target_input: u8,
    /// The partitioner, or `None` for the default (forward or rebalance).
    pub partitioner: Option<PartitionerKind>,
    /// The side output this edge reads, if any.
    pub side_output: Option<String>,
    /// Element type and partitioner code.
    pub code: EdgeCode,
}

/// The program's dataflow, as written.
#[derive(Default)]
pub struct StreamGraph {
    /// Operators, in creation order.
    pub nodes: Vec<StreamNode>,
    /// Edges, in creation order.
    pub edges: Vec<StreamEdge>,
}

impl StreamGraph {
    /// Adds an operator and returns its id.
    pub fn add_node(&mut self, name: impl Into<String>, factory: Arc<dyn OperatorFactory>) -> u32 {
        let id = self.nodes.len() as u32;
        self.nodes.push(StreamNode {
            id,
            name: name.into(),
            uid: None,
            parallelism: None,
            max_parallelism: None,
            slot_sharing_group: None,
            chaining: ChainingStrategy::Always,
            factory,
        });
        id
    }

    /// Adds an edge.
    pub fn add_edge(
        &mut self,
        source: u32,
        target: u32,
        target_input: u8,
        partitioner: Option<PartitionerKind>,
        side_output: Option<String>,
        code: EdgeCode,
    ) {
        let id = self.edges.len() as u32;
        self.edges.push(StreamEdge {
            id,
            source,
            target,
            target_input,
            partitioner,
            side_output,
            code,
        });
    }

    /// The node with id `id`.
    pub fn node_mut(&mut self, id: u32) -> Option<&mut StreamNode> {
        self.nodes.get_mut(id as usize)
    }

    /// Whether every source is bounded.
    pub fn all_sources_bounded(&self) -> bool {
        self.nodes.iter().all(|n| match n.factory.kind() {
            OperatorKind::Source { bounded } => bounded,
            _ => true,
        })
    }
}

#[derive(Clone)]
struct Resolved {
    parallelism: u32,
    max_parallelism: u32,
    group: String,
}

/// Translates a stream graph into a JobGraph and the registry of its user code.
pub fn build_job_graph(
    graph: &StreamGraph,
    job_name: &str,
    config: &Configuration,
) -> Result<(JobGraph, UserCodeRegistry)> {
    if graph.nodes.is_empty() {
        return Err(RuntimeError::InvalidJob(
            "the program defines no operators; add a source and a sink before execute()".into(),
        ));
    }
    let default_parallelism = config.get(&options::PARALLELISM_DEFAULT)?;
    if default_parallelism == 0 {
        return Err(RuntimeError::InvalidJob(
            "'parallelism.default' must be at least 1".into(),
        ));
    }
    let job_max_parallelism = config.get(&options::MAX_PARALLELISM)?;
    let chaining_enabled = config.get(&options::OPERATOR_CHAINING)?;
    let mode = match config.get(&options::RUNTIME_MODE)? {
        RuntimeMode::Streaming => ExecutionMode::Streaming,
        RuntimeMode::Batch => {
            if !graph.all_sources_bounded() {
                return Err(RuntimeError::InvalidJob(
                    "execution.runtime-mode is BATCH but the job has an unbounded source; \
                     use STREAMING or AUTOMATIC"
                        .into(),
                ));
            }
            ExecutionMode::Batch
        }
        RuntimeMode::Automatic => {
            if graph.all_sources_bounded() {
                ExecutionMode::Batch
            } else {
                ExecutionMode::Streaming
            }
        }
    };

    let n = graph.nodes.len();
    let mut in_edges: Vec<Vec<usize>> = vec![Vec::new(); n];
    let mut out_edges: Vec<Vec<usize>> = vec![Vec::new(); n];
    for (i, e) in graph.edges.iter().enumerate() {
        if e.source >= e.target {
            return Err(RuntimeError::Internal(format!(
                "edge {} goes backwards ({} -> {})",
                e.id, e.source, e.target
            )));
        }
        out_edges[e.source as usize].push(i);
        in_edges[e.target as usize].push(i);
    }

    // Parallelism, max parallelism and slot sharing groups, in creation (topological) order.
    let mut resolved: Vec<Resolved> = Vec::with_capacity(n);
    for node in &graph.nodes {
        let parallelism = node.parallelism.unwrap_or(default_parallelism);
        if parallelism == 0 {
            return Err(RuntimeError::InvalidJob(format!(
                "operator '{}' has parallelism 0",
                node.name
            )));
        }
        let max_parallelism = match node.max_parallelism {
            Some(m) => m,
            None if job_max_parallelism > 0 => job_max_parallelism as u32,
            None => default_max_parallelism(parallelism),
        };
        if max_parallelism < parallelism
            || max_parallelism > eddy_core::keys::UPPER_BOUND_MAX_PARALLELISM
        {
            return Err(RuntimeError::InvalidJob(format!(
                "operator '{}': max parallelism {max_parallelism} must be between its parallelism \
                 {parallelism} and {}",
                node.name,
                eddy_core::keys::UPPER_BOUND_MAX_PARALLELISM
            )));
        }
        let group = match &node.slot_sharing_group {
            Some(g) => g.clone(),
            None => {
                let groups: HashSet<&str> = in_edges[node.id as usize]
                    .iter()
                    .map(|&e| resolved[graph.edges[e].source as usize].group.as_str())
                    .collect();
                if groups.len() == 1 {
                    groups.into_iter().next().unwrap_or("default").to_string()
                } else {
                    "default".to_string()
                }
            }
        };
        resolved.push(Resolved {
            parallelism,
            max_parallelism,
            group,
        });
    }

    // Partitioners.
    let mut partitioners = Vec::with_capacity(graph.edges.len());
    for e in &graph.edges {
        let (sp, tp) = (
            resolved[e.source as usize].parallelism,
            resolved[e.target as usize].parallelism,
        );
        let p = match e.partitioner {
            Some(PartitionerKind::Forward) if sp != tp => {
                return Err(RuntimeError::InvalidJob(format!(
                    "forward() between '{}' (parallelism {sp}) and '{}' (parallelism {tp}) \
                     needs equal parallelism; use rebalance() or rescale()",
                    graph.nodes[e.source as usize].name, graph.nodes[e.target as usize].name
                )));
            }
            Some(p) => p,
            None if sp == tp => PartitionerKind::Forward,
            None => PartitionerKind::Rebalance,
        };
        partitioners.push(p);
    }

    let chainable = |ei: usize| -> bool {
        let e = &graph.edges[ei];
        let (s, t) = (e.source as usize, e.target as usize);
        chaining_enabled
            && in_edges[t].len() == 1
            && partitioners[ei] == PartitionerKind::Forward
            && resolved[s].parallelism == resolved[t].parallelism
            && resolved[s].group == resolved[t].group
            && graph.nodes[t].chaining == ChainingStrategy::Always
            && graph.nodes[s].chaining != ChainingStrategy::Never
            && !matches!(graph.nodes[t].factory.kind(), OperatorKind::Source { .. })
    };

    // Stable operator ids.
    let mut uids = HashSet::new();
    let mut op_ids: Vec<OperatorId> = Vec::with_capacity(n);
    for node in &graph.nodes {
        let id = match &node.uid {
            Some(uid) => {
                if !uids.insert(uid.clone()) {
                    return Err(RuntimeError::InvalidJob(format!(
                        "the uid '{uid}' is used by more than one operator"
                    )));
                }
                OperatorId::from_uid(uid)
            }
            None => {
                #[derive(Serialize)]
                struct Shape {
                    position: u32,
                    inputs: Vec<u128>,
                    chainable_outputs: u32,
                }
                let shape = Shape {
                    position: node.id,
                    inputs: in_edges[node.id as usize]
                        .iter()
                        .map(|&e| op_ids[graph.edges[e].source as usize].0)
                        .collect(),
                    chainable_outputs: out_edges[node.id as usize]
                        .iter()
                        .filter(|&&e| chainable(e))
                        .count() as u32,
                };
                let bytes = postcard::to_stdvec(&shape)
                    .map_err(|e| RuntimeError::Internal(e.to_string()))?;
                OperatorId::from_hash(&bytes)
            }
        };
        op_ids.push(id);
    }

    // Chains: every node without a chained input heads a vertex; collect its chain depth-first
    // so that every operator's chained children come after it.
    let mut vertex_of = vec![u32::MAX; n];
    let mut index_in_vertex = vec![0u32; n];
    let mut vertices: Vec<JobVertex> = Vec::new();
    let mut vertex_nodes: Vec<Vec<u32>> = Vec::new();
    for head in 0..n {
        if in_edges[head].len() == 1 && chainable(in_edges[head][0]) {
            continue;
        }
        let v = vertices.len() as u32;
        let mut members = Vec::new();
        let mut stack = vec![head];
        while let Some(node) = stack.pop() {
            vertex_of[node] = v;
            index_in_vertex[node] = members.len() as u32;
            members.push(node as u32);
            for &e in out_edges[node].iter().rev() {
                if chainable(e) {
                    stack.push(graph.edges[e].target as usize);
                }
            }
        }
        let r = &resolved[head];
        let name = members
            .iter()
            .map(|&m| graph.nodes[m as usize].name.as_str())
            .collect::<Vec<_>>()
            .join(" -> ");
        let kind = graph.nodes[head].factory.kind();
        vertices.push(JobVertex {
            id: JobVertexId(op_ids[head].0),
            name,
            parallelism: r.parallelism,
            max_parallelism: r.max_parallelism,
            slot_sharing_group: r.group.clone(),
            operators: Vec::new(),
            is_source: matches!(kind, OperatorKind::Source { .. }),
            num_inputs: match kind {
                OperatorKind::Source { .. } => 0,
                OperatorKind::OneInput => 1,
                OperatorKind::TwoInput => 2,
            },
        });
        vertex_nodes.push(members);
    }

    // Network edges.
    let mut job_edges = Vec::new();
    let mut network_outputs: BTreeMap<usize, Vec<u32>> = BTreeMap::new();
    for (ei, e) in graph.edges.iter().enumerate() {
        if chainable(ei) {
            continue;
        }
        network_outputs
            .entry(e.source as usize)
            .or_default()
            .push(job_edges.len() as u32);
        job_edges.push(JobEdge {
            stream_edge_id: e.id,
            source_vertex: vertex_of[e.source as usize],
            source_operator: index_in_vertex[e.source as usize],
            target_vertex: vertex_of[e.target as usize],
            target_input: e.target_input,
            partitioner: partitioners[ei],
            side_output: e.side_output.clone(),
        });
    }

    for (v, members) in vertex_nodes.iter().enumerate() {
        vertices[v].operators = members
            .iter()
            .map(|&m| {
                let node = &graph.nodes[m as usize];
                ChainedOperator {
                    operator_id: op_ids[m as usize],
                    uid: node.uid.clone(),
                    name: node.name.clone(),
                    chained_outputs: out_edges[m as usize]
                        .iter()
                        .filter(|&&e| chainable(e))
                        .map(|&e| eddy_core::graph::ChainedEdge {
                            target: index_in_vertex[graph.edges[e].target as usize],
                            stream_edge_id: graph.edges[e].id,
                            side_output: graph.edges[e].side_output.clone(),
                        })
                        .collect(),
                    network_outputs: network_outputs.remove(&(m as usize)).unwrap_or_default(),
                }
            })
            .collect();
    }

    let mut registry = UserCodeRegistry::default();
    for (node, id) in graph.nodes.iter().zip(&op_ids) {
        registry.register_operator(*id, node.factory.clone());
    }
    for e in &graph.edges {
        registry.register_edge(e.id, e.code.clone());
    }

    let job = JobGraph {
        job_id: JobId::random(),
        name: job_name.to_string(),
        mode,
        vertices,
        edges: job_edges,
        config: config.clone(),
    };
    Ok((job, registry))
}
