"""The Kubernetes manifests (deploy/k8s) and the container image
(Dockerfile): rendered as kustomize renders them, schema-checked against
a pinned Kubernetes version, and checked for what running Tailor on a
cluster depends on. Where a property is a fact of the code (the service
names health reports, the variables a binary reads, the measured memory
of each process), it is read from the source, not restated here.
"""

from __future__ import annotations

import copy
import ipaddress
import re
import shutil
import subprocess
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from render import render

ROOT = Path(__file__).resolve().parents[2]
BASE = ROOT / "deploy" / "k8s" / "base"
DOCKERFILE = ROOT / "Dockerfile"
ADAPTER_RULES = ROOT / "deploy" / "k8s" / "monitoring" / "prometheus-adapter-rules.yaml"
DEPLOYMENT_DOC = ROOT / "docs" / "deployment.md"

# The Kubernetes version the manifests are checked against: native gRPC
# probes are GA since 1.27, the preStop sleep action on by default since
# 1.30.
KUBERNETES_VERSION = "1.32.0"

BFFS = ["web-bff", "mobile-bff", "partner-bff"]
DOWNSTREAMS = ["catalog", "inventory", "reviews", "orders"]
SERVERS = DOWNSTREAMS + BFFS


def crate_dir(server: str) -> Path:
    tier = "bff" if server in BFFS else "services"
    return ROOT / "crates" / tier / server


# --- facts read from the source -------------------------------------------


def served_services(server: str) -> set[str]:
    """The gRPC services the server's binary adds to its GrpcServer, which
    are the names its health service reports (besides "")."""
    source = "\n".join(p.read_text() for p in (crate_dir(server) / "src").glob("*.rs"))
    found = set()
    for package, module in re.findall(r"tailor_proto::(\w+)::v1::(\w+)_server::", source):
        name = "".join(part.capitalize() for part in module.split("_"))
        found.add(f"tailor.{package}.v1.{name}")
    assert found, f"no served service found in {crate_dir(server)}"
    return found


def liveness_name() -> str:
    """The health name the runtime keeps SERVING while a server serves,
    whatever its downstream services do."""
    source = (ROOT / "crates" / "platform" / "runtime" / "src" / "server.rs").read_text()
    names = re.findall(r'pub const LIVENESS: &str = "([\w.-]+)";', source)
    assert len(names) == 1, names
    return names[0]


LIVENESS = liveness_name()


def server_name_in_code(server: str) -> str:
    source = (crate_dir(server) / "src" / "lib.rs").read_text()
    names = set(re.findall(r'GrpcServer::new\("([\w-]+)"\)', source))
    names |= set(re.findall(r'pub const NAME: &str = "([\w-]+)"', source))
    assert len(names) == 1, f"{server}: {names}"
    return names.pop()


STRUCT = re.compile(r"^(?:pub )?struct (\w+) \{\n(.*?)^\}", re.M | re.S)


def flags_of(body: str) -> tuple[set[str], set[str]]:
    """The variables a clap struct's fields read, and the structs it
    flattens into itself."""
    variables = set(re.findall(r'env = "([A-Z0-9_]+)"', body))
    flattened = set(re.findall(r"#\[command\(flatten\)\]\s*(?:pub )?\w+: (\w+)", body))
    return variables, flattened


def variables_read_by(server: str) -> set[str]:
    """The environment variables the server's binary reads: its own
    flags (`Args` in its main.rs) and those of every argument struct it
    flattens in, followed through the shared crates."""
    shared: dict[str, tuple[set[str], set[str]]] = {}
    for path in (ROOT / "crates" / "platform").rglob("*.rs"):
        for name, body in STRUCT.findall(path.read_text()):
            shared[name] = flags_of(body)
    main = (crate_dir(server) / "src" / "main.rs").read_text()
    own = dict(STRUCT.findall(main))["Args"]
    variables, pending = flags_of(own)
    seen = set()
    while pending:
        name = pending.pop()
        if name in seen:
            continue
        seen.add(name)
        assert name in shared, f"{server} flattens {name}, not found in crates/platform"
        more, nested = shared[name]
        variables |= more
        pending |= nested
    return variables


def measured_peak_rss_mib() -> dict[str, float]:
    """The highest RSS each server process reached in the performance run
    (docs/performance-records.tsv, `process` lines)."""
    peak: dict[str, float] = {}
    for line in (ROOT / "docs" / "performance-records.tsv").read_text().splitlines():
        fields = line.split("\t")
        if fields[0] == "process" and fields[3].startswith("tailor-"):
            name = fields[3].removeprefix("tailor-")
            peak[name] = max(peak.get(name, 0.0), float(fields[6]))
    return peak


def documented_external_objects() -> set[tuple[str, str]]:
    """The ConfigMaps and Secrets docs/deployment.md tells operators to
    create: rows `| Secret | `name` | ...` of its table."""
    rows = re.findall(r"^\| (Secret|ConfigMap) \| `([\w.-]+)` \|", DEPLOYMENT_DOC.read_text(), re.M)
    return {(kind, name) for kind, name in rows}


# --- the rendered manifests -----------------------------------------------


@pytest.fixture(scope="session")
def objects() -> list[dict]:
    return render(BASE)


def of_kind(objects: list[dict], kind: str) -> dict[str, dict]:
    return {o["metadata"]["name"]: o for o in objects if o["kind"] == kind}


def container(deployment: dict) -> dict:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1, deployment["metadata"]["name"]
    return containers[0]


def environment(objects: list[dict], deployment: dict) -> dict[str, str | dict]:
    """The container's environment: ConfigMap entries it loads whole
    (envFrom), then its own `env` (literal values, or the valueFrom)."""
    config = of_kind(objects, "ConfigMap")
    env: dict[str, str | dict] = {}
    for source in container(deployment).get("envFrom", []):
        name = source["configMapRef"]["name"]
        assert name in config, f"{deployment['metadata']['name']} loads missing ConfigMap {name}"
        env.update(config[name]["data"])
    for item in container(deployment).get("env", []):
        env[item["name"]] = item.get("value", item.get("valueFrom"))
    return env


def admin_port(objects: list[dict], deployment: dict) -> int:
    listen = environment(objects, deployment)["TAILOR_ADMIN_LISTEN"]
    return int(listen.rsplit(":", 1)[1])


def pod_labels(deployment: dict) -> dict[str, str]:
    return deployment["spec"]["template"]["metadata"]["labels"]


def selects(selector: dict, labels: dict[str, str]) -> bool:
    """Whether a Kubernetes label selector matches `labels`."""
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expression in selector.get("matchExpressions") or []:
        key, operator = expression["key"], expression["operator"]
        values = expression.get("values", [])
        if operator == "In" and labels.get(key) not in values:
            return False
        if operator == "NotIn" and labels.get(key) in values:
            return False
        if operator == "Exists" and key not in labels:
            return False
        if operator == "DoesNotExist" and key in labels:
            return False
    return True


def policies_for(objects: list[dict], labels: dict[str, str], direction: str) -> list[dict]:
    return [
        p
        for p in of_kind(objects, "NetworkPolicy").values()
        if direction in p["spec"].get("policyTypes", [])
        and selects(p["spec"]["podSelector"], labels)
    ]


def rule_ports(rule: dict) -> set[int] | None:
    """The ports a rule opens; None for every port."""
    if not rule.get("ports"):
        return None
    return {p["port"] for p in rule["ports"]}


def peers_reaching(objects, target_labels: dict, port: int) -> list[dict]:
    """Every ingress peer that the policies selecting a pod with
    `target_labels` let in on `port`."""
    peers = []
    for policy in policies_for(objects, target_labels, "Ingress"):
        for rule in policy["spec"].get("ingress", []):
            ports = rule_ports(rule)
            if ports is None or port in ports:
                peers.extend(rule.get("from", [{}]))
    return peers


def egress_allows(objects, source_labels: dict, target_labels: dict, port: int) -> bool:
    """Whether the policies selecting the source pod let it reach a pod
    with `target_labels` in the same namespace on `port`."""
    for policy in policies_for(objects, source_labels, "Egress"):
        for rule in policy["spec"].get("egress", []):
            ports = rule_ports(rule)
            if ports is not None and port not in ports:
                continue
            for peer in rule.get("to", [{}]):
                if peer == {} or "ipBlock" in peer:
                    return True
                if "namespaceSelector" in peer and peer["namespaceSelector"] != {}:
                    continue
                if selects(peer.get("podSelector", {}), target_labels):
                    return True
    return False


def store_labels(server: str) -> dict[str, str]:
    """How a server's PostgreSQL pod is labelled (docs/deployment.md)."""
    return {"tailor.dev/store-of": server}


def servers_with_a_store(objects) -> set[str]:
    deployments = of_kind(objects, "Deployment")
    return {
        name
        for name, deployment in deployments.items()
        if "TAILOR_DATABASE_URL" in environment(objects, deployment)
    }


# --- rendering and schema -------------------------------------------------


def test_the_base_holds_one_deployment_service_and_budget_per_server(objects):
    for kind in ("Deployment", "Service", "PodDisruptionBudget", "ConfigMap"):
        assert set(SERVERS) <= set(of_kind(objects, kind)), kind
    assert set(of_kind(objects, "Deployment")) == set(SERVERS)
    namespaces = {o["metadata"].get("namespace") for o in objects if o["kind"] != "Namespace"}
    assert namespaces == {"tailor"}


def test_every_object_is_valid_for_the_pinned_kubernetes_version(objects):
    problems = []
    for obj in objects:
        try:
            kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as error:
            path = ".".join(str(p) for p in error.path)
            problems.append(f"{obj['kind']}/{obj['metadata']['name']} {path}: {error.message}")
    assert not problems, "\n".join(problems)


def test_the_validator_refuses_what_the_api_server_would(objects):
    deployment = copy.deepcopy(of_kind(objects, "Deployment")["web-bff"])
    # A misspelt field, and a probe on a named port (gRPC probes take numbers).
    container(deployment)["readinesProbe"] = container(deployment).pop("readinessProbe")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)
    deployment = copy.deepcopy(of_kind(objects, "Deployment")["web-bff"])
    container(deployment)["readinessProbe"]["grpc"]["port"] = "admin"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)


OVERLAY = """\
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
- {base}
images:
- name: tailor
  newName: registry.example.com/shop/tailor
  newTag: "1.4.2"
patches:
- path: site.yaml
"""

SITE = """\
apiVersion: v1
kind: ConfigMap
metadata:
  name: web-bff
data:
  TAILOR_WEB_CORS_ORIGINS: https://shop.example.org
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web-bff
spec:
  template:
    spec:
      containers:
      - name: web-bff
        env:
        - name: TAILOR_WEB_SESSION_TTL_SECS
          value: "3600"
        resources:
          limits:
            memory: 512Mi
"""


def test_the_renderer_agrees_with_kubectl_kustomize(tmp_path, objects):
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed here; the renderer was cross-checked where it was")
    rendered = subprocess.run([kubectl, "kustomize", str(BASE)], check=True, capture_output=True, text=True)
    assert list(yaml.safe_load_all(rendered.stdout)) == objects
    # An overlay as docs/deployment.md shows one: image, patches.
    overlay = tmp_path / "overlay"
    overlay.mkdir()
    relative = Path(*[".."] * len(overlay.parts[1:])) / BASE.relative_to("/")
    (overlay / "kustomization.yaml").write_text(OVERLAY.format(base=relative))
    (overlay / "site.yaml").write_text(SITE)
    theirs = subprocess.run([kubectl, "kustomize", str(overlay)], check=True, capture_output=True, text=True)
    mine = render(overlay)
    assert list(yaml.safe_load_all(theirs.stdout)) == mine
    web = of_kind(mine, "Deployment")["web-bff"]
    assert container(web)["image"] == "registry.example.com/shop/tailor:1.4.2"
    assert container(web)["resources"]["limits"]["memory"] == "512Mi"


# --- probes ---------------------------------------------------------------


def test_probes_ask_grpc_health_on_the_admin_port_for_the_servers_own_service(objects):
    for name, deployment in of_kind(objects, "Deployment").items():
        c = container(deployment)
        port = admin_port(objects, deployment)
        assert {"name": "admin", "containerPort": port} in c["ports"], name
        readiness = c["readinessProbe"]["grpc"]
        assert readiness["port"] == port, name
        # The service the binary serves, so NOT_SERVING of that service
        # (a BFF's required downstream gone, a drain) takes the pod out.
        assert readiness["service"] in served_services(name), name
        if name in DOWNSTREAMS:
            for probe in ("livenessProbe", "startupProbe"):
                assert c[probe]["grpc"] == {"port": port, "service": ""}, (name, probe)
        else:
            # A BFF's own services follow its downstream services: liveness
            # must not, or a catalog outage would restart every BFF. It asks
            # the health name the runtime keeps SERVING while it serves.
            for probe in ("livenessProbe", "startupProbe"):
                assert c[probe]["grpc"] == {"port": port, "service": LIVENESS}, (name, probe)


def test_the_startup_probe_gives_a_downstream_service_time_to_seed_its_store(objects):
    for name in DOWNSTREAMS:
        startup = container(of_kind(objects, "Deployment")[name])["startupProbe"]
        assert startup["periodSeconds"] * startup["failureThreshold"] >= 120, name


def test_readiness_follows_the_downstream_aware_health_of_each_bff(objects):
    # The health of a BFF's API service follows --required-downstreams;
    # the probe must name that service (or ""), not one that is always up.
    for name in BFFS:
        readiness = container(of_kind(objects, "Deployment")[name])["readinessProbe"]
        assert readiness["grpc"]["service"] in served_services(name)
        assert readiness["failureThreshold"] * readiness["periodSeconds"] <= 10, name


# --- scaling --------------------------------------------------------------


def test_every_bff_has_its_own_autoscaler_with_its_own_metric_and_bounds(objects):
    autoscalers = of_kind(objects, "HorizontalPodAutoscaler")
    targets = {}
    for hpa in autoscalers.values():
        ref = hpa["spec"]["scaleTargetRef"]
        assert ref["kind"] == "Deployment"
        assert ref["name"] not in targets, f"{ref['name']} has two autoscalers"
        targets[ref["name"]] = hpa
    assert set(targets) == set(BFFS)
    metrics = {}
    for name, hpa in targets.items():
        spec = hpa["spec"]
        assert 2 <= spec["minReplicas"] < spec["maxReplicas"], name
        names = []
        for metric in spec["metrics"]:
            kind = metric["type"]
            if kind == "Resource":
                names.append(metric["resource"]["name"])
            else:
                names.append(metric[kind.lower()]["metric"]["name"])
        metrics[name] = tuple(names)
        # The autoscaler owns the count: a replicas field would fight it.
        assert "replicas" not in of_kind(objects, "Deployment")[name]["spec"], name
    # Each BFF scales first on what limits its client type; a second
    # metric may back it up.
    assert len({names[0] for names in metrics.values()}) == len(BFFS), metrics


def test_custom_metrics_of_the_autoscalers_are_served_by_the_adapter_rules(objects):
    rules = yaml.safe_load(ADAPTER_RULES.read_text())["rules"]["custom"]
    served = {rule["name"]["as"] for rule in rules}
    for hpa in of_kind(objects, "HorizontalPodAutoscaler").values():
        for metric in hpa["spec"]["metrics"]:
            if metric["type"] == "Pods":
                assert metric["pods"]["metric"]["name"] in served


def test_downstream_services_run_replicated_and_every_server_has_a_disruption_budget(objects):
    deployments = of_kind(objects, "Deployment")
    for name in DOWNSTREAMS:
        assert deployments[name]["spec"]["replicas"] >= 2, name
    budgets = of_kind(objects, "PodDisruptionBudget").values()
    for name, deployment in deployments.items():
        covering = [b for b in budgets if selects(b["spec"]["selector"], pod_labels(deployment))]
        assert len(covering) == 1, name
        spec = covering[0]["spec"]
        assert spec.get("maxUnavailable", 0) >= 1 or spec.get("minAvailable", 0) >= 1, name


def quantity(value: str) -> float:
    """A Kubernetes quantity in MiB (memory) or cores (cpu)."""
    value = str(value)
    units = {"Ki": 1 / 1024, "Mi": 1, "Gi": 1024, "m": 1 / 1000}
    for suffix, factor in units.items():
        if value.endswith(suffix):
            return float(value[: -len(suffix)]) * factor
    return float(value)


def test_resources_are_sized_from_the_measured_figures(objects):
    peak = measured_peak_rss_mib()
    for name, deployment in of_kind(objects, "Deployment").items():
        resources = container(deployment)["resources"]
        requests, limits = resources["requests"], resources["limits"]
        assert name in peak, f"no measured RSS for {name}"
        assert quantity(requests["memory"]) >= peak[name], name
        # Room for twice the busiest measured moment.
        assert quantity(limits["memory"]) >= 2 * peak[name], name
        assert 0 < quantity(requests["cpu"]) <= quantity(limits["cpu"]), name


# --- security -------------------------------------------------------------


def test_no_container_runs_as_root_or_can_become_it(objects):
    namespace = of_kind(objects, "Namespace")["tailor"]
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    for name, deployment in of_kind(objects, "Deployment").items():
        pod = deployment["spec"]["template"]["spec"]
        context = pod.get("securityContext", {})
        assert context.get("runAsNonRoot") is True, name
        # A user and group named by number (an image's USER by name cannot
        # be checked by runAsNonRoot), neither of them root.
        assert context.get("runAsUser", 0) != 0 and context.get("runAsGroup", 0) != 0, name
        assert context.get("seccompProfile", {}).get("type") == "RuntimeDefault", name
        assert pod.get("automountServiceAccountToken") is False, name
        for c in pod["containers"] + pod.get("initContainers", []):
            own = c.get("securityContext", {})
            assert own.get("runAsNonRoot", True) is True, name
            assert own.get("runAsUser", context["runAsUser"]) != 0, name
            assert own.get("allowPrivilegeEscalation") is False, name
            assert own.get("readOnlyRootFilesystem") is True, name
            assert own.get("privileged", False) is False, name
            assert own.get("capabilities", {}).get("drop") == ["ALL"], name
            assert not own["capabilities"].get("add"), name
        # The read-only root leaves the data directory writable, as a volume.
        data = environment(objects, deployment)["TAILOR_DATA_DIR"]
        mounts = {m["mountPath"]: m for m in container(deployment)["volumeMounts"]}
        assert data in mounts and not mounts[data].get("readOnly"), name


# --- network policies -----------------------------------------------------


def test_everything_is_denied_unless_a_policy_allows_it(objects):
    deny = [
        p
        for p in of_kind(objects, "NetworkPolicy").values()
        if p["spec"]["podSelector"] == {}
        and set(p["spec"]["policyTypes"]) == {"Ingress", "Egress"}
        and not p["spec"].get("ingress")
        and not p["spec"].get("egress")
    ]
    assert deny, "no default-deny policy"


def test_only_bffs_reach_the_downstream_services(objects):
    deployments = of_kind(objects, "Deployment")
    bff_labels = [pod_labels(deployments[b]) for b in BFFS]
    other_labels = [pod_labels(deployments[d]) for d in DOWNSTREAMS]
    for name in DOWNSTREAMS:
        deployment = deployments[name]
        api_port = next(p["containerPort"] for p in container(deployment)["ports"] if p["name"] != "admin")
        peers = peers_reaching(objects, pod_labels(deployment), api_port)
        assert peers, f"nothing may reach {name}: no BFF can call it"
        for peer in peers:
            assert set(peer) == {"podSelector"}, f"{name}: {peer} is not a pod of this namespace"
            selector = peer["podSelector"]
            assert selector, f"{name}: every pod of the namespace may reach it"
            assert not any(selects(selector, labels) for labels in other_labels), (name, peer)
            assert any(selects(selector, labels) for labels in bff_labels), (name, peer)
        # And the other way round: a BFF that may call it is allowed to
        # leave for it, and no downstream service is.
        callers = [b for b in BFFS if any(selects(p["podSelector"], pod_labels(deployments[b])) for p in peers)]
        for bff in BFFS:
            allowed = egress_allows(objects, pod_labels(deployments[bff]), pod_labels(deployment), api_port)
            assert allowed == (bff in callers), (bff, name)
        for other in DOWNSTREAMS:
            assert not egress_allows(objects, pod_labels(deployments[other]), pod_labels(deployment), api_port)


def test_nothing_reaches_a_store_but_its_own_server(objects):
    deployments = of_kind(objects, "Deployment")
    owners = servers_with_a_store(objects)
    assert set(DOWNSTREAMS) <= owners and {"web-bff", "partner-bff"} <= owners
    for owner in owners:
        store = store_labels(owner)
        peers = peers_reaching(objects, store, 5432)
        assert peers, f"the {owner} store admits no one"
        for peer in peers:
            assert set(peer) == {"podSelector"}, (owner, peer)
            reached_by = [n for n, d in deployments.items() if selects(peer["podSelector"], pod_labels(d))]
            assert reached_by == [owner], (owner, reached_by)
        for name, deployment in deployments.items():
            allowed = egress_allows(objects, pod_labels(deployment), store, 5432)
            assert allowed == (name == owner), (name, owner)


def test_bffs_are_reached_only_from_the_ingress_controller_and_admin_ports_only_by_prometheus(objects):
    for name, deployment in of_kind(objects, "Deployment").items():
        labels = pod_labels(deployment)
        admin = admin_port(objects, deployment)
        for peer in peers_reaching(objects, labels, admin):
            assert peer == {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}
        if name in BFFS:
            api = next(p["containerPort"] for p in container(deployment)["ports"] if p["name"] == "grpc")
            peers = peers_reaching(objects, labels, api)
            assert peers == [
                {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}}}
            ], name


# --- configuration and secrets --------------------------------------------


def test_every_variable_set_is_one_the_server_reads(objects):
    readme = (ROOT / "README.md").read_text()
    for name, deployment in of_kind(objects, "Deployment").items():
        known = variables_read_by(name)
        for variable in environment(objects, deployment):
            if variable.startswith("TAILOR_"):
                assert variable in known, f"{name} sets {variable}, which none of its flags reads"
            elif variable.startswith("OTEL_"):
                assert variable in readme, f"{name} sets {variable}, which the README does not document"
            else:
                assert variable in {"POD_NAME", "POD_NAMESPACE"}, (name, variable)


def test_each_server_listens_on_all_interfaces_on_the_port_its_service_targets(objects):
    services = of_kind(objects, "Service")
    for name, deployment in of_kind(objects, "Deployment").items():
        env = environment(objects, deployment)
        main = (crate_dir(name) / "src" / "main.rs").read_text()
        listen = re.search(r'env = "(TAILOR_\w+_LISTEN)"', main).group(1)
        host, port = env[listen].rsplit(":", 1)
        assert ipaddress.ip_address(host).is_unspecified, name
        ports = {p["name"]: p["containerPort"] for p in container(deployment)["ports"]}
        api = next(n for n in ports if n != "admin")
        assert ports[api] == int(port), name
        service = services[name]
        assert service["spec"]["selector"] == {"app.kubernetes.io/name": name}
        assert selects({"matchLabels": service["spec"]["selector"]}, pod_labels(deployment))
        for service_port in service["spec"]["ports"]:
            assert service_port["targetPort"] in ports, (name, service_port)
        assert server_name_in_code(name) == name


def test_secrets_come_from_secrets_and_are_documented(objects):
    rendered = {("ConfigMap", n) for n in of_kind(objects, "ConfigMap")}
    referenced = set()
    for name, deployment in of_kind(objects, "Deployment").items():
        env = environment(objects, deployment)
        c = container(deployment)
        # Database URLs (they carry passwords) only from a Secret.
        if "TAILOR_DATABASE_URL" in env:
            assert set(env["TAILOR_DATABASE_URL"]) == {"secretKeyRef"}, name
        assert "TAILOR_JWT_HS256_SECRET" not in env or "secretKeyRef" in env["TAILOR_JWT_HS256_SECRET"]
        # The trust directory: the server's own certificate and key and
        # the authority's certificate, from its own Secret.
        volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
        mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
        trust = mounts[env["TAILOR_TRUST_DIR"]]
        assert trust["readOnly"] is True
        assert volumes[trust["name"]]["secret"]["secretName"] == f"tailor-trust-{name}"
        for value in env.values():
            if isinstance(value, dict):
                for kind, ref in (("Secret", "secretKeyRef"), ("ConfigMap", "configMapKeyRef")):
                    if ref in value:
                        referenced.add((kind, value[ref]["name"]))
        for volume in volumes.values():
            if "secret" in volume:
                referenced.add(("Secret", volume["secret"]["secretName"]))
            if "configMap" in volume:
                referenced.add(("ConfigMap", volume["configMap"]["name"]))
    for ingress in of_kind(objects, "Ingress").values():
        for tls in ingress["spec"]["tls"]:
            referenced.add(("Secret", tls["secretName"]))
    # What the render does not hold, the operator creates, as the docs say.
    assert referenced - rendered == documented_external_objects()
    # Bearer tokens are verified with the identity provider's keys; the
    # development secret is never switched on.
    for name in ("web-bff", "mobile-bff"):
        env = environment(objects, of_kind(objects, "Deployment")[name])
        assert "TAILOR_JWT_JWKS" in env and "TAILOR_JWT_ISSUER" in env, name
    for deployment in of_kind(objects, "Deployment").values():
        assert "TAILOR_DEV_SECRETS" not in environment(objects, deployment)
        assert "TAILOR_WEB_INSECURE_COOKIES" not in environment(objects, deployment)


def test_termination_grace_covers_the_prestop_pause_and_the_drain(objects):
    for name, deployment in of_kind(objects, "Deployment").items():
        pod = deployment["spec"]["template"]["spec"]
        pause = container(deployment)["lifecycle"]["preStop"]["sleep"]["seconds"]
        drain = int(environment(objects, deployment)["TAILOR_DRAIN_TIMEOUT_MS"]) / 1000
        assert pause >= 3, name
        assert pod["terminationGracePeriodSeconds"] >= pause + drain + 2, name


# --- ingress --------------------------------------------------------------


def test_the_ingress_routes_one_host_per_client_type_grpc_web_included(objects):
    services = of_kind(objects, "Service")
    routes = {}
    for ingress in of_kind(objects, "Ingress").values():
        spec = ingress["spec"]
        tls_hosts = {h for t in spec["tls"] for h in t["hosts"]}
        for rule in spec["rules"]:
            assert rule["host"] in tls_hosts, rule["host"]
            for path in rule["http"]["paths"]:
                backend = path["backend"]["service"]
                assert backend["name"] in BFFS, f"{backend['name']} is exposed outside"
                port_names = {p["name"] for p in services[backend["name"]]["spec"]["ports"]}
                assert backend["port"]["name"] in port_names
                routes.setdefault(backend["name"], set()).add(rule["host"])
        protocol = ingress["metadata"]["annotations"]["nginx.ingress.kubernetes.io/backend-protocol"]
        target = spec["rules"][0]["http"]["paths"][0]["backend"]["service"]["name"]
        if target == "web-bff":
            # grpc-web from browsers, answered by the BFF itself over
            # HTTP/1.1, and not buffered so server streams flow.
            assert protocol == "HTTP"
            assert ingress["metadata"]["annotations"]["nginx.ingress.kubernetes.io/proxy-buffering"] == "off"
        else:
            assert protocol == "GRPC"
    assert set(routes) == set(BFFS)
    hosts = [h for hs in routes.values() for h in hs]
    assert all(len(hs) == 1 for hs in routes.values()) and len(set(hosts)) == len(hosts), routes


# --- the image ------------------------------------------------------------


def dockerfile_runtime_stage() -> list[str]:
    """The instructions of the Dockerfile's last stage, continuation
    lines joined."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]
    last_from = max(i for i, line in enumerate(lines) if line.upper().startswith("FROM "))
    return lines[last_from:]


def test_the_image_holds_every_server_the_manifests_run_and_runs_as_the_same_non_root_user(objects):
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    build = re.search(r"cargo build --release --locked (.*?)&&", text).group(1)
    built = set(re.findall(r"--bin ([\w-]+)", build))
    copied = set(re.findall(r"target/release/([\w-]+)", text))
    runtime = dockerfile_runtime_stage()
    user = next(line for line in runtime if line.startswith("USER ")).split()[1]
    uid, gid = (int(x) for x in user.split(":"))
    assert uid != 0 and gid != 0
    for name, deployment in of_kind(objects, "Deployment").items():
        binary = container(deployment)["command"][0]
        assert binary in built and binary in copied, name
        context = deployment["spec"]["template"]["spec"]["securityContext"]
        assert (context["runAsUser"], context["runAsGroup"]) == (uid, gid), name
    # The health probe is in the image.
    assert "tailor" in built and "tailor" in copied
    healthcheck = next(line for line in runtime if line.startswith("HEALTHCHECK"))
    assert re.search(r'CMD \["tailor", "probe"', healthcheck), healthcheck


def test_the_image_listens_on_all_interfaces_where_the_manifests_expect_it(objects):
    env = {}
    for line in dockerfile_runtime_stage():
        if line.startswith("ENV "):
            env.update(re.findall(r"(\w+)=(\S+)", line))
    for name, deployment in of_kind(objects, "Deployment").items():
        manifest_env = environment(objects, deployment)
        main = (crate_dir(name) / "src" / "main.rs").read_text()
        listen = re.search(r'env = "(TAILOR_\w+_LISTEN)"', main).group(1)
        assert env[listen] == manifest_env[listen], name
        assert env["TAILOR_ADMIN_LISTEN"] == manifest_env["TAILOR_ADMIN_LISTEN"]
        assert env["TAILOR_DATA_DIR"] == manifest_env["TAILOR_DATA_DIR"]


def test_the_build_context_keeps_everything_the_workspace_build_reads():
    import fnmatch
    import tomllib

    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]

    def ignored(path: str) -> bool:
        parts = path.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        return any(
            fnmatch.fnmatch(prefix, pattern) or fnmatch.fnmatch(prefix, pattern.removeprefix("**/"))
            for pattern in patterns
            for prefix in prefixes
        )

    workspace = tomllib.loads((ROOT / "Cargo.toml").read_text())["workspace"]
    members = [
        str(p.relative_to(ROOT))
        for glob in workspace["members"]
        if glob != "."
        for p in ROOT.glob(glob)
        if (p / "Cargo.toml").is_file()
    ]
    assert len(members) > 10, members
    needed = ["Cargo.toml", "Cargo.lock", "build.rs", "src/lib.rs", "proto"]
    needed += [f"{m}/Cargo.toml" for m in members] + [f"{m}/src" for m in members]
    assert not [path for path in needed if ignored(path)]
    # What must stay out: build output and local data.
    assert ignored("target/release") and ignored("data/catalog.db")
    assert ignored("clients/web/node_modules/x") and ignored(".git/HEAD")
