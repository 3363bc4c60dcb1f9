"""The chart deploys the version the wallet-api package declares: its
appVersion (and so the default image tag) is pyproject.toml's [project] version,
the one source wallet_api.__version__ reads through the package metadata."""

from __future__ import annotations

import tomllib
from importlib.metadata import version
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
PACKAGE_VERSION = tomllib.loads((ROOT / "services" / "wallet-api" / "pyproject.toml").read_text())[
    "project"
]["version"]


def test_chart_app_version_is_the_package_version():
    chart = yaml.safe_load((ROOT / "helm" / "wallet-stack" / "Chart.yaml").read_text())
    assert chart["appVersion"] == PACKAGE_VERSION


def test_the_installed_package_reports_the_same_version():
    assert version("wallet-api") == PACKAGE_VERSION
