"""The chart's values table (README.md) and values.schema.json, generated from values.yaml.

Why: both used to be written by hand next to values.yaml, and three hand-kept copies of
one fact drift. Now values.yaml says everything once, in comments in the style of
Bitnami's readme-generator (no npm tool needed at check time):

    ## @section wallet-api
    ## @param replicaCount Number of wallet-api pods (ignored when autoscaling.enabled).
    ## @schema replicaCount {"minimum": 0}
    replicaCount: 2

- ``## @section TITLE`` starts a table (``### TITLE``) in the README.
- ``## @param PATH [default: TEXT] DESCRIPTION`` documents one value; following ``##`` lines
  that are not ``## @`` continue the description. ``[default: TEXT]`` replaces the value
  shown in the table (for long objects). A documented value is a leaf of the schema, even
  when its default is a mapping (free-form objects such as ``podAnnotations``).
- ``## @schema PATH JSON`` merges a JSON object into PATH's schema node: enums, patterns,
  bounds, ``required``, ``anyOf``, a ``type`` that the default cannot show (``null``
  defaults), item schemas. A PATH that is not in values.yaml (``global``) becomes a
  schema-only property of its parent.

Every mapping that is not documented itself is a strict object (``additionalProperties:
false``) of its keys, and every other value must carry a ``@param``: an undocumented or a
misspelt key is an error, so the table cannot miss a value. The schema type of a leaf
comes from its default unless ``@schema`` gives ``type`` or ``anyOf``.

`python -m stackctl chart-docs` rewrites both files (`make chart-docs`); ``--check`` only
compares and fails when they are stale (`make lint`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

SCHEMA_DRAFT = "http://json-schema.org/draft-07/schema#"
TABLE_START = "<!-- chart-docs:values:start -->"
TABLE_END = "<!-- chart-docs:values:end -->"

_PARAM = re.compile(
    r"^\s*## @param\s+(?P<path>\S+)"
    r"(?:\s+\[default:\s*(?P<default>[^\]]*)\])?\s*(?P<text>.*)$"
)
_SCHEMA = re.compile(r"^\s*## @schema\s+(?P<path>\S+)\s+(?P<json>\{.*\})\s*$")
_SECTION = re.compile(r"^\s*## @section\s+(?P<title>.+?)\s*$")
_CONTINUATION = re.compile(r"^\s*##(?:\s+(?P<text>(?!@).*))?$")


class ChartDocsError(Exception):
    """values.yaml's comments and values disagree (the message says where)."""


@dataclass
class Param:
    path: str
    description: str
    default_text: str | None
    section: str
    line: int


@dataclass
class Annotations:
    params: dict[str, Param] = field(default_factory=dict)
    schemas: dict[str, dict[str, Any]] = field(default_factory=dict)
    sections: list[str] = field(default_factory=list)


def parse_annotations(text: str) -> Annotations:
    """Read the ``## @`` comments of values.yaml (line numbers for error messages)."""
    ann = Annotations()
    section = ""
    current: Param | None = None
    for number, line in enumerate(text.splitlines(), 1):
        if m := _SECTION.match(line):
            section = m["title"]
            ann.sections.append(section)
            current = None
        elif m := _PARAM.match(line):
            path = m["path"]
            if path in ann.params:
                raise ChartDocsError(f"values.yaml:{number}: @param {path} given twice")
            current = Param(path, m["text"].strip(), m["default"], section, number)
            ann.params[path] = current
        elif m := _SCHEMA.match(line):
            try:
                fragment = json.loads(m["json"])
            except json.JSONDecodeError as exc:
                raise ChartDocsError(f"values.yaml:{number}: @schema JSON: {exc}") from exc
            if not isinstance(fragment, dict):
                raise ChartDocsError(f"values.yaml:{number}: @schema needs a JSON object")
            _merge(ann.schemas.setdefault(m["path"], {}), fragment)
            current = None
        elif line.lstrip().startswith("## @"):
            raise ChartDocsError(f"values.yaml:{number}: unknown annotation: {line.strip()}")
        elif current is not None and (m := _CONTINUATION.match(line)) and m["text"]:
            current.description = f"{current.description} {m['text'].strip()}".strip()
        else:
            current = None
    return ann


def _merge(into: dict[str, Any], fragment: dict[str, Any]) -> None:
    for key, value in fragment.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = value


def _json_type(value: Any) -> str | None:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return None


def _leaf(path: str, value: Any, fragment: dict[str, Any]) -> dict[str, Any]:
    node: dict[str, Any] = {}
    if "type" not in fragment and "anyOf" not in fragment:
        inferred = _json_type(value)
        if inferred is None:
            raise ChartDocsError(f"{path}: default {value!r} shows no type: add @schema type")
        node["type"] = inferred
    _merge(node, fragment)
    return node


def build_schema(values: dict[str, Any], ann: Annotations) -> dict[str, Any]:
    """values.schema.json as a dict; raises ChartDocsError on any undocumented value."""
    used: set[str] = set()
    errors: list[str] = []

    def walk(path: str, value: Any) -> dict[str, Any]:
        used.add(path)
        fragment = ann.schemas.get(path, {})
        if path in ann.params:
            return _leaf(path, value, fragment)
        if isinstance(value, dict) and value:
            props = {key: walk(f"{path}.{key}" if path else key, sub) for key, sub in value.items()}
            node: dict[str, Any] = {"type": "object"} if path else {}
            node.update(properties=props, additionalProperties=False)
            _merge(node, fragment)
            return node
        errors.append(f"{path}: no ## @param comment")
        return {}

    root = walk("", values)
    for path in sorted(set(ann.params) - used):
        errors.append(f"@param {path} (values.yaml:{ann.params[path].line}): no such value")
    for path, fragment in sorted(ann.schemas.items()):
        if path in used:
            continue
        parent_path, _, key = path.rpartition(".")
        parent = _node_at(root, parent_path)
        if parent is None or "properties" not in parent or key in parent["properties"]:
            errors.append(f"@schema {path}: its parent is no strict object of values.yaml")
            continue
        parent["properties"][key] = fragment
    if errors:
        raise ChartDocsError("; ".join(errors))
    return {
        "$schema": SCHEMA_DRAFT,
        "title": "wallet-stack values",
        "type": "object",
        "additionalProperties": root.pop("additionalProperties"),
        "properties": root.pop("properties"),
        **root,
    }


def _node_at(root: dict[str, Any], path: str) -> dict[str, Any] | None:
    node: dict[str, Any] | None = root
    for key in path.split(".") if path else []:
        node = (node or {}).get("properties", {}).get(key)
    return node


def _value_text(value: Any) -> str:
    if isinstance(value, str) and value:
        return value
    return json.dumps(value, separators=(", ", ": "))


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _leaves(
    values: dict[str, Any], ann: Annotations, prefix: str = ""
) -> Iterator[tuple[str, Any]]:
    for key, value in values.items():
        path = f"{prefix}{key}"
        if path in ann.params:
            yield path, value
        elif isinstance(value, dict):
            yield from _leaves(value, ann, f"{path}.")


def values_table(values: dict[str, Any], ann: Annotations) -> str:
    """Markdown: one table per @section, rows in values.yaml order."""
    by_section: dict[str, list[str]] = {}
    for path, value in _leaves(values, ann):
        p = ann.params[path]
        shown = p.default_text if p.default_text is not None else f"`{_cell(_value_text(value))}`"
        row = f"| `{path}` | {_cell(p.description)} | {shown} |"
        by_section.setdefault(p.section, []).append(row)
    out: list[str] = []
    for section in [s for s in dict.fromkeys(["", *ann.sections]) if s in by_section]:
        if section:
            out += [f"### {section}", ""]
        out += ["| Name | Description | Value |", "|---|---|---|", *by_section[section], ""]
    return "\n".join(out).rstrip("\n") + "\n"


@dataclass(frozen=True)
class Rendered:
    schema: str
    readme: str


def render(chart: Path) -> Rendered:
    """Both generated files' full new text, from the chart's values.yaml and README.md."""
    text = (chart / "values.yaml").read_text()
    values = yaml.safe_load(text)
    if not isinstance(values, dict):
        raise ChartDocsError("values.yaml is not a mapping")
    ann = parse_annotations(text)
    schema = json.dumps(build_schema(values, ann), indent=2, ensure_ascii=False) + "\n"
    readme = (chart / "README.md").read_text()
    start, end = readme.find(TABLE_START), readme.find(TABLE_END)
    if start < 0 or end < start:
        raise ChartDocsError(f"README.md needs the markers {TABLE_START} ... {TABLE_END}")
    table = values_table(values, ann)
    readme = f"{readme[: start + len(TABLE_START)]}\n\n{table}\n{readme[end:]}"
    return Rendered(schema, readme)


def run(chart: Path, check: bool) -> list[str]:
    """Write (or, with check, only compare) the generated files; return the stale ones."""
    new = render(chart)
    stale = []
    for name, text in (("values.schema.json", new.schema), ("README.md", new.readme)):
        path = chart / name
        if path.read_text() != text:
            stale.append(name)
            if not check:
                path.write_text(text)
    return stale
