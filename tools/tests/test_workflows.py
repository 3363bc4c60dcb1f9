"""The GitHub workflows, checked here because they never run here (desk-check risks, issue 14)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from stackctl import REPO_ROOT

WORKFLOWS = REPO_ROOT / ".github" / "workflows"
USES = re.compile(r"^\s*(?:-\s+)?uses:\s*(?P<action>[^@\s]+)@(?P<ref>\S+)(?P<comment>.*)$")


def _load(name: str) -> dict[str, Any]:
    data = yaml.safe_load((WORKFLOWS / name).read_text())
    assert isinstance(data, dict)
    return data


def _on(workflow: dict[str, Any]) -> Any:
    return workflow.get("on", workflow.get(True))  # PyYAML reads a bare `on` as True


def _steps(job: dict[str, Any]) -> list[dict[str, Any]]:
    steps = job.get("steps", [])
    assert isinstance(steps, list)
    return steps


def _uses(step: dict[str, Any], action: str) -> bool:
    return str(step.get("uses", "")).startswith(f"{action}@")


def test_every_action_is_pinned_by_sha_and_the_same_everywhere() -> None:
    seen: dict[str, tuple[str, str, str]] = {}
    count = 0
    for path in sorted(WORKFLOWS.glob("*.yml")):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            m = USES.match(line)
            if not m or m["action"].startswith("./"):
                continue
            count += 1
            where = f"{path.name}:{number}"
            assert re.fullmatch(r"[0-9a-f]{40}", m["ref"]), f"{where}: not a full SHA"
            release = re.match(r"\s*#\s*(v\d+\.\d+\.\d+)", m["comment"])
            assert release, f"{where}: no `# vX.Y.Z` comment naming the release"
            first = seen.setdefault(m["action"], (m["ref"], release[1], where))
            assert (m["ref"], release[1]) == first[:2], f"{where} differs from {first[2]}"
    assert count > 20 and {"docker/build-push-action", "sigstore/cosign-installer"} <= set(seen)


@pytest.mark.parametrize("name", ["ci.yml", "release.yml"])
def test_github_forces_upstream_images(name: str) -> None:
    """A slow or 429 registry must be an error on GitHub, not the air-gapped build."""
    assert _load(name)["env"]["REGISTRY_MODE"] == "upstream"


def test_images_loaded_into_kind_carry_no_attestations() -> None:
    kind = _load("ci.yml")["jobs"]["kind"]
    steps = _steps(kind)
    load_at = next(i for i, s in enumerate(steps) if "kind load" in str(s.get("run", "")))
    builds = [s for s in steps[:load_at] if _uses(s, "docker/build-push-action")]
    assert builds, "the kind job builds no image before `kind load`"
    for step in builds:
        assert step["with"].get("load") is True
        assert step["with"].get("provenance") is False, step.get("name")
        assert step["with"].get("sbom") is False, step.get("name")


def test_traefik_chart_pin_and_its_values() -> None:
    kind = _load("ci.yml")["jobs"]["kind"]
    version = kind["env"]["TRAEFIK_CHART_VERSION"]
    assert re.fullmatch(r"\d+\.\d+\.\d+", version)
    text = (WORKFLOWS / "ci.yml").read_text()
    # where the pinned version was seen is written next to it
    assert f"traefik-helm-chart/releases/tag/v{version}" in text
    install = next(s["run"] for s in _steps(kind) if "helm install traefik" in str(s.get("run")))
    # chart >= 40: the Service type moved under service.spec (kind has no load balancer)
    assert "service.spec.type=ClusterIP" in install
    assert "--set service.type=" not in install


def _permissions(job: dict[str, Any]) -> dict[str, str]:
    perms = job.get("permissions")
    assert isinstance(perms, dict), "every job states its permissions"
    return {str(k): str(v) for k, v in perms.items()}


def test_release_least_privilege() -> None:
    wf = _load("release.yml")
    assert wf["permissions"] == {"contents": "read"}
    jobs = wf["jobs"]
    for name, job in jobs.items():
        perms = _permissions(job)
        runs = " ".join(str(s.get("run", "")) for s in _steps(job))
        pushes = "helm push" in runs or any(_uses(s, "docker/login-action") for s in _steps(job))
        signs = "cosign sign" in runs
        assert (perms.get("packages") == "write") == pushes, name
        assert (perms.get("id-token") == "write") == signs, name
        assert (perms.get("contents") == "write") == ("gh release create" in runs), name
        assert set(perms.values()) <= {"read", "write"} and "attestations" not in perms, name
    assert {n for n, j in jobs.items() if _permissions(j).get("packages") == "write"} == {
        "image",
        "chart",
    }


def test_release_trigger_image_and_chart() -> None:
    wf = _load("release.yml")
    assert _on(wf) == {"push": {"tags": ["v[0-9]+.[0-9]+.[0-9]+"]}}
    build = next(s for s in _steps(wf["jobs"]["image"]) if _uses(s, "docker/build-push-action"))
    w = build["with"]
    assert set(w["platforms"].split(",")) == {"linux/amd64", "linux/arm64"}
    assert w["push"] is True and w["sbom"] is True and w["provenance"] == "mode=max"
    chart_runs = [str(s.get("run", "")) for s in _steps(wf["jobs"]["chart"])]
    check = next(i for i, r in enumerate(chart_runs) if "stackctl.release check-chart" in r)
    push = next(i for i, r in enumerate(chart_runs) if "helm push" in r)
    assert check < push, "the package is checked against the tag before it is pushed"
    assert any('--version "$VERSION" --app-version "$VERSION"' in r for r in chart_runs)
    text = (WORKFLOWS / "release.yml").read_text()
    assert "vars.OCI_REGISTRY" in text and "OCI_REGISTRY is not set" in text


def test_release_notes_come_from_the_commits() -> None:
    job = _load("release.yml")["jobs"]["github-release"]
    runs = " ".join(str(s.get("run", "")) for s in _steps(job))
    assert "stackctl.release notes" in runs and "--notes-file" in runs
    checkout = next(s for s in _steps(job) if _uses(s, "actions/checkout"))
    assert checkout["with"]["fetch-depth"] == 0


def test_workflow_files_are_the_two_we_check() -> None:
    assert sorted(p.name for p in WORKFLOWS.glob("*.y*ml")) == ["ci.yml", "release.yml"]


def test_readme_names_no_workflow_that_does_not_exist() -> None:
    readme = (REPO_ROOT / "README.md").read_text()
    for name in re.findall(r"\.github/workflows/([\w.-]+\.ya?ml)", readme):
        assert (WORKFLOWS / name).exists(), name
    assert Path(WORKFLOWS / "release.yml").exists()
