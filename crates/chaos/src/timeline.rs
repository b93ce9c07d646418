//! `timeline.svg` and `timeline.png`: answered operations per second and
//! p99 latency over the run, each fault's window shaded and labelled, each
//! leader change marked with the new leader and term. The SVG is written
//! by hand (a few shapes and lines of text); `resvg` renders it to PNG.

use std::fmt::Write as _;

use crate::lab::FaultRecord;
use crate::leaders::LeaderChange;
use crate::workload::Op;
use crate::LabError;

/// A shaded window: label, start and end in ms since the run began.
pub type Window = (String, f64, f64);

/// What one picture shows.
#[derive(Debug)]
pub struct Picture<'a> {
    /// The heading.
    pub title: &'a str,
    /// (invoke, complete) in ns of every answered op.
    pub ops: &'a [(u64, u64)],
    /// Fault windows.
    pub faults: &'a [Window],
    /// Leader changes.
    pub leaders: &'a [LeaderChange],
    /// Length of the run.
    pub secs: f64,
}

const WIDTH: f64 = 1000.0;
const HEIGHT: f64 = 420.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 70.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 50.0;
/// Width of a bucket, milliseconds.
const BUCKET_MS: f64 = 250.0;

/// (invoke, complete) in ns of every answered op.
pub fn answered(ops: &[Op]) -> Vec<(u64, u64)> {
    ops.iter()
        .filter(|o| o.result.is_some())
        .filter_map(|o| o.complete.map(|c| (o.invoke, c)))
        .collect()
}

/// The fault windows of a report.
pub fn windows(faults: &[FaultRecord]) -> Vec<Window> {
    faults
        .iter()
        .map(|f| (format!("{:?} {}", f.kind, f.member), f.start_ms, f.end_ms))
        .collect()
}

/// What a run directory's `history.jsonl` and `report.json` hold for the
/// picture (`concord-lab timeline DIR` draws a run again).
pub type FromFiles = (Vec<(u64, u64)>, Vec<Window>, Vec<LeaderChange>);

/// The same from a run directory's files.
pub fn from_files(history: &str, report: &serde_json::Value) -> FromFiles {
    let ops = history
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|o| !o["result"].is_null())
        .filter_map(|o| Some((o["invoke"].as_u64()?, o["complete"].as_u64()?)))
        .collect();
    let list = |k: &str| report[k].as_array().cloned().unwrap_or_default();
    let faults = list("faults")
        .iter()
        .map(|f| {
            let label = format!(
                "{} {}",
                f["kind"].as_str().unwrap_or("?"),
                f["member"].as_str().unwrap_or("?")
            );
            let ms = |k: &str| f[k].as_f64().unwrap_or(0.0);
            (label, ms("start_ms"), ms("end_ms"))
        })
        .collect();
    let leaders = list("leader_changes")
        .iter()
        .map(|c| LeaderChange {
            at_ms: c["at_ms"].as_f64().unwrap_or(0.0),
            leader: c["leader"].as_str().unwrap_or("").to_string(),
            term: c["term"].as_u64().unwrap_or(0),
        })
        .collect();
    (ops, faults, leaders)
}

/// Per bucket: answered ops per second and p99 latency in ms.
pub fn series(ops: &[(u64, u64)], secs: f64) -> Vec<(f64, f64)> {
    let n = ((secs * 1000.0 / BUCKET_MS).ceil() as usize).max(1);
    let mut lat: Vec<Vec<f64>> = vec![Vec::new(); n];
    for &(invoke, c) in ops {
        let b = ((c as f64 / 1e6) / BUCKET_MS) as usize;
        if b < n {
            lat[b].push(c.saturating_sub(invoke) as f64 / 1e6);
        }
    }
    lat.into_iter()
        .map(|mut l| {
            l.sort_by(f64::total_cmp);
            let rate = l.len() as f64 * 1000.0 / BUCKET_MS;
            let p99 = l
                .get((l.len() * 99 / 100).min(l.len().saturating_sub(1)))
                .copied();
            (rate, p99.unwrap_or(0.0))
        })
        .collect()
}

/// The picture, as SVG text.
pub fn svg(p: &Picture) -> String {
    let (title, faults, secs) = (p.title, p.faults, p.secs);
    let data = series(p.ops, secs);
    let max_rate = data.iter().map(|d| d.0).fold(1.0, f64::max) * 1.1;
    let max_lat = data.iter().map(|d| d.1).fold(1.0, f64::max) * 1.1;
    let (w, h) = (WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM);
    let x = |ms: f64| LEFT + w * (ms / (secs * 1000.0)).clamp(0.0, 1.0);
    let y = |v: f64, max: f64| TOP + h * (1.0 - v / max);
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{LEFT}" y="20" font-size="15">{}</text>"#,
        escape(title)
    );
    // Room per fault between one window's start and the next's: with
    // many faults only the member is named, on alternating rows.
    let room = faults
        .windows(2)
        .map(|w| x(w[1].1) - x(w[0].1))
        .fold(WIDTH, f64::min);
    for (i, (label, start, end)) in faults.iter().enumerate() {
        let (a, b) = (x(*start), x(*end));
        let short = label.rsplit(' ').next().unwrap_or(label);
        let text = if room < 6.5 * label.len() as f64 {
            short
        } else {
            label
        };
        let _ = writeln!(
            s,
            r##"<rect x="{a:.1}" y="{TOP}" width="{:.1}" height="{h}" fill="#f4c7c3" opacity="0.7"/><text x="{a:.1}" y="{:.1}" font-size="10">{}</text>"##,
            (b - a).max(1.0),
            TOP + 12.0 + 11.0 * (i % 2) as f64,
            escape(text)
        );
    }
    leader_marks(&mut s, p.leaders, &x);
    let line = |pick: &dyn Fn(&(f64, f64)) -> f64, max: f64| {
        data.iter()
            .enumerate()
            .map(|(i, d)| {
                format!(
                    "{:.1},{:.1}",
                    x((i as f64 + 0.5) * BUCKET_MS),
                    y(pick(d), max)
                )
            })
            .collect::<Vec<_>>()
            .join(" ")
    };
    let _ = writeln!(
        s,
        r##"<polyline fill="none" stroke="#1f5fbf" stroke-width="1.5" points="{}"/>"##,
        line(&|d| d.0, max_rate)
    );
    let _ = writeln!(
        s,
        r##"<polyline fill="none" stroke="#c0392b" stroke-width="1" points="{}"/>"##,
        line(&|d| d.1, max_lat)
    );
    axes(&mut s, secs, max_rate, max_lat);
    s.push_str("</svg>\n");
    s
}

/// A dashed line where leadership moved, labelled with the new leader and
/// its term (`none` while no member knows one). The first change is the
/// leader the run began with.
fn leader_marks(s: &mut String, leaders: &[LeaderChange], x: &dyn Fn(f64) -> f64) {
    let h = HEIGHT - TOP - BOTTOM;
    let mut labelled = 0;
    for c in leaders.iter().skip(1) {
        let xx = x(c.at_ms);
        if c.leader.is_empty() {
            // No leader known: a faint line, no label.
            let _ = writeln!(
                s,
                r##"<line x1="{xx:.1}" y1="{TOP}" x2="{xx:.1}" y2="{:.1}" stroke="#bbb" stroke-dasharray="1,3"/>"##,
                TOP + h
            );
            continue;
        }
        // Labels alternate between two rows so neighbours stay readable.
        let row = TOP + h - 6.0 - 11.0 * (labelled % 2) as f64;
        labelled += 1;
        let _ = writeln!(
            s,
            r##"<line x1="{xx:.1}" y1="{TOP}" x2="{xx:.1}" y2="{:.1}" stroke="#555" stroke-dasharray="3,3"/><text x="{:.1}" y="{row:.1}" font-size="9" fill="#333">{} t{}</text>"##,
            TOP + h,
            xx + 2.0,
            escape(&c.leader),
            c.term
        );
    }
}

/// The SVG rendered to PNG (fonts from the system; text is left out when
/// none is installed).
pub fn png(svg: &str) -> Result<Vec<u8>, LabError> {
    let mut opt = resvg::usvg::Options::default();
    let db = opt.fontdb_mut();
    db.load_system_fonts();
    // "sans-serif" means Arial to fontdb unless told otherwise: map it to
    // a family this machine has (DejaVu Sans on Debian).
    let family = db
        .faces()
        .flat_map(|f| f.families.iter().map(|(name, _)| name.clone()))
        .min_by_key(|name| (name != "DejaVu Sans", !name.contains("Sans"), name.clone()));
    if let Some(family) = family {
        db.set_sans_serif_family(family.clone());
        opt.font_family = family;
    }
    let tree =
        resvg::usvg::Tree::from_str(svg, &opt).map_err(|e| LabError::Picture(e.to_string()))?;
    let size = tree.size().to_int_size();
    let mut pixmap = resvg::tiny_skia::Pixmap::new(size.width(), size.height())
        .ok_or_else(|| LabError::Picture("empty picture".into()))?;
    resvg::render(
        &tree,
        resvg::tiny_skia::Transform::default(),
        &mut pixmap.as_mut(),
    );
    pixmap
        .encode_png()
        .map_err(|e| LabError::Picture(e.to_string()))
}

/// Writes `timeline.svg` and `timeline.png` into `dir`.
pub fn write(dir: &std::path::Path, p: &Picture) -> Result<(), LabError> {
    let svg = svg(p);
    std::fs::write(dir.join("timeline.svg"), &svg)?;
    std::fs::write(dir.join("timeline.png"), png(&svg)?)?;
    Ok(())
}

fn axes(s: &mut String, secs: f64, max_rate: f64, max_lat: f64) {
    let (w, h) = (WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM);
    let _ = writeln!(
        s,
        r#"<rect x="{LEFT}" y="{TOP}" width="{w}" height="{h}" fill="none" stroke="black"/>"#
    );
    for i in 0..=5 {
        let f = i as f64 / 5.0;
        let yy = TOP + h * (1.0 - f);
        let xx = LEFT + w * f;
        let _ = writeln!(
            s,
            r##"<text x="{:.1}" y="{:.1}" text-anchor="end" fill="#1f5fbf">{:.0}</text><text x="{:.1}" y="{:.1}" fill="#c0392b">{:.0}</text><text x="{xx:.1}" y="{:.1}" text-anchor="middle">{:.0} s</text>"##,
            LEFT - 5.0,
            yy + 4.0,
            max_rate * f,
            LEFT + w + 5.0,
            yy + 4.0,
            max_lat * f,
            TOP + h + 18.0,
            secs * f
        );
    }
    let _ = writeln!(
        s,
        r##"<text x="{LEFT}" y="{:.1}" fill="#1f5fbf">answered ops/s</text><text x="{:.1}" y="{:.1}" text-anchor="end" fill="#c0392b">p99 latency, ms</text><text x="{:.1}" y="{:.1}" text-anchor="middle">shaded: fault windows; dashed: new leader and term; dotted: no leader</text>"##,
        HEIGHT - 8.0,
        WIDTH - RIGHT,
        HEIGHT - 8.0,
        WIDTH / 2.0,
        HEIGHT - 8.0
    );
}

fn escape(t: &str) -> String {
    t.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workload::Expected;

    fn op(invoke_ms: u64, complete_ms: Option<u64>) -> Op {
        Op {
            client: 0,
            op: "get",
            key: "k".into(),
            value: None,
            expected: Expected(None),
            txn: None,
            invoke: invoke_ms * 1_000_000,
            complete: complete_ms.map(|c| c * 1_000_000),
            result: complete_ms.map(|_| serde_json::json!({"value": null})),
            error: None,
        }
    }

    #[test]
    fn buckets_count_answers_and_the_outage_shows_as_zero() {
        // 10 answers in the first quarter second, none in the second.
        let mut ops: Vec<Op> = (0..10).map(|i| op(i * 10, Some(i * 10 + 5))).collect();
        ops.push(op(300, None));
        let s = series(&answered(&ops), 0.5);
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].0, 40.0);
        assert_eq!(s[0].1, 5.0);
        assert_eq!(s[1], (0.0, 0.0));
        let leaders = [
            LeaderChange {
                at_ms: 0.0,
                leader: "m1".into(),
                term: 2,
            },
            LeaderChange {
                at_ms: 300.0,
                leader: "m3".into(),
                term: 3,
            },
        ];
        let faults = [("KillLeader m1".to_string(), 250.0, 400.0)];
        let pic = svg(&Picture {
            title: "t <1>",
            ops: &answered(&ops),
            faults: &faults,
            leaders: &leaders,
            secs: 0.5,
        });
        assert!(pic.starts_with("<svg") && pic.contains("t &lt;1&gt;"));
        // The run's first leader is not a change; the second is marked.
        assert!(pic.contains("m3 t3") && !pic.contains("m1 t2"));
        assert!(pic.contains("KillLeader m1"));
        let png = png(&pic).unwrap();
        assert_eq!(&png[1..4], b"PNG");
    }
}
