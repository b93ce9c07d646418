//! Joining an existing cluster: a new member (started with
//! `--initial-cluster-state existing` after a MemberAdd) asks the other
//! members in `--initial-cluster` for the member table, to learn its id and
//! the cluster id.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::TlsConnector;

use crate::config::{parse_host_port, Config};
use crate::error::ServerError;
use crate::members::MemberTable;
use crate::tls::dial;
use crate::transport::KIND_MEMBERS;

/// How long a joining member keeps asking.
const JOIN_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest member table accepted.
const MAX_TABLE_BYTES: usize = 1 << 20;

async fn ask(url: &str, tls: Option<&TlsConnector>) -> Result<MemberTable, String> {
    let mut s = dial(url, tls).await.map_err(|e| e.to_string())?;
    s.write_all(&[KIND_MEMBERS])
        .await
        .map_err(|e| e.to_string())?;
    let mut len = [0u8; 4];
    s.read_exact(&mut len).await.map_err(|e| e.to_string())?;
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_TABLE_BYTES {
        return Err(format!("member table of {len} bytes"));
    }
    let mut buf = vec![0u8; len];
    s.read_exact(&mut buf).await.map_err(|e| e.to_string())?;
    MemberTable::decode(&buf)
}

/// Fetches the member table from any reachable member of `--initial-cluster`.
pub async fn fetch_members(
    cfg: &Config,
    tls: Option<&TlsConnector>,
) -> Result<MemberTable, ServerError> {
    let mine = cfg.advertised_peer_urls();
    let others: Vec<String> = cfg
        .initial_members()?
        .into_iter()
        .flat_map(|m| m.peer_urls)
        .filter(|u| !mine.contains(u))
        .collect();
    if others.is_empty() {
        return Err(ServerError::Config(
            "--initial-cluster-state existing needs other members in --initial-cluster".into(),
        ));
    }
    let deadline = tokio::time::Instant::now() + JOIN_TIMEOUT;
    let mut last = String::new();
    while tokio::time::Instant::now() < deadline {
        for u in &others {
            parse_host_port(u)?;
            match ask(u, tls).await {
                Ok(t) if t.find_by_peer_urls(&mine).is_some() => return Ok(t),
                Ok(_) => last = format!("{u} does not list this member yet"),
                Err(e) => last = format!("{u}: {e}"),
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Err(ServerError::Config(format!(
        "could not join the cluster within {JOIN_TIMEOUT:?}: {last}"
    )))
}
