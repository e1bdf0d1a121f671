"""Checks deploy/k8s/ and deploy/compose/ offline: schemas, then what schemas cannot see.

Run by crates/essaim/tests/manifests.rs with the interpreter of
`scripts/python-env.sh k8s` (kubernetes-validate and PyYAML):

    python check_deploy.py REPOSITORY_ROOT ESSAIM_BINARY

1. Every Kubernetes manifest is validated, strictly (unknown fields are errors), against
   the API schemas of pinned Kubernetes releases, which kubernetes-validate ships: no
   cluster and no network needed. The KEDA ScaledObject, a custom resource, is
   validated against scaledobject.schema.json next to this file (the fields we use,
   unknown ones refused), and its HPA behaviour block against the HPA schema.
2. Cross-references a schema cannot check: probes aim at the port the process listens
   on, with /healthz for liveness and /readyz for readiness; the autoscalers target the
   worker Deployment with the coordinator's recommended-workers metric; selectors match
   pod labels; every path the processes write is on a volume (read-only root); the
   drain fits in the termination grace period; every `--flag` given to essaim (in k8s
   and compose) is one the binary accepts; the compose healthchecks and Prometheus
   configuration agree with the ports the services listen on; the PodMonitor scrapes
   both roles on their ports; the PrometheusRules carry exactly the groups of
   deploy/prometheus/alerts.yml and slo_rules.yml (ESSAIM_REGENERATE=1 rewrites them).

Prints one line per check and exits 1 listing every failure.
"""

import json
import re
import subprocess
import sys
from pathlib import Path

import jsonschema
import kubernetes_validate
import yaml

# The oldest release these manifests are meant for (HPA autoscaling/v2, policy/v1
# PDB, Pod Security labels: all GA well before it) and the newest the pinned
# validator knows.
KUBERNETES_VERSIONS = ("1.30.0", "1.37.0")

METRIC = "essaim_coordinator_queue_recommended_workers"
IMAGE_UID = 10001

failures = []


def check(condition, what):
    """Records one check; the run fails at the end if any did."""
    print(("ok   " if condition else "FAIL ") + what)
    if not condition:
        failures.append(what)


def load_documents(path):
    with open(path, encoding="utf-8") as handle:
        return [doc for doc in yaml.safe_load_all(handle) if doc is not None]


def flag_values(args):
    """Returns {--flag: value} from `--flag=value` arguments (value None for a switch)."""
    flags = {}
    for arg in args:
        if not arg.startswith("--"):
            continue
        name, _, value = arg.partition("=")
        flags[name] = value if "=" in arg else None
    return flags


def accepted_flags(essaim, role):
    """Returns the long flags `essaim ROLE --help` lists."""
    help_text = subprocess.run(
        [essaim, role, "--help"], capture_output=True, text=True, check=True
    ).stdout
    return set(re.findall(r"(--[a-z][a-z0-9-]*)", help_text))


def port_number(container, port):
    """Resolves a probe's port (a number or a containerPort name) to a number."""
    if isinstance(port, int):
        return port
    for declared in container.get("ports", []):
        if declared.get("name") == port:
            return declared["containerPort"]
    return None


def listen_port(address):
    return int(address.rsplit(":", 1)[1])


def mounted(container, path):
    """Returns whether `path` is on one of the container's volume mounts."""
    return any(
        path == mount["mountPath"] or path.startswith(mount["mountPath"].rstrip("/") + "/")
        for mount in container.get("volumeMounts", [])
    )


def selects(selector, labels):
    return all(labels.get(key) == value for key, value in selector.items())


def validate_schemas(k8s_dir, here):
    kustomization = yaml.safe_load((k8s_dir / "kustomization.yaml").read_text())
    listed = set(kustomization["resources"])
    for path in sorted(k8s_dir.rglob("*.yaml")):
        relative = path.relative_to(k8s_dir).as_posix()
        if relative == "kustomization.yaml":
            continue
        check(
            relative in listed or relative.startswith("optional/")
            or relative.endswith(".example.yaml"),
            f"{relative} is in kustomization.yaml, under optional/ or an example",
        )
    for resource in listed:
        check((k8s_dir / resource).is_file(), f"kustomization.yaml resource {resource} exists")

    keda_schema = json.loads((here / "scaledobject.schema.json").read_text())
    operator_schemas = {
        kind: json.loads((here / f"{kind.lower()}.schema.json").read_text())
        for kind in ("PodMonitor", "PrometheusRule")
    }
    documents = {}
    for path in sorted(k8s_dir.rglob("*.yaml")):
        relative = path.relative_to(k8s_dir).as_posix()
        if relative == "kustomization.yaml":
            continue
        for doc in load_documents(path):
            name = f"{relative}: {doc.get('kind')}/{doc.get('metadata', {}).get('name')}"
            documents.setdefault(doc["kind"], []).append(doc)
            if doc.get("apiVersion", "").startswith("monitoring.coreos.com/"):
                # prometheus-operator custom resources: only the bundled schemas apply.
                schema = operator_schemas.get(doc["kind"])
                errors = [] if schema is None else sorted(
                    jsonschema.Draft202012Validator(schema).iter_errors(doc), key=str)
                reasons = "; ".join(error.message for error in errors)
                check(schema is not None and not errors,
                      f"{name} matches the bundled {doc['kind']} schema"
                      + (f": {reasons}" if errors else ""))
                continue
            if doc.get("apiVersion", "").startswith("keda.sh/"):
                errors = sorted(
                    jsonschema.Draft202012Validator(keda_schema).iter_errors(doc),
                    key=str,
                )
                reasons = "; ".join(error.message for error in errors)
                check(not errors, f"{name} matches the bundled ScaledObject schema"
                      + (f": {reasons}" if errors else ""))
                behavior = doc["spec"]["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
                doc = {
                    "apiVersion": "autoscaling/v2",
                    "kind": "HorizontalPodAutoscaler",
                    "metadata": {"name": "behaviour-of-" + doc["metadata"]["name"]},
                    "spec": {
                        "scaleTargetRef": doc["spec"]["scaleTargetRef"],
                        "maxReplicas": doc["spec"]["maxReplicaCount"],
                        "behavior": behavior,
                    },
                }
                name += " (its HPA behaviour)"
            for version in KUBERNETES_VERSIONS:
                try:
                    kubernetes_validate.validate(doc, version, strict=True)
                    check(True, f"{name} is valid Kubernetes {version}")
                except kubernetes_validate.ValidationError as error:
                    check(False, f"{name} is valid Kubernetes {version}: {error.message} "
                          f"at {'.'.join(str(p) for p in error.path)}")
                except kubernetes_validate.SchemaNotFoundError as error:
                    check(False, f"{name} has a schema in Kubernetes {version}: {error}")
    return documents


def check_coordinator(documents, essaim):
    statefulset = documents["StatefulSet"][0]
    spec = statefulset["spec"]
    pod = spec["template"]["spec"]
    container = pod["containers"][0]
    flags = flag_values(container["args"])
    check(container["args"][0] == "coordinator", "coordinator runs `essaim coordinator`")
    check(spec["replicas"] == 1, "one coordinator (single writer of its journal)")
    unknown = set(flags) - accepted_flags(essaim, "coordinator")
    check(not unknown, f"coordinator flags are known to the binary {sorted(unknown)}")

    port = listen_port(flags["--listen"])
    check(flags["--listen"].startswith("0.0.0.0:"), "coordinator listens on every interface")
    check(port_number(container, "api") == port, "containerPort `api` is the --listen port")
    for probe, path in (("startupProbe", "/healthz"), ("livenessProbe", "/healthz"),
                        ("readinessProbe", "/readyz")):
        http_get = container[probe]["httpGet"]
        check(http_get["path"] == path and port_number(container, http_get["port"]) == port,
              f"coordinator {probe} is GET {path} on {port}")
    annotations = spec["template"]["metadata"]["annotations"]
    check(annotations["prometheus.io/port"] == str(port)
          and annotations["prometheus.io/path"] == "/metrics",
          "coordinator scrape annotations name its port and /metrics")

    journal_claims = [claim["metadata"]["name"] for claim in spec["volumeClaimTemplates"]]
    journal_mounts = [m for m in container["volumeMounts"] if m["name"] in journal_claims]
    check(journal_mounts and flags["--data-dir"].startswith(journal_mounts[0]["mountPath"]),
          "--data-dir is on the journal's persistent volume")
    check_hardening("coordinator", pod, container)
    check_token(container, documents)

    labels = spec["template"]["metadata"]["labels"]
    check(selects(spec["selector"]["matchLabels"], labels), "StatefulSet selector matches its pods")
    services = {service["metadata"]["name"]: service for service in documents["Service"]}
    headless = services.get(spec["serviceName"])
    check(headless is not None and headless["spec"].get("clusterIP") == "None",
          "the StatefulSet's serviceName is a headless Service")
    for service in services.values():
        check(selects(service["spec"]["selector"], labels),
              f"Service {service['metadata']['name']} selects the coordinator pod")
        for service_port in service["spec"]["ports"]:
            check(port_number(container, service_port["targetPort"]) == port,
                  f"Service {service['metadata']['name']} targets port {port}")
    return services


def check_worker(documents, services, essaim):
    deployment = next(d for d in documents["Deployment"] if d["metadata"]["name"] == "essaim-worker")
    spec = deployment["spec"]
    pod = spec["template"]["spec"]
    container = pod["containers"][0]
    flags = flag_values(container["args"])
    check(container["args"][0] == "worker", "workers run `essaim worker`")
    check(spec["replicas"] == 3, "three workers to start with")
    unknown = set(flags) - accepted_flags(essaim, "worker")
    check(not unknown, f"worker flags are known to the binary {sorted(unknown)}")

    port = listen_port(flags["--http-listen"])
    check(port_number(container, "http") == port, "containerPort `http` is the --http-listen port")
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        http_get = container[probe]["httpGet"]
        check(http_get["path"] == path and port_number(container, http_get["port"]) == port,
              f"worker {probe} is GET {path} on {port}")
    annotations = spec["template"]["metadata"]["annotations"]
    check(annotations["prometheus.io/port"] == str(port), "worker scrape annotation names its port")

    coordinator_url = re.fullmatch(r"http://([a-z0-9-]+):(\d+)", flags["--coordinator"])
    coordinator_service = services.get(coordinator_url.group(1)) if coordinator_url else None
    check(coordinator_service is not None
          and coordinator_service["spec"].get("clusterIP") != "None"
          and int(coordinator_url.group(2)) in [p["port"] for p in coordinator_service["spec"]["ports"]],
          "--coordinator is the coordinator's ClusterIP Service and port")

    env = {variable["name"]: variable for variable in container["env"]}
    check(flags.get("--advertised-host") == "$(POD_IP)"
          and env["POD_IP"]["valueFrom"]["fieldRef"]["fieldPath"] == "status.podIP",
          "workers advertise their pod IP")
    check(mounted(container, flags["--scratch-dir"]), "--scratch-dir is on a volume")
    grace = re.fullmatch(r"(\d+)s?", flags["--drain-grace"])
    check(grace is not None, "--drain-grace is a number of seconds (`120s`)")
    drain_grace = int(grace.group(1)) if grace else 0
    check(pod["terminationGracePeriodSeconds"] >= drain_grace + 15,
          "terminationGracePeriodSeconds covers --drain-grace plus hand-back")
    pre_stop = " ".join(container["lifecycle"]["preStop"]["exec"]["command"])
    check("kill -TERM 1" in pre_stop, "preStop starts the drain (SIGTERM to the worker)")
    check_hardening("worker", pod, container)
    check_token(container, documents)

    labels = spec["template"]["metadata"]["labels"]
    check(selects(spec["selector"]["matchLabels"], labels), "Deployment selector matches its pods")
    # The workers' budget (optional/coordinator-ha.yaml has the coordinators' own).
    budgets = [b for b in documents["PodDisruptionBudget"]
               if selects(b["spec"]["selector"]["matchLabels"], labels)]
    budget = budgets[0] if budgets else documents["PodDisruptionBudget"][0]
    check(selects(budget["spec"]["selector"]["matchLabels"], labels)
          and budget["spec"]["selector"]["matchLabels"] == spec["selector"]["matchLabels"],
          "the PodDisruptionBudget covers the workers")
    return deployment


def check_hardening(role, pod, container):
    security = pod["securityContext"]
    check(security["runAsNonRoot"] and security["runAsUser"] == IMAGE_UID
          and security["runAsGroup"] == IMAGE_UID, f"{role} runs as the image's user {IMAGE_UID}")
    check(container["securityContext"]["readOnlyRootFilesystem"], f"{role} root file system is read-only")
    check(mounted(container, "/tmp"), f"{role} /tmp is a volume")
    resources = container["resources"]
    check({"cpu", "memory"} <= set(resources["requests"]) and "memory" in resources["limits"],
          f"{role} has CPU and memory requests and a memory limit")


def check_token(container, documents):
    env = {variable["name"]: variable for variable in container["env"]}
    reference = env["ESSAIM_TOKEN"]["valueFrom"]["secretKeyRef"]
    secrets = {s["metadata"]["name"]: s for s in documents["Secret"]}
    secret = secrets.get(reference["name"])
    check(secret is not None and reference["key"] in secret.get("stringData", {}),
          f"ESSAIM_TOKEN comes from Secret {reference['name']} key {reference['key']}")


def check_autoscaling(documents, deployment):
    target = {"apiVersion": "apps/v1", "kind": "Deployment", "name": deployment["metadata"]["name"]}
    hpa = documents["HorizontalPodAutoscaler"][0]
    check(hpa["spec"]["scaleTargetRef"] == target, "the HPA scales the worker Deployment")
    metrics = hpa["spec"]["metrics"]
    check(len(metrics) == 1 and metrics[0]["type"] == "External"
          and metrics[0]["external"]["metric"]["name"] == METRIC,
          f"the HPA follows {METRIC}")
    check(metrics[0]["external"]["target"] == {"type": "AverageValue", "averageValue": "1"},
          "the HPA's replica count is the recommended number (AverageValue 1)")

    scaled = documents["ScaledObject"][0]
    check(scaled["spec"]["scaleTargetRef"] == target, "the KEDA ScaledObject scales the worker Deployment")
    trigger = scaled["spec"]["triggers"][0]
    check(trigger["type"] == "prometheus" and METRIC in trigger["metadata"]["query"]
          and trigger["metadata"]["threshold"] == "1",
          f"the KEDA trigger follows {METRIC} with threshold 1")

    adapter = next(c for c in documents["ConfigMap"] if c["metadata"]["name"] == "adapter-config")
    rules = yaml.safe_load(adapter["data"]["config.yaml"])["externalRules"]
    check(any(rule["name"]["as"] == METRIC and METRIC in rule["seriesQuery"] for rule in rules),
          f"the prometheus-adapter rule serves {METRIC}")


def check_compose(root, essaim):
    compose = yaml.safe_load((root / "deploy/compose/docker-compose.yml").read_text())
    services = compose["services"]
    check({"coordinator", "worker", "prometheus"} <= set(services), "compose has coordinator, worker, prometheus")

    coordinator = services["coordinator"]
    flags = flag_values(coordinator["command"][1:])
    check(coordinator["command"][0] == "coordinator", "compose coordinator runs `essaim coordinator`")
    unknown = set(flags) - accepted_flags(essaim, "coordinator")
    check(not unknown, f"compose coordinator flags are known {sorted(unknown)}")
    coordinator_port = listen_port(flags["--listen"])
    check(coordinator["healthcheck"]["test"][-1] == str(coordinator_port),
          "compose coordinator healthcheck probes its --listen port")
    check(all(p.startswith("127.0.0.1:") and p.endswith(f":{coordinator_port}") for p in coordinator["ports"]),
          "compose publishes the coordinator on loopback only")
    check(any(v.endswith(":/var/lib/essaim") for v in coordinator["volumes"])
          and flags["--data-dir"].startswith("/var/lib/essaim/"),
          "compose keeps the journal on a named volume")

    worker = services["worker"]
    check(worker["command"][0] == "worker" and "entrypoint" not in worker,
          "compose workers run `essaim worker` through the image's entrypoint")
    worker_flags = flag_values(worker["command"][1:])
    unknown = set(worker_flags) - accepted_flags(essaim, "worker")
    check(not unknown, f"compose worker flags are known {sorted(unknown)}")
    # Listening on every interface with no advertised host, a worker advertises the
    # address it reaches the coordinator from: its own on the compose network.
    check(worker_flags["--http-listen"].startswith("0.0.0.0:")
          and "--advertised-host" not in worker_flags
          and "ESSAIM_ADVERTISED_HOST" not in worker["environment"],
          "compose workers advertise their own address (wildcard listen, no fixed host)")
    worker_port = listen_port(worker_flags["--http-listen"])
    check(worker["healthcheck"]["test"][-1] == str(worker_port)
          and worker["environment"]["ESSAIM_HEALTH_PORT"] == str(worker_port),
          "compose worker healthcheck probes its --http-listen port")
    check(worker["environment"]["ESSAIM_COORDINATOR"] == f"http://coordinator:{coordinator_port}",
          "compose workers reach the coordinator service")
    check(worker["depends_on"]["coordinator"]["condition"] == "service_healthy",
          "compose workers wait for a healthy coordinator")
    check("ports" not in worker, "compose workers publish no port (so they scale)")

    prometheus = yaml.safe_load((root / "deploy/compose/prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in prometheus["scrape_configs"]}
    check(jobs["essaim-coordinator"]["static_configs"][0]["targets"] == [f"coordinator:{coordinator_port}"],
          "Prometheus scrapes the coordinator service")
    dns = jobs["essaim-worker"]["dns_sd_configs"][0]
    check(dns["names"] == ["worker"] and dns["port"] == worker_port,
          "Prometheus finds every worker replica by DNS, on the worker port")
    check(prometheus["rule_files"] == ["alerts.yml"]
          and any(v.startswith("../prometheus/alerts.yml:") for v in services["prometheus"]["volumes"]),
          "Prometheus loads deploy/prometheus/alerts.yml")


# The PrometheusRules of optional/prometheus-rules.yaml: each carries the groups of one
# file of deploy/prometheus/, which promtool checks and unit-tests.
RULE_SOURCES = (
    ("essaim-alerts", "deploy/prometheus/alerts.yml"),
    ("essaim-slo", "deploy/prometheus/slo_rules.yml"),
)
RULES_MANIFEST = "deploy/k8s/optional/prometheus-rules.yaml"
RULES_HEADER = """\
# The rules of deploy/prometheus/ as prometheus-operator PrometheusRules: the alerts of
# alerts.yml and the service-level objectives' rules of slo_rules.yml (made by
# `essaim slo rules slo.toml`).
#
#     kubectl apply -n essaim -f deploy/k8s/optional/prometheus-rules.yaml
#
# Generated: crates/essaim/tests/manifests/check_deploy.py fails while these groups
# differ from those files, and writes this file anew when run with
# ESSAIM_REGENERATE=1 (e.g. `ESSAIM_REGENERATE=1 cargo test -p essaim --test manifests`).
# The `release` label is what a kube-prometheus-stack Prometheus selects by default.
"""


class LiteralDumper(yaml.SafeDumper):
    """Writes multi-line strings (PromQL) as literal blocks, as the source files do."""


def _literal_strings(dumper, text):
    style = "|" if "\n" in text else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", text, style=style)


LiteralDumper.add_representer(str, _literal_strings)


def prometheus_rules_manifest(root):
    """Returns the text optional/prometheus-rules.yaml must have."""
    documents = []
    for name, source in RULE_SOURCES:
        groups = yaml.safe_load((root / source).read_text())["groups"]
        documents.append({
            "apiVersion": "monitoring.coreos.com/v1",
            "kind": "PrometheusRule",
            "metadata": {
                "name": name,
                "namespace": "essaim",
                "labels": {
                    "app.kubernetes.io/name": "essaim",
                    "app.kubernetes.io/part-of": "essaim",
                    "release": "prometheus",
                },
            },
            "spec": {"groups": groups},
        })
    body = yaml.dump_all(documents, Dumper=LiteralDumper, sort_keys=False, width=100)
    return RULES_HEADER + body


def check_monitoring(root, documents):
    import os
    manifest = root / RULES_MANIFEST
    wanted = prometheus_rules_manifest(root)
    if os.environ.get("ESSAIM_REGENERATE") == "1":
        manifest.write_text(wanted)
        print(f"wrote {RULES_MANIFEST}")
    check(manifest.read_text() == wanted,
          f"{RULES_MANIFEST} equals the groups of {', '.join(s for _, s in RULE_SOURCES)} "
          "(regenerate with ESSAIM_REGENERATE=1)")
    on_disk = {doc["metadata"]["name"]: doc for doc in yaml.safe_load_all(manifest.read_text())}
    for name, source in RULE_SOURCES:
        groups = yaml.safe_load((root / source).read_text())["groups"]
        check(on_disk.get(name, {}).get("spec", {}).get("groups") == groups,
              f"PrometheusRule {name} carries every group of {source}")

    monitor = documents["PodMonitor"][0]
    ports = {endpoint["port"] for endpoint in monitor["spec"]["podMetricsEndpoints"]}
    selector = monitor["spec"]["selector"]["matchLabels"]
    coordinator = documents["StatefulSet"][0]["spec"]["template"]
    worker = next(d for d in documents["Deployment"] if d["metadata"]["name"] == "essaim-worker")
    worker = worker["spec"]["template"]
    for role, template, port in (("coordinator", coordinator, "api"), ("worker", worker, "http")):
        container = template["spec"]["containers"][0]
        check(selects(selector, template["metadata"]["labels"])
              and port in ports and port_number(container, port) is not None,
              f"the PodMonitor scrapes the {role} pods on their `{port}` port")
        check(all(endpoint.get("path", "/metrics") == "/metrics"
                  for endpoint in monitor["spec"]["podMetricsEndpoints"]),
              f"the PodMonitor scrapes /metrics of the {role}")


def check_dockerfile(root):
    dockerfile = (root / "deploy/docker/Dockerfile").read_text()
    check(f"USER {IMAGE_UID}:{IMAGE_UID}" in dockerfile, f"the image runs as {IMAGE_UID}")
    check(re.search(r"^EXPOSE 7070 7071$", dockerfile, re.M) is not None, "the image exposes 7070 and 7071")
    check('ENTRYPOINT ["essaim"]' in dockerfile, "the image's entrypoint is essaim")


def section(what, function, *args):
    """Runs one group of checks; a missing field fails it instead of stopping the run."""
    try:
        return function(*args)
    except (KeyError, IndexError, TypeError, AttributeError, StopIteration, ValueError) as error:
        check(False, f"{what}: expected field or value missing ({type(error).__name__}: {error})")
        return None


def main():
    root = Path(sys.argv[1]).resolve()
    essaim = sys.argv[2]
    here = Path(__file__).resolve().parent
    k8s_dir = root / "deploy/k8s"
    documents = section("schemas", validate_schemas, k8s_dir, here) or {}
    services = section("coordinator", check_coordinator, documents, essaim) or {}
    deployment = section("worker", check_worker, documents, services, essaim)
    if deployment is not None:
        section("autoscaling", check_autoscaling, documents, deployment)
    section("monitoring", check_monitoring, root, documents)
    section("compose", check_compose, root, essaim)
    section("Dockerfile", check_dockerfile, root)
    if failures:
        print(f"\n{len(failures)} check(s) failed:", *failures, sep="\n  ")
        sys.exit(1)
    print("\nall deployment checks passed")


if __name__ == "__main__":
    main()
