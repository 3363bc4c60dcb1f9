"""Release helpers: tag -> version, the staged and packaged chart, notes from commits."""

from __future__ import annotations

import re
import subprocess
import tarfile
from pathlib import Path

import pytest
import yaml

from stackctl import chartdocs, release
from stackctl.release import ReleaseError, check_chart, notes, prepare_chart, version_from_tag

DIGEST = "sha256:" + "ab" * 32
REPO = "registry.example/acme/wallet-api"


@pytest.mark.parametrize(("tag", "version"), [("v1.2.3", "1.2.3"), ("refs/tags/v0.10.0", "0.10.0")])
def test_version_from_tag(tag: str, version: str) -> None:
    assert version_from_tag(tag) == version


@pytest.mark.parametrize("tag", ["1.2.3", "v1.2", "v1.2.3-rc1", "v01.2.3", "latest", "v1.2.3 "])
def test_other_tags_are_refused(tag: str) -> None:
    with pytest.raises(ReleaseError, match=re.escape("vMAJOR.MINOR.PATCH")):
        version_from_tag(tag)


def _package(chart: Path, name: str | None = None) -> Path:
    """What `helm package` produces: <name>-<version>.tgz holding <name>/..."""
    meta = yaml.safe_load((chart / "Chart.yaml").read_text())
    out = chart.parent / (name or f"{meta['name']}-{meta['version']}.tgz")
    with tarfile.open(out, "w:gz") as tar:
        tar.add(chart, arcname="wallet-stack")
    return out


def test_prepared_chart_carries_the_tag_and_the_published_image(tmp_path: Path) -> None:
    chart = prepare_chart("v2.3.4", tmp_path, REPO, DIGEST)
    meta = yaml.safe_load((chart / "Chart.yaml").read_text())
    assert (meta["version"], meta["appVersion"]) == ("2.3.4", "2.3.4")
    values = yaml.safe_load((chart / "values.yaml").read_text())
    assert values["image"] == {
        "repository": REPO, "tag": "", "digest": DIGEST, "pullPolicy": "IfNotPresent",
    }  # fmt: skip
    # only image.* changed, and the docs of the staged copy follow it
    assert values["redis"]["image"]["digest"] == ""
    assert chartdocs.run(chart, check=True) == []
    assert f"`{DIGEST}`" in (chart / "README.md").read_text()
    pkg = _package(chart)
    assert check_chart("v2.3.4", pkg, REPO, DIGEST) == "2.3.4"


def test_check_chart_refuses_a_mismatch(tmp_path: Path) -> None:
    chart = prepare_chart("v2.3.4", tmp_path, REPO, DIGEST)
    pkg = _package(chart)
    with pytest.raises(ReleaseError, match=re.escape("version '2.3.4' != '2.3.5'")):
        check_chart("v2.3.5", pkg)
    with pytest.raises(ReleaseError, match=re.escape("image.digest")):
        check_chart("v2.3.4", pkg, REPO, "sha256:" + "cd" * 32)
    meta = chart / "Chart.yaml"
    meta.write_text(meta.read_text().replace('appVersion: "2.3.4"', 'appVersion: "2.3.3"'))
    pkg = _package(chart)
    with pytest.raises(ReleaseError, match=re.escape("appVersion '2.3.3' != '2.3.4'")):
        check_chart("v2.3.4", pkg)


def test_prepare_refuses_a_bad_digest(tmp_path: Path) -> None:
    with pytest.raises(ReleaseError, match=re.escape("digest")):
        prepare_chart("v1.0.0", tmp_path, REPO, "sha256:short")


def _git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True)


def test_notes_list_the_commits_since_the_previous_release(tmp_path: Path) -> None:
    _git(tmp_path, "init", "-q", "-b", "main")
    _git(tmp_path, "config", "user.email", "t@example.invalid")
    _git(tmp_path, "config", "user.name", "t")
    for n, subject in enumerate(["first", "second", "third", "fourth"]):
        (tmp_path / "f").write_text(str(n))
        _git(tmp_path, "add", "f")
        _git(tmp_path, "commit", "-q", "-m", subject)
        if subject == "second":
            _git(tmp_path, "tag", "v0.9.0")
            _git(tmp_path, "tag", "not-a-release")
    _git(tmp_path, "tag", "v1.0.0")
    text = notes("v1.0.0", tmp_path)
    assert "Changes since v0.9.0:" in text
    lines = [line for line in text.splitlines() if line.startswith("- ")]
    assert [line.split(" (")[0] for line in lines] == ["- fourth", "- third"]
    first = notes("v0.9.0", tmp_path)
    assert "(first release)" in first and "- first" in first and "- third" not in first
    with pytest.raises(ReleaseError, match=re.escape("no such tag")):
        notes("v9.9.9", tmp_path)


def test_cli_errors_are_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert release.main(["version", "--tag", "v1.2"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("release: error:")
    assert release.main(["version", "--tag", "v1.2.0"]) == 0
    assert capsys.readouterr().out == "1.2.0\n"
