//! Running commands with a time bound: one-shot (`run`) and background
//! (`Bg`, killed on drop), and the `etcdctl` command line.

use std::fs::File;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::wait_until;

/// Output of a finished (or timed out) command.
#[derive(Debug, Clone)]
pub struct Out {
    /// Exit code (None if killed by a signal or timed out).
    pub code: Option<i32>,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
    /// True if the command hit its timeout and was killed.
    pub timed_out: bool,
}

impl Out {
    /// Exited with 0.
    pub fn ok(&self) -> bool {
        self.code == Some(0)
    }

    /// Panics with the whole output unless the command succeeded.
    #[track_caller]
    pub fn expect_ok(self, what: &str) -> Out {
        assert!(self.ok(), "{what} failed: {self:#?}");
        self
    }

    /// Stdout lines.
    pub fn lines(&self) -> Vec<&str> {
        self.stdout.lines().collect()
    }

    /// Stdout parsed as JSON.
    #[track_caller]
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(self.stdout.trim())
            .unwrap_or_else(|e| panic!("not JSON ({e}): {self:#?}"))
    }
}

fn drain(r: impl Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut r = r;
        let mut buf = Vec::new();
        let _ = r.read_to_end(&mut buf);
        let _ = tx.send(String::from_utf8_lossy(&buf).into_owned());
    });
    rx
}

/// Runs a command with optional stdin, killing it after `timeout`.
pub fn run(cmd: &mut Command, stdin: Option<&str>, timeout: Duration) -> Out {
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    if let (Some(input), Some(mut w)) = (stdin, child.stdin.take()) {
        let input = input.to_string();
        std::thread::spawn(move || {
            let _ = w.write_all(input.as_bytes());
        });
    }
    let out_rx = drain(child.stdout.take().expect("stdout"));
    let err_rx = drain(child.stderr.take().expect("stderr"));
    let deadline = Instant::now() + timeout;
    let mut timed_out = false;
    let status = loop {
        if let Ok(Some(s)) = child.try_wait() {
            break Some(s);
        }
        if Instant::now() >= deadline {
            timed_out = true;
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    // A grandchild may keep the pipes open: do not wait for it for long.
    let grace = Duration::from_secs(2);
    Out {
        code: status.and_then(|s| s.code()),
        stdout: out_rx.recv_timeout(grace).unwrap_or_default(),
        stderr: err_rx.recv_timeout(grace).unwrap_or_default(),
        timed_out,
    }
}

/// True if `etcdctl` can be run. Without it a test should return early,
/// unless `CONCORD_REQUIRE_ETCDCTL=1`, which makes this panic instead.
pub fn have_etcdctl() -> bool {
    let found = Command::new("etcdctl")
        .arg("version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if found {
        return true;
    }
    if std::env::var("CONCORD_REQUIRE_ETCDCTL").as_deref() == Ok("1") {
        panic!("etcdctl not found and CONCORD_REQUIRE_ETCDCTL=1");
    }
    println!("skipped: etcdctl not found");
    false
}

/// An `etcdctl` command for `endpoints` (comma separated `host:port`).
pub fn etcdctl_cmd(endpoints: &str, args: &[&str]) -> Command {
    let mut c = Command::new("etcdctl");
    c.env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={endpoints}"))
        .arg("--dial-timeout=3s")
        .arg("--command-timeout=10s")
        .args(args);
    c
}

/// A background process whose output goes to a file; killed on drop.
#[derive(Debug)]
pub struct Bg {
    child: Child,
    out: PathBuf,
}

impl Bg {
    /// Starts `cmd` with stdout and stderr appended to `out`.
    pub fn spawn(mut cmd: Command, out: PathBuf) -> Bg {
        let f = File::create(&out).expect("create output file");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(f.try_clone().expect("clone file"))
            .stderr(f)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
        Bg { child, out }
    }

    /// Everything it printed so far.
    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.out).unwrap_or_default()
    }

    /// Waits until the output satisfies `pred`.
    pub fn wait_output(&self, timeout: Duration, pred: impl Fn(&str) -> bool) -> bool {
        wait_until(timeout, || pred(&self.output()).then_some(())).is_some()
    }

    /// Process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM (a graceful stop).
    pub fn term(&self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
    }

    /// SIGKILL and reap.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Waits for it to exit.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        wait_until(timeout, || self.child.try_wait().ok().flatten())
    }
}

impl Drop for Bg {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Standard base64 (as etcdctl's JSON output encodes keys and values).
pub fn b64(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}
