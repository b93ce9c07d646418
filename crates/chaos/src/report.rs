//! `report.json` and `report.md`.

use std::fmt::Write as _;
use std::path::Path;

use crate::lab::Report;
use crate::LabError;

/// Writes `report.json` and `report.md` into `dir`.
pub fn write(dir: &Path, r: &Report) -> Result<(), LabError> {
    let json = serde_json::to_string_pretty(r).expect("a report serializes");
    std::fs::write(dir.join("report.json"), json)?;
    std::fs::write(dir.join("report.md"), markdown(r))?;
    Ok(())
}

fn ms(v: Option<f64>) -> String {
    v.map_or("never".to_string(), |v| format!("{v:.0} ms"))
}

fn verdict(violations: &[String]) -> String {
    match violations {
        [] => "ok".to_string(),
        [first, ..] => format!("**{} violations**, first: {first}", violations.len()),
    }
}

/// The watch, lock and lease validators' lines.
fn checks(s: &mut String, r: &Report) {
    for w in &r.checks.watch {
        let _ = writeln!(
            s,
            "- watcher {}: {} events up to rev {}, {} reconnects, {} compactions: {}",
            w.watcher,
            w.events,
            w.last_rev,
            w.reconnects,
            w.compactions,
            verdict(&w.violations)
        );
    }
    let l = &r.checks.locks;
    let _ = writeln!(
        s,
        "- locks: {} holds ({} not judged: lease not known alive throughout): {}",
        l.holds,
        l.invalid,
        verdict(&l.violations)
    );
    let l = &r.checks.leases;
    let _ = writeln!(
        s,
        "- leases: {} (ends acknowledged: {} revoked, {} expired; {} stale \"gone\" answers \
         ignored), {} reads after the end: {}\n",
        l.leases,
        l.revoked,
        l.expired,
        l.stale_ends,
        l.reads,
        verdict(&l.violations)
    );
}

/// The report in words.
pub fn markdown(r: &Report) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "# {} on {:?}, {} members, {:.0} s, seed {}\n",
        r.scenario, r.target, r.members, r.secs, r.seed
    );
    let verdict = if r.passed() { "passed" } else { "FAILED" };
    let _ = writeln!(
        s,
        "**{verdict}**: {} operations ({} answered, {} writes unknown, {} reads failed, \
         {} writes refused with no leader; availability {:.2}%); lost acknowledged writes: \
         {}; linearizability: {}; elections: {}.\n",
        r.ops,
        r.ok,
        r.unknown,
        r.failed_reads,
        r.refused_writes,
        r.availability * 100.0,
        r.lost_writes,
        r.linearizable,
        r.elections
    );
    checks(&mut s, r);
    if let Some(c) = &r.clock {
        s.push_str(&crate::skew::markdown(c));
    }
    let _ = writeln!(
        s,
        "| fault | member | start | end | RTO write | RTO read | client errors | leader changes |"
    );
    let _ = writeln!(s, "|---|---|---:|---:|---:|---:|---:|---:|");
    for f in &r.faults {
        let _ = writeln!(
            s,
            "| {:?} | {} | {:.0} ms | {:.0} ms | {} | {} | {} | {} |",
            f.kind,
            f.member,
            f.start_ms,
            f.end_ms,
            ms(f.rto_write_ms),
            ms(f.rto_read_ms),
            f.errors,
            f.leader_changes
        );
    }
    let mut rto: Vec<f64> = r.faults.iter().filter_map(|f| f.rto_write_ms).collect();
    rto.sort_by(f64::total_cmp);
    if !rto.is_empty() {
        let _ = writeln!(
            s,
            "\nRTO to the first acknowledged write: median {:.0} ms, max {:.0} ms over {} faults.",
            rto[rto.len() / 2],
            rto[rto.len() - 1],
            rto.len()
        );
    }
    leaders(&mut s, r);
    s
}

/// Leadership over the run, in one line.
fn leaders(s: &mut String, r: &Report) {
    if r.leader_changes.is_empty() {
        return;
    }
    let moves: Vec<String> = r
        .leader_changes
        .iter()
        .map(|c| {
            let who = if c.leader.is_empty() {
                "none"
            } else {
                &c.leader
            };
            format!("{:.1} s {who} (term {})", c.at_ms / 1000.0, c.term)
        })
        .collect();
    let _ = writeln!(
        s,
        "
Leaders seen: {}.",
        moves.join(", ")
    );
}
