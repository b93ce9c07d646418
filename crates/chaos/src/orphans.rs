//! Members whose lab died without cleaning up (SIGKILL, a crash): each
//! member carries its lab's pid in its environment, and a lab at start (or
//! `concord-lab cleanup`) kills members whose lab is gone. Network
//! namespaces have their own sweep (`net.rs`).

use rustix::process::{kill_process, test_kill_process, Pid, Signal};

/// The environment variable that names a member's lab (its pid).
pub const OWNER_ENV: &str = "CONCORD_LAB_OWNER";

/// This lab's mark, for the members it starts.
pub fn mark() -> (&'static str, String) {
    (OWNER_ENV, std::process::id().to_string())
}

/// SIGKILLs every process marked by a lab that is no longer running;
/// returns their pids. Processes it may not read are skipped.
pub fn sweep() -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut killed = Vec::new();
    for e in entries.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else {
            continue;
        };
        let Some(owner) = owner_of(pid) else {
            continue;
        };
        if alive(owner) {
            continue;
        }
        if let Some(p) = Pid::from_raw(pid) {
            if kill_process(p, Signal::KILL).is_ok() {
                killed.push(pid);
            }
        }
    }
    killed
}

/// The lab pid in `pid`'s environment, if any.
fn owner_of(pid: i32) -> Option<i32> {
    let env = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
    let key = format!("{OWNER_ENV}=");
    env.split(|&b| b == 0)
        .filter_map(|kv| std::str::from_utf8(kv).ok())
        .find_map(|kv| kv.strip_prefix(&key)?.parse().ok())
}

fn alive(pid: i32) -> bool {
    Pid::from_raw(pid).is_some_and(|p| test_kill_process(p).is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    #[test]
    fn members_of_a_dead_lab_are_killed_and_a_live_labs_are_not() {
        // A pid that is no longer running: a finished child's.
        let mut gone = Command::new("true").spawn().unwrap();
        gone.wait().unwrap();
        let dead_owner = gone.id().to_string();
        let mut orphan = Command::new("sleep")
            .arg("30")
            .env(OWNER_ENV, &dead_owner)
            .spawn()
            .unwrap();
        let mut kept = Command::new("sleep")
            .arg("30")
            .env(mark().0, mark().1)
            .spawn()
            .unwrap();
        // Wait until the children's environments are readable.
        std::thread::sleep(std::time::Duration::from_millis(50));
        let killed = sweep();
        assert!(killed.contains(&(orphan.id() as i32)), "{killed:?}");
        assert!(!killed.contains(&(kept.id() as i32)), "{killed:?}");
        assert!(
            orphan.wait().unwrap().code().is_none(),
            "killed by a signal"
        );
        kept.kill().unwrap();
        kept.wait().unwrap();
    }
}
