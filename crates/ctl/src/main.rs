//! `concordctl`: what etcdctl does not do. Locks that hand their command a
//! fencing token, leader elections four ways, a cluster status table,
//! resumable watches and the linearizability checker.

mod check;
mod elect;
mod lock;
mod status;
mod watch;

use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use concord_client::{Client, ClientConfig, Credentials};

/// Exit codes, as `--help` lists them (bad usage is clap's 2).
pub mod exit {
    /// A command's own failure: the cluster, a file, a refused request.
    pub const ERROR: u8 = 1;
    /// `check`: the history is not linearizable.
    pub const NOT_LINEARIZABLE: u8 = 3;
    /// `check`: undecided within the time budget.
    pub const UNKNOWN: u8 = 4;
    /// `lock` or `elect`: the lock or the leadership was lost (session
    /// expired, stepped down); `lock` stopped its command.
    pub const LOST: u8 = 5;
}

const EXIT_CODES: &str = "\
Exit codes:
  0  success (`lock`: the command's own exit code is passed through)
  1  error (cluster unreachable, request refused, unreadable file)
  2  bad usage
  3  check: the history is not linearizable
  4  check: undecided within --timeout-ms
  5  lock/elect: the lock or the leadership was lost";

/// Concord's command-line tool.
#[derive(Debug, Parser)]
#[command(name = "concordctl", version, after_help = EXIT_CODES)]
struct Cli {
    /// Endpoints, comma-separated (`host:port` or `http://host:port`).
    #[arg(
        long,
        global = true,
        value_delimiter = ',',
        default_value = "127.0.0.1:2379"
    )]
    endpoints: Vec<String>,
    /// Output format.
    #[arg(
        short = 'w',
        long = "write-out",
        global = true,
        default_value = "table"
    )]
    write_out: Format,
    /// Time to connect to one endpoint, in milliseconds.
    #[arg(long, global = true, default_value_t = 2_000)]
    dial_timeout_ms: u64,
    /// Deadline of each request, in milliseconds.
    #[arg(long, global = true, default_value_t = 5_000)]
    command_timeout_ms: u64,
    /// Log in as `name[:password]` (etcd's Auth); without the password,
    /// from `--password` or the `CONCORD_PASSWORD` environment variable.
    #[arg(long, global = true)]
    user: Option<String>,
    /// The password of `--user`.
    #[arg(long, global = true)]
    password: Option<String>,
    #[command(subcommand)]
    command: Command,
}

/// `-w table|json`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Aligned columns for people.
    Table,
    /// One JSON document (or one per line for streams) for scripts.
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    Lock(lock::Args),
    Elect(elect::Args),
    Status(status::Args),
    Watch(watch::Args),
    Check(check::Args),
}

/// Global flags the subcommands use.
#[derive(Debug, Clone)]
pub struct Global {
    /// The endpoints as given.
    pub endpoints: Vec<String>,
    /// The output format.
    pub format: Format,
    dial_timeout: Duration,
    command_timeout: Duration,
    credentials: Option<Credentials>,
}

impl Global {
    /// A client of the endpoints, logged in when `--user` was given.
    pub async fn client(&self) -> anyhow::Result<Client> {
        let mut config = ClientConfig::new(self.endpoints.clone())
            .connect_timeout(self.dial_timeout)
            .request_timeout(self.command_timeout);
        config.credentials = self.credentials.clone();
        Ok(Client::connect(config).await?)
    }
}

/// `--user name[:password]`, `--password`, `CONCORD_PASSWORD`, as etcdctl
/// reads them (no prompt).
fn credentials(
    user: Option<String>,
    password: Option<String>,
    env: Option<String>,
) -> anyhow::Result<Option<Credentials>> {
    let Some(user) = user else {
        if password.is_some() {
            anyhow::bail!("--password needs --user");
        }
        return Ok(None);
    };
    let (name, inline) = match user.split_once(':') {
        Some((name, pw)) => (name.to_string(), Some(pw.to_string())),
        None => (user, None),
    };
    if name.is_empty() {
        anyhow::bail!("--user needs a user name");
    }
    let Some(pw) = inline.or(password).or(env) else {
        anyhow::bail!(
            "no password for user {name:?}: give --user {name}:PASSWORD, --password or CONCORD_PASSWORD"
        );
    };
    Ok(Some(Credentials::new(name, pw)))
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    let env = std::env::var("CONCORD_PASSWORD").ok();
    let credentials = match credentials(cli.user, cli.password, env) {
        Ok(c) => c,
        Err(e) => return fail(&e),
    };
    let global = Global {
        credentials,
        endpoints: cli.endpoints,
        format: cli.write_out,
        dial_timeout: Duration::from_millis(cli.dial_timeout_ms),
        command_timeout: Duration::from_millis(cli.command_timeout_ms),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fail(&e.into()),
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Lock(args) => lock::run(&global, args).await,
            Command::Elect(args) => elect::run(&global, args).await,
            Command::Status(args) => status::run(&global, args).await,
            Command::Watch(args) => watch::run(&global, args).await,
            Command::Check(args) => check::run(&global, args),
        }
    });
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => fail(&e),
    }
}

/// One line on stderr, exit code 1.
fn fail(e: &anyhow::Error) -> ExitCode {
    eprintln!("concordctl: {e:#}");
    ExitCode::from(exit::ERROR)
}

/// Waits for Ctrl-C or SIGTERM.
pub async fn interrupted() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_flags_as_etcdctl_reads_them() {
        let s = |v: &str| Some(v.to_string());
        let c = credentials(s("root:pw:x"), None, None).unwrap().unwrap();
        assert_eq!(c, Credentials::new("root", "pw:x"));
        let c = credentials(s("alice"), s("flag"), s("env"))
            .unwrap()
            .unwrap();
        assert_eq!(c, Credentials::new("alice", "flag"));
        let c = credentials(s("alice"), None, s("env")).unwrap().unwrap();
        assert_eq!(c, Credentials::new("alice", "env"));
        let err = credentials(s("alice"), None, None).unwrap_err().to_string();
        assert!(err.contains("no password") && !err.contains('\n'), "{err}");
        assert!(credentials(None, s("pw"), None).is_err());
        assert!(credentials(None, None, s("env")).unwrap().is_none());
    }
}
