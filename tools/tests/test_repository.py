"""Rules for the whole repository, checked on every tracked file."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import yaml

from stackctl import REPO_ROOT

# Package and image registries: mirrors and indexes come from the machine's own
# configuration (apt sources, pip config, npm config), never from the repository.
_REGISTRY_HOSTS = [
    r"deb\.debian\.org",
    r"security\.debian\.org",
    r"ftp\.[a-z]{2}\.debian\.org",
    r"archive\.ubuntu\.com",
    r"pypi\.org",
    r"pypi\.python\.org",
    r"files\.pythonhosted\.org",
    r"registry\.npmjs\.org",
    r"registry\.yarnpkg\.com",
    r"registry-1\.docker\.io",
    r"index\.docker\.io",
    r"docker\.io/",  # an image reference; "docker.io" alone is Debian's engine package
    r"download\.docker\.com",
    r"quay\.io",
    r"gcr\.io",
    r"registry\.k8s\.io",
    r"mcr\.microsoft\.com",
    r"public\.ecr\.aws",
    r"ghcr\.io",  # GitHub's container registry: release.yml takes it from vars.OCI_REGISTRY
]
REGISTRY = re.compile(r"(?<![\w.-])(" + "|".join(_REGISTRY_HOSTS) + ")", re.IGNORECASE)


def tracked_files() -> list[Path]:
    out = subprocess.run(
        ["git", "ls-files", "-z"], cwd=REPO_ROOT, capture_output=True, check=True
    ).stdout
    return [REPO_ROOT / name for name in out.decode().split("\0") if name]


def test_no_package_registry_host_is_written_into_the_repository() -> None:
    this = Path(__file__).resolve()
    files = [p for p in tracked_files() if p.resolve() != this and p.is_file()]
    assert len(files) > 50, "git ls-files found too few files: the check would prove nothing"
    hits = []
    for path in files:
        try:
            text = path.read_text()
        except UnicodeDecodeError:
            continue
        for number, line in enumerate(text.splitlines(), 1):
            if m := REGISTRY.search(line):
                hits.append(f"{path.relative_to(REPO_ROOT)}:{number}: {m.group(0)}")
    assert not hits, "\n".join(hits)


def test_the_pattern_catches_what_it_is_for() -> None:
    assert REGISTRY.search("ARG MIRROR=http://deb.debian.org/debian")
    assert REGISTRY.search("index-url = https://pypi.org/simple")
    assert REGISTRY.search("image: docker.io/library/redis:7")
    assert REGISTRY.search("helm push chart.tgz oci://ghcr.io/acme/charts")
    assert not REGISTRY.search("apt-get install docker.io")
    assert not REGISTRY.search("see mypypi.org.example")


def _readme_make_targets() -> set[str]:
    """`make X` as the README shows it: in code spans and code blocks (not prose)."""
    text = (REPO_ROOT / "README.md").read_text()
    code = re.findall(r"```.*?```", text, re.DOTALL) + re.findall(r"`[^`\n]+`", text)
    return {t for chunk in code for t in re.findall(r"(?<![\w-])make ([a-z0-9_-]+)", chunk)}


def _make_help_targets() -> set[str]:
    out = subprocess.run(
        ["make", "--no-print-directory", "help"],
        cwd=REPO_ROOT, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    return {line.split()[0] for line in out.splitlines() if line.strip()}


def test_readme_and_make_help_list_the_same_targets() -> None:
    readme, helped = _readme_make_targets(), _make_help_targets()
    assert {"up", "test", "up_traefik", "fresh-check"} <= helped
    assert readme - helped == set(), "README names targets `make help` does not list"
    assert helped - readme == set(), "`make help` lists targets the README never shows"


_COMPOSE_VARIABLE = re.compile(r"\$\{([A-Z][A-Z0-9_]*)(?::-([^}]*))?[^}]*\}")
_EXAMPLE_LINE = re.compile(r"^#?\s*([A-Z][A-Z0-9_]*)=(\S*)", re.MULTILINE)
# Not settings: compose sets the first itself; scripts/airgap.sh writes the second.
_NOT_SETTINGS = {"COMPOSE_PROJECT_NAME", "PROMETHEUS_UI_MIDDLEWARE"}


def test_env_example_shows_every_compose_variable_with_its_default() -> None:
    """README says .env.example documents the settings compose reads: each one is
    there, and a `${NAME:-default}` shows the same default."""
    used: dict[str, str | None] = {}
    for path in sorted(REPO_ROOT.glob("docker-compose*.yml")):
        for name, default in _COMPOSE_VARIABLE.findall(path.read_text()):
            if name not in _NOT_SETTINGS:
                used[name] = default or used.get(name)
    shown = dict(_EXAMPLE_LINE.findall((REPO_ROOT / ".env.example").read_text()))
    assert sorted(set(used) - set(shown)) == []
    assert {n: d for n, d in used.items() if d and shown[n] != d} == {}


def test_no_ha_node_waits_for_redis_to_be_healthy() -> None:
    """After a failover `redis` may be a replica of another node, healthy only once its
    link to that node is up: a node or Sentinel waiting for `redis` to be healthy would
    never start, and `make down && make up-ha` would hang until compose gives up."""
    services = yaml.safe_load((REPO_ROOT / "docker-compose.ha.yml").read_text())["services"]
    ha_nodes = {
        name: svc
        for name, svc in services.items()
        if name.startswith(("redis-replica", "sentinel"))
    }
    assert len(ha_nodes) == 5
    waits = {name: svc["depends_on"]["redis"]["condition"] for name, svc in ha_nodes.items()}
    assert set(waits.values()) == {"service_started"}, waits
