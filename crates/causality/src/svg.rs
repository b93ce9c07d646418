//! The space-time diagram, as hand-written SVG: processes as lines, events
//! as dots (writes as squares), messages as arrows, each event labelled
//! with its vector clock.

use crate::analysis::{relate, Findings};
use crate::sim::{name, Event, Kind, Run};
use concord_clocks::Causality;
use std::fmt::Write;

const LEFT: usize = 110;
const TOP: usize = 70;
const DX: usize = 54;
const ROW: usize = 96;
const PAST: &str = "#1f77b4";
const FUTURE: &str = "#2ca02c";
const CONCURRENT: &str = "#ff7f0e";
const PLAIN: &str = "#555555";
const VIOLATION: &str = "#d62728";

fn x(e: &Event) -> usize {
    LEFT + e.id * DX + DX / 2
}

fn y(proc: usize) -> usize {
    TOP + proc * ROW + ROW / 2
}

/// The fill of an event: by its relation to the focus event if there is
/// one, else orange for writes concurrent with another write.
fn fill(run: &Run, e: &Event, focus: Option<&Event>) -> &'static str {
    match focus {
        Some(f) if f.id == e.id => "#000000",
        Some(f) => match relate(e, f) {
            Causality::Before => PAST,
            Causality::After => FUTURE,
            _ => CONCURRENT,
        },
        None => {
            let is_write = |x: &Event| matches!(x.kind, Kind::Write(_));
            let conflicting = is_write(e)
                && run
                    .events
                    .iter()
                    .any(|o| is_write(o) && relate(e, o) == Causality::Concurrent);
            if conflicting {
                CONCURRENT
            } else {
                PLAIN
            }
        }
    }
}

/// The vector clock as a dense vector over all processes: `[1,0,2]`.
pub fn dense(run: &Run, e: &Event) -> String {
    let parts: Vec<String> = (0..run.config.procs)
        .map(|i| e.vc.get(i as u64).to_string())
        .collect();
    format!("[{}]", parts.join(","))
}

fn tooltip(run: &Run, e: &Event) -> String {
    let what = match &e.kind {
        Kind::Write(v) => format!("write {v}"),
        Kind::Send { to, .. } => format!("send to {}", name(*to)),
        Kind::Recv { from, .. } => format!("receive from {}", name(*from)),
    };
    format!(
        "{} {what}; true {:.1} ms, wall {:.1} ms; Lamport {}; VC {}; HLC {}",
        e.label,
        e.true_ns as f64 / 1e6,
        e.wall_ns as f64 / 1e6,
        e.lamport,
        dense(run, e),
        e.hlc_text()
    )
}

/// Draws the run; `focus` (an event id) colours its causal past, future
/// and the events concurrent with it.
pub fn draw(run: &Run, findings: &Findings, focus: Option<usize>) -> String {
    let procs = run.config.procs;
    let width = LEFT + run.events.len() * DX + 30;
    let height = TOP + procs * ROW + 70;
    let focus = focus.map(|id| &run.events[id]);
    let mut s = String::new();
    let _ = writeln!(
        s,
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="DejaVu Sans, Arial, sans-serif">
<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#888"/></marker>
<marker id="arrowbad" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="{VIOLATION}"/></marker></defs>
<rect width="100%" height="100%" fill="white"/>"##
    );
    header(&mut s, run, findings, focus);
    for p in 0..procs {
        let (off, drift) = run.clocks[p];
        let _ = writeln!(
            s,
            r##"<line x1="{LEFT}" y1="{yy}" x2="{x2}" y2="{yy}" stroke="#bbb" stroke-width="2"/>
<text x="12" y="{ty}" font-size="18" font-weight="bold">{n}</text>
<text x="12" y="{ty2}" font-size="10" fill="#666">{off:+.1} ms, {drift:+} ppm</text>"##,
            yy = y(p),
            x2 = width - 20,
            ty = y(p) + 2,
            ty2 = y(p) + 16,
            n = name(p),
            off = off as f64 / 1e6,
        );
    }
    arrows(&mut s, run, findings);
    for e in &run.events {
        event(&mut s, run, findings, e, focus);
    }
    legend(&mut s, height, focus.is_some());
    s.push_str("</svg>\n");
    s
}

fn header(s: &mut String, run: &Run, f: &Findings, focus: Option<&Event>) {
    let c = &run.config;
    let _ = writeln!(
        s,
        r##"<text x="12" y="24" font-size="15" font-weight="bold">concord-clocks: seed {}, {} processes, {} events, skew up to ±{} ms, drift up to ±{} ppm</text>"##,
        c.seed,
        c.procs,
        run.events.len(),
        c.skew_ms,
        c.drift_ppm
    );
    let line = match focus {
        Some(e) => format!(
            "focus {}: blue = its causal past, green = its causal future, orange = concurrent with it",
            e.label
        ),
        None => format!(
            "{} causal pairs ordered wrongly by wall clocks ({} messages received before they were sent, red arrows); orange = writes concurrent with another write",
            f.wall_violations.len(),
            f.message_violations.len()
        ),
    };
    let _ = writeln!(
        s,
        r##"<text x="12" y="46" font-size="12" fill="#333">{line}</text>"##
    );
}

fn arrows(s: &mut String, run: &Run, f: &Findings) {
    for e in &run.events {
        let Kind::Recv { msg, .. } = e.kind else {
            continue;
        };
        let send = &run.events[msg];
        let bad = f.message_violations.iter().any(|p| p.second == e.id);
        let (color, marker, dash) = if bad {
            (VIOLATION, "arrowbad", r#" stroke-dasharray="5,3""#)
        } else {
            ("#888", "arrow", "")
        };
        // Stop short of the dot so the arrowhead stays visible.
        let (x1, y1, x2, y2) = (
            x(send) as f64,
            y(send.proc) as f64,
            x(e) as f64,
            y(e.proc) as f64,
        );
        let len = ((x2 - x1).powi(2) + (y2 - y1).powi(2)).sqrt().max(1.0);
        let (ex, ey) = (x2 - (x2 - x1) * 8.0 / len, y2 - (y2 - y1) * 8.0 / len);
        let _ = writeln!(
            s,
            r##"<line x1="{x1}" y1="{y1}" x2="{ex:.1}" y2="{ey:.1}" stroke="{color}" stroke-width="1.4"{dash} marker-end="url(#{marker})"/>"##
        );
    }
}

fn event(s: &mut String, run: &Run, f: &Findings, e: &Event, focus: Option<&Event>) {
    let (cx, cy) = (x(e), y(e.proc));
    let color = fill(run, e, focus);
    let skewed = f
        .wall_violations
        .iter()
        .any(|p| p.first == e.id || p.second == e.id);
    let ring = if skewed && focus.is_none() {
        format!(r#" stroke="{VIOLATION}" stroke-width="2""#)
    } else {
        String::new()
    };
    let title = tooltip(run, e);
    let shape = match e.kind {
        Kind::Write(_) => {
            format!(
                r#"<rect x="{}" y="{}" width="13" height="13" fill="{color}"{ring}/>"#,
                cx - 6,
                cy - 6
            )
        }
        _ => format!(r#"<circle cx="{cx}" cy="{cy}" r="6.5" fill="{color}"{ring}/>"#),
    };
    // Labels alternate height so neighbours on one line do not collide.
    let vy = if e.id % 2 == 0 { cy + 22 } else { cy + 34 };
    let _ = writeln!(
        s,
        r##"<g><title>{title}</title>{shape}<text x="{cx}" y="{ly}" font-size="11" text-anchor="middle" font-weight="bold">{label}</text><text x="{cx}" y="{vy}" font-size="10" text-anchor="middle" fill="#333">{vc}</text></g>"##,
        ly = cy - 11,
        label = e.label,
        vc = dense(run, e),
    );
}

fn legend(s: &mut String, height: usize, focused: bool) {
    let y0 = height - 30;
    let items: &[(&str, &str)] = if focused {
        &[
            (PAST, "causal past"),
            (FUTURE, "causal future"),
            (CONCURRENT, "concurrent"),
        ]
    } else {
        &[
            (CONCURRENT, "concurrent write"),
            (PLAIN, "event"),
            (VIOLATION, "wall clock contradicts causality"),
        ]
    };
    let mut x0 = 12;
    for (color, text) in items {
        let _ = writeln!(
            s,
            r##"<circle cx="{cx}" cy="{y0}" r="6" fill="{color}"/><text x="{tx}" y="{ty}" font-size="12">{text}</text>"##,
            cx = x0 + 6,
            tx = x0 + 16,
            ty = y0 + 4
        );
        x0 += 30 + text.len() * 7;
    }
    let _ = writeln!(
        s,
        r##"<text x="{x0}" y="{ty}" font-size="12" fill="#333">squares are writes to one register; labels: event, then its vector clock</text>"##,
        ty = y0 + 4
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::analyze;
    use crate::sim::{run, Config};

    #[test]
    fn draws_every_event_and_message_and_colours_the_focus() {
        let cfg = Config {
            seed: 3,
            procs: 3,
            events: 20,
            skew_ms: 50,
            drift_ppm: 100,
            max_offset_ms: 250,
        };
        let r = run(&cfg);
        let f = analyze(&r);
        let plain = draw(&r, &f, None);
        let dots = plain.matches("<circle").count() + plain.matches("<rect x=").count();
        assert_eq!(
            dots,
            r.events.len() + 3,
            "one shape per event, three in the legend"
        );
        let msgs = r
            .events
            .iter()
            .filter(|e| matches!(e.kind, Kind::Recv { .. }))
            .count();
        assert_eq!(plain.matches("marker-end").count(), msgs);
        assert!(plain.starts_with("<svg") && plain.trim_end().ends_with("</svg>"));
        let last = r.events.len() - 1;
        let focused = draw(&r, &f, Some(last));
        assert!(focused.contains(PAST) && focused.contains("#000000"));
    }
}
