//! Configuration files (issue 19): both servers read `--config FILE`
//! (TOML); flag > environment > file > default; an unknown key is refused
//! naming it; `--print-config` shows the effective settings and where each
//! came from, with secrets masked.

use std::process::Command;

fn print_config(
    bin: &str,
    args: &[&str],
    env: &[(&str, &str)],
) -> anyhow::Result<(bool, String, String)> {
    let mut cmd = Command::new(herald_tests::process::bin(bin));
    cmd.args(args).arg("--print-config");
    // Only what the test sets: no HERALD_* from the developer's shell.
    for (k, _) in std::env::vars() {
        if k.starts_with("HERALD_") {
            cmd.env_remove(k);
        }
    }
    cmd.envs(env.iter().copied());
    let out = cmd.output()?;
    Ok((
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

fn line<'a>(printed: &'a str, key: &str) -> &'a str {
    printed
        .lines()
        .find(|l| l.starts_with(&format!("{key} = ")))
        .unwrap_or_else(|| panic!("no {key} in:\n{printed}"))
}

#[test]
fn precedence_unknown_keys_and_masked_secrets() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("herald.toml");
    let key = "hk_0123456789abcdef_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    std::fs::write(
        &file,
        format!(
            "max-payload-bytes = 1000\npublish_retry_ms = 700\nallow_http = true\n\
             etcd_endpoints = [\"http://127.0.0.1:1\", \"http://127.0.0.1:2\"]\nbootstrap_key = \"{key}\"\n"
        ),
    )?;
    let f = file.to_str().unwrap();
    let (ok, out, err) = print_config(
        "herald-control-plane",
        &["--config", f, "--publish-retry-ms", "900"],
        &[("HERALD_MAX_PAYLOAD_BYTES", "2000")],
    )?;
    assert!(ok, "{err}");
    assert_eq!(
        line(&out, "publish_retry_ms"),
        "publish_retry_ms = \"900\"  # flag"
    );
    assert_eq!(
        line(&out, "max_payload_bytes"),
        "max_payload_bytes = \"2000\"  # environment"
    );
    assert_eq!(
        line(&out, "etcd_endpoints"),
        "etcd_endpoints = \"http://127.0.0.1:1,http://127.0.0.1:2\"  # file"
    );
    assert_eq!(line(&out, "allow_http"), "allow_http = \"true\"  # file");
    assert_eq!(
        line(&out, "leader_ttl_secs"),
        "leader_ttl_secs = \"5\"  # default"
    );
    assert_eq!(
        line(&out, "bootstrap_key"),
        "bootstrap_key = \"<redacted>\"  # file"
    );
    assert!(!out.contains(&key[20..]), "a secret printed");
    let (_, out, _) = print_config("herald-control-plane", &["--config", f], &[])?;
    assert_eq!(
        line(&out, "max_payload_bytes"),
        "max_payload_bytes = \"1000\"  # file"
    );

    // Unknown keys, one-shot flags and bad values are refused, naming the key.
    for (text, named) in [
        ("listn = \"127.0.0.1:1\"", "unknown key 'listn'"),
        ("create_admin_key = true", "unknown key 'create_admin_key'"),
        ("allow_http = \"yes\"", "key 'allow_http'"),
        ("max_payload_bytes = \"lots\"", "max-payload-bytes"),
        ("[section]\nx = 1", "key 'section'"),
    ] {
        std::fs::write(&file, text)?;
        let (ok, _, err) = print_config("herald-control-plane", &["--config", f], &[])?;
        assert!(!ok && err.contains(named), "{text}: {err}");
    }

    // The agent: a required setting may come from the file alone.
    let agent_file = dir.path().join("agent.toml");
    std::fs::write(
        &agent_file,
        "data_dir = \"/tmp/herald-agent-x\"\nmax_concurrency = 7\napi_key = \"hk_agent_secret\"\n",
    )?;
    let (ok, out, err) = print_config(
        "herald-agent",
        &["--config", agent_file.to_str().unwrap()],
        &[],
    )?;
    assert!(ok, "{err}");
    assert_eq!(
        line(&out, "max_concurrency"),
        "max_concurrency = \"7\"  # file"
    );
    assert_eq!(
        line(&out, "data_dir"),
        "data_dir = \"/tmp/herald-agent-x\"  # file"
    );
    assert!(!out.contains("hk_agent_secret"), "{out}");
    Ok(())
}
