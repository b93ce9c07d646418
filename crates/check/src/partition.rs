//! P-compositionality: linearizability is local to independent objects, so
//! the history is split into groups of keys that no operation spans, and
//! each group is checked on its own.
//!
//! Keys touched by one operation (a multi-key txn) are merged with a
//! union-find; operations touching no key at all form their own group.

use std::collections::HashMap;

use crate::history::Operation;

/// A set of keys no operation outside it touches, with its operations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Partition {
    /// The keys, sorted. Empty for the group of key-less operations.
    pub keys: Vec<String>,
    /// Indices into the history, in history order.
    pub ops: Vec<usize>,
}

/// Splits `ops` into independent partitions, ordered by their first key.
pub(crate) fn partition(ops: &[Operation]) -> Vec<Partition> {
    let mut ids: HashMap<&str, usize> = HashMap::new();
    let mut names: Vec<&str> = Vec::new();
    let mut parent: Vec<usize> = Vec::new();
    let mut op_keys: Vec<Vec<usize>> = Vec::with_capacity(ops.len());

    for op in ops {
        let keys: Vec<usize> = op
            .command
            .keys()
            .into_iter()
            .map(|k| {
                *ids.entry(k).or_insert_with(|| {
                    names.push(k);
                    parent.push(parent.len());
                    parent.len() - 1
                })
            })
            .collect();
        for pair in keys.windows(2) {
            union(&mut parent, pair[0], pair[1]);
        }
        op_keys.push(keys);
    }

    let mut group_of_root: HashMap<usize, usize> = HashMap::new();
    let mut groups: Vec<Partition> = Vec::new();
    let mut keyless = Partition {
        keys: Vec::new(),
        ops: Vec::new(),
    };
    for (key, name) in names.iter().enumerate() {
        let root = find(&mut parent, key);
        let group = *group_of_root.entry(root).or_insert_with(|| {
            groups.push(Partition {
                keys: Vec::new(),
                ops: Vec::new(),
            });
            groups.len() - 1
        });
        groups[group].keys.push(name.to_string());
    }
    for (index, keys) in op_keys.iter().enumerate() {
        match keys.first() {
            Some(&key) => {
                let root = find(&mut parent, key);
                groups[group_of_root[&root]].ops.push(index);
            }
            None => keyless.ops.push(index),
        }
    }
    for group in &mut groups {
        group.keys.sort();
    }
    groups.sort_by(|a, b| a.keys.cmp(&b.keys));
    if !keyless.ops.is_empty() {
        groups.push(keyless);
    }
    groups
}

fn find(parent: &mut [usize], mut x: usize) -> usize {
    while parent[x] != x {
        parent[x] = parent[parent[x]];
        x = parent[x];
    }
    x
}

fn union(parent: &mut [usize], a: usize, b: usize) {
    let (ra, rb) = (find(parent, a), find(parent, b));
    if ra != rb {
        parent[ra.max(rb)] = ra.min(rb);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::History;

    #[test]
    fn multi_key_txn_merges_partitions() {
        let h = History::parse_jsonl(
            r#"{"client":1,"op":"put","key":"a","value":"1","invoke":0,"complete":1,"result":{"ok":true}}
{"client":1,"op":"put","key":"b","value":"1","invoke":2,"complete":3,"result":{"ok":true}}
{"client":1,"op":"get","key":"c","invoke":4,"complete":5,"result":{"value":null}}
{"client":2,"op":"txn","compares":[{"key":"b","cmp":"equal","value":"1"}],"success":[{"op":"put","key":"d","value":"2"}],"invoke":6,"complete":7,"result":{"succeeded":true,"values":[]}}
{"client":2,"op":"txn","invoke":8,"complete":9,"result":{"succeeded":true}}
{"client":3,"op":"txn","compares":[{"key":"d","cmp":"present"}],"failure":[{"op":"get","key":"a"}],"invoke":10}
"#,
        )
        .unwrap();
        let parts = partition(h.ops());
        let summary: Vec<(Vec<&str>, Vec<usize>)> = parts
            .iter()
            .map(|p| (p.keys.iter().map(String::as_str).collect(), p.ops.clone()))
            .collect();
        assert_eq!(
            summary,
            vec![
                (vec!["a", "b", "d"], vec![0, 1, 3, 5]),
                (vec!["c"], vec![2]),
                (vec![], vec![4]),
            ]
        );
    }
}
