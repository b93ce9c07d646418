//! Test harness for the compatibility suite: a real cluster of `concord`
//! processes on loopback ports, with temp data dirs and per-member log files.
//!
//! Every wait is bounded; every process started here (members and the
//! background `etcdctl` helpers) is killed and reaped on drop. When a test
//! panics, the tail of each member's log is printed.
//!
//! `CONCORD_COMPAT_SERVER=etcd cargo test -p concord-server --test compat_...`
//! runs a suite against the real etcd instead (same flags), which is how the
//! expected outputs were checked.
#![allow(dead_code)]

mod cmd;
mod rpc;

pub use cmd::*;
pub use rpc::*;

use std::collections::HashSet;
use std::fs::OpenOptions;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The server binary under test: `concord`, or the binary named by
/// `CONCORD_COMPAT_SERVER` (e.g. `etcd`, to check the suite's expectations
/// against the reference implementation; it takes the same flags).
pub fn server_bin() -> String {
    std::env::var("CONCORD_COMPAT_SERVER")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_concord").to_string())
}

/// How long a fresh cluster may take to become healthy.
pub const START_TIMEOUT: Duration = Duration::from_secs(30);
/// Default bound for one `etcdctl` command.
pub const CTL_TIMEOUT: Duration = Duration::from_secs(20);

static PORTS: Mutex<Option<HashSet<u16>>> = Mutex::new(None);

/// A free loopback port, never handed out twice by this process.
pub fn free_port() -> u16 {
    loop {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let port = l.local_addr().expect("local addr").port();
        drop(l);
        let mut used = PORTS.lock().unwrap_or_else(|e| e.into_inner());
        if used.get_or_insert_with(HashSet::new).insert(port) {
            return port;
        }
    }
}

/// Polls `f` every 50 ms until it returns `Some` or `timeout` passes.
pub fn wait_until<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A plain HTTP/1.1 GET; returns the status code and the body.
pub fn http_get(addr: &str, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr.parse().ok()?, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(3))).ok()?;
    s.set_write_timeout(Some(Duration::from_secs(3))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf).into_owned();
    let code = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n").map(|x| x.1).unwrap_or("");
    Some((code, body.to_string()))
}

/// One member process.
#[derive(Debug)]
pub struct Node {
    /// `--name`.
    pub name: String,
    /// Client port on 127.0.0.1.
    pub client_port: u16,
    /// Peer port on 127.0.0.1.
    pub peer_port: u16,
    /// `--data-dir`.
    pub data_dir: PathBuf,
    /// Log file (stdout and stderr, appended across restarts).
    pub log: PathBuf,
    /// `--initial-cluster`.
    pub initial_cluster: String,
    /// `--initial-cluster-state`.
    pub state: String,
    /// Serve clients and peers over TLS with these files.
    pub tls: Option<TlsFiles>,
    /// Plain-HTTP `--listen-metrics-urls` port (health checks of TLS members).
    pub metrics_port: u16,
    /// More flags, appended to the command line.
    pub extra: Vec<String>,
    /// Environment variables for the process (e.g. `FAILPOINTS`).
    pub env: Vec<(String, String)>,
    token: String,
    child: Option<Child>,
}

/// Certificates for a TLS cluster (PEM files).
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// The CA that signed everything below.
    pub ca: PathBuf,
    /// Member certificate (server and client use, SANs 127.0.0.1 and localhost).
    pub member_cert: PathBuf,
    /// Its key.
    pub member_key: PathBuf,
    /// Client certificate for `etcdctl`.
    pub client_cert: PathBuf,
    /// Its key.
    pub client_key: PathBuf,
}

impl TlsFiles {
    /// `etcdctl` flags that trust the CA and show the client certificate.
    pub fn ctl_args(&self) -> Vec<String> {
        vec![
            format!("--cacert={}", self.ca.display()),
            format!("--cert={}", self.client_cert.display()),
            format!("--key={}", self.client_key.display()),
        ]
    }
}

impl Node {
    /// `127.0.0.1:<client port>`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.client_port)
    }

    fn scheme(&self) -> &'static str {
        if self.tls.is_some() {
            "https"
        } else {
            "http"
        }
    }

    /// `http://127.0.0.1:<client port>` (`https` with TLS).
    pub fn client_url(&self) -> String {
        format!("{}://{}", self.scheme(), self.addr())
    }

    /// `http://127.0.0.1:<peer port>` (`https` with TLS).
    pub fn peer_url(&self) -> String {
        format!("{}://127.0.0.1:{}", self.scheme(), self.peer_port)
    }

    /// The command line it runs with.
    pub fn args(&self) -> Vec<String> {
        let mut a: Vec<String> = vec![
            "--name".into(),
            self.name.clone(),
            "--data-dir".into(),
            self.data_dir.display().to_string(),
            "--listen-client-urls".into(),
            self.client_url(),
            "--advertise-client-urls".into(),
            self.client_url(),
            "--listen-peer-urls".into(),
            self.peer_url(),
            "--initial-advertise-peer-urls".into(),
            self.peer_url(),
            "--initial-cluster".into(),
            self.initial_cluster.clone(),
            "--initial-cluster-state".into(),
            self.state.clone(),
            "--initial-cluster-token".into(),
            self.token.clone(),
        ];
        for s in [
            "--heartbeat-interval",
            "50",
            "--election-timeout",
            "500",
            "--log-level",
            "info",
        ] {
            a.push(s.into());
        }
        if let Some(t) = &self.tls {
            let f = |p: &PathBuf| p.display().to_string();
            a.extend([
                "--cert-file".into(),
                f(&t.member_cert),
                "--key-file".into(),
                f(&t.member_key),
                "--trusted-ca-file".into(),
                f(&t.ca),
                "--client-cert-auth".into(),
                "--peer-cert-file".into(),
                f(&t.member_cert),
                "--peer-key-file".into(),
                f(&t.member_key),
                "--peer-trusted-ca-file".into(),
                f(&t.ca),
                "--peer-client-cert-auth".into(),
                "--listen-metrics-urls".into(),
                format!("http://127.0.0.1:{}", self.metrics_port),
            ]);
        }
        a.extend(self.extra.iter().cloned());
        a
    }

    /// Starts the process (logs appended to `log`).
    pub fn spawn(&mut self) {
        assert!(self.child.is_none(), "{} is already running", self.name);
        let mut f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("open log");
        let _ = writeln!(f, "=== harness: starting {} {:?}", self.name, self.args());
        let child = Command::new(server_bin())
            .args(self.args())
            .envs(self.env.iter().cloned())
            .stdin(Stdio::null())
            .stdout(f.try_clone().expect("clone log"))
            .stderr(f)
            .spawn()
            .expect("spawn concord");
        self.child = Some(child);
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// SIGTERM (a clean stop), then waits for the exit.
    pub fn stop(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let pid = self.child.as_ref()?.id();
        let _ = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status();
        let st = self.wait_exit(timeout);
        self.child = None;
        st
    }

    /// SIGKILL and reap.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Is the process alive.
    pub fn running(&mut self) -> bool {
        match &mut self.child {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Waits for the process to exit by itself.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let c = self.child.as_mut()?;
        let st = wait_until(timeout, || c.try_wait().ok().flatten());
        if st.is_some() {
            self.child = None;
        }
        st
    }

    /// Does `/health` say `"health":"true"` (asked on the plain metrics
    /// listener of a TLS member).
    pub fn healthy(&self) -> bool {
        let addr = match self.tls {
            Some(_) => format!("127.0.0.1:{}", self.metrics_port),
            None => self.addr(),
        };
        http_get(&addr, "/health").is_some_and(|(_, b)| b.contains(r#""health":"true""#))
    }

    /// Maintenance Status.
    pub fn status(&self) -> Option<NodeStatus> {
        status_of(&self.addr())
    }

    /// Last `n` lines of the log.
    pub fn log_tail(&self, n: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A cluster of member processes; everything is stopped on drop.
#[derive(Debug)]
pub struct Cluster {
    /// Nodes, in start order (removed ones stay, stopped).
    pub nodes: Vec<Node>,
    /// The temp dir holding data dirs and logs.
    pub dir: tempfile::TempDir,
    /// How `endpoints()` (and so every `etcdctl` run) writes endpoints.
    pub form: EndpointForm,
    token: String,
}

/// How endpoints are written on `etcdctl` command lines: users write
/// both, and etcd's Go client sends the scheme on to the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndpointForm {
    /// `127.0.0.1:2379`.
    Bare,
    /// `http://127.0.0.1:2379`.
    Http,
    /// Alternating: `http://127.0.0.1:2379,127.0.0.1:12379,...`.
    Mixed,
}

impl EndpointForm {
    /// Writes `addrs` (`host:port`) in this form, comma separated.
    pub fn write(self, addrs: &[String]) -> String {
        addrs
            .iter()
            .enumerate()
            .map(|(i, a)| match self {
                EndpointForm::Http => format!("http://{a}"),
                EndpointForm::Mixed if i % 2 == 0 => format!("http://{a}"),
                _ => a.clone(),
            })
            .collect::<Vec<_>>()
            .join(",")
    }
}

impl Cluster {
    /// Starts `n` members and waits until all are healthy.
    pub fn start(n: usize) -> Cluster {
        Self::start_with(n, None)
    }

    /// Starts `n` members (serving TLS on client and peer URLs, with
    /// client-certificate authentication on both, when `tls` is given) and
    /// waits until all are healthy.
    pub fn start_with(n: usize, tls: Option<TlsFiles>) -> Cluster {
        Self::start_full(n, tls, &[])
    }

    /// Starts `n` members with `extra` flags each.
    pub fn start_with_args(n: usize, extra: &[&str]) -> Cluster {
        Self::start_full(n, None, extra)
    }

    fn start_full(n: usize, tls: Option<TlsFiles>, extra: &[&str]) -> Cluster {
        let dir = tempfile::Builder::new()
            .prefix("concord-compat-")
            .tempdir()
            .expect("tempdir");
        let token = format!("compat-{}", free_port());
        let mut nodes: Vec<Node> = (1..=n)
            .map(|i| Self::new_node(dir.path(), &format!("m{i}"), &token))
            .collect();
        for m in &mut nodes {
            m.tls = tls.clone();
            m.extra = extra.iter().map(|s| s.to_string()).collect();
        }
        let initial = nodes
            .iter()
            .map(|m| format!("{}={}", m.name, m.peer_url()))
            .collect::<Vec<_>>()
            .join(",");
        for m in &mut nodes {
            m.initial_cluster = initial.clone();
        }
        let plain = tls.is_none();
        let mut c = Cluster {
            nodes,
            dir,
            form: EndpointForm::Bare,
            token,
        };
        for m in &mut c.nodes {
            m.spawn();
        }
        c.wait_all_healthy(START_TIMEOUT);
        if plain {
            c.wait_published(START_TIMEOUT);
        }
        c
    }

    /// Waits until the member list (as the first member sees it) has every
    /// running member's name and client URL, as etcd has before it serves.
    #[track_caller]
    pub fn wait_published(&mut self, timeout: Duration) {
        let want: Vec<(String, String)> = self
            .nodes
            .iter_mut()
            .filter_map(|m| m.running().then(|| (m.name.clone(), m.client_url())))
            .collect();
        let addr = self.nodes[0].addr();
        let ok = wait_until(timeout, || {
            let have = member_list(&addr)?;
            want.iter().all(|w| have.contains(w)).then_some(())
        });
        assert!(ok.is_some(), "members never published {want:?}");
    }

    fn new_node(dir: &Path, name: &str, token: &str) -> Node {
        Node {
            name: name.to_string(),
            client_port: free_port(),
            peer_port: free_port(),
            data_dir: dir.join(format!("{name}.data")),
            log: dir.join(format!("{name}.log")),
            initial_cluster: String::new(),
            state: "new".into(),
            tls: None,
            metrics_port: free_port(),
            extra: Vec::new(),
            env: Vec::new(),
            token: token.to_string(),
            child: None,
        }
    }

    /// A temp file path inside the cluster's directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Prepares (does not start) a member that joins with
    /// `--initial-cluster-state existing`; its `--initial-cluster` lists
    /// the running members plus itself. Returns its index.
    pub fn prepare_join(&mut self, name: &str) -> usize {
        let mut n = Self::new_node(self.dir.path(), name, &self.token);
        let mut parts: Vec<String> = Vec::new();
        for m in &mut self.nodes {
            if m.running() {
                parts.push(format!("{}={}", m.name, m.peer_url()));
            }
        }
        parts.push(format!("{}={}", n.name, n.peer_url()));
        n.initial_cluster = parts.join(",");
        n.state = "existing".into();
        self.nodes.push(n);
        self.nodes.len() - 1
    }

    /// Client addresses of running members, comma separated, written as
    /// `self.form` says.
    pub fn endpoints(&mut self) -> String {
        let addrs = self.running_addrs();
        self.form.write(&addrs)
    }

    /// Client addresses of running members.
    pub fn running_addrs(&mut self) -> Vec<String> {
        self.nodes
            .iter_mut()
            .filter_map(|m| m.running().then(|| m.addr()))
            .collect()
    }

    /// Client addresses of all members.
    pub fn addrs(&self) -> Vec<String> {
        self.nodes.iter().map(Node::addr).collect()
    }

    /// Waits until every running member reports healthy.
    #[track_caller]
    pub fn wait_all_healthy(&mut self, timeout: Duration) {
        let ok = wait_until(timeout, || {
            self.nodes
                .iter_mut()
                .filter(|m| m.child.is_some())
                .all(|m| m.healthy())
                .then_some(())
        });
        assert!(ok.is_some(), "cluster not healthy within {timeout:?}");
    }

    /// Index of the member that is leader (agreed by itself), waiting up to
    /// `timeout` for one.
    #[track_caller]
    pub fn leader(&mut self, timeout: Duration) -> usize {
        let running: Vec<usize> = (0..self.nodes.len())
            .filter(|&i| self.nodes[i].running())
            .collect();
        let found = wait_until(timeout, || {
            running.iter().copied().find(|&i| {
                self.nodes[i]
                    .status()
                    .is_some_and(|s| s.leader != 0 && s.leader == s.id)
            })
        });
        found.unwrap_or_else(|| panic!("no leader within {timeout:?}"))
    }

    /// SIGKILLs member `i`.
    pub fn kill(&mut self, i: usize) {
        self.nodes[i].kill();
    }

    /// Starts member `i` again with the same flags.
    pub fn restart(&mut self, i: usize) {
        self.nodes[i].spawn();
    }

    /// Runs `etcdctl` against every running member.
    pub fn ctl(&mut self, args: &[&str]) -> Out {
        let ep = self.endpoints();
        run(&mut etcdctl_cmd(&ep, args), None, CTL_TIMEOUT)
    }

    /// Runs `etcdctl` with `stdin` against every running member.
    pub fn ctl_stdin(&mut self, args: &[&str], stdin: &str) -> Out {
        let ep = self.endpoints();
        run(&mut etcdctl_cmd(&ep, args), Some(stdin), CTL_TIMEOUT)
    }

    /// Starts a background `etcdctl` against every running member; its
    /// output goes to `<tag>.out` in the cluster dir.
    pub fn ctl_bg(&mut self, tag: &str, args: &[&str]) -> Bg {
        let ep = self.endpoints();
        Bg::spawn(etcdctl_cmd(&ep, args), self.path(&format!("{tag}.out")))
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for m in &self.nodes {
                eprintln!(
                    "----- {} ({}) log tail -----\n{}",
                    m.name,
                    m.log.display(),
                    m.log_tail(60)
                );
            }
        }
        for m in &mut self.nodes {
            m.kill();
        }
    }
}
