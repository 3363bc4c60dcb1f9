"""values.yaml comments -> chart README values table and values.schema.json."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import jsonschema
import pytest
import yaml

from stackctl import REPO_ROOT, chartdocs
from stackctl.__main__ import main as stackctl_main
from stackctl.chartdocs import ChartDocsError, build_schema, parse_annotations, values_table

CHART = REPO_ROOT / "helm" / "wallet-stack"

VALUES = """\
## @section Main
## @schema global {"type": "object"}
## @param replicaCount Pods.
## @schema replicaCount {"minimum": 0}
replicaCount: 2
## @schema image {"required": ["pullPolicy"]}
image:
  ## @param image.pullPolicy Pull policy, with a | pipe
  ##   and a second line.
  ## @schema image.pullPolicy {"enum": ["Always", "Never"]}
  pullPolicy: Never
  ## @param image.digest [default: none] Digest.
  ## @schema image.digest {"type": ["string", "null"]}
  digest: null
## @section Other
## @param labels Free-form labels.
## @schema labels {"additionalProperties": {"type": "string"}}
labels:
  a: b
"""


def _schema(text: str = VALUES) -> dict:
    return build_schema(yaml.safe_load(text), parse_annotations(text))


def test_schema_from_comments() -> None:
    schema = _schema()
    assert schema["additionalProperties"] is False
    props = schema["properties"]
    assert props["replicaCount"] == {"type": "integer", "minimum": 0}
    assert props["image"] == {
        "type": "object",
        "properties": {
            "pullPolicy": {"type": "string", "enum": ["Always", "Never"]},
            "digest": {"type": ["string", "null"]},
        },
        "additionalProperties": False,
        "required": ["pullPolicy"],
    }
    # a documented mapping is a free-form leaf, not a strict object of its defaults
    assert props["labels"] == {"type": "object", "additionalProperties": {"type": "string"}}
    assert props["global"] == {"type": "object"}


def test_schema_validates_as_helm_would() -> None:
    schema = _schema()
    validator = jsonschema.Draft7Validator(schema)
    assert not list(validator.iter_errors({"replicaCount": 1, "image": {"pullPolicy": "Always"}}))
    for bad in (
        {"replicaCount": -1},
        {"replicaCont": 1},
        {"image": {"pullPolicy": "Sometimes"}},
        {"image": {}},
        {"labels": {"a": 1}},
    ):
        assert list(validator.iter_errors(bad)), bad


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("replicaCount: 2\n", "replicaCount: no ## @param comment"),
        ("## @param replicaCont Typo.\nreplicaCount: 2\n", "@param replicaCont"),
        ("## @param a A.\na: 1\n## @param a Again.\n", "given twice"),
        ("## @param a A.\na: null\n", "shows no type"),
        ("## @param a A.\n## @schema a [1]\na: 1\n", "@schema"),
        ("## @param a A.\n## @schema a {not json}\na: 1\n", "@schema JSON"),
        ("## @parm a A.\na: 1\n", "unknown annotation"),
        ("## @param a A.\n## @schema a.b {}\na: 1\n", "@schema a.b"),
    ],
)
def test_mistakes_are_errors(text: str, needle: str) -> None:
    with pytest.raises(ChartDocsError) as exc:
        _schema(text)
    assert needle in str(exc.value), exc.value


def test_table() -> None:
    table = values_table(yaml.safe_load(VALUES), parse_annotations(VALUES))
    assert table.splitlines() == [
        "### Main",
        "",
        "| Name | Description | Value |",
        "|---|---|---|",
        "| `replicaCount` | Pods. | `2` |",
        "| `image.pullPolicy` | Pull policy, with a \\| pipe and a second line. | `Never` |",
        "| `image.digest` | Digest. | none |",
        "",
        "### Other",
        "",
        "| Name | Description | Value |",
        "|---|---|---|",
        '| `labels` | Free-form labels. | `{"a": "b"}` |',
    ]


def _copy_chart(tmp_path: Path) -> Path:
    chart = tmp_path / "wallet-stack"
    shutil.copytree(CHART, chart)
    return chart


def test_the_shipped_chart_is_up_to_date() -> None:
    assert chartdocs.run(CHART, check=True) == []


def test_check_fails_when_stale_and_generation_fixes_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    chart = _copy_chart(tmp_path)
    values = chart / "values.yaml"
    values.write_text(
        values.read_text().replace(
            "## @param replicaCount wallet-api pods", "## @param replicaCount Number of API pods"
        )
    )
    assert stackctl_main(["chart-docs", "--chart", str(chart), "--check"]) == 1
    assert "README.md is stale (run `make chart-docs`)" in capsys.readouterr().err
    assert stackctl_main(["chart-docs", "--chart", str(chart)]) == 0
    assert "| `replicaCount` | Number of API pods" in (chart / "README.md").read_text()
    assert stackctl_main(["chart-docs", "--chart", str(chart), "--check"]) == 0


def test_a_new_value_without_a_comment_fails_the_check(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    chart = _copy_chart(tmp_path)
    values = chart / "values.yaml"
    values.write_text(values.read_text() + "extraThing: 1\n")
    assert stackctl_main(["chart-docs", "--chart", str(chart), "--check"]) == 1
    assert "extraThing: no ## @param comment" in capsys.readouterr().err


def test_the_generated_schema_keeps_the_hand_written_constraints() -> None:
    """Spot checks of what the hand-written schema enforced (all of it was carried over)."""
    schema = json.loads((CHART / "values.schema.json").read_text())
    p = schema["properties"]
    assert p["image"]["required"] == ["repository", "pullPolicy"]
    assert p["wallet"]["additionalProperties"] is False
    assert p["wallet"]["properties"]["env"]["propertyNames"]["not"]["enum"] == [
        "REDIS_URL", "REDIS_PASSWORD", "WALLET_API_KEYS_FILE", "WALLET_API_KEYS", "PORT",
        "REPLICA_ID",
    ]  # fmt: skip
    idle = p["ingress"]["properties"]["wallet"]["properties"]["upstreamIdleTimeout"]
    assert idle["not"] == {"pattern": "^(0+(ms|s|m|h))+$"}
    assert p["probes"]["required"] == ["startup", "liveness", "readiness"]
    assert p["global"] == {"type": "object"}
