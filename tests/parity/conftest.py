"""Fixtures of the compose <-> Helm parity suite.

helm and PyYAML are found exactly like tests/helm does (its conftest is reused:
$HELM, .tools/bin/helm, else scripts/helm-validate.sh --install-only).
`docker compose` (v2) is required; the suite fails with a hint when it is missing.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(HERE))


def _load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


# Importing it makes PyYAML importable (from .tools/venv if needed) before parity_check uses it.
helm_conftest = _load("wallet_stack_helm_conftest", ROOT / "tests" / "helm" / "conftest.py")

import parity_check as pc  # noqa: E402 (needs PyYAML importable, see above)


def pytest_configure(config):
    config.addinivalue_line("markers", "docker: needs a Docker engine (starts containers)")


@pytest.fixture(scope="session")
def helm_binary() -> str:
    return helm_conftest._find_helm()


@pytest.fixture(scope="session")
def helm(helm_binary):
    """tests/helm's Helm wrapper (for the reused chart tests)."""
    return helm_conftest.Helm(helm_binary)


@pytest.fixture(scope="session")
def default(helm):
    return helm.render()


@pytest.fixture(scope="session")
def compose_env_file(tmp_path_factory) -> Path:
    """The .env of a fresh `make secrets` (defaults + dummy random secrets), never the real one."""
    try:
        pc.require_docker_compose()
        return pc.fresh_env_file(tmp_path_factory.mktemp("compose-env"))
    except pc.ParityError as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture(scope="session")
def compose_cfg(compose_env_file) -> dict:
    return pc.compose_config(compose_env_file)


@pytest.fixture(scope="session")
def compose_obs(compose_cfg) -> pc.Observations:
    return pc.observe_compose(compose_cfg)


@pytest.fixture(scope="session")
def chart(helm_binary) -> pc.Chart:
    return pc.Chart(helm_binary)


@pytest.fixture(scope="session")
def chart_obs(chart) -> pc.Observations:
    return pc.observe_chart(chart)
