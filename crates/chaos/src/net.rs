//! Real network faults between member processes, in the kernel: one
//! network namespace per member with its own address, a veth pair from
//! each into a Linux bridge in the root namespace (which has an address
//! too, so the lab's clients reach every member), and iptables rules
//! inside the members' namespaces that drop, or randomly drop, packets
//! by the sending member's address. Rules match member addresses only,
//! so a partition cuts peer traffic but never the lab's own clients.
//!
//! Every name carries the lab's process id (`clab<pid>x<run>m<i>` for
//! namespaces, `cb<pid>x<run>` for the bridge), so [`sweep`] can remove
//! what a lab that died without cleaning up (SIGKILL) left behind.
//! Needs root and the `ip` (iproute2) and `iptables` commands.

use std::net::Ipv4Addr;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use rustix::process::{kill_process, test_kill_process, Pid, Signal};

use crate::LabError;

/// One iptables rule for a member's namespace (see [`Network::install`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    /// The member in whose namespace it goes.
    pub member: usize,
    /// In the `nat` table (else `filter`).
    pub nat: bool,
    /// The rule, as `iptables-save` writes it (`-A CHAIN ...`).
    pub spec: String,
}

impl Rule {
    fn filter(member: usize, spec: String) -> Rule {
        Rule {
            member,
            nat: false,
            spec,
        }
    }
}

/// One run's namespaces and bridge; deleted when dropped.
#[derive(Debug)]
pub struct Network {
    bridge: String,
    namespaces: Vec<String>,
    /// The root namespace's ends of the veth pairs.
    hosts: Vec<String>,
    subnet: (u8, u8),
}

/// Runs `cmd args`, returning its stdout, or its stderr as the error.
fn run(cmd: &str, args: &[&str]) -> Result<String, LabError> {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .map_err(|e| LabError::Net(format!("running {cmd}: {e}")))?;
    if !out.status.success() {
        return Err(LabError::Net(format!(
            "{cmd} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A clear error unless this process may build the network.
pub fn check_available() -> Result<(), LabError> {
    if !rustix::process::geteuid().is_root() {
        return Err(LabError::Net(
            "network scenarios need root (network namespaces and iptables)".into(),
        ));
    }
    for (cmd, pkg) in [("ip", "iproute2"), ("iptables", "iptables")] {
        run(cmd, &["-V"]).map_err(|e| {
            LabError::Net(format!(
                "network scenarios need `{cmd}` (Debian package {pkg}): {e}"
            ))
        })?;
    }
    Ok(())
}

/// A /24 in 10/8 for run `k` of this process: drawn from the pid and
/// `k` (so concurrent runs differ) and skipped while any address or
/// route on this host is already in it.
fn pick_subnet(k: u32) -> Result<(u8, u8), LabError> {
    let used = run("ip", &["-4", "-o", "addr", "show"])? + &run("ip", &["-4", "route", "show"])?;
    let mut h = (u64::from(std::process::id()) << 16 | u64::from(k)).wrapping_mul(0x9E37_79B9);
    for _ in 0..256 {
        h = h
            .wrapping_mul(0x5851_F42D_4C95_7F2D)
            .wrapping_add(1442695040888963407);
        let (x, y) = (64 + ((h >> 33) % 160) as u8, (h >> 45) as u8);
        if !used.contains(&format!("10.{x}.{y}.")) {
            return Ok((x, y));
        }
    }
    Err(LabError::Net(
        "no free 10.x.y.0/24 for the lab's bridge".into(),
    ))
}

impl Network {
    /// Builds namespaces and a bridge for `size` members, after sweeping
    /// leftovers of dead labs.
    pub fn create(size: usize) -> Result<Network, LabError> {
        static RUNS: AtomicU32 = AtomicU32::new(0);
        check_available()?;
        sweep()?;
        // Interface names have at most 15 bytes: `cv<pid>x<run>m<i>` fits
        // with a 7-digit pid, a run below 1000 and a member below 10.
        let k = RUNS.fetch_add(1, Ordering::Relaxed) % 1000;
        let pid = std::process::id();
        let subnet = pick_subnet(k)?;
        let mut net = Network {
            bridge: format!("cb{pid}x{k}"),
            namespaces: Vec::new(),
            hosts: Vec::new(),
            subnet,
        };
        let gw = format!("{}/24", net.gateway());
        run("ip", &["link", "add", &net.bridge, "type", "bridge"])?;
        run("ip", &["addr", "add", &gw, "dev", &net.bridge])?;
        run("ip", &["link", "set", &net.bridge, "up"])?;
        for i in 0..size {
            let ns = format!("clab{pid}x{k}m{i}");
            run("ip", &["netns", "add", &ns])?;
            net.namespaces.push(ns.clone());
            let host = format!("cv{pid}x{k}m{i}");
            let addr = format!("{}/24", net.addr(i));
            run(
                "ip",
                &[
                    "link", "add", &host, "type", "veth", "peer", "name", "eth0", "netns", &ns,
                ],
            )?;
            net.hosts.push(host.clone());
            run("ip", &["link", "set", &host, "master", &net.bridge, "up"])?;
            run("ip", &["-n", &ns, "addr", "add", &addr, "dev", "eth0"])?;
            run("ip", &["-n", &ns, "link", "set", "eth0", "up"])?;
            run("ip", &["-n", &ns, "link", "set", "lo", "up"])?;
        }
        Ok(net)
    }

    /// The bridge's address (the lab's side).
    pub fn gateway(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, self.subnet.0, self.subnet.1, 1)
    }

    /// Member `i`'s address.
    pub fn addr(&self, i: usize) -> Ipv4Addr {
        Ipv4Addr::new(10, self.subnet.0, self.subnet.1, 2 + i as u8)
    }

    /// Member `i`'s namespace.
    pub fn namespace(&self, i: usize) -> &str {
        &self.namespaces[i]
    }

    /// The command line prefix that runs a program in member `i`'s
    /// namespace (`ip netns exec` execs it: the pid is the program's).
    pub fn exec_prefix(&self, i: usize) -> Vec<String> {
        ["ip", "netns", "exec", &self.namespaces[i]]
            .map(String::from)
            .to_vec()
    }

    fn iptables(&self, i: usize, args: &[&str]) -> Result<(), LabError> {
        let mut all = vec!["netns", "exec", &self.namespaces[i], "iptables", "-w"];
        all.extend_from_slice(args);
        run("ip", &all).map(drop)
    }

    /// A rule dropping every packet from member `from` to member `to`
    /// (in `to`'s namespace, so the packets leave `from` and are lost on
    /// the way, as on a cut link; `from`'s sends do not fail).
    pub fn cut(&self, from: usize, to: usize) -> Rule {
        Rule::filter(to, format!("-A INPUT -s {} -j DROP", self.addr(from)))
    }

    /// A rule dropping packets from `from` to `to` at random, each with
    /// `probability`.
    pub fn lose(&self, from: usize, to: usize, probability: f64) -> Rule {
        let src = self.addr(from);
        Rule::filter(
            to,
            format!("-A INPUT -s {src} -m statistic --mode random --probability {probability:.4} -j DROP"),
        )
    }

    /// A rule sending member `from`'s new TCP connections to `to`'s
    /// `port` to `via` instead (a relay of the lab's, on the bridge).
    pub fn redirect(&self, from: usize, to: usize, port: u16, via: u16) -> Rule {
        let (dst, gw) = (self.addr(to), self.gateway());
        Rule {
            member: from,
            nat: true,
            spec: format!(
                "-A OUTPUT -p tcp -d {dst} --dport {port} -j DNAT --to-destination {gw}:{via}"
            ),
        }
    }

    /// A rule resetting direct TCP traffic from `to` at `from` (after
    /// [`Network::redirect`], only connections open before it are
    /// direct: this ends them, and `from` dials again, redirected).
    pub fn reset_direct(&self, from: usize, to: usize) -> Rule {
        let src = self.addr(to);
        Rule::filter(
            from,
            format!("-A INPUT -p tcp -s {src} -j REJECT --reject-with tcp-reset"),
        )
    }

    /// Adds `rules`: each namespace's at once (one `iptables-restore`),
    /// all namespaces in parallel, so a fault begins nearly at one time.
    pub fn install(&self, rules: &[Rule]) -> Result<(), LabError> {
        use std::io::Write as _;
        let mut children = Vec::new();
        for i in 0..self.namespaces.len() {
            let mine: Vec<&Rule> = rules.iter().filter(|r| r.member == i).collect();
            if mine.is_empty() {
                continue;
            }
            let mut text = String::new();
            for (table, nat) in [("filter", false), ("nat", true)] {
                text += &format!("*{table}\n");
                for r in mine.iter().filter(|r| r.nat == nat) {
                    text += &format!("{}\n", r.spec);
                }
                text += "COMMIT\n";
            }
            let ns = self.namespaces[i].as_str();
            let mut child = Command::new("ip")
                .args(["netns", "exec", ns, "iptables-restore", "-w", "--noflush"])
                .stdin(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .map_err(|e| LabError::Net(format!("running iptables-restore: {e}")))?;
            if let Some(mut stdin) = child.stdin.take() {
                stdin.write_all(text.as_bytes())?;
            }
            children.push((ns, child));
        }
        for (ns, child) in children {
            let out = child.wait_with_output()?;
            if !out.status.success() {
                let err = String::from_utf8_lossy(&out.stderr);
                return Err(LabError::Net(format!(
                    "iptables-restore in {ns}: {}",
                    err.trim()
                )));
            }
        }
        Ok(())
    }

    /// The rules in member `i`'s namespace (`iptables -S` of both tables).
    pub fn rules(&self, i: usize) -> Result<String, LabError> {
        let ns = self.namespaces[i].as_str();
        let filter = run("ip", &["netns", "exec", ns, "iptables", "-w", "-S"])?;
        let nat = run(
            "ip",
            &["netns", "exec", ns, "iptables", "-w", "-t", "nat", "-S"],
        )?;
        Ok(filter + &nat)
    }

    /// Removes every fault: flushes the rules in each member's namespace.
    pub fn heal(&self) -> Result<(), LabError> {
        for i in 0..self.namespaces.len() {
            self.iptables(i, &["-F", "INPUT"])?;
            self.iptables(i, &["-t", "nat", "-F", "OUTPUT"])?;
        }
        Ok(())
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        for ns in &self.namespaces {
            remove_namespace(ns);
        }
        // A namespace outlives `ip netns del` while sockets of its killed
        // members still retransmit (orphans, for minutes); deleting the
        // host ends of the veth pairs at least takes them off the host.
        for host in &self.hosts {
            let _ = run("ip", &["link", "del", host]);
        }
        let _ = run("ip", &["link", "del", &self.bridge]);
    }
}

/// Kills what still runs in namespace `ns` and deletes it (its veth
/// pair goes with it).
fn remove_namespace(ns: &str) {
    if let Ok(pids) = run("ip", &["netns", "pids", ns]) {
        for pid in pids.split_whitespace().filter_map(|p| p.parse().ok()) {
            if let Some(pid) = Pid::from_raw(pid) {
                let _ = kill_process(pid, Signal::KILL);
            }
        }
    }
    let _ = run("ip", &["netns", "del", ns]);
}

/// The owning pid in a name the lab gave: `<prefix><pid>x<run>[m<i>]`.
fn owner(name: &str, prefix: &str) -> Option<i32> {
    let rest = name.strip_prefix(prefix)?;
    let (pid, rest) = rest.split_once('x')?;
    let (run, member) = match rest.split_once('m') {
        Some((r, m)) if prefix != "cb" => (r, m), // namespaces, veths
        None if prefix == "cb" => (rest, "0"),
        _ => return None,
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    (digits(pid) && digits(run) && digits(member))
        .then(|| pid.parse().ok())
        .flatten()
}

fn alive(pid: i32) -> bool {
    Pid::from_raw(pid).is_some_and(|p| test_kill_process(p).is_ok())
}

/// Removes namespaces and bridges of labs whose process is gone (and the
/// members still running in them); returns their names. Does nothing
/// (and returns nothing) without root.
pub fn sweep() -> Result<Vec<String>, LabError> {
    if !rustix::process::geteuid().is_root() {
        return Ok(Vec::new());
    }
    let mut removed = Vec::new();
    for line in run("ip", &["netns", "list"])?.lines() {
        let ns = line.split_whitespace().next().unwrap_or("");
        if owner(ns, "clab").is_some_and(|pid| !alive(pid)) {
            remove_namespace(ns);
            removed.push(ns.to_string());
        }
    }
    for line in run("ip", &["-o", "link", "show"])?.lines() {
        let name = line.split(':').nth(1).unwrap_or("").trim();
        let name = name.split('@').next().unwrap_or("");
        let mine = owner(name, "cb").or_else(|| owner(name, "cv"));
        if mine.is_some_and(|pid| !alive(pid)) {
            let _ = run("ip", &["link", "del", name]);
            removed.push(name.to_string());
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_carry_their_owner() {
        assert_eq!(owner("clab123x4m0", "clab"), Some(123));
        assert_eq!(owner("cb123x4", "cb"), Some(123));
        assert_eq!(owner("cb123x4m1", "cb"), None);
        assert_eq!(owner("cv123x4m2", "cv"), Some(123));
        assert_eq!(owner("clab123x4", "clab"), None);
        assert_eq!(owner("clabx4m0", "clab"), None);
        assert_eq!(owner("cbr0", "cb"), None);
        assert_eq!(owner("docker0", "cb"), None);
    }
}
