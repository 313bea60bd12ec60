"""deploy/ against the code it deploys: every probe, health check and port names a route and the port the
service really listens on, the autoscaler's metric is one the service exports, the images install the way
the README and scripts/setup.sh do, and the token only ever comes from a secret or the environment.

No container is built here: these read the files. Every check returns its problems as strings, and
`test_each_check_can_fail` breaks each file on purpose to show that every check notices.
"""

from __future__ import annotations

import copy
import json
import re
import shlex
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from random_model import save_random_model, thin_small_config

from echopulse.cli import build_parser

REPO = Path(__file__).resolve().parents[1]
DEPLOY = REPO / "deploy"
K8S = DEPLOY / "k8s"
TOKEN_ENV = "ECHOPULSE_TOKEN"
DOCKERFILES = {"cpu": DEPLOY / "Dockerfile.cpu", "cuda": DEPLOY / "Dockerfile.cuda"}
VALUE_OPTIONS = {"-i", "--index-url", "--extra-index-url", "-f", "--find-links", "-c", "--constraint",
                 "-r", "--requirement", "--target", "-t", "--prefix", "--root"}


@dataclass(frozen=True)
class Facts:
    """What the code says: the app's routes (path -> methods), its metrics (name -> type), serve's parser."""

    routes: dict[str, set[str]]
    metrics: dict[str, str]
    default_port: int
    torch_pin: str
    project: dict[str, Any]


@pytest.fixture(scope="module")
def facts(tmp_path_factory, one_torch_thread) -> Facts:
    from echopulse.generator.echo_generator import EchoGenerator
    from echopulse.streaming.app import create_app

    folder = save_random_model(tmp_path_factory.mktemp("model"), thin_small_config(), {"model_id": "x"})
    app = create_app(EchoGenerator.from_pretrained(folder, device="cpu"))  # the engine starts in lifespan
    routes: dict[str, set[str]] = {}
    for route in app.routes:
        routes.setdefault(route.path, set()).update(getattr(route, "methods", None) or set())
    metrics = dict(re.findall(r"^# TYPE (\S+) (\S+)$", app.state.metrics.render().decode(), re.MULTILINE))
    return Facts(routes=routes, metrics=metrics, default_port=serve_args([]).port,
                 torch_pin=setup_torch_pin(), project=tomllib.loads((REPO / "pyproject.toml").read_text()))


# ---- reading the files ---------------------------------------------------------------------------------

def serve_args(argv: list[str]):
    """`echopulse serve ARGV` as the real parser reads it (a bad option fails the test via SystemExit)."""
    return build_parser().parse_args(["serve", *argv])


def serve_command(command: list[str]) -> list[str] | None:
    """The arguments after `echopulse serve` in a container command, or None if it is not that command."""
    words = [Path(w).name if i == 0 else w for i, w in enumerate(command)]
    if words[:2] == ["echopulse", "serve"]:
        return command[2:]
    if words[:4] == ["python", "-m", "echopulse", "serve"]:
        return command[4:]
    return None


def setup_torch_pin() -> str:
    pins = re.findall(r'torch==([0-9][0-9A-Za-z.+]*)', (REPO / "scripts" / "setup.sh").read_text())
    assert len(set(pins)) == 1, f"scripts/setup.sh should pin torch once, found {pins}"
    return pins[0]


def yaml_files() -> list[Path]:
    return sorted(p for p in DEPLOY.rglob("*") if p.suffix in (".yaml", ".yml"))


def load(path: Path) -> list[Any]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comment lines dropped."""
    instructions, pending = [], ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        pending += line[:-1] + " " if line.endswith("\\") else line
        if not line.endswith("\\"):
            keyword, _, rest = pending.partition(" ")
            instructions.append((keyword.upper(), rest.strip()))
            pending = ""
    return instructions


def exec_form(arguments: str) -> list[str] | None:
    try:
        words = json.loads(arguments)
    except json.JSONDecodeError:
        return None
    return words if isinstance(words, list) and all(isinstance(w, str) for w in words) else None


@dataclass(frozen=True)
class PipInstall:
    targets: list[str]
    options: dict[str, str]


def pip_installs(shell: str) -> list[PipInstall]:
    """Every `pip install` in a shell script or RUN line (split on && ; | and lines), pip itself excluded."""
    found = []
    for line in shell.splitlines():
        words = shlex.split(line, comments=True)
        segment: list[str] = []
        for word in [*words, "&&"]:
            if word not in ("&&", ";", "||", "|"):
                segment.append(word)
                continue
            names = [Path(w).name for w in segment]
            for i in range(len(names) - 1):
                if names[i] in ("pip", "pip3") and names[i + 1] == "install":
                    install = parse_install(segment[i + 2:])
                    if install.targets != ["pip"]:
                        found.append(install)
                    break
            segment = []
    return found


def parse_install(words: list[str]) -> PipInstall:
    targets, options, i = [], {}, 0
    while i < len(words):
        word = words[i]
        if word in ("-e", "--editable"):
            targets.append(words[i + 1])
            i += 2
        elif word in VALUE_OPTIONS:
            options[word] = words[i + 1]
            i += 2
        elif word.startswith("-"):
            key, _, value = word.partition("=")
            options[key] = value
            i += 1
        else:
            targets.append(word)
            i += 1
    return PipInstall(targets, options)


def project_extras(target: str) -> set[str] | None:
    """`.[serve]` -> {"serve"}; None unless the target is this project (a local path)."""
    match = re.fullmatch(r"(\.|/?[\w./-]*)(?:\[([\w,\s-]*)\])?", target)
    if not match or target.startswith("torch"):
        return None
    return {e.strip() for e in (match.group(2) or "").split(",") if e.strip()}


def url_path_port(text: str) -> list[tuple[str, int]]:
    """(path, port) of every http://localhost-ish URL in a health check."""
    found = []
    for url in re.findall(r"https?://[^\s'\")]+", text):
        parts = urlsplit(url)
        found.append((parts.path or "/", parts.port or 80))
    return found


def walk(node: Any):
    yield node
    if isinstance(node, dict):
        for value in node.values():
            yield from walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from walk(value)


# ---- the checks ----------------------------------------------------------------------------------------

def check_get_route(facts: Facts, path: str, where: str) -> list[str]:
    if "GET" not in facts.routes.get(path, set()):
        return [f"{where}: GET {path} is not a route of the app ({sorted(facts.routes)})"]
    return []


def check_serve_args(facts: Facts, argv: list[str], where: str, port: int | None = None,
                     device: str | None = None) -> list[str]:
    problems = []
    args = serve_args(argv)
    if args.host != "0.0.0.0":
        problems.append(f"{where}: --host {args.host}: a container must listen on 0.0.0.0")
    if args.token is not None:
        problems.append(f"{where}: --token on the command line; the token comes from ${TOKEN_ENV}")
    if port is not None and args.port != port:
        problems.append(f"{where}: serves on {args.port}, but the container port is {port}")
    if args.port != facts.default_port:
        problems.append(f"{where}: --port {args.port} is not serve's default {facts.default_port}")
    if device is not None and args.device != device:
        problems.append(f"{where}: --device {args.device}, expected {device}")
    return problems


def check_install_steps(facts: Facts, installs: list[PipInstall], where: str, extra: str) -> list[str]:
    """torch==PIN alone first, then the project with `extra` and nothing else: the setup.sh order."""
    if len(installs) != 2:
        return [f"{where}: {len(installs)} pip installs, expected torch then the project"]
    problems = []
    if installs[0].targets != [f"torch=={facts.torch_pin}"]:
        problems.append(f"{where}: first install {installs[0].targets}, expected torch=={facts.torch_pin}")
    extras = project_extras(installs[1].targets[0]) if len(installs[1].targets) == 1 else None
    if extras != {extra}:
        problems.append(f"{where}: second install {installs[1].targets}, expected the project with [{extra}]")
    return problems


def check_dockerfile(facts: Facts, text: str, kind: str) -> list[str]:
    where = f"Dockerfile.{kind}"
    steps = dockerfile_instructions(text)
    keyed: dict[str, list[str]] = {}
    for keyword, arguments in steps:
        keyed.setdefault(keyword, []).append(arguments)
    problems = []
    base = keyed.get("FROM", [""])[0]
    if kind == "cpu" and base != "python:3.11-slim":
        problems.append(f"{where}: FROM {base}, expected python:3.11-slim")
    if kind == "cuda" and not re.fullmatch(r"nvidia/cuda:[\d.]+-(cudnn-)?runtime-ubuntu[\d.]+", base):
        problems.append(f"{where}: FROM {base}, expected an nvidia/cuda runtime image")

    installs = [i for run in keyed.get("RUN", []) for i in pip_installs(run)]
    problems += check_install_steps(facts, installs, where, "serve")
    if installs:
        index = installs[0].options.get("--index-url", "")
        wanted = "/whl/cpu" if kind == "cpu" else "/whl/cu"
        if wanted not in index:
            problems.append(f"{where}: torch from {index or 'PyPI'}, expected PyTorch's {wanted}… index")
        if kind == "cuda" and "python3.11" not in " ".join(keyed.get("RUN", [])):
            problems.append(f"{where}: no python3.11 installed")

    copied = {w.rstrip("/") for line in keyed.get("COPY", []) for w in line.split()[:-1]}
    project = facts.project["project"]
    needed = {"pyproject.toml", "echopulse", project["readme"], *project.get("license-files", [])}
    if not needed <= copied:
        problems.append(f"{where}: COPY lacks {sorted(needed - copied)}, which `pip install .` reads")

    users = [u for k, u in steps if k == "USER"]
    if not users or users[-1].split(":")[0] in ("root", "0"):
        problems.append(f"{where}: no non-root USER")
    if any(TOKEN_ENV in a for k, a in steps if k in ("ENV", "ARG")):
        problems.append(f"{where}: bakes ${TOKEN_ENV} into the image")

    exposed = [int(p.split("/")[0]) for line in keyed.get("EXPOSE", []) for p in line.split()]
    if exposed != [facts.default_port]:
        problems.append(f"{where}: EXPOSE {exposed}, expected [{facts.default_port}]")
    command = exec_form(keyed.get("CMD", ["-"])[-1])
    argv = serve_command(command or [])
    if argv is None:
        problems.append(f"{where}: CMD {keyed.get('CMD')} is not `echopulse serve …` in exec form")
    else:
        problems += check_serve_args(facts, argv, where, port=exposed[0] if exposed else None,
                                     device="cuda" if kind == "cuda" else None)

    checks = keyed.get("HEALTHCHECK", [])
    urls = url_path_port(checks[-1]) if checks else []
    if not urls:
        problems.append(f"{where}: no HEALTHCHECK on an http URL")
    for path, port in urls:
        problems += check_get_route(facts, path, f"{where} HEALTHCHECK")
        if path != "/healthz":
            problems.append(f"{where}: HEALTHCHECK on {path}, expected /healthz (liveness)")
        if port != facts.default_port:
            problems.append(f"{where}: HEALTHCHECK on port {port}, serve listens on {facts.default_port}")
    return problems


def check_compose(facts: Facts, doc: dict) -> list[str]:
    problems = []
    services = doc.get("services") or {}
    if "echopulse" not in services:
        problems.append("compose: no `echopulse` service")
    for name, service in services.items():
        where = f"compose {name}"
        dockerfile = (service.get("build") or {}).get("dockerfile", "")
        if not (DEPLOY / Path(dockerfile).name).is_file() or not dockerfile.startswith("deploy/"):
            problems.append(f"{where}: build.dockerfile {dockerfile!r} is not one of deploy/Dockerfile.*")
        container_ports = [int(str(p).rsplit(":", 1)[-1].split("/")[0]) for p in service.get("ports", [])]
        argv = serve_command(service.get("command") or [])
        if argv is None:
            problems.append(f"{where}: command is not `echopulse serve …`")
        else:
            problems += check_serve_args(facts, argv, where, device="cuda" if "cuda" in dockerfile else None,
                                         port=container_ports[0] if container_ports else None)
        if container_ports != [facts.default_port]:
            problems.append(f"{where}: container ports {container_ports}, expected [{facts.default_port}]")
        test = (service.get("healthcheck") or {}).get("test") or []
        urls = url_path_port(" ".join(test) if isinstance(test, list) else test)
        if not urls:
            problems.append(f"{where}: no healthcheck on an http URL")
        for path, port in urls:
            problems += check_get_route(facts, path, f"{where} healthcheck")
            if port not in container_ports:
                problems.append(f"{where}: healthcheck on port {port}, not the container port")
        environment = service.get("environment") or {}
        if isinstance(environment, list):
            environment = dict(e.partition("=")[::2] for e in environment)
        value = environment.get(TOKEN_ENV)
        if value is None and not service.get("env_file"):
            problems.append(f"{where}: no ${TOKEN_ENV} (environment or env_file)")
        if value is not None and not re.fullmatch(rf"\$\{{{TOKEN_ENV}(:?[?-][^}}]*)?\}}", str(value)):
            problems.append(f"{where}: ${TOKEN_ENV} is a literal, not ${{{TOKEN_ENV}…}} from the environment")
        devices = (((service.get("deploy") or {}).get("resources") or {}).get("reservations") or {}).get(
            "devices") or []
        if any(d.get("driver") == "nvidia" for d in devices) != ("cuda" in dockerfile):
            problems.append(f"{where}: a GPU reservation (deploy.resources.reservations.devices nvidia) "
                            "exactly when the image is the CUDA one")
    return problems


def kinds(docs: list[dict]) -> dict[str, list[dict]]:
    found: dict[str, list[dict]] = {}
    for doc in docs:
        found.setdefault(doc.get("kind", ""), []).append(doc)
    return found


def check_k8s(facts: Facts, docs: list[dict]) -> list[str]:
    problems = []
    by_kind = kinds(docs)
    deployments = by_kind.get("Deployment", [])
    if len(deployments) != 1:
        return [f"k8s: {len(deployments)} Deployments, expected one"]
    deployment = deployments[0]
    pod = deployment["spec"]["template"]
    containers = pod["spec"]["containers"]
    container = containers[0]
    ports = {p.get("name"): p["containerPort"] for p in container.get("ports", [])}
    if list(ports.values()) != [facts.default_port]:
        problems.append(f"k8s: containerPort {list(ports.values())}, expected [{facts.default_port}]")
    argv = serve_command(container.get("command") or container.get("args") or [])
    if argv is None:
        problems.append("k8s: the container's command is not `echopulse serve …`")
    else:
        problems += check_serve_args(facts, argv, "k8s Deployment", port=facts.default_port, device="cuda")

    def probe_port(probe: dict) -> Any:
        port = probe["httpGet"]["port"]
        return ports.get(port) if isinstance(port, str) else port

    probes = {kind: container.get(kind) for kind in ("readinessProbe", "livenessProbe", "startupProbe")}
    for kind, wanted in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
        probe = probes[kind]
        if not probe or "httpGet" not in probe:
            problems.append(f"k8s: no httpGet {kind}")
            continue
        path = probe["httpGet"]["path"]
        problems += check_get_route(facts, path, f"k8s {kind}")
        if path != wanted:
            problems.append(f"k8s: {kind} on {path}, expected {wanted}")
        if probe_port(probe) != facts.default_port:
            problems.append(f"k8s: {kind} port {probe['httpGet']['port']} is not the container port")
    if probes["startupProbe"]:
        problems += check_get_route(facts, probes["startupProbe"]["httpGet"]["path"], "k8s startupProbe")

    resources = container.get("resources") or {}
    for part in ("requests", "limits"):
        if str((resources.get(part) or {}).get("nvidia.com/gpu")) != "1":
            problems.append(f"k8s: resources.{part} lacks nvidia.com/gpu: 1 (one engine, one GPU)")
    token = [e for e in container.get("env", []) if e.get("name") == TOKEN_ENV]
    if not (token and "secretKeyRef" in (token[0].get("valueFrom") or {})):
        problems.append(f"k8s: ${TOKEN_ENV} does not come from a Secret (valueFrom.secretKeyRef)")

    labels = pod["metadata"].get("labels") or {}
    if deployment["spec"]["selector"].get("matchLabels") != labels:
        problems.append("k8s: the Deployment's selector does not match its pod labels")
    services = by_kind.get("Service", [])
    if not services:
        problems.append("k8s: no Service")
    for service in services:
        selector = service["spec"].get("selector") or {}
        if not selector or any(labels.get(k) != v for k, v in selector.items()):
            problems.append(f"k8s: Service {service['metadata']['name']} selects no echopulse pod")
        for port in service["spec"]["ports"]:
            target = port.get("targetPort", port["port"])
            if (ports.get(target) if isinstance(target, str) else target) != facts.default_port:
                problems.append(f"k8s: Service targetPort {target} is not the container port")
        if service["spec"].get("sessionAffinity") != "ClientIP":
            problems.append("k8s: Service without sessionAffinity: ClientIP")
    service_ports = {p.get("name") for s in services for p in s["spec"]["ports"]} | {
        p["port"] for s in services for p in s["spec"]["ports"]}
    for ingress in by_kind.get("Ingress", []):
        for node in walk(ingress["spec"]):
            if isinstance(node, dict) and "service" in node and isinstance(node["service"], dict):
                backend = node["service"]
                port = backend.get("port", {}).get("name", backend.get("port", {}).get("number"))
                if backend.get("name") not in {s["metadata"]["name"] for s in services}:
                    problems.append(f"k8s: Ingress backend {backend.get('name')} is not a Service")
                if port not in service_ports:
                    problems.append(f"k8s: Ingress backend port {port} is not a port of the Service")

    hpas = by_kind.get("HorizontalPodAutoscaler", [])
    if len(hpas) != 1:
        problems.append(f"k8s: {len(hpas)} HorizontalPodAutoscalers, expected one")
    for hpa in hpas:
        if hpa.get("apiVersion") != "autoscaling/v2":
            problems.append(f"k8s: HPA apiVersion {hpa.get('apiVersion')}, expected autoscaling/v2")
        target = hpa["spec"]["scaleTargetRef"]
        if (target.get("kind"), target.get("name")) != ("Deployment", deployment["metadata"]["name"]):
            problems.append(f"k8s: the HPA scales {target}, not the Deployment")
        pods_metrics = [m for m in hpa["spec"].get("metrics", []) if m.get("type") == "Pods"]
        if not pods_metrics:
            problems.append("k8s: the HPA has no Pods metric")
        for metric in pods_metrics:
            name = metric["pods"]["metric"]["name"]
            if facts.metrics.get(name) != "gauge":
                problems.append(f"k8s: HPA metric {name} is not a gauge the app exports at /metrics")
    return problems


def check_adapter(facts: Facts, values: dict, hpa_metrics: set[str]) -> list[str]:
    """The Prometheus adapter rule serves each HPA metric, read from a series the app exports."""
    rules = (values.get("rules") or {}).get("custom") or []
    served = {r["name"]["as"]: re.match(r"(\w+)", r["seriesQuery"].strip("'\"")).group(1) for r in rules}
    problems = [f"adapter: no rule serves the HPA's {m}" for m in sorted(hpa_metrics - set(served))]
    problems += [f"adapter: rule {name} reads {series}, which the app does not export"
                 for name, series in served.items() if series not in facts.metrics]
    return problems


def check_no_literal_token(path: Path, docs: list[Any]) -> list[str]:
    problems = []
    for node in walk(docs):
        if not isinstance(node, dict):
            continue
        if node.get("name") == TOKEN_ENV and "value" in node:
            problems.append(f"{path.name}: ${TOKEN_ENV} has a literal value")
        if node.get("kind") == "Secret" and (node.get("data") or node.get("stringData")):
            problems.append(f"{path.name}: a Secret with its data is committed")
        for value in node.values():
            words = value if isinstance(value, list) else [value]
            if any(isinstance(w, str) and (w == "--token" or w.startswith("--token=")) for w in words):
                problems.append(f"{path.name}: --token on a command line")
    return problems


def hpa_metric_names(docs: list[dict]) -> set[str]:
    return {m["pods"]["metric"]["name"] for h in kinds(docs).get("HorizontalPodAutoscaler", [])
            for m in h["spec"].get("metrics", []) if m.get("type") == "Pods"}


def k8s_docs() -> list[dict]:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    return [d for name in kustomization["resources"] for d in load(K8S / name)]


# ---- the tests -----------------------------------------------------------------------------------------

def test_every_yaml_file_parses():
    files = yaml_files()
    assert DEPLOY / "compose.yaml" in files and K8S / "deployment.yaml" in files, files
    for path in files:
        docs = load(path)
        assert docs and all(isinstance(d, dict) for d in docs), f"{path}: not YAML mappings"


def test_kustomization_lists_every_manifest():
    listed = set(yaml.safe_load((K8S / "kustomization.yaml").read_text())["resources"])
    manifests = {p.name for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml"}
    assert listed == manifests


@pytest.mark.parametrize("kind", sorted(DOCKERFILES))
def test_dockerfile(facts, kind):
    assert check_dockerfile(facts, DOCKERFILES[kind].read_text(), kind) == []


def test_setup_and_readme_install_the_same_way(facts):
    setup = pip_installs((REPO / "scripts" / "setup.sh").read_text())
    assert check_install_steps(facts, setup, "setup.sh", "test") == []
    readme_pins = set(re.findall(r"torch==([0-9][0-9A-Za-z.+]*)", (REPO / "README.md").read_text()))
    assert readme_pins <= {facts.torch_pin}, f"README pins torch {readme_pins}, setup.sh {facts.torch_pin}"
    deploy_pins = set(re.findall(r"torch==([0-9][0-9A-Za-z.+]*)", (DEPLOY / "README.md").read_text()))
    assert deploy_pins <= {facts.torch_pin}, f"deploy/README.md pins torch {deploy_pins}"


def test_test_extra_has_the_service(facts):
    extras = facts.project["project"]["optional-dependencies"]
    serve = {re.match(r"[\w-]+", r).group(0).lower() for r in extras["serve"]}
    assert {"fastapi", "uvicorn", "websockets", "prometheus-client", "python-multipart"} <= serve
    test = extras["test"]
    names = {re.match(r"[\w-]+", r).group(0).lower() for r in test}
    itself = [set(m.group(1).split(",")) for r in test if (m := re.fullmatch(r"echopulse\[([\w,]+)\]", r))]
    assert any("serve" in extras_named for extras_named in itself) or serve <= names
    assert {"playwright", "httpx", "schemathesis", "pyyaml", "pytest", "ruff"} <= names


def test_compose(facts):
    assert check_compose(facts, load(DEPLOY / "compose.yaml")[0]) == []


def test_kubernetes(facts):
    assert check_k8s(facts, k8s_docs()) == []


def test_autoscaler_metric_is_served(facts):
    docs = k8s_docs()
    assert hpa_metric_names(docs), "no Pods metric"
    values = load(K8S / "prometheus-adapter" / "values.yaml")[0]
    assert check_adapter(facts, values, hpa_metric_names(docs)) == []


def test_token_is_never_a_literal():
    for path in yaml_files():
        assert check_no_literal_token(path, load(path)) == []
    for path in DOCKERFILES.values():
        assert "--token" not in path.read_text()


def test_health_checks_everywhere():
    """Every image has a HEALTHCHECK, and every orchestrator file has its probes (checked in detail above)."""
    for path in DOCKERFILES.values():
        assert any(k == "HEALTHCHECK" for k, _ in dockerfile_instructions(path.read_text())), path
    for service in load(DEPLOY / "compose.yaml")[0]["services"].values():
        assert service.get("healthcheck"), service
    container = kinds(k8s_docs())["Deployment"][0]["spec"]["template"]["spec"]["containers"][0]
    assert container.get("readinessProbe") and container.get("livenessProbe")


def test_deploy_readme_covers_each_way_to_run():
    text = (DEPLOY / "README.md").read_text()
    for needle in ("docker build", "docker run", "docker compose", "kubectl apply", TOKEN_ENV, "/readyz",
                   "Prometheus adapter", "sessionAffinity", "deploy/beam/"):
        assert needle in text, needle
    assert (DEPLOY / "beam" / "README.md").is_file()  # the batch recipes, checked by test_deploy_beam.py


# ---- every check can fail ------------------------------------------------------------------------------

def text_mutation(kind: str, old: str, new: str) -> Callable[[Facts], list[str]]:
    def run(facts: Facts) -> list[str]:
        text = DOCKERFILES[kind].read_text()
        assert old in text, f"mutation target {old!r} missing from Dockerfile.{kind}"
        return check_dockerfile(facts, text.replace(old, new), kind)
    return run


def compose_mutation(change: Callable[[dict], None]) -> Callable[[Facts], list[str]]:
    def run(facts: Facts) -> list[str]:
        doc = copy.deepcopy(load(DEPLOY / "compose.yaml")[0])
        change(doc)
        return check_compose(facts, doc)
    return run


def k8s_mutation(kind: str, change: Callable[[dict], None]) -> Callable[[Facts], list[str]]:
    def run(facts: Facts) -> list[str]:
        docs = copy.deepcopy(k8s_docs())
        change(next(d for d in docs if d["kind"] == kind))
        return check_k8s(facts, docs)
    return run


def container(deployment: dict) -> dict:
    return deployment["spec"]["template"]["spec"]["containers"][0]


def cpu_service(doc: dict) -> dict:
    return doc["services"]["echopulse"]


def set_path(node: dict, keys: list[str], value: Any) -> None:
    for key in keys[:-1]:
        node = node[key]
    node[keys[-1]] = value


MUTATIONS: dict[str, Callable[[Facts], list[str]]] = {
    "cpu base": text_mutation("cpu", "FROM python:3.11-slim", "FROM python:3.12-slim"),
    "cuda base": text_mutation("cuda", "-runtime-ubuntu", "-devel-ubuntu"),
    "torch pin": text_mutation("cpu", '"torch==2.13.0"', '"torch==2.12.0"'),
    "torch after project": text_mutation("cpu", '"torch==2.13.0"', '".[serve]" torch'),
    "test extra in image": text_mutation("cpu", '".[serve]"', '".[serve,test]"'),
    "cuda torch from cpu index": text_mutation("cuda", "/whl/cu130", "/whl/cpu"),
    "cpu torch from PyPI": text_mutation("cpu", "--index-url https://download.pytorch.org/whl/cpu ", ""),
    "no README copied": text_mutation("cpu", "COPY pyproject.toml README.md LICENSE ./",
                                      "COPY pyproject.toml LICENSE ./"),
    "root user": text_mutation("cpu", "USER echopulse", "USER root"),
    "token baked": text_mutation("cpu", "ENV PYTHONDONTWRITEBYTECODE=1", "ENV ECHOPULSE_TOKEN=x PYTHON=1"),
    "exposed port": text_mutation("cpu", "EXPOSE 8000", "EXPOSE 8080"),
    "cmd port": text_mutation("cpu", '"--port", "8000"]', '"--port", "9000"]'),
    "cmd host": text_mutation("cpu", '"0.0.0.0"', '"127.0.0.1"'),
    "cmd shell form": text_mutation("cpu", 'CMD ["echopulse", "serve", "--host", "0.0.0.0", "--port", '
                                    '"8000"]', "CMD echopulse serve --host 0.0.0.0"),
    "cuda cmd device": text_mutation("cuda", '"--device", "cuda"]', '"--device", "cpu"]'),
    "healthcheck path": text_mutation("cpu", "8000/healthz", "8000/health"),
    "healthcheck port": text_mutation("cpu", "127.0.0.1:8000/healthz", "127.0.0.1:8080/healthz"),
    "no healthcheck": text_mutation("cpu", "HEALTHCHECK", "# HEALTHCHECK"),
    "compose literal token": compose_mutation(lambda d: set_path(cpu_service(d), ["environment", TOKEN_ENV],
                                                                 "hunter2")),
    "compose no token": compose_mutation(lambda d: cpu_service(d).pop("environment")),
    "compose container port": compose_mutation(lambda d: set_path(cpu_service(d), ["ports"], ["8000:8080"])),
    "compose healthcheck path": compose_mutation(
        lambda d: set_path(cpu_service(d), ["healthcheck", "test"], ["CMD", "curl", "http://127.0.0.1:8000/ready"])),
    "compose no healthcheck": compose_mutation(lambda d: cpu_service(d).pop("healthcheck")),
    "compose command port": compose_mutation(
        lambda d: cpu_service(d)["command"].__setitem__(-3, "8001")),
    "compose gpu without devices": compose_mutation(lambda d: d["services"]["echopulse-gpu"].pop("deploy")),
    "k8s container port": k8s_mutation(
        "Deployment", lambda d: set_path(container(d), ["ports"], [{"name": "http", "containerPort": 80}])),
    "k8s readiness path": k8s_mutation(
        "Deployment", lambda d: set_path(container(d), ["readinessProbe", "httpGet", "path"], "/ready")),
    "k8s liveness on readyz": k8s_mutation(
        "Deployment", lambda d: set_path(container(d), ["livenessProbe", "httpGet", "path"], "/readyz")),
    "k8s probe port": k8s_mutation(
        "Deployment", lambda d: set_path(container(d), ["livenessProbe", "httpGet", "port"], 8080)),
    "k8s no readiness": k8s_mutation("Deployment", lambda d: container(d).pop("readinessProbe")),
    "k8s no gpu": k8s_mutation(
        "Deployment", lambda d: container(d)["resources"]["limits"].pop("nvidia.com/gpu")),
    "k8s literal token": k8s_mutation(
        "Deployment", lambda d: set_path(container(d), ["env"], [{"name": TOKEN_ENV, "value": "hunter2"}])),
    "k8s command port": k8s_mutation("Deployment", lambda d: container(d)["command"].__setitem__(-3, "9000")),
    "k8s selector": k8s_mutation("Service", lambda d: set_path(d, ["spec", "selector"], {"app": "other"})),
    "k8s target port": k8s_mutation("Service", lambda d: d["spec"]["ports"][0].__setitem__("targetPort", 80)),
    "k8s no affinity": k8s_mutation("Service", lambda d: d["spec"].pop("sessionAffinity")),
    "k8s ingress backend": k8s_mutation(
        "Ingress", lambda d: set_path(d["spec"]["rules"][0]["http"]["paths"][0]["backend"], ["service"],
                                      {"name": "other", "port": {"name": "http"}})),
    "k8s hpa target": k8s_mutation("HorizontalPodAutoscaler",
                                   lambda d: set_path(d, ["spec", "scaleTargetRef", "name"], "other")),
    "k8s hpa metric": k8s_mutation("HorizontalPodAutoscaler", lambda d: set_path(
        d["spec"]["metrics"][0]["pods"]["metric"], ["name"], "echopulse_active_sessions")),
    "k8s hpa counter": k8s_mutation("HorizontalPodAutoscaler", lambda d: set_path(
        d["spec"]["metrics"][0]["pods"]["metric"], ["name"], "echopulse_clips")),
    "k8s hpa v1": k8s_mutation(
        "HorizontalPodAutoscaler", lambda d: set_path(d, ["apiVersion"], "autoscaling/v1")),
    "adapter rule": lambda facts: check_adapter(facts, {"rules": {"custom": []}}, {"echopulse_sessions"}),
    "adapter series": lambda facts: check_adapter(facts, {"rules": {"custom": [
        {"seriesQuery": "echopulse_nothing{}", "name": {"as": "echopulse_sessions"}}]}},
        {"echopulse_sessions"}),
    "literal token anywhere": lambda facts: check_no_literal_token(Path("x.yaml"), [
        {"kind": "Secret", "stringData": {"token": "hunter2"}}]),
    "literal token in env": lambda facts: check_no_literal_token(Path("x.yaml"), [
        {"env": [{"name": TOKEN_ENV, "value": "hunter2"}]}]),
    "cuda image without python3.11": text_mutation("cuda", "python3.11", "python3"),
    "token on a command line": lambda facts: check_no_literal_token(Path("x.yaml"), [
        {"command": ["echopulse", "serve", "--token", "hunter2"]}]),
    "setup order": lambda facts: check_install_steps(
        facts, pip_installs('pip install -e ".[test]"\npip install "torch==2.13.0"'), "setup.sh", "test"),
}


@pytest.mark.parametrize("name", sorted(MUTATIONS))
def test_each_check_can_fail(facts, name):
    assert MUTATIONS[name](facts), f"breaking {name} went unnoticed"
