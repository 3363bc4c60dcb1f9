"""Release rehearsal (make release-check): image and chart through an OCI registry by
digest, the image's SBOM against requirements.lock, and the arm64 build where it fits."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from stackctl import release

ROOT = Path(__file__).resolve().parents[2]
SERVICE = ROOT / "services" / "wallet-api"
CHART_VERSION = str(yaml.safe_load((release.CHART_DIR / "Chart.yaml").read_text())["version"])
TAG = f"v{CHART_VERSION}"  # the tag a release of the current chart would carry
DIGEST = re.compile(r"sha256:[a-f0-9]{64}")

pytestmark = pytest.mark.release


def _run(*argv: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    if proc.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} failed ({proc.returncode}):\n{proc.stderr}")
    return proc


@pytest.fixture(scope="module")
def pushed_image(registry, wallet_image) -> Iterator[tuple[str, str]]:
    """The stack's image pushed as <registry>/wallet-stack/wallet-api:<version>."""
    repo = f"{registry.address}/wallet-stack/wallet-api"
    _run("docker", "tag", wallet_image, f"{repo}:{CHART_VERSION}")
    out = _run("docker", "push", f"{repo}:{CHART_VERSION}").stdout
    m = re.search(r"digest: (sha256:[a-f0-9]{64})", out)
    assert m, out
    yield repo, m[1]
    # only the extra names go: the image itself stays under WALLET_API_IMAGE
    for ref in (f"{repo}:{CHART_VERSION}", f"{repo}@{m[1]}"):
        subprocess.run(["docker", "rmi", ref], capture_output=True, check=False)


def test_image_pulls_back_by_digest(pushed_image, wallet_image) -> None:
    repo, digest = pushed_image
    want = _run("docker", "image", "inspect", "-f", "{{.Id}}", wallet_image).stdout.strip()
    _run("docker", "rmi", f"{repo}:{CHART_VERSION}")
    _run("docker", "pull", f"{repo}@{digest}")
    got = _run("docker", "image", "inspect", "-f", "{{.Id}}", f"{repo}@{digest}").stdout.strip()
    assert got == want
    print(f"\nrelease-check: image pushed and pulled back by digest: {repo}@{digest}")


def _release_cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT / "tools" / "src"))
    return subprocess.run(
        [sys.executable, "-m", "stackctl.release", *args],
        capture_output=True, text=True, env=env, check=False, timeout=120,
    )  # fmt: skip


def test_chart_through_the_registry_by_digest(registry, helm, pushed_image, tmp_path) -> None:
    repo, image_digest = pushed_image
    # the workflow's chart job, step by step (release.yml)
    staged = release.prepare_chart(TAG, tmp_path / "stage", repo, image_digest)
    _run(helm, "lint", "--strict", str(staged))
    dist = tmp_path / "dist"
    _run(helm, "package", str(staged), "--version", CHART_VERSION,
         "--app-version", CHART_VERSION, "--destination", str(dist))  # fmt: skip
    package = dist / f"wallet-stack-{CHART_VERSION}.tgz"
    check = _release_cli("check-chart", "--tag", TAG, "--image-repository", repo,
                         "--image-digest", image_digest, str(package))  # fmt: skip
    assert check.returncode == 0, check.stderr

    # a package whose appVersion is not the tag's is refused, in one line
    bad = tmp_path / "bad"
    _run(helm, "package", str(staged), "--version", CHART_VERSION, "--app-version", "9.9.9",
         "--destination", str(bad))  # fmt: skip
    refused = _release_cli("check-chart", "--tag", TAG, str(bad / package.name))
    assert refused.returncode == 1
    assert refused.stderr.count("\n") == 1 and "appVersion '9.9.9'" in refused.stderr

    pushed = _run(helm, "push", str(package), f"oci://{registry.address}/charts", "--plain-http")
    m = re.search(r"^Digest: (sha256:[a-f0-9]{64})$", pushed.stdout + pushed.stderr, re.M)
    assert m, pushed.stdout + pushed.stderr
    ref = f"oci://{registry.address}/charts/wallet-stack@{m[1]}"

    pulled = tmp_path / "pulled"
    pulled.mkdir()
    _run(helm, "pull", ref, "--plain-http", "--destination", str(pulled))
    (got,) = pulled.iterdir()
    assert got.read_bytes() == package.read_bytes(), "the chart pulled by digest differs"

    rendered = _run(helm, "template", "wallet", ref, "--plain-http", "--namespace", "wallet")
    docs = [d for d in yaml.safe_load_all(rendered.stdout) if d]
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    labels = deployment["metadata"]["labels"]
    assert labels["helm.sh/chart"] == f"wallet-stack-{CHART_VERSION}"
    assert labels["app.kubernetes.io/version"] == CHART_VERSION
    image = deployment["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image == f"{repo}@{image_digest}", image

    wrong = ref.rsplit("@", 1)[0] + "@sha256:" + "0" * 64
    missing = subprocess.run([helm, "template", "w", wrong, "--plain-http"],
                             capture_output=True, text=True, check=False)  # fmt: skip
    assert missing.returncode != 0, "a digest that was never pushed rendered"
    print(
        f"\nrelease-check: chart {package.name} (version/appVersion {CHART_VERSION}) pushed to "
        f"{registry.kind}, pulled back and rendered by digest {m[1]}"
    )


# ------------------------------------------------------------------------------ SBOM


def _lock_pins(lock: Path, python_version: str) -> dict[str, str]:
    """name -> version of every requirements.lock pin that installs on the image's Linux."""
    env = dict(default_environment())
    env.update(python_version=python_version, python_full_version=f"{python_version}.0",
               sys_platform="linux", platform_system="Linux", os_name="posix")  # fmt: skip
    pins = {}
    for line in lock.read_text().splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        req = Requirement(line)
        if req.marker is not None and not req.marker.evaluate(env):
            continue
        (spec,) = req.specifier
        assert spec.operator == "==", line
        pins[canonicalize_name(req.name)] = spec.version
    return pins


def test_sbom_lists_exactly_the_locked_versions(wallet_image, tmp_path) -> None:
    """CycloneDX SBOM (cyclonedx-bom) of the image's Python environment, /opt/venv."""
    cid = _run("docker", "create", wallet_image).stdout.strip()
    try:
        _run("docker", "cp", f"{cid}:/opt/venv", str(tmp_path / "venv"))
    finally:
        subprocess.run(["docker", "rm", cid], capture_output=True, check=False)
    (site,) = (tmp_path / "venv" / "lib").glob("python3.*/site-packages")
    python_version = site.parent.name.removeprefix("python")
    # cyclonedx-py asks the environment's interpreter for its sys.path, and only that.
    # The image's interpreter cannot run here: this stand-in answers with the copied path.
    interpreter = tmp_path / "image-python"
    interpreter.write_text(f"#!/bin/sh\nprintf '%s' '{json.dumps([str(site)])}'\n")
    interpreter.chmod(0o755)
    sbom = tmp_path / "sbom.cdx.json"
    cyclonedx = Path(sys.executable).parent / "cyclonedx-py"
    _run(str(cyclonedx), "environment", "--of", "JSON", "--output-reproducible",
         "--output-file", str(sbom), str(interpreter))  # fmt: skip
    bom = json.loads(sbom.read_text())
    assert bom["bomFormat"] == "CycloneDX"
    listed: dict[str, str] = {}
    for c in bom.get("components", []):
        name = canonicalize_name(c["name"])
        if name != "wallet-api":  # installed from the build context, not from PyPI: no purl
            purl_name = c["name"].lower().replace("_", "-")
            assert c.get("purl") == f"pkg:pypi/{purl_name}@{c['version']}", c
        listed[name] = c["version"]
    app_version = re.search(r'^version = "([^"]+)"', (SERVICE / "pyproject.toml").read_text(), re.M)
    assert app_version
    app = listed.pop("wallet-api", None)
    assert app == app_version[1], "the app itself is in the venv, at its pyproject version"
    pins = _lock_pins(SERVICE / "requirements.lock", python_version)
    assert len(pins) > 10
    extra = {n: v for n, v in listed.items() if pins.get(n) != v}
    missing = {n: v for n, v in pins.items() if listed.get(n) != v}
    assert not extra and not missing, f"not in the lock: {extra}; lock pins missing: {missing}"
    print(
        f"\nrelease-check: SBOM (CycloneDX {bom['specVersion']}) of {wallet_image} /opt/venv: "
        f"{len(listed)} packages = the {len(pins)} pins of requirements.lock "
        f"(Python {python_version}), plus wallet-api {app} itself"
    )


# ----------------------------------------------------------------------------- arm64


def test_arm64_image_builds_under_emulation(tmp_path) -> None:
    """linux/arm64 through qemu (binfmt) and buildx, as release.yml builds it."""
    if os.environ.get("RELEASE_CHECK_ARM64") != "1":
        pytest.skip(
            "arm64 build not run here (RELEASE_CHECK_ARM64=1 runs it; ci.yml's release-check "
            "job does): it needs buildx and an arm64 base image; this engine has neither "
            "(air-gapped: the arm64 base would be an emulated debootstrap + apt + pip, "
            "beyond the 15-minute budget of make test)"
        )
    tag = "wallet-stack/wallet-api:arm64-check"
    started = time.monotonic()
    _run("docker", "buildx", "build", "--platform", "linux/arm64", "--target", "runtime",
         "--provenance=false", "--load", "-t", tag, str(SERVICE), timeout=1800)  # fmt: skip
    out = _run("docker", "run", "--rm", "--platform", "linux/arm64", "--entrypoint", "python",
               tag, "-c", "import platform, wallet_api; print(platform.machine())").stdout  # fmt: skip
    assert out.strip() == "aarch64", out
    print(f"\nrelease-check: linux/arm64 image built and run in {time.monotonic() - started:.0f}s")
