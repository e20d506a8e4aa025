//! The systemd units (issue 19) pass `systemd-analyze verify` without a
//! warning, and its offline security analysis rates them well hardened.
//! (The units name /usr/local/bin; the test points them at the binaries it
//! built, which `verify` requires to exist.)
//!
//! The Kubernetes manifests render, validate against the API's schemas and
//! pass only flags the binaries accept.

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

/// The Kubernetes manifests (deploy/kubernetes/): the base and the secure
/// overlay render with kustomize and pass the API's schemas, strictly, and
/// the script's own consistency checks (`validate.sh`, which installs its
/// tools from PyPI into a cache the first time). Then what matters in
/// them: the replica counts, a volume per agent, a grace period longer
/// than the drain, probes, budgets, scrape annotations, every flag one the
/// binaries accept, and the overlay's TLS and keys mounted from Secrets.
#[test]
fn kubernetes_manifests_render_and_validate() -> anyhow::Result<()> {
    use serde_json::Value;

    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/kubernetes");
    let out = tempfile::tempdir()?;
    let run = Command::new("bash")
        .arg(root.join("validate.sh"))
        .arg(out.path())
        .output()?;
    assert!(
        run.status.success(),
        "validate.sh failed:\n{}\n{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
    let read = |name: &str| -> anyhow::Result<Vec<Value>> {
        let text = std::fs::read_to_string(out.path().join(format!("{name}.json")))?;
        Ok(serde_json::from_str(&text)?)
    };
    let base = read("base")?;
    let secure = read("secure")?;

    for (render, objs) in [("base", &base), ("secure", &secure)] {
        let cp = k8s::find(objs, "Deployment", "herald-control-plane");
        assert_eq!(cp["spec"]["replicas"].as_u64(), Some(2), "{render}");
        let etcd = k8s::find(objs, "StatefulSet", "herald-etcd");
        assert_eq!(etcd["spec"]["replicas"].as_u64(), Some(3), "{render}");
        let agent = k8s::find(objs, "StatefulSet", "herald-agent");
        for name in ["herald-etcd", "herald-control-plane", "herald-agent"] {
            k8s::find(objs, "PodDisruptionBudget", name);
        }
        for name in ["herald-control-plane", "herald-etcd-client"] {
            k8s::find(objs, "Service", name);
        }
        for name in ["herald-etcd", "herald-agent"] {
            let svc = k8s::find(objs, "Service", name);
            assert_eq!(
                svc["spec"]["clusterIP"], "None",
                "{render}: {name} headless"
            );
        }

        // Each agent keeps its data dir (its id and queues) on its own volume.
        let a = k8s::container(agent, "agent");
        let data_dir = k8s::flag(a, "--data-dir").expect("agent --data-dir");
        let claim = agent["spec"]["volumeClaimTemplates"][0]["metadata"]["name"]
            .as_str()
            .expect("agent volumeClaimTemplate");
        assert!(
            k8s::mounts(a)
                .into_iter()
                .any(|(volume, path)| volume == claim && path == data_dir),
            "{render}: the agent's claim {claim} is not mounted at {data_dir}"
        );
        // The pod outlives the preStop hook (10 s) and the drain.
        let drain: u64 = k8s::flag(a, "--drain-timeout-secs")
            .expect("agent --drain-timeout-secs")
            .parse()?;
        let grace = agent["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
            .as_u64()
            .expect("agent terminationGracePeriodSeconds");
        assert!(
            grace > drain + 10,
            "{render}: grace {grace} s, drain {drain} s"
        );
        let pre_stop = a["lifecycle"]["preStop"]["exec"]["command"].to_string();
        assert!(pre_stop.contains("cluster drain"), "{render}: {pre_stop}");

        // Probes, and Prometheus scraping the port metrics are served on.
        for (workload, name) in [(cp, "control-plane"), (agent, "agent")] {
            let c = k8s::container(workload, name);
            for probe in ["readinessProbe", "livenessProbe"] {
                assert!(c[probe].is_object(), "{render}: {name} has no {probe}");
            }
            let metrics = k8s::flag(c, "--metrics-listen").expect("--metrics-listen");
            let annotations = &workload["spec"]["template"]["metadata"]["annotations"];
            assert_eq!(
                annotations["prometheus.io/scrape"], "true",
                "{render}: {name}"
            );
            assert_eq!(
                annotations["prometheus.io/path"], "/metrics",
                "{render}: {name}"
            );
            let port = annotations["prometheus.io/port"].as_str().unwrap_or("-");
            assert!(
                metrics.ends_with(&format!(":{port}")),
                "{render}: {name} scraped on {port}, serves metrics on {metrics}"
            );
        }

        // Every flag is one the binaries take: they parse the rendered
        // arguments (the downward API's variables filled in) and print the
        // configuration.
        for (workload, name, binary) in [
            (cp, "control-plane", "herald-control-plane"),
            (agent, "agent", "herald-agent"),
        ] {
            let args: Vec<String> = k8s::args(k8s::container(workload, name))
                .iter()
                .map(|a| {
                    a.replace("$(POD_NAME)", "herald-agent-0")
                        .replace("$(POD_NAMESPACE)", "herald")
                })
                .collect();
            assert!(!args.iter().any(|a| a.contains("$(")), "{render}: {args:?}");
            let run = Command::new(herald_tests::process::bin(binary))
                .args(&args)
                .arg("--print-config")
                .env_clear()
                .output()?;
            assert!(
                run.status.success(),
                "{render}: {binary} {args:?}: {}",
                String::from_utf8_lossy(&run.stderr)
            );
        }
    }
    // The preStop hook's command exists.
    let run = Command::new(herald_tests::process::bin("herald"))
        .args(["cluster", "drain", "--help"])
        .env_clear()
        .output()?;
    assert!(run.status.success(), "herald cluster drain --help");

    // The base: gRPC health probes, and no access control.
    let cp = k8s::container(
        k8s::find(&base, "Deployment", "herald-control-plane"),
        "control-plane",
    );
    assert_eq!(cp["readinessProbe"]["grpc"]["port"].as_u64(), Some(50051));
    assert_eq!(cp["livenessProbe"]["grpc"]["port"].as_u64(), Some(50051));
    assert!(k8s::args(cp).contains(&"--insecure-no-auth"));

    // The overlay: TLS, cluster mutual TLS, sealed secrets and the
    // bootstrap key, each file from a Secret; access control on.
    let cp_pod = k8s::find(&secure, "Deployment", "herald-control-plane");
    let cp = k8s::container(cp_pod, "control-plane");
    assert!(!k8s::args(cp).contains(&"--insecure-no-auth"));
    for (flag, secret) in [
        ("--tls-cert", "herald-api-tls"),
        ("--tls-key", "herald-api-tls"),
        ("--cluster-cert", "herald-cluster-tls"),
        ("--cluster-key", "herald-cluster-tls"),
        ("--cluster-ca", "herald-cluster-tls"),
        ("--secrets-key-file", "herald-secrets-key"),
        ("--bootstrap-key-file", "herald-bootstrap-key"),
    ] {
        let path = k8s::flag(cp, flag).unwrap_or_else(|| panic!("control plane {flag}"));
        assert_eq!(
            k8s::secret_of(cp_pod, cp, path).as_deref(),
            Some(secret),
            "{flag}"
        );
    }
    let agent_pod = k8s::find(&secure, "StatefulSet", "herald-agent");
    let agent = k8s::container(agent_pod, "agent");
    let control_plane = k8s::flag(agent, "--control-plane").expect("--control-plane");
    assert!(control_plane.starts_with("https://"), "{control_plane}");
    for (flag, secret) in [
        ("--cluster-cert", "herald-cluster-tls"),
        ("--cluster-key", "herald-cluster-tls"),
        ("--cluster-ca", "herald-cluster-tls"),
        ("--control-plane-ca", "herald-api-tls"),
    ] {
        let path = k8s::flag(agent, flag).unwrap_or_else(|| panic!("agent {flag}"));
        assert_eq!(
            k8s::secret_of(agent_pod, agent, path).as_deref(),
            Some(secret),
            "{flag}"
        );
    }
    // No gRPC probe against a port that speaks TLS only.
    for c in [cp, agent] {
        for probe in ["readinessProbe", "livenessProbe", "startupProbe"] {
            assert!(c[probe]["grpc"].is_null(), "{probe}: {}", c[probe]);
        }
    }
    Ok(())
}

/// Reading rendered Kubernetes objects (JSON).
mod k8s {
    use serde_json::Value;

    /// The object of this kind and name.
    pub fn find<'a>(objs: &'a [Value], kind: &str, name: &str) -> &'a Value {
        objs.iter()
            .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("no {kind}/{name}"))
    }

    /// A container of a workload's pod template.
    pub fn container<'a>(workload: &'a Value, name: &str) -> &'a Value {
        workload["spec"]["template"]["spec"]["containers"]
            .as_array()
            .and_then(|cs| cs.iter().find(|c| c["name"] == name))
            .unwrap_or_else(|| panic!("no container {name}"))
    }

    /// A container's arguments.
    pub fn args(c: &Value) -> Vec<&str> {
        c["args"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default()
    }

    /// The value of `--name=value` in a container's arguments.
    pub fn flag<'a>(c: &'a Value, name: &str) -> Option<&'a str> {
        args(c)
            .into_iter()
            .find_map(|a| a.strip_prefix(name)?.strip_prefix('='))
    }

    /// A container's mounts, as (volume, path).
    pub fn mounts(c: &Value) -> Vec<(&str, &str)> {
        c["volumeMounts"]
            .as_array()
            .map(|ms| {
                ms.iter()
                    .filter_map(|m| Some((m["name"].as_str()?, m["mountPath"].as_str()?)))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The Secret whose volume holds `path` in this container, if one does.
    pub fn secret_of(workload: &Value, c: &Value, path: &str) -> Option<String> {
        let (volume, _) = mounts(c)
            .into_iter()
            .find(|(_, dir)| path.starts_with(&format!("{}/", dir.trim_end_matches('/'))))?;
        workload["spec"]["template"]["spec"]["volumes"]
            .as_array()?
            .iter()
            .find(|v| v["name"] == volume)?["secret"]["secretName"]
            .as_str()
            .map(str::to_string)
    }
}
