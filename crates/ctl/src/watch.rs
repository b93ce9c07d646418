//! `concordctl watch KEY`: events as they come, resumed on another member
//! when a stream breaks; `--rev` starts from a revision, and on exit the
//! revision to resume from is printed on stderr.

use concord_client::mvccpb::event::EventType;
use concord_client::{Error, GetOptions, WatchOptions};
use serde_json::json;

use crate::{Format, Global};

/// Watch a key or a prefix.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The key (or prefix, with --prefix).
    key: String,
    /// Watch every key starting with KEY.
    #[arg(long)]
    prefix: bool,
    /// Start at this revision (e.g. the one a previous watch said to
    /// resume from); 0: from now.
    #[arg(long, default_value_t = 0)]
    rev: i64,
    /// Stop after this many events (0: until interrupted).
    #[arg(long, default_value_t = 0)]
    count: u64,
}

pub async fn run(global: &Global, args: Args) -> anyhow::Result<u8> {
    let client = global.client().await?;
    let range = if args.prefix {
        GetOptions::new().prefix()
    } else {
        GetOptions::new()
    };
    let opts = WatchOptions {
        range,
        start_revision: args.rev,
        prev_kv: false,
    };
    let mut watcher = client.watch(&args.key, opts).await?;
    let mut seen = 0u64;
    let mut next_rev = args.rev;
    let outcome: anyhow::Result<()> = loop {
        let batch = tokio::select! {
            b = watcher.next() => b,
            _ = crate::interrupted() => break Ok(()),
        };
        let batch = match batch {
            Some(Ok(b)) => b,
            Some(Err(Error::Compacted { compact_revision })) => {
                break Err(anyhow::anyhow!(
                    "revision {next_rev} is compacted; the oldest left is {compact_revision}"
                ))
            }
            Some(Err(e)) => break Err(e.into()),
            None => break Ok(()),
        };
        for e in &batch.events {
            let Some(kv) = &e.kv else { continue };
            print_event(global.format, e.r#type, kv);
            next_rev = kv.mod_revision + 1;
            seen += 1;
        }
        if args.count > 0 && seen >= args.count {
            break Ok(());
        }
    };
    if next_rev > 0 {
        eprintln!("resume with --rev {next_rev}");
    }
    outcome.map(|()| 0)
}

fn print_event(format: Format, kind: i32, kv: &concord_client::mvccpb::KeyValue) {
    let kind = if kind == EventType::Delete as i32 {
        "DELETE"
    } else {
        "PUT"
    };
    let key = String::from_utf8_lossy(&kv.key);
    let value = String::from_utf8_lossy(&kv.value);
    match format {
        Format::Table => println!("{kind} {key} {value} (rev {})", kv.mod_revision),
        Format::Json => println!(
            "{}",
            json!({
                "type": kind,
                "key": key,
                "value": value,
                "mod_revision": kv.mod_revision,
                "create_revision": kv.create_revision,
                "version": kv.version,
            })
        ),
    }
}
