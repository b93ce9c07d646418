//! `concordctl lock NAME -- CMD...`: runs CMD while holding the lock, with
//! the fencing token in `CONCORD_FENCING_TOKEN` and the lock key in
//! `CONCORD_LOCK_KEY`. If the lock is lost CMD is killed.

use anyhow::Context;
use concord_client::{Mutex, Session};

use crate::{exit, Global};

/// Run a command while holding a lock.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The lock's name.
    name: String,
    /// TTL of the session's lease, in seconds.
    #[arg(long, default_value_t = 10)]
    ttl: i64,
    /// The command and its arguments (after `--`).
    #[arg(last = true, required = true)]
    command: Vec<String>,
}

pub async fn run(global: &Global, args: Args) -> anyhow::Result<u8> {
    let client = global.client().await?;
    let mut session = Session::new(&client, args.ttl)
        .await
        .context("granting the session's lease")?;
    let guard = Mutex::new(&args.name)
        .lock(&mut session)
        .await
        .with_context(|| format!("acquiring lock {:?}", args.name))?;
    let mut child = tokio::process::Command::new(&args.command[0])
        .args(&args.command[1..])
        .env("CONCORD_FENCING_TOKEN", guard.token().to_string())
        .env("CONCORD_LOCK_KEY", guard.key())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {:?}", args.command[0]))?;
    let code = tokio::select! {
        status = child.wait() => status.context("waiting for the command")?,
        lost = session.lost() => {
            let _ = child.kill().await;
            eprintln!("concordctl: lock {:?} lost, command killed: {lost}", args.name);
            return Ok(exit::LOST);
        }
        _ = crate::interrupted() => {
            let _ = child.kill().await;
            guard.unlock().await?;
            session.close().await?;
            return Ok(exit::ERROR);
        }
    };
    guard.unlock().await.context("releasing the lock")?;
    session.close().await.context("revoking the session")?;
    Ok(exit_code(code))
}

/// The command's exit code; 128 + signal when a signal ended it.
fn exit_code(status: std::process::ExitStatus) -> u8 {
    if let Some(c) = status.code() {
        return c as u8;
    }
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if let Some(sig) = status.signal() {
            return 128u8.saturating_add(sig as u8);
        }
    }
    exit::ERROR
}
