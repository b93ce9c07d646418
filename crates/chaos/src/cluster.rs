//! A cluster of real member processes on loopback: Concord from this build
//! or etcd, started with the same etcd flags, each member killed,
//! restarted, paused and resumed by signal.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use concord_proto::etcdserverpb::maintenance_client::MaintenanceClient;
use concord_proto::etcdserverpb::StatusRequest;
use rustix::process::{kill_process, Pid, Signal};
use tonic::transport::{Channel, Endpoint};

use crate::net::Network;
use crate::LabError;

/// Which system the lab runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Target {
    /// Concord, the `concord` binary of this build.
    Concord,
    /// etcd, the `etcd` binary on the `PATH` (Debian's `etcd-server`).
    Etcd,
}

/// The client port of members in network namespaces (each has its own
/// address, so every member uses etcd's usual ports).
pub const NETWORKED_CLIENT_PORT: u16 = 2379;
/// The peer port of members in network namespaces.
pub const NETWORKED_PEER_PORT: u16 = 2380;

/// One member: its flags, and its process while it runs.
#[derive(Debug)]
struct Member {
    name: String,
    client_url: String,
    args: Vec<String>,
    log: PathBuf,
    /// The command line before the binary (`ip netns exec NS`), if any.
    prefix: Vec<String>,
    /// Environment added to the lab's (libfaketime's, for clock faults).
    env: Vec<(String, String)>,
    child: Option<Child>,
    paused: bool,
}

/// What members get beyond the common etcd flags.
#[derive(Debug, Clone, Default)]
pub struct MemberOptions {
    /// Flags every member gets (e.g. `--experimental-lease-reads`).
    pub args: Vec<String>,
    /// Environment of member `i` (missing: none added).
    pub env: Vec<Vec<(String, String)>>,
}

/// A running cluster; its processes are killed when it is dropped.
#[derive(Debug)]
pub struct Cluster {
    target: Target,
    binary: PathBuf,
    members: Vec<Member>,
    /// Dropped after the members are killed (fields drop after `drop`).
    net: Option<Network>,
}

/// `n` free loopback ports. They come from below Linux's ephemeral range
/// (so no outgoing connection takes one), handed out once per process
/// from a base drawn from the process id (so lab runs in one process, or
/// in two at once, do not pick the same), each checked free by binding it.
fn free_ports(n: usize) -> Result<Vec<u16>, LabError> {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    const LOW: u32 = 20_000;
    const SPAN: u32 = 12_000;
    let base = (std::process::id() % 60) * 200;
    let mut out = Vec::new();
    for _ in 0..SPAN {
        if out.len() == n {
            return Ok(out);
        }
        let port = (LOW + (base + NEXT.fetch_add(1, Ordering::Relaxed)) % SPAN) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            out.push(port);
        }
    }
    Err(LabError::Start("no free loopback ports".into()))
}

impl Cluster {
    /// Starts `size` members of `target` (`binary`) with data under `dir`.
    pub fn start(
        target: Target,
        binary: &Path,
        size: usize,
        dir: &Path,
    ) -> Result<Cluster, LabError> {
        Cluster::start_with(target, binary, size, dir, &MemberOptions::default())
    }

    /// [`Cluster::start`] with more flags and environment.
    pub fn start_with(
        target: Target,
        binary: &Path,
        size: usize,
        dir: &Path,
        opts: &MemberOptions,
    ) -> Result<Cluster, LabError> {
        let ports = free_ports(2 * size)?;
        let urls = (0..size)
            .map(|i| {
                let url = |p: u16| format!("http://127.0.0.1:{p}");
                (url(ports[2 * i]), url(ports[2 * i + 1]))
            })
            .collect();
        Cluster::launch(target, binary, dir, urls, None, opts)
    }

    /// Starts `size` members as [`Cluster::start`] does, each in its own
    /// network namespace (see [`crate::net`]) so that network faults can
    /// be injected; needs root.
    pub fn start_networked(
        target: Target,
        binary: &Path,
        size: usize,
        dir: &Path,
    ) -> Result<Cluster, LabError> {
        Cluster::start_networked_with(target, binary, size, dir, &MemberOptions::default())
    }

    /// [`Cluster::start_networked`] with more flags and environment.
    pub fn start_networked_with(
        target: Target,
        binary: &Path,
        size: usize,
        dir: &Path,
        opts: &MemberOptions,
    ) -> Result<Cluster, LabError> {
        let net = Network::create(size)?;
        let urls = (0..size)
            .map(|i| {
                let url = |p: u16| format!("http://{}:{p}", net.addr(i));
                (url(NETWORKED_CLIENT_PORT), url(NETWORKED_PEER_PORT))
            })
            .collect();
        Cluster::launch(target, binary, dir, urls, Some(net), opts)
    }

    /// Starts members with the given (client, peer) URLs.
    fn launch(
        target: Target,
        binary: &Path,
        dir: &Path,
        urls: Vec<(String, String)>,
        net: Option<Network>,
        opts: &MemberOptions,
    ) -> Result<Cluster, LabError> {
        let initial: Vec<String> = (0..urls.len())
            .map(|i| format!("m{}={}", i + 1, urls[i].1))
            .collect();
        let initial = initial.join(",");
        let mut members = Vec::new();
        for (i, (client_url, peer)) in urls.into_iter().enumerate() {
            let name = format!("m{}", i + 1);
            let data = dir.join(format!("{name}.data"));
            let mut args = vec![
                format!("--name={name}"),
                format!("--data-dir={}", data.display()),
                format!("--listen-client-urls={client_url}"),
                format!("--advertise-client-urls={client_url}"),
                format!("--listen-peer-urls={peer}"),
                format!("--initial-advertise-peer-urls={peer}"),
                format!("--initial-cluster={initial}"),
                "--initial-cluster-state=new".to_string(),
                "--initial-cluster-token=concord-lab".to_string(),
            ];
            args.extend(opts.args.iter().cloned());
            let log = dir.join(format!("{name}.log"));
            let prefix = net.as_ref().map_or(Vec::new(), |n| n.exec_prefix(i));
            members.push(Member {
                name,
                client_url,
                args,
                log,
                prefix,
                env: opts.env.get(i).cloned().unwrap_or_default(),
                child: None,
                paused: false,
            });
        }
        let mut c = Cluster {
            target,
            binary: binary.to_path_buf(),
            members,
            net,
        };
        for i in 0..c.members.len() {
            c.restart(i)?;
        }
        Ok(c)
    }

    /// The members' network, when they run in namespaces.
    pub fn network(&self) -> Option<&Network> {
        self.net.as_ref()
    }

    /// The system under test.
    pub fn target(&self) -> Target {
        self.target
    }

    /// Number of members.
    pub fn size(&self) -> usize {
        self.members.len()
    }

    /// Client URLs of every member.
    pub fn endpoints(&self) -> Vec<String> {
        self.members.iter().map(|m| m.client_url.clone()).collect()
    }

    /// The process ids of the members that run.
    pub fn pids(&self) -> Vec<u32> {
        let running = self.members.iter().filter_map(|m| m.child.as_ref());
        running.map(|c| c.id()).collect()
    }

    /// Member `i`'s name (`m1`, `m2`, ...).
    pub fn name(&self, i: usize) -> &str {
        &self.members[i].name
    }

    /// Starts member `i` (again), from its data directory.
    pub fn restart(&mut self, i: usize) -> Result<(), LabError> {
        let bin_arg = self.binary.display().to_string();
        let m = &mut self.members[i];
        if m.child.is_some() {
            return Ok(());
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&m.log)?;
        let (program, args) = match m.prefix.split_first() {
            Some((first, rest)) => (PathBuf::from(first), [rest, &[bin_arg]].concat()),
            None => (self.binary.clone(), Vec::new()),
        };
        let child = Command::new(program)
            .args(args)
            .args(&m.args)
            .envs(m.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .map_err(|e| LabError::Start(format!("{}: {e}", self.binary.display())))?;
        m.child = Some(child);
        m.paused = false;
        Ok(())
    }

    /// SIGKILLs member `i` and reaps it.
    pub fn kill(&mut self, i: usize) -> Result<(), LabError> {
        let m = &mut self.members[i];
        if let Some(mut child) = m.child.take() {
            child.kill()?;
            child.wait()?;
        }
        m.paused = false;
        Ok(())
    }

    /// SIGSTOPs member `i` (`resume` continues it).
    pub fn pause(&mut self, i: usize) -> Result<(), LabError> {
        self.signal(i, Signal::STOP)?;
        self.members[i].paused = true;
        Ok(())
    }

    /// SIGCONTs a paused member `i`.
    pub fn resume(&mut self, i: usize) -> Result<(), LabError> {
        self.signal(i, Signal::CONT)?;
        self.members[i].paused = false;
        Ok(())
    }

    fn signal(&self, i: usize, sig: Signal) -> Result<(), LabError> {
        let Some(child) = &self.members[i].child else {
            return Ok(());
        };
        let pid = Pid::from_raw(child.id() as i32).ok_or(LabError::Start("no pid".into()))?;
        kill_process(pid, sig).map_err(|e| LabError::Io(e.into()))
    }

    /// The member that leads, by asking the members that run (each names
    /// itself and whom it follows; the highest term wins). `None`: no
    /// leader known, or the leader is not among the members that answer.
    pub async fn leader(&self) -> Option<usize> {
        let mut seen = Vec::new();
        for (i, m) in self.members.iter().enumerate() {
            if m.child.is_none() || m.paused {
                continue;
            }
            if let Some((me, leader, term)) = status(&m.client_url).await {
                seen.push((i, me, leader, term));
            }
        }
        let (_, _, leader, _) = seen.iter().filter(|s| s.2 != 0).max_by_key(|s| s.3)?;
        seen.iter().find(|s| s.1 == *leader).map(|s| s.0)
    }

    /// The highest Raft term the running members report.
    pub async fn term(&self) -> Option<u64> {
        let mut best = None;
        for m in self
            .members
            .iter()
            .filter(|m| m.child.is_some() && !m.paused)
        {
            if let Some((_, _, term)) = status(&m.client_url).await {
                best = best.max(Some(term));
            }
        }
        best
    }

    /// Waits until some member leads, at most `within`.
    pub async fn wait_for_leader(&self, within: Duration) -> Result<usize, LabError> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Some(i) = self.leader().await {
                return Ok(i);
            }
            if tokio::time::Instant::now() > deadline {
                return Err(LabError::NoLeader(within));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Removes network faults, resumes paused members and restarts
    /// stopped ones.
    pub fn heal(&mut self) -> Result<(), LabError> {
        if let Some(net) = &self.net {
            net.heal()?;
        }
        for i in 0..self.members.len() {
            if self.members[i].paused {
                self.resume(i)?;
            }
            self.restart(i)?;
        }
        Ok(())
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // Without faults the members' last packets (FIN, RST) arrive, and
        // no socket lingers to keep a deleted namespace alive.
        if let Some(net) = &self.net {
            let _ = net.heal();
        }
        for i in 0..self.members.len() {
            if self.members[i].paused {
                let _ = self.resume(i);
            }
            let _ = self.kill(i);
        }
    }
}

/// A member's (id, leader id, term), if it answers within half a second.
async fn status(url: &str) -> Option<(u64, u64, u64)> {
    let ch = channel(url, Duration::from_millis(300)).await.ok()?;
    let mut c = MaintenanceClient::new(ch);
    let s = tokio::time::timeout(Duration::from_millis(500), c.status(StatusRequest {}))
        .await
        .ok()?
        .ok()?
        .into_inner();
    Some((s.header.map_or(0, |h| h.member_id), s.leader, s.raft_term))
}

/// A gRPC channel to `url`, connected within `timeout`.
pub async fn channel(url: &str, timeout: Duration) -> Result<Channel, LabError> {
    let ep = Endpoint::from_shared(url.to_string())
        .map_err(|e| LabError::Start(format!("{url}: {e}")))?
        .connect_timeout(timeout)
        .timeout(Duration::from_secs(2));
    ep.connect()
        .await
        .map_err(|e| LabError::Connect(format!("{url}: {e}")))
}
