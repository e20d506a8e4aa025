//! The operator console in a real browser (issue 17): headless Chromium,
//! driven by playwright-core (`tests/console/console.mjs`), against a real
//! cluster and receiver. Screenshots go to `target/console/`.

use herald_tests::cluster::{Agent, ControlPlane, Etcd};
use herald_tests::receiver::Receiver;

#[tokio::test(flavor = "multi_thread")]
async fn an_operator_works_through_the_console() -> anyhow::Result<()> {
    let etcd = Etcd::start()?;
    let cp = ControlPlane::start(&etcd, &["--http-listen", "127.0.0.1:0"])?;
    let _agent = Agent::start(&etcd, &[&cp], &[])?;
    let http = cp
        .proc
        .seen_line("herald-control-plane http on ")
        .ok_or_else(|| anyhow::anyhow!("no http address printed"))?;
    let mut api = cp.clients().await?;
    api.event_type("order.created").await?;
    let receiver = Receiver::start().await;
    receiver.fail_seq(2);
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let shots = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| root.join("target"), std::path::PathBuf::from)
        .join("console");
    let script = root.join("tests/tools/console-test.sh");
    // The browser runs in its own process; this test's runtime keeps the
    // receiver answering meanwhile.
    let out = tokio::process::Command::new(script)
        .env("HERALD_HTTP", format!("http://{http}"))
        .env("HERALD_API_KEY", &cp.admin_key)
        .env("RECEIVER_URL", receiver.url("").trim_end_matches('/'))
        .env("SHOTS", &shots)
        .kill_on_drop(true)
        .output()
        .await?;
    assert!(
        out.status.success(),
        "console test failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    for name in ["tenants", "endpoints", "endpoint", "cluster"] {
        let png = shots.join(format!("{name}.png"));
        let bytes = std::fs::read(&png)?;
        assert!(bytes.starts_with(b"\x89PNG"), "{}", png.display());
    }
    Ok(())
}
