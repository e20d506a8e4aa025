//! The systemd units (issue 19) pass `systemd-analyze verify` without a
//! warning, and its offline security analysis rates them well hardened.
//! (The units name /usr/local/bin; the test points them at the binaries it
//! built, which `verify` requires to exist.)

use std::process::Command;

#[test]
fn systemd_units_verify_and_are_hardened() -> anyhow::Result<()> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/systemd");
    let bin_dir = herald_tests::process::bin("herald-agent");
    let bin_dir = bin_dir
        .parent()
        .expect("bin dir")
        .to_string_lossy()
        .into_owned();
    let dir = tempfile::tempdir()?;
    let mut units = Vec::new();
    for name in ["herald-control-plane.service", "herald-agent.service"] {
        let text = std::fs::read_to_string(root.join(name))?;
        assert!(text.contains("ExecStart=/usr/local/bin/"), "{name}");
        let path = dir.path().join(name);
        std::fs::write(
            &path,
            text.replace("/usr/local/bin/", &format!("{bin_dir}/")),
        )?;
        units.push(path);
    }
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .args(&units)
        .output()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stderr.trim().is_empty(),
        "systemd-analyze verify: {stderr}"
    );
    for unit in &units {
        let out = Command::new("systemd-analyze")
            .args(["security", "--offline=true"])
            .arg(unit)
            .output()?;
        let text = String::from_utf8_lossy(&out.stdout);
        let level: f64 = text
            .lines()
            .find_map(|l| l.split("exposure level for ").nth(1))
            .and_then(|rest| rest.split(": ").nth(1))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no exposure level in:\n{text}"));
        assert!(level <= 2.5, "{} exposure {level}", unit.display());
    }
    Ok(())
}
