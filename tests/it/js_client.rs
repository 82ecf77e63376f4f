//! Element's own SDK: `tests/js/element_flow.mjs` drives the real server with matrix-js-sdk
//! (the SDK Element Web is built on) — login, room list, invite and join, real-time chat,
//! read receipts, typing, unread counts and highlights, reactions. `scripts/js-client`
//! installs Node.js and the pinned SDK.

use std::path::Path;
use std::process::Command;

use crate::common::TestServer;

#[tokio::test]
async fn matrix_js_sdk_daily_chat() {
    let server = TestServer::start(&[]).await;
    server.register("alice", "correct horse").await;
    server.register("bob", "correct horse").await;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/js/element_flow.mjs");
    assert!(
        script.with_file_name("node_modules").join("matrix-js-sdk").exists(),
        "matrix-js-sdk is not installed: run scripts/js-client (scripts/test does)"
    );
    let base_url = server.base_url.clone();
    let output = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .arg(script)
            .env("HEARTH_URL", base_url)
            .env("HEARTH_PASSWORD", "correct horse")
            .output()
            .expect("node runs")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && stdout.contains("\"ok\":true"),
        "the matrix-js-sdk flow failed: {stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
            .lines()
            .filter(|line| !line.contains("MatrixRTCSessionManager"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}
