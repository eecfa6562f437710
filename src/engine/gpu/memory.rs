//! Activation memory: every node's output gets a storage buffer ("slot"),
//! reused once every reader of its value has run. Aliases (input, flatten,
//! linear activations) share their input's slot.

use crate::graph::Graph;

pub struct MemoryPlan {
    /// Slot of each node's output.
    pub slot_of: Vec<usize>,
    pub slots: usize,
    /// Bytes per image of the largest activation: every slot's size per image.
    pub slot_bytes_per_image: u64,
    /// Values per image of the largest activation.
    pub slot_values_per_image: u64,
}

/// Plans slots for `graph`, where `alias[i]` says node `i` reuses its
/// input's buffer, for activations of `value_bytes(i)` bytes per value (4
/// for f32, 2 for f16, 1 for int8) and a graph input stored as
/// `input_values` values per image.
pub fn plan(graph: &Graph, alias: &[bool], value_bytes: impl Fn(usize) -> u64, input_values: u64) -> MemoryPlan {
    let nodes = &graph.nodes;
    let mut root: Vec<usize> = (0..nodes.len()).collect();
    for i in 0..nodes.len() {
        if alias[i] && !nodes[i].inputs.is_empty() {
            root[i] = root[nodes[i].inputs[0]];
        }
    }
    let mut last = vec![0usize; nodes.len()];
    for (i, n) in nodes.iter().enumerate() {
        last[root[i]] = last[root[i]].max(i);
        for &j in &n.inputs {
            last[root[j]] = last[root[j]].max(i);
        }
    }
    last[root[graph.output]] = usize::MAX;
    let mut slot_of = vec![usize::MAX; nodes.len()];
    let mut free: Vec<usize> = Vec::new();
    let mut count = 0;
    for i in 0..nodes.len() {
        if root[i] != i {
            slot_of[i] = slot_of[root[i]];
            continue;
        }
        slot_of[i] = free.pop().unwrap_or_else(|| {
            count += 1;
            count - 1
        });
        // Release values whose last reader is this node (after allocating
        // its output, so a node never writes a buffer it reads).
        let mut released: Vec<usize> = nodes[i].inputs.iter().map(|&j| root[j]).filter(|&r| last[r] == i).collect();
        if last[i] == i {
            released.push(i); // computed but never read
        }
        released.sort_unstable();
        released.dedup();
        free.extend(released.into_iter().map(|r| slot_of[r]));
    }
    let slot_values_per_image = nodes.iter().map(|n| n.size() as u64).max().unwrap_or(1).max(input_values).max(1);
    let bytes = (0..nodes.len()).map(|i| nodes[i].size() as u64 * value_bytes(i));
    let input_bytes = input_values * value_bytes(graph.input);
    // Whole 4-byte words: bindings and copies come in multiples of 4.
    let slot_bytes_per_image = bytes.max().unwrap_or(1).max(input_bytes).max(1).next_multiple_of(4);
    MemoryPlan { slot_of, slots: count, slot_bytes_per_image, slot_values_per_image }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::passes::tests::tiny_resnet;

    #[test]
    fn no_node_writes_a_slot_it_reads_and_live_values_never_share() {
        for g in [tiny_resnet(), crate::passes::optimize(&tiny_resnet())] {
            let alias: Vec<bool> = g.nodes.iter().map(|n| crate::engine::gpu::lower::is_alias(&n.op)).collect();
            let p = plan(&g, &alias, |_| 4, g.nodes[g.input].size() as u64);
            let last = g.last_use();
            for (i, n) in g.nodes.iter().enumerate() {
                if alias[i] {
                    continue;
                }
                for &j in &n.inputs {
                    assert_ne!(p.slot_of[i], p.slot_of[j], "{} writes what it reads", n.name);
                }
                // Every value still needed after i lives in another slot.
                for j in 0..i {
                    if !alias[j] && last[j] > i && g.nodes[i].inputs.iter().all(|&k| k != j) {
                        assert_ne!(p.slot_of[i], p.slot_of[j], "{} overwrites {}", n.name, g.nodes[j].name);
                    }
                }
            }
        }
    }
}
