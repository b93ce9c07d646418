//! A cluster of real member processes on loopback: Concord from this build
//! or etcd, started with the same etcd flags, each member killed,
//! restarted, paused and resumed by signal.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
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

/// The cluster id behind each member's client URL, learned once its cluster
/// has a leader. While a member is down another process may take its
/// loopback port (a member of another lab run on the same machine): its
/// answers must not count as this cluster's, so [`channel`] refuses a URL
/// that answers for another cluster.
static CLUSTER_OF: Mutex<BTreeMap<String, u64>> = Mutex::new(BTreeMap::new());

fn cluster_of(url: &str) -> Option<u64> {
    CLUSTER_OF.lock().ok()?.get(url).copied()
}

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
    /// Its peer URL (what MemberAdd and `--initial-cluster` name).
    peer_url: String,
    /// Removed from the cluster: never started again.
    removed: bool,
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
    /// Where members' data directories and logs go.
    dir: PathBuf,
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
        // Members an earlier lab left running (it was SIGKILLed) would
        // hold ports and CPU.
        crate::orphans::sweep();
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
                peer_url: peer,
                removed: false,
            });
        }
        let mut c = Cluster {
            target,
            binary: binary.to_path_buf(),
            members,
            dir: dir.to_path_buf(),
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

    /// (name, client URL) of every member.
    pub fn named_endpoints(&self) -> Vec<(String, String)> {
        self.members
            .iter()
            .map(|m| (m.name.clone(), m.client_url.clone()))
            .collect()
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
        self.restart_with_env(i, &[])
    }

    /// Member `i`'s exit status once its process has ended (it is then
    /// stopped, so [`Cluster::heal`] starts it again); `None` while it runs.
    pub fn try_exited(&mut self, i: usize) -> Result<Option<std::process::ExitStatus>, LabError> {
        let m = &mut self.members[i];
        let Some(child) = m.child.as_mut() else {
            return Ok(None);
        };
        let status = child.try_wait()?;
        if status.is_some() {
            m.child = None;
        }
        Ok(status)
    }

    /// The members whose processes end within `within` (after a restart:
    /// one that could not start, such as on a port another process took),
    /// each with its exit status in words. They count as stopped, so the
    /// next [`Cluster::heal`] starts them again.
    pub async fn exited_within(&mut self, within: Duration) -> Result<Vec<String>, LabError> {
        let deadline = tokio::time::Instant::now() + within;
        let mut out = Vec::new();
        while tokio::time::Instant::now() < deadline {
            for i in 0..self.members.len() {
                if let Some(status) = self.try_exited(i)? {
                    out.push(format!("{} exited ({status})", self.members[i].name));
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(out)
    }

    /// Starts member `i` (again) with `env` added to its environment for
    /// this start only (a failpoint armed from the start).
    pub fn restart_with_env(&mut self, i: usize, env: &[(String, String)]) -> Result<(), LabError> {
        let bin_arg = self.binary.display().to_string();
        let m = &mut self.members[i];
        if m.child.is_some() || m.removed {
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
        let (owner, me) = crate::orphans::mark();
        let child = Command::new(program)
            .args(args)
            .args(&m.args)
            .env(owner, me)
            .envs(m.env.iter().map(|(k, v)| (k, v)))
            .envs(env.iter().map(|(k, v)| (k, v)))
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

    /// Member `i`'s peer URL.
    pub fn peer_url(&self, i: usize) -> &str {
        &self.members[i].peer_url
    }

    /// Member `i`'s client URL.
    pub fn client_url(&self, i: usize) -> &str {
        &self.members[i].client_url
    }

    /// The members not removed, running or not.
    pub fn current(&self) -> Vec<usize> {
        (0..self.members.len())
            .filter(|&i| !self.members[i].removed)
            .collect()
    }

    /// A new member (named after the last, with fresh loopback ports and
    /// data directory) set to join the current members
    /// (`--initial-cluster-state existing`); not started: add it with
    /// MemberAdd, then [`Cluster::restart`] it. Loopback clusters only.
    pub fn prepare_member(&mut self) -> Result<usize, LabError> {
        if self.net.is_some() {
            return Err(LabError::Start(
                "new members join loopback clusters only".into(),
            ));
        }
        let ports = free_ports(2)?;
        let url = |p: u16| format!("http://127.0.0.1:{p}");
        let (client_url, peer_url) = (url(ports[0]), url(ports[1]));
        let name = format!("m{}", self.members.len() + 1);
        let mut initial: Vec<String> = self
            .current()
            .into_iter()
            .map(|i| format!("{}={}", self.members[i].name, self.members[i].peer_url))
            .collect();
        initial.push(format!("{name}={peer_url}"));
        let data = self.dir.join(format!("{name}.data"));
        let args = vec![
            format!("--name={name}"),
            format!("--data-dir={}", data.display()),
            format!("--listen-client-urls={client_url}"),
            format!("--advertise-client-urls={client_url}"),
            format!("--listen-peer-urls={peer_url}"),
            format!("--initial-advertise-peer-urls={peer_url}"),
            format!("--initial-cluster={}", initial.join(",")),
            "--initial-cluster-state=existing".to_string(),
            "--initial-cluster-token=concord-lab".to_string(),
        ];
        let log = self.dir.join(format!("{name}.log"));
        self.members.push(Member {
            name,
            client_url,
            args,
            log,
            prefix: Vec::new(),
            env: Vec::new(),
            child: None,
            paused: false,
            peer_url,
            removed: false,
        });
        Ok(self.members.len() - 1)
    }

    /// Forgets member `i` (removed from the cluster, or never added):
    /// kills it and never starts it again.
    pub fn forget(&mut self, i: usize) -> Result<(), LabError> {
        self.members[i].removed = true;
        self.kill(i)
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
            if let Some(s) = status(&m.client_url).await {
                seen.push((i, s));
            }
        }
        let (_, top) = seen
            .iter()
            .filter(|(_, s)| s.leader != 0)
            .max_by_key(|(_, s)| s.term)?;
        let (i, leader) = seen.iter().find(|(_, s)| s.member == top.leader)?;
        self.learn_cluster(leader.cluster);
        Some(*i)
    }

    /// Records `id` as the cluster of every member's client URL (once).
    fn learn_cluster(&self, id: u64) {
        if let Ok(mut map) = CLUSTER_OF.lock() {
            for m in &self.members {
                map.entry(m.client_url.clone()).or_insert(id);
            }
        }
    }

    /// The highest Raft term the running members report.
    pub async fn term(&self) -> Option<u64> {
        let mut best = None;
        for m in self
            .members
            .iter()
            .filter(|m| m.child.is_some() && !m.paused)
        {
            if let Some(s) = status(&m.client_url).await {
                best = best.max(Some(s.term));
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
            if let Ok(mut map) = CLUSTER_OF.lock() {
                map.remove(&self.members[i].client_url);
            }
        }
    }
}

/// What a member says of itself.
pub(crate) struct Status {
    pub(crate) member: u64,
    pub(crate) cluster: u64,
    pub(crate) leader: u64,
    pub(crate) term: u64,
}

/// A member's status, if it answers within half a second.
pub(crate) async fn status(url: &str) -> Option<Status> {
    let ch = channel(url, Duration::from_millis(300)).await.ok()?;
    ask_status(ch).await
}

async fn ask_status(ch: Channel) -> Option<Status> {
    let mut c = MaintenanceClient::new(ch);
    let s = tokio::time::timeout(Duration::from_millis(500), c.status(StatusRequest {}))
        .await
        .ok()?
        .ok()?
        .into_inner();
    let h = s.header.unwrap_or_default();
    Some(Status {
        member: h.member_id,
        cluster: h.cluster_id,
        leader: s.leader,
        term: s.raft_term,
    })
}

/// A gRPC channel to `url`, connected within `timeout`.
pub async fn channel(url: &str, timeout: Duration) -> Result<Channel, LabError> {
    let ep = Endpoint::from_shared(url.to_string())
        .map_err(|e| LabError::Start(format!("{url}: {e}")))?
        .connect_timeout(timeout)
        .timeout(Duration::from_secs(2));
    let ch = ep
        .connect()
        .await
        .map_err(|e| LabError::Connect(format!("{url}: {e}")))?;
    if let Some(want) = cluster_of(url) {
        let got = ask_status(ch.clone()).await.map(|s| s.cluster);
        if got != Some(want) {
            let got = got.map_or("no status".to_string(), |id| format!("cluster {id:x}"));
            return Err(LabError::Connect(format!(
                "{url} answers with {got}, not this lab's cluster {want:x} \
                 (its member is down and another process holds the port)"
            )));
        }
    }
    Ok(ch)
}
