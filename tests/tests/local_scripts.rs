//! `deploy/local/cluster.sh --agents 3 --replicas 2` (issue 19): starts
//! etcd, two control planes and three agents, delivers every event through
//! both control planes with verified signatures, and stops everything it
//! started.

use std::process::Command;

#[test]
fn cluster_sh_starts_delivers_and_stops_everything() -> anyhow::Result<()> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let out = Command::new("timeout")
        .args([
            "300",
            "deploy/local/cluster.sh",
            "--agents",
            "3",
            "--replicas",
            "2",
        ])
        .current_dir(&root)
        // The binaries this test run built: no build inside a test.
        .env(
            "HERALD_BIN_DIR",
            herald_tests::process::bin("herald")
                .parent()
                .expect("bin dir"),
        )
        .env_remove("HERALD_API_KEY")
        .env_remove("HERALD_SERVER")
        .output()?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("delivered 1000 of 1000 deliveries"),
        "{stdout}"
    );
    assert_eq!(
        stdout.matches("control plane   https://").count(),
        2,
        "{stdout}"
    );
    assert_eq!(stdout.matches("\nagent           ").count(), 3, "{stdout}");
    // Every process ran with the script's work dir in its arguments (data
    // dirs, certificates, logs): none may be left.
    let work = stdout
        .split("(log: ")
        .nth(1)
        .and_then(|s| s.split("/cp1.log").next())
        .expect("the work dir");
    let left = Command::new("pgrep").arg("-f").arg(work).output()?;
    assert!(
        left.stdout.is_empty(),
        "left running: {}",
        String::from_utf8_lossy(&left.stdout)
    );
    Ok(())
}
