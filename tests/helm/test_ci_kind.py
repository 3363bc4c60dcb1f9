"""The kind job of .github/workflows/ci.yml against what the chart really renders."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

CI = Path(__file__).resolve().parents[2] / ".github" / "workflows" / "ci.yml"


def _kind_job_script() -> str:
    job = yaml.safe_load(CI.read_text())["jobs"]["kind"]
    return "\n".join(str(s.get("run", "")) for s in job["steps"])


def test_readiness_check_waits_for_the_crds_the_default_chart_renders(default):
    """The kind job waits for Traefik's CRDs before `helm install wallet-stack`: it must name
    exactly the traefik.io kinds of a default rendering (the wallet routes' retries are
    Middlewares)."""
    rendered = {
        f"{d['kind'].lower()}s.{d['apiVersion'].split('/')[0]}"
        for d in default
        if d["apiVersion"].startswith("traefik.io/")
    }
    assert rendered == {
        "ingressroutes.traefik.io",
        "middlewares.traefik.io",
        "serverstransports.traefik.io",
        "tlsoptions.traefik.io",
    }
    script = _kind_job_script()
    waited = set(re.findall(r"crd/([a-z0-9.-]+)", script))
    assert "condition=established" in script
    assert waited == rendered
