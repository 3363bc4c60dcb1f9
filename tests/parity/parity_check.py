"""Compose <-> Helm parity checker of the wallet-stack.

Both deployments are reduced to observations `(aspect, source, value)`. Within one
aspect every observation - from compose files, the image's Dockerfile, the files
compose mounts, or the rendered chart - must carry the same value. The checker
reports each aspect whose values disagree, and each aspect only one side
observed (a collector that silently found nothing must not pass).

Compose is read the faithful way: `docker compose config --format json`, so
`${X:-default}` interpolation is compose's own, with a throwaway `.env` that
`stackctl secrets` (make secrets) generates in a temp dir (fresh defaults, dummy
secrets) and a scrubbed environment (no air-gap overrides, no real .env). Traefik's
static configuration is read from its command flags; files compose mounts
(dynamic/*.yml, prometheus.yml) are found through the resolved bind mounts. The chart is rendered with `helm template` (defaults, the
all-routes example, whoami on, every optional env key set).

Deliberate differences are not aspects; they are listed in DESIGNED_DIFFERENCES
(and documented in the chart README).

CLI: python tests/parity/parity_check.py  -> prints the differences, exit 1 if any.
"""

from __future__ import annotations

import copy
import json
import os
import posixpath
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent))
import kubelet_sim as ks

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILES = (ROOT / "docker-compose.traefik.yml", ROOT / "docker-compose.yml")
CHART = ROOT / "helm" / "wallet-stack"
EXAMPLES = ROOT / "helm" / "examples"
ALL_ROUTES = EXAMPLES / "all-routes-monitoring.yaml"
RELEASE, NAMESPACE = "wallet-stack", "wallet"
API_SERVICE = "wallet-api"  # compose service name = chart component label
REDIS_IMAGE_WORKDIR = "/data"  # upstream redis image (and stand-in): WORKDIR /data
API_SOURCE = ROOT / "services" / "wallet-api"  # build context of the wallet-api image
# Traefik's forwardingTimeouts.idleConnTimeout when nothing sets it (static default and
# every ServersTransport that leaves it out).
TRAEFIK_DEFAULT_IDLE_CONN_TIMEOUT = "90s"
TRAEFIK_DEFAULT_DIAL_TIMEOUT = "30s"
SERVERSTRANSPORT_ANNOTATION = "traefik.ingress.kubernetes.io/service.serverstransport"

# Env vars only the chart sets, each with the compose equivalent.
# redis-server settings that must agree beyond persistence: the encoding thresholds
# the stored forms are sized for (store.py, README "Capacity").
REDIS_TUNING_FLAGS = ("zset-max-listpack-value",)
CHART_ONLY_ENV = {
    "PORT": "compose relies on the image's ENV PORT (same value: aspect api.port)",
    "REPLICA_ID": "compose: the app's default, the hostname (container id); chart: the pod name",
    "REDIS_PASSWORD": "only feeds $(REDIS_PASSWORD) in REDIS_URL (kubelet expansion)",
}

# Env vars the chart's schema refuses in wallet.env although neither side sets them.
REFUSED_ENV = {
    "WALLET_API_KEYS": "development tokens: wallet-api refuses them next to WALLET_API_KEYS_FILE "
    "(chart: wallet.apiKeys.keys; compose: make secrets writes their digests to the key file)",
}

# Where compose and chart differ on purpose (not checked as aspects).
DESIGNED_DIFFERENCES = {
    "api image tag": "compose builds wallet-stack/wallet-api:dev; the chart pins appVersion "
    "(README: --set image.tag=dev, examples/airgap.yaml)",
    "REDIS_URL host": "compose service `redis`; chart Service `<fullname>-redis` "
    "(both checked to be the Redis service: aspect api.redis_url.host_is_redis_service)",
    "http->https redirect router": "compose's `web` entrypoint router; on Kubernetes it belongs "
    "to the Traefik installation (README)",
    "whoami container port": "compose 80 (upstream default); chart 8080 unprivileged, Service port 80",
    "replica label value": "compose: container IP; chart: pod name",
    "credential storage": "compose usersFile/.env; chart Secrets",
    "redis user/rootfs": "compose: image entrypoint starts as root, chowns /data, drops to uid 999 "
    "(setpriv/gosu); chart: redis-server directly as 999, read-only rootfs, fsGroup owns the PVC",
    "upstream idle timeout scope": "compose: Traefik's static serversTransport (every backend); "
    "chart: a ServersTransport for the wallet route only, since the chart does not own Traefik "
    "(README 'Upstream keep-alive'; both checked: aspects traefik.api_upstream_idle_*)",
    "probe timings": "compose healthcheck (interval 10s/timeout 5s/start_period 20s) vs kubelet "
    "probes (startup 2s x 30, liveness 10s/2s, readiness 5s/2s); Traefik LB check 5s/3s",
}


class ParityError(RuntimeError):
    """The checker could not collect its inputs (missing tool, invalid file)."""


# ================================================================ observations


def freeze(value: Any) -> Any:
    if isinstance(value, Mapping):
        return tuple(sorted((str(k), freeze(v)) for k, v in value.items()))
    if isinstance(value, (set, frozenset)):
        return frozenset(freeze(v) for v in value)
    if isinstance(value, (list, tuple)):
        return tuple(freeze(v) for v in value)
    return value


def _fmt(value: Any) -> str:
    if isinstance(value, frozenset):
        return "{" + ", ".join(sorted(map(repr, value))) + "}"
    return repr(value)


class Observations:
    def __init__(self, side: str):
        self.side = side
        self.items: dict[str, list[tuple[str, Any]]] = {}

    def add(self, aspect: str, source: str, value: Any) -> None:
        self.items.setdefault(aspect, []).append((f"{self.side}: {source}", freeze(value)))

    def __repr__(self) -> str:
        return f"Observations({self.side}, {len(self.items)} aspects)"


def differences(*sides: Observations) -> list[str]:
    """Human-readable list of disagreements; empty = parity."""
    out: list[str] = []
    for aspect in sorted(set().union(*(s.items for s in sides))):
        missing = [s.side for s in sides if aspect not in s.items]
        if missing:
            present = [o for s in sides for o in s.items.get(aspect, [])]
            out.append(
                f"{aspect}: not observed on the {', '.join(missing)} side "
                f"(only {'; '.join(f'{src} = {_fmt(v)}' for src, v in present)})"
            )
            continue
        obs = [o for s in sides for o in s.items[aspect]]
        if len({v for _, v in obs}) == 1:
            continue
        ref = obs[0][1]
        lines = [f"{aspect}: values disagree"]
        for src, v in obs:
            line = f"    {src} = {_fmt(v)}"
            if v != ref and isinstance(v, frozenset) and isinstance(ref, frozenset):
                line += f"  (missing {_fmt(ref - v)}, extra {_fmt(v - ref)} vs the first)"
            lines.append(line)
        out.append("\n".join(lines))
    return out


# ================================================================ small parsers


def split_image(ref: str) -> tuple[str, str]:
    """'repo/name:tag' -> ('repo/name', 'tag'); digests kept in the tag part."""
    if "@" in ref:
        repo, digest = ref.split("@", 1)
        return repo, "@" + digest
    slash = ref.rfind("/")
    colon = ref.rfind(":")
    if colon > slash:
        return ref[:colon], ref[colon + 1 :]
    return ref, "latest"


def hosts_in(rule: str) -> list[str]:
    return re.findall(r"Host\(`([^`]+)`\)", rule)


def negated_prefixes(rule: str) -> tuple[str, ...]:
    return tuple(re.findall(r"!\s*PathPrefix\(`([^`]+)`\)", rule))


def redis_flags(args: list[str]) -> dict[str, str]:
    """redis-server `--name value...` arguments -> {name: 'value ...'}."""
    flags: dict[str, list[str]] = {}
    current = None
    for a in args:
        if a.startswith("--"):
            current = a[2:]
            flags[current] = []
        elif current is not None:
            flags[current].append(a)
    return {k: " ".join(v) for k, v in flags.items()}


def redis_acl(args: list[str]) -> dict[str, tuple[str, ...]]:
    """Every `--user NAME RULE...` of redis-server arguments -> {NAME: rules}, passwords
    (`>secret`) reduced to `>PASSWORD`: the rules must agree, the secrets need not."""
    users: dict[str, tuple[str, ...]] = {}
    i = 0
    while i < len(args):
        if args[i] == "--user":
            j = i + 2
            while j < len(args) and not args[j].startswith("--"):
                j += 1
            users[args[i + 1]] = tuple(
                ">PASSWORD" if a.startswith(">") else a for a in args[i + 2 : j]
            )
            i = j
        else:
            i += 1
    return users


def url_in(text: str) -> tuple[str, int | None, str]:
    m = re.search(r"https?://([^/:'\"\s]+)(?::(\d+|%s))?(/[^'\"\s]*)", text)
    if not m:
        raise ParityError(f"no URL in {text!r}")
    port = int(m.group(2)) if m.group(2) and m.group(2).isdigit() else None
    return m.group(1), port, m.group(3)


def seconds(duration: str | float) -> float:
    """Compose/Go duration ('30s', '1m30s', '500ms') -> seconds."""
    if isinstance(duration, (int, float)):
        return float(duration)
    units = {"h": 3600, "m": 60, "s": 1, "ms": 0.001, "us": 1e-6, "ns": 1e-9}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|us|ns|h|m|s)", duration)
    if not parts or "".join(a + b for a, b in parts) != duration:
        raise ParityError(f"duration {duration!r}")
    return sum(float(n) * units[u] for n, u in parts)


def gunicorn_keepalive_default(source: Path = API_SOURCE) -> int:
    """Default of GUNICORN_KEEPALIVE in the image's settings (config.ServerSettings, seconds)."""
    conf = source / "src" / "wallet_api" / "config.py"
    m = re.search(
        r'"GUNICORN_KEEPALIVE", _number\(int, \d+, \d+\), default=(\d+)\)', conf.read_text()
    )
    if not m:
        raise ParityError(f"no GUNICORN_KEEPALIVE default in {conf}")
    return int(m.group(1))


def add_upstream_idle(o: Observations, source: str, idle: Any, keepalive: int) -> None:
    """Traefik must drop an idle upstream connection before gunicorn does (else 502s)."""
    idle_s = seconds(idle)
    o.add("traefik.api_upstream_idle_timeout", source, idle_s)
    o.add(
        "traefik.api_upstream_idle_below_keepalive",
        f"{source} < API keep-alive ({keepalive}s)",
        0 < idle_s < keepalive,
    )


def script_digest(text: str | bytes) -> str:
    """Scripts compose and the chart run, compared by content."""
    import hashlib

    return hashlib.sha256(text.encode() if isinstance(text, str) else text).hexdigest()[:16]


def redis_start(command: list[str]) -> tuple[str | None, list[str]]:
    """(start script or None, redis-server flags) of a Redis container command: either
    redis-server itself or infra/redis/redis-server.sh, which passes its flags on."""
    for i, word in enumerate(command):
        if word == "redis-server":
            return None, command[i + 1 :]
        if word.endswith("/redis-server.sh"):
            return word, command[i + 1 :]
    raise ParityError(f"no redis-server in {command}")


def read_dotenv(path: Path) -> dict[str, str]:
    out = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        k, v = line.split("=", 1)
        out[k.strip().removeprefix("export ").strip()] = v.strip().strip("'\"")
    return out


def dockerfile_stage(path: Path, target: str | None = None) -> list[tuple[str, str]]:
    """Instructions of the build target (default: last stage), stages it is built
    FROM included (e.g. `FROM build AS test`)."""
    instructions: list[tuple[str, str]] = []
    buf = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if line.startswith("#") or (not line and not buf):
            continue
        if line.endswith("\\"):
            buf += line[:-1] + " "
            continue
        buf += line
        instr, _, rest = buf.strip().partition(" ")
        instructions.append((instr.upper(), rest.strip()))
        buf = ""
    stages: list[tuple[str | None, str, list[tuple[str, str]]]] = []
    for instr, rest in instructions:
        if instr == "FROM":
            m = re.match(r"(?:--platform=\S+\s+)?(\S+)(?:\s+AS\s+(\S+))?", rest, re.IGNORECASE)
            stages.append((m.group(2), m.group(1), []))
        elif stages:
            stages[-1][2].append((instr, rest))
    by_name = {name: (base, body) for name, base, body in stages if name}
    _, base, body = next(s for s in stages if s[0] == target) if target else stages[-1]
    chain = body
    while base in by_name:
        base, parent = by_name[base]
        chain = parent + chain
    return chain


def dockerfile_env(stage: list[tuple[str, str]]) -> dict[str, str]:
    env: dict[str, str] = {}
    for instr, rest in stage:
        if instr != "ENV":
            continue
        tokens = shlex.split(rest)
        if tokens and "=" not in tokens[0]:  # legacy `ENV KEY value`
            env[tokens[0]] = " ".join(tokens[1:])
            continue
        for t in tokens:
            k, _, v = t.partition("=")
            env[k] = v
    return env


# ================================================================ tools


def clean_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """Only what docker/helm need: no air-gap overrides or secrets of the caller."""
    keep = ("PATH", "HOME", "DOCKER_HOST", "DOCKER_CONFIG", "DOCKER_CONTEXT", "DOCKER_CERT_PATH",
            "DOCKER_TLS_VERIFY", "XDG_RUNTIME_DIR", "TMPDIR")  # fmt: skip
    env = {k: os.environ[k] for k in keep if k in os.environ}
    env.update(extra or {})
    return env


def require_docker_compose() -> None:
    if not shutil.which("docker"):
        raise ParityError(
            "the parity check needs `docker compose` (Compose v2) to interpolate the compose files "
            "faithfully; no `docker` CLI on PATH (air-gapped machine: scripts/airgap.sh installs it)"
        )
    proc = subprocess.run(["docker", "compose", "version"], capture_output=True, text=True,
                          env=clean_env(), check=False)  # fmt: skip
    if proc.returncode != 0:
        raise ParityError(
            "the parity check needs `docker compose` (Compose v2); `docker compose version` failed: "
            f"{proc.stderr.strip()} (air-gapped machine: scripts/airgap.sh installs it)"
        )


def fresh_env_file(directory: Path) -> Path:
    """The .env a fresh `make secrets` writes (defaults + random secrets), in `directory`."""
    proc = subprocess.run(
        [sys.executable, "-m", "stackctl", "secrets", "--root", str(directory)],
        env=clean_env(),
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise ParityError(f"stackctl secrets failed:\n{proc.stdout}{proc.stderr}")
    return directory / ".env"


def compose_config(
    env_file: Path,
    *,
    files: Iterable[Path] = COMPOSE_FILES,
    extra_env: Mapping[str, str] | None = None,
) -> dict:
    cmd = ["docker", "compose", "--env-file", str(env_file)]
    for f in files:
        cmd += ["-f", str(f)]
    cmd += ["config", "--format", "json"]
    proc = subprocess.run(cmd, cwd=ROOT, env=clean_env(extra_env), capture_output=True, text=True,
                          check=False)  # fmt: skip
    if proc.returncode != 0:
        raise ParityError(f"{' '.join(cmd)} failed:\n{proc.stderr}")
    return json.loads(proc.stdout)


class Chart:
    """helm template of the chart with extra values files applied to every render."""

    def __init__(self, helm_binary: str, values_files: Iterable[Path] = ()):
        self.helm = helm_binary
        self.values_files = [Path(p) for p in values_files]

    def render(
        self,
        *values_files: Path,
        sets: Iterable[str] = (),
        set_strings: Iterable[str] = (),
    ) -> list[dict]:
        import yaml

        cmd = [self.helm, "template", RELEASE, str(CHART), "--namespace", NAMESPACE]
        for f in (*self.values_files, *values_files):
            cmd += ["-f", str(f)]
        for s in sets:
            cmd += ["--set", s]
        for s in set_strings:
            cmd += ["--set-string", s]
        proc = subprocess.run(cmd, capture_output=True, text=True, env=clean_env(), check=False)
        if proc.returncode != 0:
            raise ParityError(f"{' '.join(cmd)} failed:\n{proc.stderr}")
        return [d for d in yaml.safe_load_all(proc.stdout) if d]

    def values(self, *values_files: Path) -> dict:
        """values.yaml with the values files merged in (helm's coalescing, enough for here)."""
        import yaml

        def merge(base: dict, over: Mapping) -> dict:
            for k, v in over.items():
                if v is None:
                    base.pop(k, None)
                elif isinstance(v, Mapping) and isinstance(base.get(k), dict):
                    merge(base[k], v)
                else:
                    base[k] = copy.deepcopy(v)
            return base

        values = yaml.safe_load((CHART / "values.yaml").read_text())
        for f in (*self.values_files, *values_files):
            merge(values, yaml.safe_load(Path(f).read_text()) or {})
        return values


# ================================================================ compose side


def _mounted(service: Mapping, target: str) -> Path:
    """Host path of `target` inside the container, through the service's bind mounts."""
    best = None
    for v in service.get("volumes") or []:
        if v.get("type") != "bind":
            continue
        t = v["target"].rstrip("/")
        if (target == t or target.startswith(t + "/")) and (best is None or len(t) > len(best[0])):
            best = (t, Path(v["source"]))
    if best is None:
        raise ParityError(f"{target} is not bind-mounted into the service")
    rel = posixpath.relpath(target, best[0])
    return best[1] if rel == "." else best[1] / rel


def traefik_static(service: Mapping) -> dict:
    """Traefik's static configuration from its `--a.b.c=value` command flags, as the
    nested mapping a traefik.yml would hold. Keys are lower-cased: Traefik's option names
    are case-insensitive. A bare `--flag` means true."""
    config: dict = {}
    for arg in service.get("command") or []:
        if not arg.startswith("--"):
            raise ParityError(f"traefik command: {arg!r} is not a --flag")
        path, sep, value = arg[2:].partition("=")
        *parents, leaf = path.lower().split(".")
        node = config
        for name in parents:
            # `--accessLog=true` enables a section that later flags fill in.
            if node.get(name) in ("true", None):
                node[name] = {}
            node = node[name]
            if not isinstance(node, dict):
                raise ParityError(f"traefik command: {arg!r} conflicts with another flag")
        if not (isinstance(node.get(leaf), dict) and value in ("", "true")):
            node[leaf] = value if sep else "true"
    return config


def _traefik_labels(service: Mapping) -> tuple[dict, dict]:
    """docker-provider labels -> (routers, services)."""
    routers: dict[str, dict] = {}
    services: dict[str, dict] = {}
    for key, value in (service.get("labels") or {}).items():
        m = re.fullmatch(r"traefik\.http\.(routers|services)\.([^.]+)\.(.+)", key)
        if m:
            (routers if m.group(1) == "routers" else services).setdefault(m.group(2), {})[
                m.group(3)
            ] = value
    return routers, services


def render_env_templates(text: str, environment: Mapping[str, Any]) -> str:
    """Traefik's file provider renders Go templates first: `{{ env "NAME" }}` (optionally
    `| default "v"`) becomes the container's variable; other templates become TEMPLATE."""

    def env(m: re.Match) -> str:
        value = environment.get(m.group(1))
        if value in (None, ""):
            if m.group(2) is None:
                raise ParityError(f'{{{{ env "{m.group(1)}" }}}}: not set in the traefik service')
            return m.group(2)
        return str(value)

    text = re.sub(
        r'\{\{\s*env\s+"([A-Za-z_0-9]+)"\s*(?:\|\s*default\s+"([^"]*)"\s*)?\}\}', env, text
    )
    return re.sub(r"\{\{.*?\}\}", "TEMPLATE", text)


def _numbers(spec: Any) -> Any:
    """Numbers as numbers: a rendered template is a string, a chart value an int."""
    if isinstance(spec, Mapping):
        return {k: _numbers(v) for k, v in spec.items()}
    if isinstance(spec, str) and re.fullmatch(r"[0-9]+", spec):
        return int(spec)
    return spec


def _normalize_middleware(kind_and_spec: tuple[str, Mapping]) -> tuple:
    """A middleware reduced to its behaviour (credential sources left out)."""
    kind, spec = kind_and_spec
    if kind == "basicAuth":
        return ("basicAuth", spec.get("realm"), bool(spec.get("removeHeader")))
    if kind == "redirectRegex":
        return (
            "redirectRegex",
            spec.get("regex"),
            spec.get("replacement"),
            bool(spec.get("permanent")),
        )
    return (kind, freeze(_numbers(spec)))


def observe_compose(cfg: dict, *, env_example: Path = ROOT / ".env.example") -> Observations:
    import yaml

    o = Observations("compose")
    services = cfg["services"]
    api, redis = services[API_SERVICE], services["redis"]
    traefik, prometheus, whoami = (
        services["traefik"],
        services["prometheus"],
        services["whoami"],
    )

    # ------------------------------------------------ wallet-api image and port
    repo, _tag = split_image(api["image"])
    o.add("api.image.repository", "wallet-api image", repo)
    build = api["build"]
    stage = dockerfile_stage(
        Path(build["context"]) / build.get("dockerfile", "Dockerfile"),
        build.get("target"),
    )
    image_env = dockerfile_env(stage)
    env = api.get("environment") or {}
    o.add(
        "api.port",
        "image ENV PORT (Dockerfile; compose does not set PORT)",
        int(env.get("PORT") or image_env["PORT"]),
    )
    exposed = [
        int(p.split("/")[0]) for instr, rest in stage if instr == "EXPOSE" for p in rest.split()
    ]
    o.add(
        "api.port",
        "Dockerfile EXPOSE",
        exposed[0] if len(exposed) == 1 else tuple(exposed),
    )
    _, hc_port, hc_path = url_in(" ".join(api["healthcheck"]["test"]))
    o.add("api.port", "compose healthcheck URL", hc_port)
    o.add("api.probe.liveness.path", "compose healthcheck URL", hc_path)
    healthcheck = next(rest for instr, rest in stage if instr == "HEALTHCHECK")
    o.add("api.probe.liveness.path", "Dockerfile HEALTHCHECK URL", url_in(healthcheck)[2])

    # ------------------------------------------------ wallet-api runtime / hardening
    user = api.get("user") or next(
        (rest for instr, rest in reversed(stage) if instr == "USER"), "0"
    )
    uid, _, gid = user.partition(":")
    o.add(
        "api.run_as",
        "service user, else Dockerfile USER (uid, gid)",
        (int(uid), int(gid or uid)),
    )
    o.add("api.no_new_privileges", "security_opt no-new-privileges",
          any(opt in ("no-new-privileges", "no-new-privileges:true") for opt in api.get("security_opt") or []))  # fmt: skip
    o.add("api.read_only_rootfs", "read_only", bool(api.get("read_only")))
    o.add("api.capabilities_dropped", "cap_drop", set(api.get("cap_drop") or []))
    # The CPU limit also sizes gunicorn's workers (config.available_cpus).
    o.add("api.limits", "cpus, mem_limit",
          (ks.quantity_cpus(api.get("cpus") or 0), ks.quantity_bytes(api.get("mem_limit") or 0)))  # fmt: skip
    writable = {t.split(":", 1)[0] for t in api.get("tmpfs") or []}
    writable |= {v["target"] for v in api.get("volumes") or [] if not v.get("read_only")}
    o.add("api.writable_mounts", "tmpfs + writable volumes targets", writable)
    # The API key definitions: a file from a secret, where WALLET_API_KEYS_FILE says.
    keys_file = (api.get("environment") or {}).get("WALLET_API_KEYS_FILE")
    o.add("api.keys_file", "WALLET_API_KEYS_FILE", keys_file)
    o.add("api.keys_file", "target of the service's secret (read-only bind mount)",
          next((s["target"] for s in api.get("secrets") or []), None))  # fmt: skip
    o.add(
        "api.replicas",
        "deploy.replicas (WALLET_API_REPLICAS default)",
        int((api.get("deploy") or {}).get("replicas", 1)),
    )
    o.add(
        "api.termination_grace_seconds",
        "stop_grace_period",
        seconds(api.get("stop_grace_period", "10s")),
    )

    # ------------------------------------------------ wallet-api environment
    o.add(
        "api.env.required",
        "wallet-api environment with a value",
        {k for k, v in env.items() if v is not None},
    )
    optional = {k for k, v in env.items() if v is None}
    o.add("api.env.chart_managed", "env with a value + CHART_ONLY_ENV (parity_check.py)",
          {k for k, v in env.items() if v is not None} | set(CHART_ONLY_ENV))  # fmt: skip
    o.add(
        "api.env.optional",
        "wallet-api environment without a value (pass-through)",
        optional,
    )
    url = urlsplit(env["REDIS_URL"])
    o.add(
        "api.redis_url.shape",
        "REDIS_URL (scheme, user, port, path)",
        (url.scheme, url.username or "", url.port, url.path),
    )
    o.add(
        "api.redis_url.host_is_redis_service",
        "REDIS_URL host is the redis service",
        url.hostname == "redis",
    )

    # ------------------------------------------------ redis
    command = [c.replace("$$", "$") for c in (redis.get("command") or ["redis-server"])]
    if command[:2] == ["sh", "-c"]:
        command = shlex.split(command[2])
    script, args = redis_start(command)
    flags = redis_flags(args)
    o.add("redis.acl", "redis-server --user rules", redis_acl(args))
    exporter = services.get("redis-exporter") or {}
    o.add("redis.exporter.user", "redis-exporter REDIS_USER",
          (exporter.get("environment") or {}).get("REDIS_USER"))  # fmt: skip
    o.add("redis.eviction_policy", "redis-server --maxmemory-policy", flags.get("maxmemory-policy"))
    limit = ((redis.get("deploy") or {}).get("resources") or {}).get("limits", {}).get("memory")
    o.add("redis.memory_limit", "deploy.resources.limits.memory", ks.quantity_bytes(limit or 0))
    o.add("redis.maxmemory_percent", "REDIS_MAXMEMORY_PERCENT (redis-server.sh)",
          (redis.get("environment") or {}).get("REDIS_MAXMEMORY_PERCENT"))  # fmt: skip
    o.add("redis.start_script", "the script the command runs, through its bind mount",
          script_digest(_mounted(redis, script).read_bytes()) if script else None)  # fmt: skip
    o.add("redis.tuning", "redis-server flags",
          {k: flags.get(k) for k in REDIS_TUNING_FLAGS})  # fmt: skip
    o.add("redis.persistence", "redis-server flags",
          {"appendonly": flags.get("appendonly"), "appendfsync": flags.get("appendfsync")})  # fmt: skip
    redis_env = redis.get("environment") or {}
    secret_var = re.fullmatch(r"\$\{?(\w+)\}?", flags.get("requirepass", "") or "")
    o.add(
        "api.redis_url.password_is_redis_requirepass",
        "REDIS_URL password == redis-server --requirepass",
        bool(secret_var) and redis_env.get(secret_var.group(1)) == url.password,
    )
    o.add(
        "redis.port",
        "redis-server --port (default 6379)",
        int(flags.get("port", "6379")),
    )
    o.add("redis.port", "REDIS_URL port", url.port)
    data = [v["target"] for v in redis.get("volumes") or [] if v.get("type") == "volume"]
    o.add("redis.data_dir", "named volume target", tuple(data))
    o.add(
        "redis.data_dir",
        "redis-server --dir (default: image WORKDIR)",
        (flags.get("dir", REDIS_IMAGE_WORKDIR),),
    )
    o.add("redis.image", "redis image", redis["image"])

    # ------------------------------------------------ traefik routing
    static_cfg = traefik_static(traefik)
    dyn_dir = _mounted(traefik, static_cfg["providers"]["file"]["directory"])
    file_http: dict[str, dict] = {"routers": {}, "middlewares": {}, "serversTransports": {}}
    tls_options: dict = {}
    for f in sorted(dyn_dir.glob("*.y*ml")):
        # Traefik renders Go templates before parsing: {{ env "X" }} with the Traefik
        # container's environment (as compose resolved it), anything else neutralised.
        doc = (
            yaml.safe_load(render_env_templates(f.read_text(), traefik.get("environment") or {}))
            or {}
        )
        for section, entries in file_http.items():
            entries.update((doc.get("http") or {}).get(section) or {})
        tls_options.update((doc.get("tls") or {}).get("options") or {})
    o.add(
        "traefik.tls_options",
        "file provider tls.options.default",
        freeze(tls_options.get("default")),
    )
    # Entrypoint middlewares run before every router's own (Traefik's order).
    ep_middlewares = [
        m.strip()
        for ep in ("websecure",)
        for m in str(((static_cfg.get("entrypoints") or {}).get(ep, {}).get("http") or {}).get("middlewares", "")).split(",")
        if m.strip()
    ]  # fmt: skip

    def middleware(ref: str) -> tuple:
        name, _, provider = ref.partition("@")
        if provider not in ("", "file"):
            raise ParityError(f"middleware {ref}: only the file provider is modelled")
        (kind, spec), = file_http["middlewares"][name].items()  # fmt: skip
        return _normalize_middleware((kind, spec))

    routes = set()
    api_rule = None
    for sname, svc in services.items():
        if (svc.get("labels") or {}).get("traefik.enable") != "true":
            continue
        routers, lb_services = _traefik_labels(svc)
        for r in routers.values():
            target = r.get("service") or next(iter(lb_services))
            port = int(lb_services[target]["loadbalancer.server.port"])
            own = [m.strip() for m in r.get("middlewares", "").split(",") if m.strip()]
            mws = tuple(middleware(m) for m in [*ep_middlewares, *own])
            eps = tuple(sorted(e.strip() for e in r.get("entrypoints", "").split(",") if e.strip()))
            routes.add((r["rule"], eps, r.get("tls") == "true", mws, port))
            if sname == API_SERVICE:
                api_rule = r["rule"]
                o.add("api.port", "traefik label loadbalancer.server.port", port)
                hc = lb_services[target].get("loadbalancer.healthcheck.path")
                o.add(
                    "api.probe.readiness.path",
                    "traefik load-balancer healthcheck (readiness)",
                    hc,
                )
            if sname == "whoami":
                o.add(
                    "whoami.health.path",
                    "traefik load-balancer healthcheck",
                    lb_services[target].get("loadbalancer.healthcheck.path"),
                )
    for r in file_http["routers"].values():
        eps = tuple(sorted(r.get("entryPoints", [])))
        if eps == ("web",):
            continue  # http->https redirect: Traefik installation's job on Kubernetes
        mws = tuple(middleware(m) for m in [*ep_middlewares, *r.get("middlewares", [])])
        routes.add((r["rule"], eps, "tls" in r, mws, r["service"]))
    o.add("routing.routes", "traefik routers (docker labels + file provider)", routes)
    o.add(
        "routing.hosts",
        "Host() of every router",
        {h for r in routes for h in hosts_in(r[0])},
    )
    o.add(
        "routing.api.unrouted_prefixes",
        "!PathPrefix() in the wallet-api router rule",
        negated_prefixes(api_rule or ""),
    )
    o.add("whoami.image", "whoami image", whoami["image"])

    # ------------------------------------------------ upstream keep-alive
    keepalive = int(
        env.get("GUNICORN_KEEPALIVE") or gunicorn_keepalive_default(Path(build["context"]))
    )
    _, api_lb = _traefik_labels(api)
    transport = next(
        (v for svc in api_lb.values() for k, v in svc.items() if k.lower() == "loadbalancer.serverstransport"),
        None,
    )  # fmt: skip
    if transport is None:
        idle = (static_cfg.get("serverstransport") or {}).get("forwardingtimeouts", {}) or {}
        source = "traefik flag --serversTransport.forwardingTimeouts.idleConnTimeout"
    else:
        name, _, provider = transport.partition("@")
        if provider != "file" or name not in file_http["serversTransports"]:
            raise ParityError(
                f"wallet-api serversTransport {transport}: only @file ones are modelled"
            )
        idle = file_http["serversTransports"][name].get("forwardingTimeouts") or {}
        source = f"file provider serversTransports.{name}.forwardingTimeouts.idleConnTimeout"
    # Flags are lower-cased by traefik_static; a file-provider ServersTransport is not.
    timeout = idle.get("idleconntimeout") or idle.get("idleConnTimeout")
    add_upstream_idle(o, source, timeout or TRAEFIK_DEFAULT_IDLE_CONN_TIMEOUT, keepalive)
    passive = {k.lower(): v for k, v in api_lb.get("wallet", next(iter(api_lb.values()))).items()}
    o.add("traefik.api_passive_health_check", "wallet service passivehealthcheck labels",
          (seconds(passive.get("loadbalancer.passivehealthcheck.failurewindow", "0s")),
           int(passive.get("loadbalancer.passivehealthcheck.maxfailedattempts", 0))))  # fmt: skip
    dial = idle.get("dialtimeout") or idle.get("dialTimeout") or TRAEFIK_DEFAULT_DIAL_TIMEOUT
    o.add("traefik.api_upstream_dial_timeout", source.replace("idleConnTimeout", "dialTimeout"),
          seconds(dial))  # fmt: skip

    # ------------------------------------------------ basic auth
    o.add("basic_auth.user", "BASIC_AUTH_USER of a fresh `make secrets` .env (traefik label)",
          traefik["labels"]["io.wallet-stack.basic-auth-user"])  # fmt: skip
    o.add(
        "basic_auth.user",
        ".env.example BASIC_AUTH_USER",
        read_dotenv(env_example).get("BASIC_AUTH_USER"),
    )

    # ------------------------------------------------ prometheus
    config_file = next(
        a.split("=", 1)[1] for a in prometheus["command"] if a.startswith("--config.file=")
    )
    prom = yaml.safe_load(_mounted(prometheus, config_file).read_text())
    g = prom.get("global", {})
    o.add("prometheus.global", "prometheus.yml global",
          {k: g.get(k) for k in ("scrape_interval", "scrape_timeout", "evaluation_interval", "external_labels")})  # fmt: skip
    o.add("prometheus.rule_files", "prometheus.yml rule_files (resolved in the container)",
          tuple(posixpath.join(posixpath.dirname(config_file), f) for f in prom.get("rule_files", [])))  # fmt: skip
    jobs = {j["job_name"]: j for j in prom["scrape_configs"]}
    o.add("prometheus.jobs", "prometheus.yml job names", set(jobs))
    api_job = next(
        j for j in jobs.values() for sd in j.get("dns_sd_configs", []) if API_SERVICE in sd["names"]
    )
    sd = api_job["dns_sd_configs"][0]
    o.add("prometheus.api_job.discovers", "dns_sd_configs names (a compose service)",
          next(n for n in sd["names"] if n in services))  # fmt: skip
    o.add("prometheus.api_job.name", "job_name of the dns_sd job", api_job["job_name"])
    o.add("api.port", "prometheus.yml dns_sd_configs port", int(sd["port"]))
    o.add(
        "api.metrics.path",
        "prometheus.yml metrics_path",
        api_job.get("metrics_path", "/metrics"),
    )
    o.add(
        "api.metrics.interval",
        "prometheus.yml (job or global)",
        api_job.get("scrape_interval", g.get("scrape_interval", "1m")),
    )
    o.add(
        "api.metrics.timeout",
        "prometheus.yml (job or global)",
        api_job.get("scrape_timeout", g.get("scrape_timeout", "10s")),
    )
    o.add("api.metrics.replica_label", "relabel_configs target replica",
          any(r.get("target_label") == "replica" for r in api_job.get("relabel_configs", [])))  # fmt: skip
    traefik_target = jobs["traefik"]["static_configs"][0]["targets"][0]
    t_host, _, t_port = traefik_target.rpartition(":")
    entrypoints = static_cfg["entrypoints"]
    by_port = [n for n, ep in entrypoints.items() if ep["address"].rsplit(":", 1)[-1] == t_port]
    o.add("traefik.metrics.entrypoint", f"traefik entrypoint on the scrape target port {t_port}",
          by_port[0] if len(by_port) == 1 and t_host == "traefik" else None)  # fmt: skip
    o.add("traefik.metrics.entrypoint", "traefik flag --metrics.prometheus.entryPoint",
          static_cfg["metrics"]["prometheus"]["entrypoint"])  # fmt: skip
    api_router = next(r for r in _traefik_labels(api)[0].values())
    o.add("traefik.api_service_label_prefix", "docker provider service name (<service>@docker)",
          (api_router.get("service") or next(iter(_traefik_labels(api)[1]))) + "@")  # fmt: skip
    rule_dir = _mounted(prometheus, posixpath.dirname(config_file))
    prefixes = set()
    for rf in prom.get("rule_files", []):
        for f in rule_dir.glob(rf):
            prefixes |= set(re.findall(r'service=~"([^".]+@)\.\*"', f.read_text()))
    o.add("traefik.api_service_label_prefix", "service=~ selectors of the shared alert rules",
          prefixes.pop() if len(prefixes) == 1 else frozenset(prefixes))  # fmt: skip
    return o


# ================================================================ chart side


def _by_component(manifests: list[dict], kind: str, component: str) -> dict:
    found = [
        d
        for d in manifests
        if d["kind"] == kind
        and d["metadata"].get("labels", {}).get("app.kubernetes.io/component") == component
    ]
    if len(found) != 1:
        raise ParityError(f"expected one {kind} of component {component}, found {len(found)}")
    return found[0]


def _wallet_transport_idle(
    manifests: list[dict],
    ref: str | None,
    via: str,
    *,
    key: str = "idleConnTimeout",
    default: str = TRAEFIK_DEFAULT_IDLE_CONN_TIMEOUT,
) -> Any:
    """A forwarding timeout (`key`) of the ServersTransport `ref` (a name in the release
    namespace, or <namespace>-<name>@kubernetescrd); Traefik's default when there is none."""
    if not ref:
        return default
    name, _, provider = ref.partition("@")
    found = [
        d
        for d in manifests
        if d["kind"] == "ServersTransport"
        and (
            (not provider and d["metadata"]["name"] == name)
            or (provider == "kubernetescrd" and f"{d['metadata'].get('namespace')}-{d['metadata']['name']}" == name)
        )
    ]  # fmt: skip
    if len(found) != 1:
        raise ParityError(
            f"{via}: serversTransport {ref!r} matches {len(found)} rendered object(s)"
        )
    ft = found[0]["spec"].get("forwardingTimeouts") or {}
    return ft.get(key, default)


def _configmap_file(manifests: list[dict], workload: dict, container: dict, path: str) -> str:
    """The content a container sees at `path` when a ConfigMap volume is mounted there."""
    volumes = {v["name"]: v for v in workload["spec"]["template"]["spec"].get("volumes", [])}
    for mount in container.get("volumeMounts", []):
        base = mount["mountPath"].rstrip("/") + "/"
        source = volumes.get(mount["name"], {}).get("configMap")
        if source and path.startswith(base):
            data = ks.find(manifests, "ConfigMap", source["name"]).get("data", {})
            key = path[len(base) :]
            if key not in data:
                raise ParityError(f"ConfigMap {source['name']} has no {key}")
            return str(data[key])
    raise ParityError(f"{path} is not in a ConfigMap volume of {workload['metadata']['name']}")


def _service_port_to_container(
    manifests: list[dict],
    workload: dict,
    container: dict,
    svc_name: str,
    port: int | str,
) -> int:
    """Service port (number or name) -> the container port it targets."""
    svc = ks.find(manifests, "Service", svc_name)
    if svc not in ks.services_selecting(manifests, workload):
        raise ParityError(f"Service {svc_name} does not select {workload['metadata']['name']}")
    for p in svc["spec"]["ports"]:
        if p["port"] == port or p.get("name") == port:
            return ks.resolve_port(p.get("targetPort", p["port"]), container)
    raise ParityError(f"Service {svc_name} has no port {port}")


def observe_chart(chart: Chart) -> Observations:
    import yaml

    o = Observations("chart")
    values = chart.values()
    default = chart.render()
    allr = chart.render(ALL_ROUTES)
    with_whoami = chart.render(sets=("whoami.enabled=true",))
    optional_keys = sorted(values["wallet"]["env"])
    all_env = chart.render(set_strings=tuple(f"wallet.env.{k}=1" for k in optional_keys))

    dep = _by_component(default, "Deployment", API_SERVICE)
    c = ks.container_of(dep, API_SERVICE)
    api_env = ks.resolve_env(
        c, default, pod_name=f"{dep['metadata']['name']}-0", namespace=NAMESPACE
    )
    env = dict(api_env)

    # ------------------------------------------------ wallet-api image and port
    o.add("api.image.repository", "values image.repository", values["image"]["repository"])
    o.add("api.image.repository", "Deployment image", split_image(c["image"])[0])
    ports = tuple(p["containerPort"] for p in c["ports"])
    o.add(
        "api.port",
        "Deployment containerPort(s)",
        ports[0] if len(ports) == 1 else ports,
    )
    o.add("api.port", "env PORT", int(env["PORT"]))
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        if probe in c:
            o.add(
                "api.port",
                f"{probe} port",
                ks.resolve_port(c[probe]["httpGet"]["port"], c),
            )
    ann = dep["spec"]["template"]["metadata"].get("annotations", {})
    o.add(
        "api.port",
        "pod annotation prometheus.io/port",
        int(ann.get("prometheus.io/port", 0)) or None,
    )
    o.add(
        "api.metrics.path",
        "pod annotation prometheus.io/path",
        ann.get("prometheus.io/path"),
    )
    o.add("api.metrics.path", "values metrics.path", values["metrics"]["path"])

    # ------------------------------------------------ runtime / hardening
    pod = dep["spec"]["template"]["spec"]
    sc = {**(pod.get("securityContext") or {}), **(c.get("securityContext") or {})}
    o.add(
        "api.run_as",
        "securityContext (runAsUser, runAsGroup)",
        (sc.get("runAsUser"), sc.get("runAsGroup")),
    )
    o.add(
        "api.no_new_privileges",
        "allowPrivilegeEscalation: false",
        sc.get("allowPrivilegeEscalation") is False,
    )
    o.add(
        "api.read_only_rootfs",
        "readOnlyRootFilesystem",
        bool(sc.get("readOnlyRootFilesystem")),
    )
    o.add(
        "api.capabilities_dropped",
        "capabilities.drop",
        set((sc.get("capabilities") or {}).get("drop", [])),
    )
    limits = (c.get("resources") or {}).get("limits") or {}
    o.add("api.limits", "resources.limits (cpu, memory)",
          (ks.quantity_cpus(limits.get("cpu", 0)), ks.quantity_bytes(limits.get("memory", 0))))  # fmt: skip
    o.add(
        "api.writable_mounts",
        "volumeMounts that are not readOnly",
        {m["mountPath"] for m in c.get("volumeMounts", []) if not m.get("readOnly")},
    )
    keys_path = env.get("WALLET_API_KEYS_FILE")
    o.add("api.keys_file", "WALLET_API_KEYS_FILE", keys_path)
    secret_volumes = {v["name"]: v["secret"] for v in pod.get("volumes", []) if "secret" in v}
    o.add("api.keys_file", "readOnly mount of a Secret volume item (mountPath/path)", next(
        (posixpath.join(m["mountPath"], item["path"])
         for m in c.get("volumeMounts", []) if m["name"] in secret_volumes and m.get("readOnly")
         for item in secret_volumes[m["name"]].get("items", [])),
        None,
    ))  # fmt: skip
    o.add("api.replicas", "Deployment replicas", dep["spec"].get("replicas"))
    o.add(
        "api.termination_grace_seconds",
        "terminationGracePeriodSeconds",
        float(pod.get("terminationGracePeriodSeconds", 30)),
    )

    # ------------------------------------------------ probes
    if "startupProbe" in c:
        o.add(
            "api.probe.liveness.path",
            "startupProbe httpGet.path",
            c["startupProbe"]["httpGet"]["path"],
        )
    o.add(
        "api.probe.liveness.path",
        "livenessProbe httpGet.path",
        c["livenessProbe"]["httpGet"]["path"],
    )
    o.add(
        "api.probe.readiness.path",
        "readinessProbe httpGet.path",
        c["readinessProbe"]["httpGet"]["path"],
    )

    # ------------------------------------------------ environment
    names = [e["name"] for e in c["env"]]
    o.add(
        "api.env.required",
        "Deployment env names minus the chart-only ones",
        set(names) - set(CHART_ONLY_ENV),
    )
    o.add("api.env.optional", "values wallet.env keys", set(optional_keys))
    c_all = ks.container_of(_by_component(all_env, "Deployment", API_SERVICE), API_SERVICE)
    o.add("api.env.optional", "env names added when every wallet.env key is set",
          {e["name"] for e in c_all["env"]} - set(names))  # fmt: skip
    schema = json.loads((CHART / "values.schema.json").read_text())
    managed = set(
        schema["properties"]["wallet"]["properties"]["env"]["propertyNames"]["not"]["enum"]
    )
    o.add(
        "api.env.chart_managed",
        "values.schema.json wallet.env forbidden names, minus REFUSED_ENV (parity_check.py)",
        managed - set(REFUSED_ENV) if set(REFUSED_ENV) <= managed else managed,
    )
    o.add("api.env.chart_managed", "default Deployment env names", set(names))

    # ------------------------------------------------ REDIS_URL and redis
    sts = _by_component(default, "StatefulSet", "redis")
    rc = ks.container_of(sts, "redis")
    redis_env = dict(
        ks.resolve_env(rc, default, pod_name=f"{sts['metadata']['name']}-0", namespace=NAMESPACE)
    )
    rargs = [ks.expand(a, redis_env) for a in (rc.get("command", [])[1:] + rc.get("args", []))]
    flags = redis_flags(rargs)
    o.add("redis.acl", "redis container --user args", redis_acl(rargs))
    sidecar = next((c for c in ks.pod_spec(sts)["containers"] if c["name"] == "exporter"), {})
    o.add("redis.exporter.user", "exporter sidecar REDIS_USER",
          next((e.get("value") for e in sidecar.get("env", []) if e["name"] == "REDIS_USER"), None))  # fmt: skip
    url = urlsplit(env["REDIS_URL"])
    o.add("api.redis_url.shape", "REDIS_URL after $(VAR) expansion",
          (url.scheme, url.username or "", url.port, url.path))  # fmt: skip
    redis_svcs = {s["metadata"]["name"] for s in ks.services_selecting(default, sts)}
    o.add(
        "api.redis_url.host_is_redis_service",
        "REDIS_URL host is a Service selecting the redis pods",
        url.hostname in redis_svcs,
    )
    o.add("api.redis_url.password_is_redis_requirepass", "REDIS_URL password == redis-server --requirepass",
          url.password is not None and flags.get("requirepass") == url.password)  # fmt: skip
    o.add("redis.tuning", "StatefulSet redis-server args",
          {k: flags.get(k) for k in REDIS_TUNING_FLAGS})  # fmt: skip
    o.add("redis.persistence", "StatefulSet redis-server args",
          {"appendonly": flags.get("appendonly"), "appendfsync": flags.get("appendfsync")})  # fmt: skip
    o.add(
        "redis.port",
        "redis-server --port (default 6379)",
        int(flags.get("port", "6379")),
    )
    o.add("redis.port", "REDIS_URL port", url.port)
    o.add("redis.port", "redis containerPort", ks.resolve_port("redis", rc))
    mounts = {m["name"]: m["mountPath"] for m in rc.get("volumeMounts", [])}
    claims = [t["metadata"]["name"] for t in sts["spec"].get("volumeClaimTemplates", [])]
    o.add(
        "redis.data_dir",
        "volumeClaimTemplates mount paths",
        tuple(mounts[n] for n in claims),
    )
    o.add("redis.data_dir", "redis-server --dir", (flags.get("dir", REDIS_IMAGE_WORKDIR),))
    o.add("redis.image", "StatefulSet image", rc["image"])
    o.add("redis.eviction_policy", "StatefulSet redis-server args", flags.get("maxmemory-policy"))
    o.add("redis.memory_limit", "redis resources.limits.memory",
          ks.quantity_bytes(((rc.get("resources") or {}).get("limits") or {}).get("memory", 0)))  # fmt: skip
    o.add("redis.maxmemory_percent", "REDIS_MAXMEMORY_PERCENT (redis-server.sh)",
          redis_env.get("REDIS_MAXMEMORY_PERCENT"))  # fmt: skip
    script, _ = redis_start(rc.get("command", []) + rc.get("args", []))
    o.add("redis.start_script", "the script the command runs, from its ConfigMap volume",
          script_digest(_configmap_file(default, sts, rc, script)) if script else None)  # fmt: skip

    # ------------------------------------------------ routing (every route on)
    mw_by_name = {
        d["metadata"]["name"]: _normalize_middleware(next(iter(d["spec"].items())))
        for d in allr
        if d["kind"] == "Middleware"
    }
    routes = set()
    for ir in (d for d in allr if d["kind"] == "IngressRoute"):
        for r in ir["spec"]["routes"]:
            (svc,) = r["services"]
            backend = svc["name"] if svc.get("kind") == "TraefikService" else svc["port"]
            mws = tuple(mw_by_name[m["name"]] for m in r.get("middlewares", []))
            routes.add(
                (
                    r["match"],
                    tuple(sorted(ir["spec"]["entryPoints"])),
                    "tls" in ir["spec"],
                    mws,
                    backend,
                )
            )
    o.add("routing.routes", "IngressRoutes of examples/all-routes-monitoring.yaml", routes)
    tls_option_names = {
        (ir["spec"].get("tls") or {}).get("options", {}).get("name")
        for ir in allr
        if ir["kind"] == "IngressRoute"
    }
    (tls_option,) = [d for d in allr if d["kind"] == "TLSOption"] or [None]
    o.add("traefik.tls_options", "TLSOption used by every IngressRoute",
          freeze(tls_option["spec"]) if tls_option and tls_option_names == {tls_option["metadata"]["name"]} else None)  # fmt: skip
    o.add(
        "routing.hosts",
        "Host() of every IngressRoute",
        {h for r in routes for h in hosts_in(r[0])},
    )
    o.add(
        "routing.hosts",
        "values ingress.hosts",
        set(values["ingress"]["hosts"].values()),
    )
    ir_api = _by_component(
        [d for d in default if d["kind"] == "IngressRoute"], "IngressRoute", API_SERVICE
    )
    # The route for every request (its twin for Idempotency-Key requests differs only in
    # the HeaderRegexp and the retry: both are compared in routing.routes).
    (api_route,) = [r for r in ir_api["spec"]["routes"] if "HeaderRegexp" not in r["match"]]
    o.add(
        "routing.api.unrouted_prefixes",
        "!PathPrefix() in the default wallet IngressRoute",
        negated_prefixes(api_route["match"]),
    )
    o.add(
        "routing.api.unrouted_prefixes",
        "values ingress.wallet.excludePathPrefixes",
        tuple(values["ingress"]["wallet"]["excludePathPrefixes"]),
    )
    (backend,) = api_route["services"]
    o.add("api.port", "wallet IngressRoute -> Service -> targetPort",
          _service_port_to_container(default, dep, c, backend["name"], backend["port"]))  # fmt: skip

    # ------------------------------------------------ upstream keep-alive
    keepalive = int(env.get("GUNICORN_KEEPALIVE") or gunicorn_keepalive_default())
    via = "wallet IngressRoute serversTransport -> ServersTransport idleConnTimeout"
    add_upstream_idle(
        o, via, _wallet_transport_idle(default, backend.get("serversTransport"), via), keepalive
    )
    for route in ir_api["spec"]["routes"]:
        for svc in route["services"]:
            phc = svc.get("passiveHealthCheck") or {}
            o.add("traefik.api_passive_health_check", f"wallet IngressRoute {route['match']!r} service",
                  (seconds(phc.get("failureWindow", "0s")), int(phc.get("maxFailedAttempts", 0))))  # fmt: skip
    via = "wallet IngressRoute serversTransport -> ServersTransport dialTimeout"
    o.add("traefik.api_upstream_dial_timeout", via, seconds(_wallet_transport_idle(
        default, backend.get("serversTransport"), via, key="dialTimeout",
        default=TRAEFIK_DEFAULT_DIAL_TIMEOUT)))  # fmt: skip
    # Ingress mode on a cluster with Traefik's CRDs (the example is for one without).
    ing = chart.render(EXAMPLES / "ingress.yaml",
                       sets=("ingress.wallet.serversTransportCRD=true", "ingress.traefikCRDs=true"))  # fmt: skip
    ing_env = dict(ks.resolve_env(ks.container_of(_by_component(ing, "Deployment", API_SERVICE), API_SERVICE),
                                  ing, pod_name="p", namespace=NAMESPACE))  # fmt: skip
    ing_svc = ks.find(ing, "Service", backend["name"])
    via = (
        "Ingress mode + serversTransportCRD: Service annotation -> ServersTransport idleConnTimeout"
    )
    ref = (ing_svc["metadata"].get("annotations") or {}).get(SERVERSTRANSPORT_ANNOTATION)
    add_upstream_idle(o, via, _wallet_transport_idle(ing, ref, via),
                      int(ing_env.get("GUNICORN_KEEPALIVE") or gunicorn_keepalive_default()))  # fmt: skip
    who = _by_component(allr, "Deployment", "whoami")
    wc = who["spec"]["template"]["spec"]["containers"][0]
    o.add("whoami.image", "whoami Deployment image (whoami.enabled)", wc["image"])
    o.add(
        "whoami.health.path",
        "whoami readinessProbe",
        wc["readinessProbe"]["httpGet"]["path"],
    )

    # ------------------------------------------------ basic auth
    o.add("basic_auth.user", "values basicAuth.user", values["basicAuth"]["user"])
    ba = next(
        d
        for d in with_whoami
        if d["kind"] == "Secret"
        and d["metadata"].get("labels", {}).get("app.kubernetes.io/component") == "basic-auth"
    )
    o.add("basic_auth.user", "generated basic-auth Secret username (whoami.enabled)",
          ks.secret_value(with_whoami, ba["metadata"]["name"], "username"))  # fmt: skip

    # ------------------------------------------------ prometheus (ConfigMap)
    cm = _by_component(
        [d for d in default if d["kind"] == "ConfigMap" and "prometheus.yml" in d.get("data", {})],
        "ConfigMap",
        "prometheus",
    )
    prom = yaml.safe_load(cm["data"]["prometheus.yml"])
    g = prom.get("global", {})
    o.add("prometheus.global", "ConfigMap prometheus.yml global",
          {k: g.get(k) for k in ("scrape_interval", "scrape_timeout", "evaluation_interval", "external_labels")})  # fmt: skip
    o.add(
        "prometheus.rule_files",
        "ConfigMap prometheus.yml rule_files",
        tuple(prom.get("rule_files", [])),
    )
    jobs = {j["job_name"]: j for j in prom["scrape_configs"]}
    o.add("prometheus.jobs", "ConfigMap prometheus.yml job names", set(jobs))
    pod_labels = ks.pod_labels(dep)

    def selects_api(job: dict) -> bool:
        for sd in job.get("kubernetes_sd_configs", []):
            for sel in sd.get("selectors", []):
                want = dict(kv.split("=", 1) for kv in sel["label"].split(","))
                if want.items() <= pod_labels.items():
                    return True
        return False

    api_job = next(j for j in jobs.values() if selects_api(j))
    o.add("prometheus.api_job.discovers", "ConfigMap job selector -> pods of component",
          pod_labels.get("app.kubernetes.io/component"))  # fmt: skip
    o.add("prometheus.api_job.name", "ConfigMap job_name", api_job["job_name"])
    keep = next(r for r in api_job["relabel_configs"]
                if r.get("action") == "keep" and r.get("source_labels") == ["__meta_kubernetes_pod_container_port_name"])  # fmt: skip
    o.add(
        "api.port",
        "ConfigMap job: kept container port name",
        ks.resolve_port(keep["regex"], c),
    )
    o.add(
        "api.metrics.path",
        "ConfigMap job metrics_path",
        api_job.get("metrics_path", "/metrics"),
    )
    o.add(
        "api.metrics.interval",
        "ConfigMap (job or global)",
        api_job.get("scrape_interval", g.get("scrape_interval", "1m")),
    )
    o.add(
        "api.metrics.timeout",
        "ConfigMap (job or global)",
        api_job.get("scrape_timeout", g.get("scrape_timeout", "10s")),
    )
    o.add("api.metrics.replica_label", "ConfigMap relabel_configs target replica",
          any(r.get("target_label") == "replica" for r in api_job["relabel_configs"]))  # fmt: skip
    tjob = jobs.get("traefik", {})
    tkeep = [r for r in tjob.get("relabel_configs", []) if r.get("action") == "keep"]
    o.add("traefik.metrics.entrypoint", "ConfigMap traefik job: kept container port name",
          tkeep[0]["regex"] if tkeep else None)  # fmt: skip
    rename = next(
        (r for r in tjob.get("metric_relabel_configs", []) if r.get("target_label") == "service"),
        {},
    )
    o.add("traefik.api_service_label_prefix", "ConfigMap traefik metric_relabel replacement",
          rename.get("replacement", "").split("${1}")[0] or None)  # fmt: skip

    # ------------------------------------------------ prometheus-operator (all-routes example)
    sm = _by_component(
        [d for d in allr if d["kind"] == "ServiceMonitor"],
        "ServiceMonitor",
        API_SERVICE,
    )
    (ep,) = sm["spec"]["endpoints"]
    dep_allr = _by_component(allr, "Deployment", API_SERVICE)
    svc_name = next(s["metadata"]["name"] for s in ks.services_selecting(allr, dep_allr)
                    if sm["spec"]["selector"]["matchLabels"].items() <= s["metadata"]["labels"].items())  # fmt: skip
    o.add("api.port", "ServiceMonitor port -> Service -> targetPort",
          _service_port_to_container(allr, dep_allr, ks.container_of(dep_allr, API_SERVICE), svc_name, ep["port"]))  # fmt: skip
    o.add("api.metrics.path", "ServiceMonitor path", ep.get("path", "/metrics"))
    o.add("api.metrics.interval", "ServiceMonitor interval", ep.get("interval"))
    o.add("api.metrics.timeout", "ServiceMonitor scrapeTimeout", ep.get("scrapeTimeout"))
    relabel = ep.get("relabelings", [])
    o.add("api.metrics.replica_label", "ServiceMonitor relabelings target replica",
          any(r.get("targetLabel") == "replica" for r in relabel))  # fmt: skip
    o.add("prometheus.api_job.name", "ServiceMonitor relabeling of job",
          next((r.get("replacement") for r in relabel if r.get("targetLabel") == "job"), None))  # fmt: skip
    return o


# ================================================================ Redis HA (issue 11)
#
# docker-compose.ha.yml (on top of the compose files) against the chart with
# examples/redis-sentinel.yaml: the same topology, flags, Sentinel settings, scripts
# and wallet-api settings. Names differ by design (compose services, pod DNS names);
# what must hold is that each side's names point at the right things.

HA_COMPOSE_FILES = (*COMPOSE_FILES, ROOT / "docker-compose.ha.yml")
HA_VALUES = EXAMPLES / "redis-sentinel.yaml"
HA_NODE_FLAGS = ("appendonly", "appendfsync", "maxmemory-policy", "zset-max-listpack-value",
                 "min-replicas-to-write", "min-replicas-max-lag")  # fmt: skip
HA_SENTINEL_ENV = ("SENTINEL_MASTER_NAME", "SENTINEL_QUORUM", "SENTINEL_DOWN_AFTER_MS",
                   "SENTINEL_FAILOVER_TIMEOUT_MS")  # fmt: skip


def _user_password(args: list[str], user: str) -> str | None:
    """The `>password` token of `--user USER ...` in redis-server arguments."""
    for i, arg in enumerate(args[:-1]):
        if arg == "--user" and args[i + 1] == user:
            return next((a[1:] for a in args[i + 2 :] if a.startswith(">")), None)
    return None


def _ha_node(o: Observations, source: str, args: list[str], flags: dict[str, str],
             own_name: str, env: Mapping[str, str], nodes: Iterable[str],
             script: str) -> None:  # fmt: skip
    """One data node, on either side: its flags, users, names and start script
    (`script`: the digest of what it runs), as the node sees them."""
    o.add("redis_ha.node_flags", f"{source} redis-server flags",
          {k: flags.get(k) for k in HA_NODE_FLAGS})  # fmt: skip
    o.add("redis_ha.acl", f"{source} --user rules", redis_acl(args))
    # Replication needs PSYNC, beyond the app's user: the nodes replicate as `ops`.
    user = flags.get("masteruser")
    o.add("redis_ha.node_replicates_as", f"{source} --masteruser, and --masterauth is its password",
          (user, user is not None and flags.get("masterauth") == _user_password(args, user)))  # fmt: skip
    o.add("redis_ha.node_announces_own_name", f"{source} --replica-announce-ip",
          flags.get("replica-announce-ip") == own_name)  # fmt: skip
    o.add("redis_ha.start_script", f"{source} runs", script)
    o.add("redis_ha.first_primary_is_a_node", f"{source} REDIS_HA_PRIMARY",
          env["REDIS_HA_PRIMARY"] in nodes)  # fmt: skip
    o.add("redis_ha.master_name", f"{source} REDIS_HA_MASTER_NAME", env["REDIS_HA_MASTER_NAME"])


def _ha_sentinel(o: Observations, source: str, env: Mapping[str, str], own_name: str,
                 sentinels: set[str], nodes: Iterable[str], script: str) -> None:  # fmt: skip
    """One Sentinel, on either side (`sentinels`: every Sentinel as host:port)."""
    o.add("redis_ha.sentinel", f"{source} environment", {k: env.get(k) for k in HA_SENTINEL_ENV})
    o.add("redis_ha.sentinel_auth", f"{source} SENTINEL_AUTH_USER, REDIS_ADMIN_PASSWORD set",
          (env.get("SENTINEL_AUTH_USER"), bool(env.get("REDIS_ADMIN_PASSWORD"))))  # fmt: skip
    o.add("redis_ha.master_name", f"{source} SENTINEL_MASTER_NAME", env["SENTINEL_MASTER_NAME"])
    o.add("redis_ha.sentinel_announces_own_name", f"{source} SENTINEL_HOST",
          env["SENTINEL_HOST"] == own_name)  # fmt: skip
    o.add("redis_ha.sentinel_peers_are_the_sentinels", f"{source} SENTINEL_PEERS",
          set(env["SENTINEL_PEERS"].split(",")) == sentinels)  # fmt: skip
    o.add("redis_ha.first_primary_is_a_node", f"{source} SENTINEL_PRIMARY",
          env["SENTINEL_PRIMARY"] in nodes)  # fmt: skip
    o.add("redis_ha.sentinel_script", f"{source} runs", script)


def _ha_api(o: Observations, node_sentinel_list: str | None, api_env: Mapping[str, Any],
            sentinels: set[str]) -> None:  # fmt: skip
    """What the data nodes and wallet-api are told about the Sentinels."""
    o.add("redis_ha.nodes_ask_every_sentinel", "REDIS_HA_SENTINELS",
          set((node_sentinel_list or "").split(",")) == sentinels)  # fmt: skip
    o.add("redis_ha.master_name", "wallet-api REDIS_MASTER_NAME", api_env.get("REDIS_MASTER_NAME"))
    o.add("redis_ha.api_min_replicas_ack", "wallet-api REDIS_MIN_REPLICAS_ACK",
          api_env.get("REDIS_MIN_REPLICAS_ACK"))  # fmt: skip
    o.add("redis_ha.api_asks_every_sentinel", "wallet-api REDIS_SENTINELS",
          set((api_env.get("REDIS_SENTINELS") or "").split(",")) == sentinels)  # fmt: skip


def observe_compose_ha(cfg: dict) -> Observations:
    o = Observations("compose")
    services = cfg["services"]
    nodes = {n: v for n, v in services.items() if "REDIS_HA_HOST" in (v.get("environment") or {})}
    sentinels = {n: v for n, v in services.items() if any(str(c).endswith("/sentinel.sh") for c in v.get("command") or [])}  # fmt: skip
    o.add("redis_ha.topology", "services (data nodes, Sentinels)", (len(nodes), len(sentinels)))
    sentinel_list = None
    for name, svc in sorted(nodes.items()):
        env = svc["environment"]
        command = [c.replace("$$", "$") for c in svc["command"]]
        if command[:2] == ["sh", "-c"]:
            command = shlex.split(command[2])
        script, args = redis_start(command)
        flags = {
            k: v.replace("$REDIS_HA_HOST", env["REDIS_HA_HOST"])
            for k, v in redis_flags(args).items()
        }
        digest = script_digest(_mounted(svc, script).read_bytes())
        _ha_node(o, name, args, flags, name, env, nodes, digest)
        sentinel_list = env["REDIS_HA_SENTINELS"]
    names = {f"{n}:26379" for n in sentinels}
    for name, svc in sorted(sentinels.items()):
        script = next(c for c in svc["command"] if str(c).endswith("/sentinel.sh"))
        digest = script_digest(_mounted(svc, script).read_bytes())
        _ha_sentinel(o, name, svc["environment"], name, names, nodes, digest)
    _ha_api(o, sentinel_list, services[API_SERVICE]["environment"], names)
    return o


def observe_chart_ha(chart: Chart) -> Observations:
    o = Observations("chart")
    m = chart.render(HA_VALUES)
    sts = _by_component(m, "StatefulSet", "redis")
    sen = _by_component(m, "StatefulSet", "sentinel")
    o.add("redis_ha.topology", "StatefulSet replicas (data nodes, Sentinels)",
          (sts["spec"]["replicas"], sen["spec"]["replicas"]))  # fmt: skip
    rc, sc = ks.container_of(sts, "redis"), ks.container_of(sen, "sentinel")

    def pod_hosts(workload: dict) -> list[str]:
        svc = ks.find(m, "Service", workload["spec"]["serviceName"])
        if svc not in ks.services_selecting(m, workload) or not svc["spec"].get(
            "publishNotReadyAddresses"
        ):
            raise ParityError(f"{svc['metadata']['name']}: not the headless Service of its pods")
        name = workload["metadata"]["name"]
        return [
            f"{name}-{i}.{svc['metadata']['name']}.{NAMESPACE}.svc"
            for i in range(workload["spec"]["replicas"])
        ]

    node_hosts, sentinel_hosts = pod_hosts(sts), pod_hosts(sen)
    port = next(p["containerPort"] for p in sc["ports"] if p["name"] == "sentinel")
    names = {f"{h}:{port}" for h in sentinel_hosts}
    sentinel_list = None
    for i, host in enumerate(node_hosts):
        env = dict(
            ks.resolve_env(rc, m, pod_name=f"{sts['metadata']['name']}-{i}", namespace=NAMESPACE)
        )
        args = [ks.expand(a, env) for a in rc.get("command", [])[1:] + rc.get("args", [])]
        script, rargs = redis_start(args)
        digest = script_digest(_configmap_file(m, sts, rc, script))
        _ha_node(o, f"pod {i}", rargs, redis_flags(rargs), host, env, node_hosts, digest)
        sentinel_list = env["REDIS_HA_SENTINELS"]
    script = next(c for c in sc["command"] if c.endswith("/sentinel.sh"))
    digest = script_digest(_configmap_file(m, sen, sc, script))
    for i, host in enumerate(sentinel_hosts):
        env = dict(
            ks.resolve_env(sc, m, pod_name=f"{sen['metadata']['name']}-{i}", namespace=NAMESPACE)
        )
        _ha_sentinel(o, f"sentinel pod {i}", env, host, names, node_hosts, digest)
    dep = _by_component(m, "Deployment", API_SERVICE)
    api_env = dict(
        ks.resolve_env(ks.container_of(dep, API_SERVICE), m, pod_name="p", namespace=NAMESPACE)
    )
    _ha_api(o, sentinel_list, api_env, names)
    return o


# ================================================================ images (air-gapped mode)


def observe_compose_images(cfg: dict) -> Observations:
    o = Observations("compose")
    for svc in (API_SERVICE, "redis", "whoami"):
        o.add(f"image.{svc}", f"{svc} image", cfg["services"][svc]["image"])
    return o


def observe_chart_images(manifests: list[dict]) -> Observations:
    o = Observations("chart")
    for svc in (API_SERVICE, "redis", "whoami"):
        workload = next(d for d in manifests if d["kind"] in ("Deployment", "StatefulSet")
                        and d["metadata"]["labels"].get("app.kubernetes.io/component") == svc)  # fmt: skip
        o.add(
            f"image.{svc}",
            f"{workload['kind']} image",
            ks.container_of(workload, svc)["image"],
        )
    return o


# ================================================================ CLI


def main() -> int:
    sys.path.insert(0, str(ROOT / "tests" / "helm"))
    from conftest import _find_helm

    require_docker_compose()
    with tempfile.TemporaryDirectory() as tmp:
        cfg = compose_config(fresh_env_file(Path(tmp)))
    diffs = differences(observe_compose(cfg), observe_chart(Chart(_find_helm())))
    for d in diffs:
        print(d)
    print(f"{len(diffs)} difference(s)" if diffs else "compose and chart agree")
    return 1 if diffs else 0


if __name__ == "__main__":
    sys.exit(main())
