//! What the chaos tests share.

use std::path::PathBuf;

/// The `concord` binary of this build, next to the test binary's target
/// directory (built here, with failpoints as `cargo test --workspace`
/// builds it, when a test runs alone).
pub fn concord_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary");
    let dir = exe.parent().and_then(|d| d.parent()).expect("target dir");
    let bin = dir.join("concord");
    if !bin.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let ok = std::process::Command::new(cargo)
            .args(["build", "-p", "concord-server", "--bin", "concord"])
            .args(["--features", "failpoints"])
            .status()
            .expect("cargo build")
            .success();
        assert!(ok, "building concord failed");
    }
    bin
}
