//! The `concord-check` binary's output and exit codes.
#![cfg(feature = "cli")]

use std::path::PathBuf;
use std::process::{Command, Output};

fn run(name: &str, history: &str, extra: &[&str]) -> Output {
    let dir = std::env::temp_dir().join(format!("concord-check-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path: PathBuf = dir.join(name);
    std::fs::write(&path, history).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_concord-check"))
        .arg(&path)
        .args(extra)
        .output()
        .unwrap();
    std::fs::remove_file(&path).unwrap();
    out
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

const GOOD: &str = r#"{"client":1,"op":"put","key":"k","value":"a","invoke":0,"complete":10,"result":{"ok":true}}
{"client":2,"op":"get","key":"k","invoke":20,"complete":30,"result":{"value":"a"}}
"#;

#[test]
fn exit_codes_match_verdicts() {
    let out = run("good.jsonl", GOOD, &[]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(stdout(&out), "linearizable\n");

    let bad = GOOD.replace(r#""value":"a"}}"#, r#""value":"b"}}"#);
    let out = run("bad.jsonl", &bad, &["--timeout-ms", "1000"]);
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    assert!(
        text.starts_with("NOT linearizable\npartition {\"k\"}"),
        "{text}"
    );
    assert!(
        text.contains("No order of these operations is consistent"),
        "{text}"
    );

    let mut hard = String::new();
    for i in 0..24 {
        hard += &format!(
            "{{\"client\":{i},\"op\":\"put\",\"key\":\"k\",\"value\":\"v{i}\",\"invoke\":0,\"complete\":100,\"result\":{{\"ok\":true}}}}\n"
        );
    }
    hard +=
        r#"{"client":99,"op":"get","key":"k","invoke":200,"complete":300,"result":{"value":"x"}}"#;
    let out = run("hard.jsonl", &hard, &["--timeout-ms", "1"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stdout(&out).starts_with("unknown (timeout)\n"));

    let out = run("broken.jsonl", "{not json\n", &[]);
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("line 1"));
}
