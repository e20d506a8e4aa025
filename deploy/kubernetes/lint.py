"""Checks rendered manifests for mistakes the API schemas let through, and
writes them as a JSON list (for the tests).

    python lint.py RENDERED.yaml OUT.json

- a probe or hook has exactly one handler (exec, httpGet, tcpSocket, grpc);
- every $(VAR) in a command, args or env value names a variable of the
  container defined before it (Kubernetes leaves an unknown one as text);
- every volume mount names a volume or a volumeClaimTemplate;
- every named port (probes, hooks, Service targetPort) is a container's;
- every workload, Service and PodDisruptionBudget selector selects a pod
  template, and a StatefulSet's serviceName is a headless Service.
"""

import json
import re
import sys

import yaml

WORKLOADS = {"Deployment", "StatefulSet", "DaemonSet"}
HANDLERS = ("exec", "httpGet", "tcpSocket", "grpc", "sleep")
VAR = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)")


def main(src, dst):
    with open(src) as f:
        objs = [o for o in yaml.safe_load_all(f) if o]
    errors = []
    workloads = [o for o in objs if o["kind"] in WORKLOADS]
    services = {o["metadata"]["name"]: o for o in objs if o["kind"] == "Service"}
    seen = set()
    for o in objs:
        key = (o["kind"], o["metadata"].get("namespace"), o["metadata"]["name"])
        if key in seen:
            errors.append(f"{key}: defined twice")
        seen.add(key)
    for w in workloads:
        errors += check_workload(w, services)
    for o in objs:
        if o["kind"] in ("Service", "PodDisruptionBudget"):
            errors += check_selector(o, workloads)
    for e in errors:
        print(f"lint: {src}: {e}", file=sys.stderr)
    with open(dst, "w") as f:
        json.dump(objs, f, indent=1)
    return 1 if errors else 0


def check_workload(w, services):
    name = f"{w['kind']}/{w['metadata']['name']}"
    errors = []
    spec = w["spec"]
    pod = spec["template"]["spec"]
    labels = spec["template"]["metadata"].get("labels", {})
    if not matches(spec["selector"].get("matchLabels", {}), labels):
        errors.append(f"{name}: selector does not select its own template")
    volumes = {v["name"] for v in pod.get("volumes", [])}
    volumes |= {c["metadata"]["name"] for c in spec.get("volumeClaimTemplates", [])}
    if w["kind"] == "StatefulSet":
        svc = services.get(spec.get("serviceName"))
        if svc is None or svc["spec"].get("clusterIP") != "None":
            errors.append(f"{name}: serviceName is not a headless Service")
    for c in pod.get("initContainers", []) + pod["containers"]:
        where = f"{name} container {c['name']}"
        ports = {p["name"] for p in c.get("ports", []) if "name" in p}
        defined = []
        for e in c.get("env", []):
            for ref in VAR.findall(e.get("value", "")):
                if ref not in defined:
                    errors.append(f"{where}: env {e['name']} uses $({ref}) before it is defined")
            defined.append(e["name"])
        for field in ("command", "args"):
            for arg in c.get(field, []):
                for ref in VAR.findall(arg):
                    if ref not in defined:
                        errors.append(f"{where}: {field} uses undefined $({ref}): {arg}")
        actions = [(p, c.get(p)) for p in ("startupProbe", "readinessProbe", "livenessProbe")]
        actions += [(f"lifecycle.{h}", c.get("lifecycle", {}).get(h)) for h in ("postStart", "preStop")]
        for what, action in actions:
            if action is None:
                continue
            handlers = [h for h in HANDLERS if h in action]
            if len(handlers) != 1:
                errors.append(f"{where}: {what} has handlers {handlers}, wants exactly one")
            for h in handlers:
                port = action[h].get("port") if isinstance(action[h], dict) else None
                if isinstance(port, str) and port not in ports:
                    errors.append(f"{where}: {what} names port {port!r}, not a container port")
        for m in c.get("volumeMounts", []):
            if m["name"] not in volumes:
                errors.append(f"{where}: mounts unknown volume {m['name']!r}")
    return errors


def check_selector(o, workloads):
    name = f"{o['kind']}/{o['metadata']['name']}"
    sel = o["spec"].get("selector") or {}
    if o["kind"] == "PodDisruptionBudget":
        sel = sel.get("matchLabels", {})
    if not sel:
        return []
    chosen = [w for w in workloads if matches(sel, w["spec"]["template"]["metadata"].get("labels", {}))]
    if not chosen:
        return [f"{name}: selector {sel} selects no pod template"]
    errors = []
    if o["kind"] == "Service":
        ports = {
            p["name"]
            for w in chosen
            for c in w["spec"]["template"]["spec"]["containers"]
            for p in c.get("ports", [])
            if "name" in p
        }
        for p in o["spec"].get("ports", []):
            target = p.get("targetPort")
            if isinstance(target, str) and target not in ports:
                errors.append(f"{name}: targetPort {target!r} is no selected container's port")
    return errors


def matches(selector, labels):
    return all(labels.get(k) == v for k, v in selector.items())


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
