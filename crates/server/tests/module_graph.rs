//! The server's source files import each other without circles: a file
//! that names `crate::x` or `super::x` depends on the file of module `x`.
//! Unit tests (`mod tests { ... }` at the end of a file) and comments are
//! left out; a child module's file may use its parent (`super::`), which
//! is how Rust nests modules, but not the other way round in a circle.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

type Graph = BTreeMap<String, BTreeSet<String>>;

/// Module path (`driver/apply`, `""` for the crate root) of each source
/// file under `src`, binaries excepted.
fn modules(src: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![src.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                if p.file_name().is_some_and(|n| n != "bin") {
                    stack.push(p);
                }
                continue;
            }
            if p.extension().is_none_or(|x| x != "rs") {
                continue;
            }
            let rel = p.strip_prefix(src).unwrap().with_extension("");
            let mut m = rel.to_string_lossy().replace('\\', "/");
            if m == "lib" {
                m.clear();
            } else if let Some(parent) = m.strip_suffix("/mod") {
                m = parent.to_string();
            }
            out.insert(m, std::fs::read_to_string(&p).unwrap());
        }
    }
    out
}

/// The source without comments and without a trailing unit-test module.
fn code(text: &str) -> String {
    let text = match text.find("#[cfg(test)]\nmod tests") {
        Some(i) => &text[..i],
        None => text,
    };
    text.lines()
        .map(|l| l.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every `prefix` path in `code`, as its `::`-separated segments.
fn paths(code: &str, prefix: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let mut rest = code;
    while let Some(i) = rest.find(prefix) {
        let before = rest[..i].chars().last();
        rest = &rest[i + prefix.len()..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
            continue;
        }
        let end = rest
            .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
            .unwrap_or(rest.len());
        let segs: Vec<String> = rest[..end]
            .split("::")
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect();
        out.push(segs);
    }
    out
}

/// The deepest known module a path names.
fn resolve(known: &BTreeMap<String, String>, segs: &[String]) -> String {
    (0..=segs.len())
        .rev()
        .map(|k| segs[..k].join("/"))
        .find(|m| known.contains_key(m))
        .unwrap_or_default()
}

fn graph(files: &BTreeMap<String, String>) -> Graph {
    let mut g = Graph::new();
    for (m, text) in files {
        let code = code(text);
        let mut deps = BTreeSet::new();
        for segs in paths(&code, "crate::") {
            deps.insert(resolve(files, &segs));
        }
        for segs in paths(&code, "super::") {
            let ups = 1 + segs.iter().take_while(|s| *s == "super").count();
            let mut base: Vec<String> = m.split('/').map(str::to_string).collect();
            base.truncate(base.len().saturating_sub(ups));
            base.extend(segs.into_iter().filter(|s| s != "super"));
            deps.insert(resolve(files, &base));
        }
        deps.remove(m);
        g.insert(m.clone(), deps);
    }
    g
}

/// The strongly connected components with more than one module.
fn cycles(g: &Graph) -> Vec<Vec<String>> {
    // Kosaraju: finish order on the graph, then components on its reverse.
    fn visit<'a>(g: &'a Graph, v: &'a str, seen: &mut BTreeSet<&'a str>, order: &mut Vec<&'a str>) {
        if !seen.insert(v) {
            return;
        }
        for w in g.get(v).into_iter().flatten() {
            visit(g, w, seen, order);
        }
        order.push(v);
    }
    let mut seen = BTreeSet::new();
    let mut order = Vec::new();
    for v in g.keys() {
        visit(g, v, &mut seen, &mut order);
    }
    let mut rev = Graph::new();
    for (v, ws) in g {
        for w in ws {
            rev.entry(w.clone()).or_default().insert(v.clone());
        }
    }
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for v in order.into_iter().rev() {
        let mut comp = Vec::new();
        visit(&rev, v, &mut seen, &mut comp);
        if comp.len() > 1 {
            let mut comp: Vec<String> = comp.into_iter().map(str::to_string).collect();
            comp.sort();
            out.push(comp);
        }
    }
    out
}

#[test]
fn the_server_s_files_import_each_other_without_circles() {
    let files = modules(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"));
    assert!(files.contains_key("driver") && files.contains_key("mailbox"));
    let g = graph(&files);
    // The scan sees real edges (a blind scan would pass trivially).
    assert!(g["driver"].contains("mailbox"), "{:?}", g["driver"]);
    assert!(g["transport/listen"].contains("transport"));
    let found = cycles(&g);
    assert!(found.is_empty(), "import circles: {found:?}");
}

#[test]
fn a_planted_circle_is_found() {
    // The circle the driver, shared state and transport once formed.
    let mut files = BTreeMap::new();
    files.insert("".to_string(), "mod driver; mod shared;".to_string());
    files.insert(
        "driver".to_string(),
        "use crate::shared::Shared;".to_string(),
    );
    files.insert(
        "shared".to_string(),
        "use crate::transport::inbound::Inbound;".to_string(),
    );
    files.insert("transport".to_string(), "// no imports".to_string());
    files.insert(
        "transport/inbound".to_string(),
        "use super::Screen; fn f() { crate::driver::WAKE }".to_string(),
    );
    files.insert(
        "leaf".to_string(),
        "#[cfg(test)]\nmod tests { use crate::driver::X; }".to_string(),
    );
    let found = cycles(&graph(&files));
    assert_eq!(
        found,
        vec![vec![
            "driver".to_string(),
            "shared".to_string(),
            "transport/inbound".to_string()
        ]]
    );
}
