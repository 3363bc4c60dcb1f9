"""The Grafana dashboard file: loadable anywhere, and the chart ships the same bytes."""

from __future__ import annotations

import json
import re

from stackctl import REPO_ROOT

DASHBOARD = REPO_ROOT / "infra" / "grafana" / "dashboards" / "wallet-stack.json"
CHART_COPY = REPO_ROOT / "helm" / "wallet-stack" / "files" / "dashboards" / "wallet-stack.json"


def test_panels_use_the_datasource_variable_and_known_variables_only() -> None:
    dash = json.loads(DASHBOARD.read_text())
    assert dash["uid"] == "wallet-stack"
    assert [v["name"] for v in dash["templating"]["list"]] == ["datasource"]
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids)) >= 10
    for panel in dash["panels"]:
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == panel["datasource"]
            variables = set(re.findall(r"\$\{?(\w+)", target["expr"]))
            assert variables <= {"__rate_interval"}, (panel["title"], variables)


def test_the_chart_ships_the_same_dashboard() -> None:
    assert CHART_COPY.read_bytes() == DASHBOARD.read_bytes()
