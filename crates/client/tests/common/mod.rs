//! A 3-member cluster of this build's `concord` on loopback, killed on drop,
//! and a TCP relay that can drop a connection under a request.

#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};
use std::sync::Arc;
use std::time::Duration;

use concord_client::{Client, ClientConfig};

/// The `concord` binary next to the test binary's target directory
/// (built with cargo when missing).
pub fn concord_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary");
    let dir = exe.parent().and_then(|d| d.parent()).expect("target dir");
    let bin = dir.join("concord");
    if !bin.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let ok = Command::new(cargo)
            .args(["build", "-p", "concord-server", "--bin", "concord"])
            .status()
            .expect("cargo build")
            .success();
        assert!(ok, "building concord failed");
    }
    bin
}

fn free_port() -> u16 {
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let base = 21_000 + (std::process::id() % 50) as u16 * 160;
    loop {
        let port = base + NEXT.fetch_add(1, Ordering::Relaxed) % 160;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// Three members; killed when dropped.
pub struct Cluster {
    pub client_urls: Vec<String>,
    children: Vec<Option<Child>>,
    /// Each member's flags, to start it again.
    args: Vec<Vec<String>>,
    _dir: tempfile::TempDir,
}

fn spawn(dir: &std::path::Path, i: usize, args: &[String]) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join(format!("m{}.log", i + 1)))
        .unwrap();
    Command::new(concord_binary())
        .args(args)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("spawn concord")
}

/// The password `enable_auth` gives `root`.
pub const ROOT_PASSWORD: &str = "rootpw";

impl Cluster {
    pub async fn start() -> Cluster {
        Cluster::start_with(&[]).await
    }

    /// As [`Cluster::start`], with more flags for every member.
    pub async fn start_with(extra: &[&str]) -> Cluster {
        let dir = tempfile::tempdir().expect("tempdir");
        let ports: Vec<(u16, u16)> = (0..3).map(|_| (free_port(), free_port())).collect();
        let initial: Vec<String> = ports
            .iter()
            .enumerate()
            .map(|(i, p)| format!("m{}=http://127.0.0.1:{}", i + 1, p.1))
            .collect();
        let mut children = Vec::new();
        let mut client_urls = Vec::new();
        let mut all_args = Vec::new();
        for (i, (c, p)) in ports.iter().enumerate() {
            let curl = format!("http://127.0.0.1:{c}");
            let args = vec![
                format!("--name=m{}", i + 1),
                format!(
                    "--data-dir={}",
                    dir.path().join(format!("m{}", i + 1)).display()
                ),
                format!("--listen-client-urls={curl}"),
                format!("--advertise-client-urls={curl}"),
                format!("--listen-peer-urls=http://127.0.0.1:{p}"),
                format!("--initial-advertise-peer-urls=http://127.0.0.1:{p}"),
                format!("--initial-cluster={}", initial.join(",")),
                "--initial-cluster-state=new".to_string(),
            ];
            let args = args
                .into_iter()
                .chain(extra.iter().map(|a| a.to_string()))
                .collect::<Vec<_>>();
            children.push(Some(spawn(dir.path(), i, &args)));
            all_args.push(args);
            client_urls.push(curl);
        }
        let cluster = Cluster {
            client_urls,
            children,
            args: all_args,
            _dir: dir,
        };
        cluster.wait_leader().await;
        cluster
    }

    /// A client of all members, discovery on.
    pub async fn client(&self) -> Client {
        Client::connect(ClientConfig::new(self.client_urls.clone()))
            .await
            .expect("client")
    }

    /// The leader's index, once there is one (asked of live members).
    pub async fn wait_leader(&self) -> usize {
        let probe = Client::connect(
            ClientConfig::new(self.client_urls.clone())
                .discover(false)
                .request_timeout(Duration::from_millis(500)),
        )
        .await
        .unwrap();
        for _ in 0..200 {
            for (i, url) in self.client_urls.iter().enumerate() {
                if self.children[i].is_none() {
                    continue;
                }
                if let Ok(s) = probe.status_of(url).await {
                    if s.leader != 0 {
                        if let Some(j) = self.index_of(&probe, s.leader).await {
                            return j;
                        }
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("no leader");
    }

    async fn index_of(&self, probe: &Client, id: u64) -> Option<usize> {
        for (i, url) in self.client_urls.iter().enumerate() {
            if self.children[i].is_some() {
                if let Ok(s) = probe.status_of(url).await {
                    if s.header.map(|h| h.member_id) == Some(id) {
                        return Some(i);
                    }
                }
            }
        }
        None
    }

    /// SIGKILLs member `i` (a paused one too).
    pub fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.children[i].take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts member `i` again (after [`Cluster::kill`]) on its data dir.
    pub fn restart(&mut self, i: usize) {
        assert!(self.children[i].is_none(), "member {i} is running");
        self.children[i] = Some(spawn(self._dir.path(), i, &self.args[i]));
    }

    /// SIGSTOPs member `i` (it stays connected but answers nothing).
    pub fn pause(&self, i: usize) {
        self.signal(i, "-STOP");
    }

    /// SIGCONTs member `i`.
    pub fn resume(&self, i: usize) {
        self.signal(i, "-CONT");
    }

    fn signal(&self, i: usize, sig: &str) {
        let pid = self.children[i].as_ref().expect("member running").id();
        let ok = Command::new("kill")
            .arg(sig)
            .arg(pid.to_string())
            .status()
            .expect("kill")
            .success();
        assert!(ok, "kill {sig} {pid}");
    }

    /// Runs the real `etcdctl` (API v3) against the members; its stdout,
    /// or a panic with its stderr.
    pub fn etcdctl(&self, args: &[&str]) -> String {
        self.etcdctl_input(args, "")
    }

    /// As [`Cluster::etcdctl`], with `input` on its stdin.
    pub fn etcdctl_input(&self, args: &[&str], input: &str) -> String {
        use std::io::Write;
        let mut child = Command::new("etcdctl")
            .env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={}", self.client_urls.join(",")))
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("etcdctl is installed");
        let mut stdin = child.stdin.take().expect("piped");
        stdin.write_all(input.as_bytes()).expect("etcdctl's stdin");
        drop(stdin);
        let out = child.wait_with_output().expect("etcdctl ran");
        assert!(out.status.success(), "etcdctl {args:?}: {out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Turns auth on with `root` ([`ROOT_PASSWORD`]) and `user` (its
    /// `password`) granted readwrite on every key under `prefix`.
    pub fn enable_auth(&self, user: &str, password: &str, prefix: &str) {
        self.etcdctl(&["user", "add", &format!("root:{ROOT_PASSWORD}")]);
        self.etcdctl(&["user", "add", &format!("{user}:{password}")]);
        self.etcdctl(&["role", "add", "rw"]);
        self.etcdctl(&[
            "role",
            "grant-permission",
            "rw",
            "--prefix=true",
            "readwrite",
            prefix,
        ]);
        self.etcdctl(&["user", "grant-role", user, "rw"]);
        self.etcdctl(&["auth", "enable"]);
    }

    /// `etcdctl` as root, once auth is on.
    pub fn etcdctl_root(&self, args: &[&str]) -> String {
        let user = format!("--user=root:{ROOT_PASSWORD}");
        let all: Vec<&str> = std::iter::once(user.as_str())
            .chain(args.iter().copied())
            .collect();
        self.etcdctl(&all)
    }

    /// The index of the member behind `url`.
    pub fn index(&self, url: &str) -> usize {
        self.client_urls
            .iter()
            .position(|u| u == url)
            .expect("member url")
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for i in 0..self.children.len() {
            self.kill(i);
        }
    }
}

/// A TCP relay to `target`; once armed, it cuts the next connection that
/// answers, after the request went through but before the answer returns.
pub struct Relay {
    pub url: String,
    pub armed: Arc<AtomicBool>,
}

impl Relay {
    pub async fn start(target: &str) -> Relay {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let target = target.trim_start_matches("http://").to_string();
        let armed = Arc::new(AtomicBool::new(false));
        let flag = armed.clone();
        tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                let target = target.clone();
                let flag = flag.clone();
                tokio::spawn(relay(inbound, target, flag));
            }
        });
        Relay { url, armed }
    }
}

async fn relay(inbound: tokio::net::TcpStream, target: String, armed: Arc<AtomicBool>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(outbound) = tokio::net::TcpStream::connect(target).await else {
        return;
    };
    let (mut ci, mut co) = inbound.into_split();
    let (mut si, mut so) = outbound.into_split();
    let up = tokio::spawn(async move { tokio::io::copy(&mut ci, &mut so).await });
    let mut buf = vec![0u8; 16 * 1024];
    while let Ok(n) = si.read(&mut buf).await {
        if n == 0 || armed.load(Ordering::SeqCst) {
            break;
        }
        if co.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    up.abort();
}
