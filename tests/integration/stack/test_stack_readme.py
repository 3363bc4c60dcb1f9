"""The README's API walk-through, run as printed against the fresh stack."""

from __future__ import annotations

import json
import re
import subprocess

import pytest
import stack_support as ss

pytestmark = pytest.mark.stack


def readme_api_example() -> str:
    text = (ss.ROOT / "README.md").read_text()
    section = text[text.index("\n## The API\n") :]
    block = re.search(r"```sh\n(.*?)```", section, re.DOTALL)
    assert block, "README: no ```sh block under '## The API'"
    return block.group(1)


def test_readme_api_example_runs_as_printed(stack: ss.Stack) -> None:
    """Each curl line must succeed (HTTP < 400): a wrapper adds --fail-with-body, the
    lines themselves run unchanged. curl resolves *.localhost itself, as the README says."""
    example = readme_api_example()
    assert example.count("curl ") >= 7
    wrapper = 'set -euo pipefail\ncurl() { command curl --fail-with-body -sS "$@"; echo; }\n'
    proc = subprocess.run(
        ["bash", "-c", wrapper + example],
        cwd=ss.ROOT,
        env=ss.subprocess_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, (
        f"exit {proc.returncode}\n{proc.stdout[-1500:]}\n{proc.stderr[-1500:]}"
    )
    outputs = [line for line in proc.stdout.splitlines() if line.strip()]
    assert json.loads(outputs[-2])["balance"] == 750, outputs[-2]  # 1250 in, 500 to bob
    assert len(json.loads(outputs[-1])["items"]) == 2, outputs[-1]
    ss.note(f"README API example: {example.count('curl ')} curl commands, all 2xx")
