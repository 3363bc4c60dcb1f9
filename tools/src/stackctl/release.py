"""Release helpers shared by .github/workflows/release.yml and `make release-check`.

Why one module for both: what the release workflow does on GitHub (version from the tag,
the chart staged with that version and the published image, the packaged chart checked,
notes from the commits) is what `make release-check` rehearses here against a local OCI
registry. Written once, tested here, the workflow cannot drift from the rehearsal.

    python -m stackctl.release version --tag v1.2.3
    python -m stackctl.release prepare-chart --tag v1.2.3 --out DIR \\
        [--image-repository REPO --image-digest sha256:...]
    python -m stackctl.release check-chart --tag v1.2.3 PACKAGE.tgz \\
        [--image-repository REPO --image-digest sha256:...]
    python -m stackctl.release notes --tag v1.2.3 [--repo DIR]

`version` needs only the standard library (the workflow runs it before any venv exists);
the chart commands read YAML (PyYAML, in the project venv). Errors are one line on stderr
(`release: error: ...`) and exit status 1.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tarfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from stackctl import REPO_ROOT

CHART_NAME = "wallet-stack"
CHART_DIR = REPO_ROOT / "helm" / CHART_NAME
_TAG = re.compile(r"^v(?P<version>(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*))$")
_DIGEST = re.compile(r"^sha256:[a-f0-9]{64}$")


class ReleaseError(Exception):
    """A release input or artefact is not what the tag says (the message says what)."""


def version_from_tag(tag: str) -> str:
    """`v1.2.3` -> `1.2.3`; anything but vMAJOR.MINOR.PATCH is refused."""
    tag = tag.removeprefix("refs/tags/")
    m = _TAG.match(tag)
    if not m:
        raise ReleaseError(f"tag {tag!r} is not vMAJOR.MINOR.PATCH (e.g. v1.2.3)")
    return m["version"]


def _set_top_level(text: str, key: str, value: str) -> str:
    pattern = re.compile(rf"^{key}:.*$", re.MULTILINE)
    if len(pattern.findall(text)) != 1:
        raise ReleaseError(f"Chart.yaml: expected exactly one top-level `{key}:` line")
    return pattern.sub(f'{key}: "{value}"', text)


def _set_image(text: str, field: str, value: str) -> str:
    """Set `image.<field>` of values.yaml in place: line-based, so the comments that
    generate the docs stay (a YAML round trip would drop them)."""
    lines = text.splitlines(keepends=True)
    in_image = False
    for i, line in enumerate(lines):
        if re.match(r"^image:\s*$", line):
            in_image = True
            continue
        if in_image and re.match(r"^\S", line) and not line.startswith("#"):
            break
        if in_image and (m := re.match(rf"^(\s+){field}:.*$", line)):
            lines[i] = f'{m[1]}{field}: "{value}"\n'
            return "".join(lines)
    raise ReleaseError(f"values.yaml: no image.{field} line")


def prepare_chart(
    tag: str,
    out: Path,
    image_repository: str | None = None,
    image_digest: str | None = None,
    chart: Path = CHART_DIR,
) -> Path:
    """Copy the chart to OUT/wallet-stack with version and appVersion from the tag and,
    for a published image, image.repository/digest pointing at it (users of the packaged
    chart then run exactly the image that was built, signed and attested)."""
    from stackctl import chartdocs  # needs PyYAML

    version = version_from_tag(tag)
    if image_digest is not None and not _DIGEST.match(image_digest):
        raise ReleaseError(f"image digest {image_digest!r} is not sha256:<64 hex>")
    dest = out / CHART_NAME
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(chart, dest)
    chart_yaml = dest / "Chart.yaml"
    text = _set_top_level(chart_yaml.read_text(), "version", version)
    chart_yaml.write_text(_set_top_level(text, "appVersion", version))
    values = dest / "values.yaml"
    text = values.read_text()
    if image_repository:
        text = _set_image(text, "repository", image_repository)
    if image_digest:
        text = _set_image(text, "digest", image_digest)
    values.write_text(text)
    chartdocs.run(dest, check=False)  # the packaged README shows the packaged defaults
    return dest


def _read_member(package: Path, name: str) -> Any:
    import yaml  # needs PyYAML

    with tarfile.open(package) as tar:
        member = tar.extractfile(f"{CHART_NAME}/{name}")
        if member is None:
            raise ReleaseError(f"{package.name}: no {CHART_NAME}/{name}")
        return yaml.safe_load(member.read())


def check_chart(
    tag: str,
    package: Path,
    image_repository: str | None = None,
    image_digest: str | None = None,
) -> str:
    """The packaged chart must carry the tag's version as version and appVersion (and the
    published image when given); returns the version, raises ReleaseError otherwise."""
    version = version_from_tag(tag)
    try:
        chart = _read_member(package, "Chart.yaml")
        values = _read_member(package, "values.yaml")
    except (OSError, tarfile.TarError, KeyError) as exc:
        raise ReleaseError(f"cannot read {package}: {exc}") from exc
    problems = []
    if package.name != f"{CHART_NAME}-{version}.tgz":
        problems.append(f"package name {package.name} (expected {CHART_NAME}-{version}.tgz)")
    for key in ("version", "appVersion"):
        if str(chart.get(key)) != version:
            problems.append(f"Chart.yaml {key} {chart.get(key)!r} != {version!r} (tag {tag})")
    image = values.get("image", {})
    if image_repository is not None and image.get("repository") != image_repository:
        problems.append(f"image.repository {image.get('repository')!r} != {image_repository!r}")
    if image_digest is not None and image.get("digest") != image_digest:
        problems.append(f"image.digest {image.get('digest')!r} != {image_digest!r}")
    if problems:
        raise ReleaseError("; ".join(problems))
    return version


def _git(repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    git = shutil.which("git") or "git"
    return subprocess.run(  # noqa: S603 - fixed argv, no shell
        [git, "-C", str(repo), *args], capture_output=True, text=True, check=False
    )


def notes(tag: str, repo: Path = REPO_ROOT) -> str:
    """Release notes from the commits since the previous vX.Y.Z tag (all commits for the
    first release): subject lines, newest first, with their short hashes."""
    version_from_tag(tag)
    if _git(repo, "rev-parse", "--verify", "--quiet", f"{tag}^{{commit}}").returncode != 0:
        raise ReleaseError(f"no such tag {tag} in {repo}")
    previous = ""
    for line in _git(repo, "tag", "--merged", tag, "--sort=-v:refname").stdout.splitlines():
        if line != tag and _TAG.match(line):
            previous = line
            break
    span = f"{previous}..{tag}" if previous else tag
    log = _git(repo, "log", "--no-merges", "--format=%h %s", span)
    if log.returncode != 0:
        raise ReleaseError(f"git log {span}: {log.stderr.strip()}")
    commits = [line.split(" ", 1) for line in log.stdout.splitlines() if line.strip()]
    since = f"since {previous}" if previous else "(first release)"
    out = [f"## {CHART_NAME} {tag}", "", f"Changes {since}:", ""]
    out += [f"- {subject} ({sha})" for sha, subject in commits] or ["- no changes"]
    return "\n".join(out) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stackctl.release", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("version", "prepare-chart", "check-chart", "notes"):
        cmd = sub.add_parser(name)
        cmd.add_argument("--tag", required=True, help="the release tag, vMAJOR.MINOR.PATCH")
        if name in ("prepare-chart", "check-chart"):
            cmd.add_argument("--image-repository")
            cmd.add_argument("--image-digest")
        if name == "prepare-chart":
            cmd.add_argument("--out", type=Path, required=True)
            cmd.add_argument("--chart", type=Path, default=CHART_DIR)
        if name == "check-chart":
            cmd.add_argument("package", type=Path)
        if name == "notes":
            cmd.add_argument("--repo", type=Path, default=REPO_ROOT)
    args = parser.parse_args(argv)
    try:
        if args.command == "version":
            print(version_from_tag(args.tag))
        elif args.command == "prepare-chart":
            dest = prepare_chart(
                args.tag, args.out, args.image_repository, args.image_digest, args.chart
            )
            print(dest)
        elif args.command == "check-chart":
            version = check_chart(args.tag, args.package, args.image_repository, args.image_digest)
            print(
                f"release: {args.package.name}: version and appVersion {version} match {args.tag}"
            )
        else:
            sys.stdout.write(notes(args.tag, args.repo))
    except ReleaseError as exc:
        print(f"release: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
