//! Starts a local 3-member Concord cluster on loopback, prints the
//! endpoints and an `etcdctl` line, and stops every member on Ctrl-C.
//!
//! Data lives under `--dir` (default `concord-local-data`), logs in
//! `<dir>/<name>.log`. Each member is this binary started again as
//! `concord-local member <etcd flags>`, which is exactly the `concord` server.

/// mimalloc: the allocator matters on the request path (many small buffers).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;

#[derive(Parser, Debug)]
#[command(about = "Run a local 3-member Concord cluster")]
struct Args {
    /// Where member data and logs go.
    #[arg(long, default_value = "concord-local-data")]
    dir: PathBuf,
    /// First client port; members use +0, +10000, +20000 (2379, 12379, 22379).
    #[arg(long, default_value_t = 2379)]
    port: u16,
    /// Start from empty data directories.
    #[arg(long)]
    fresh: bool,
}

fn main() -> anyhow::Result<()> {
    let argv: Vec<String> = std::env::args().collect();
    if argv.get(1).map(String::as_str) == Some("member") {
        let mut server_args = vec!["concord".to_string()];
        server_args.extend(argv[2..].iter().cloned());
        concord_server::cli::serve_main(server_args)?;
        return Ok(());
    }
    let args = Args::parse();
    let concord = std::env::current_exe()?;
    if args.fresh && args.dir.exists() {
        std::fs::remove_dir_all(&args.dir)?;
    }
    std::fs::create_dir_all(&args.dir)?;
    let dir = std::fs::canonicalize(&args.dir)?;
    let names = ["c1", "c2", "c3"];
    let client = |i: usize| format!("http://127.0.0.1:{}", args.port as usize + i * 10000);
    let peer = |i: usize| format!("http://127.0.0.1:{}", args.port as usize + 1 + i * 10000);
    let cluster: Vec<String> = (0..3)
        .map(|i| format!("{}={}", names[i], peer(i)))
        .collect();
    let mut children: Vec<Child> = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let log = std::fs::File::create(dir.join(format!("{name}.log")))?;
        let child = Command::new(&concord)
            .arg("member")
            .args(["--name", name])
            .arg("--data-dir")
            .arg(dir.join(name))
            .args(["--listen-client-urls", &client(i)])
            .args(["--advertise-client-urls", &client(i)])
            .args(["--listen-peer-urls", &peer(i)])
            .args(["--initial-advertise-peer-urls", &peer(i)])
            .args(["--initial-cluster", &cluster.join(",")])
            .args(["--initial-cluster-state", "new"])
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {name}"))?;
        children.push(child);
    }
    let endpoints: Vec<String> = (0..3).map(|i| client(i).replace("http://", "")).collect();
    let ready = wait_healthy(&endpoints, Duration::from_secs(30));
    println!(
        "Concord local cluster (data and logs under {})",
        dir.display()
    );
    for (i, name) in names.iter().enumerate() {
        println!("  {name}: client {}  peer {}", client(i), peer(i));
    }
    if !ready {
        eprintln!("warning: no leader after 30 s; see the logs");
    }
    println!();
    println!("Try:");
    println!(
        "  ETCDCTL_API=3 etcdctl --endpoints={} put hello world",
        endpoints.join(",")
    );
    println!(
        "  ETCDCTL_API=3 etcdctl --endpoints={} endpoint status -w table",
        endpoints.join(",")
    );
    println!();
    println!("Press Ctrl-C to stop the cluster.");

    let (tx, rx) = std::sync::mpsc::channel();
    ctrlc_channel(tx)?;
    loop {
        if rx.recv_timeout(Duration::from_millis(500)).is_ok() {
            break;
        }
        for (i, c) in children.iter_mut().enumerate() {
            if let Ok(Some(status)) = c.try_wait() {
                eprintln!("{} exited ({status}); see {}.log", names[i], names[i]);
            }
        }
    }
    println!("stopping...");
    for c in &mut children {
        let _ = Command::new("kill")
            .args(["-TERM", &c.id().to_string()])
            .stdout(Stdio::null())
            .status();
    }
    for c in &mut children {
        let _ = c.wait();
    }
    println!("stopped.");
    Ok(())
}

fn ctrlc_channel(tx: std::sync::mpsc::Sender<()>) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    std::thread::spawn(move || {
        rt.block_on(async {
            let _ = tokio::signal::ctrl_c().await;
        });
        let _ = tx.send(());
    });
    Ok(())
}

fn wait_healthy(endpoints: &[String], limit: Duration) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        for e in endpoints {
            if let Ok(mut s) = std::net::TcpStream::connect(e) {
                use std::io::{Read, Write};
                let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
                let req = format!("GET /health HTTP/1.1\r\nHost: {e}\r\nConnection: close\r\n\r\n");
                let mut out = String::new();
                if s.write_all(req.as_bytes()).is_ok()
                    && s.read_to_string(&mut out).is_ok()
                    && out.contains(r#""health":"true""#)
                {
                    return true;
                }
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    false
}
