//! What the lab prints: tables for people, `-w json` for scripts.

use crate::analysis::{Findings, Pair, Writes};
use crate::cart_demo::Outcome;
use crate::sim::{name, Event, Kind, Run};
use crate::svg::dense;
use serde_json::json;

fn label(run: &Run, id: usize) -> &str {
    &run.events[id].label
}

fn ms(ns: i64) -> String {
    format!("{:.1} ms", ns as f64 / 1e6)
}

fn example(run: &Run, pairs: &[Pair]) -> Option<String> {
    let p = pairs.first()?;
    let (a, b) = (&run.events[p.first], &run.events[p.second]);
    Some(format!(
        "e.g. {} -> {}, yet {}'s clock read {} and {}'s read {}",
        a.label,
        b.label,
        b.label,
        ms(b.wall_ns),
        a.label,
        ms(a.wall_ns)
    ))
}

fn kind(e: &Event) -> String {
    match &e.kind {
        Kind::Write(v) => format!("write {v}"),
        Kind::Send { to, .. } => format!("send -> {}", name(*to)),
        Kind::Recv { from, .. } => format!("recv <- {}", name(*from)),
    }
}

/// The lab's report as tables.
pub fn lab_table(run: &Run, f: &Findings, w: &Writes, files: &[String], events: bool) {
    let c = &run.config;
    let msgs = run
        .events
        .iter()
        .filter(|e| matches!(e.kind, Kind::Send { .. }))
        .count();
    println!(
        "concord-clocks lab: seed {}, {} processes, {} events ({} writes, {} messages)",
        c.seed,
        c.procs,
        run.events.len(),
        w.all.len(),
        msgs
    );
    let clocks: Vec<String> = run
        .clocks
        .iter()
        .enumerate()
        .map(|(i, (off, drift))| {
            format!("{} {:+.1} ms {:+} ppm", name(i), *off as f64 / 1e6, drift)
        })
        .collect();
    println!("clocks: {}", clocks.join(" | "));
    if events {
        event_table(run);
    }
    ordering(run, f);
    registers(w);
    for file in files {
        println!("wrote {file}");
    }
}

fn event_table(run: &Run) {
    let head = ("event", "what", "true", "wall", "L", "vector clock");
    println!(
        "\n{:<5} {:<22} {:>9} {:>9} {:>4}  {:<18} HLC",
        head.0, head.1, head.2, head.3, head.4, head.5
    );
    for e in &run.events {
        println!(
            "{:<5} {:<22} {:>9} {:>9} {:>4}  {:<18} {}",
            e.label,
            kind(e),
            ms(e.true_ns as i64),
            ms(e.wall_ns),
            e.lamport,
            dense(run, e),
            e.hlc_text()
        );
    }
}

fn ordering(run: &Run, f: &Findings) {
    println!(
        "\nordering ({} causal pairs, {} concurrent pairs)",
        f.causal_pairs, f.concurrent_pairs
    );
    println!(
        "  wall clocks contradict causality: {} pairs, {} of them messages received before they were sent",
        f.wall_violations.len(),
        f.message_violations.len()
    );
    if let Some(e) =
        example(run, &f.message_violations).or_else(|| example(run, &f.wall_violations))
    {
        println!("    {e}");
    }
    println!(
        "  Lamport orders {} of the {} concurrent pairs: its total order says nothing about concurrency",
        f.lamport_ordered_concurrent.len(),
        f.concurrent_pairs
    );
    if let Some(p) = f.lamport_ordered_concurrent.first() {
        let (a, b) = (&run.events[p.first], &run.events[p.second]);
        println!(
            "    e.g. {} (L={}) and {} (L={}) are concurrent: {} vs {}",
            a.label,
            a.lamport,
            b.label,
            b.lamport,
            dense(run, a),
            dense(run, b)
        );
    }
    println!(
        "  HLC: {} causal pairs misordered; largest lead over its own physical clock {}; {} messages flagged past the {} ms max offset",
        f.clock_bugs.len(),
        ms(f.max_hlc_lead_ns),
        run.flagged,
        run.config.max_offset_ms
    );
}

fn registers(w: &Writes) {
    let none = "(none)".to_owned();
    println!(
        "\none register, every process writing, replicas merged through messages and at the end"
    );
    println!("  writes:              {}", w.all.join(" "));
    let wall = w.lww_wall.as_ref().unwrap_or(&none);
    println!("  LWW by wall clock:   keeps {wall}");
    if !w.wall_ignored.is_empty() {
        let ignored: Vec<String> = w
            .wall_ignored
            .iter()
            .map(|(l, k)| format!("{l} (kept {k})"))
            .collect();
        println!(
            "    and ignored {} write(s) the moment they were made, though each writer had seen the value that beat it (its clock was behind): {}",
            ignored.len(),
            ignored.join(", ")
        );
    }
    let hlc = w.lww_hlc.as_ref().unwrap_or(&none);
    let lost: Vec<&String> =
        w.mv.iter()
            .filter(|v| Some(*v) != w.lww_hlc.as_ref())
            .collect();
    println!("  LWW by HLC:          keeps {hlc}");
    println!(
        "  MV-Register:         keeps {} (the writes no later write saw)",
        w.mv.join(" ")
    );
    if lost.is_empty() {
        println!("  no concurrent write at the end in this run: try another --seed");
    } else {
        let lost: Vec<&str> = lost.iter().map(|s| s.as_str()).collect();
        println!(
            "  LWW by HLC silently lost the concurrent write(s) {} that the MV-Register kept",
            lost.join(" ")
        );
    }
}

/// The lab's report as JSON.
pub fn lab_json(run: &Run, f: &Findings, w: &Writes, files: &[String]) {
    let pairs = |ps: &[Pair]| -> Vec<[&str; 2]> {
        ps.iter()
            .map(|p| [label(run, p.first), label(run, p.second)])
            .collect()
    };
    let events: Vec<_> = run
        .events
        .iter()
        .map(|e| {
            json!({
                "event": e.label, "what": kind(e), "true_ns": e.true_ns, "wall_ns": e.wall_ns,
                "lamport": e.lamport, "vclock": (0..run.config.procs).map(|i| e.vc.get(i as u64)).collect::<Vec<_>>(),
                "hlc": {"wall": e.hlc.wall, "logical": e.hlc.logical},
            })
        })
        .collect();
    let out = json!({
        "seed": run.config.seed, "procs": run.config.procs, "events": events,
        "causal_pairs": f.causal_pairs, "concurrent_pairs": f.concurrent_pairs,
        "wall_violations": pairs(&f.wall_violations), "message_violations": pairs(&f.message_violations),
        "lamport_ordered_concurrent": f.lamport_ordered_concurrent.len(),
        "hlc_misordered": f.clock_bugs.len(), "hlc_flagged": run.flagged,
        "writes": w.all, "lww_wall": w.lww_wall, "lww_hlc": w.lww_hlc, "mv": w.mv,
        "lww_wall_ignored": w.wall_ignored, "files": files,
    });
    println!("{}", serde_json::to_string_pretty(&out).expect("json"));
}

/// The cart demo's report.
pub fn cart(out: &Outcome, as_json: bool) {
    if as_json {
        let items: Vec<_> = out
            .converged
            .iter()
            .map(|(k, q)| json!({"item": k, "quantity": q}))
            .collect();
        let j = json!({"converged": items, "deltas": out.deltas.0, "delta_bytes": out.deltas.1, "state_bytes": out.state_bytes, "log": out.lines});
        println!("{}", serde_json::to_string_pretty(&j).expect("json"));
        return;
    }
    for l in &out.lines {
        println!("{l}");
    }
    println!(
        "shipped {} deltas, {} bytes in all; one full cart state is {} bytes",
        out.deltas.0, out.deltas.1, out.state_bytes
    );
}
