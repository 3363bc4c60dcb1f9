"""Every alert rule points to a runbook section that exists (docs/runbooks.md)."""

from __future__ import annotations

import re

import yaml

from stackctl import REPO_ROOT

RULE_FILES = [
    REPO_ROOT / "infra" / "prometheus" / "rules" / "wallet-stack.yml",
    REPO_ROOT / "helm" / "wallet-stack" / "files" / "rules" / "wallet-stack.yml",
]
RUNBOOKS = REPO_ROOT / "docs" / "runbooks.md"


def _anchors(markdown: str) -> dict[str, str]:
    """GitHub's heading anchors: lower case, spaces to '-', punctuation dropped."""
    anchors = {}
    for heading in re.findall(r"^#{1,6} (.+)$", markdown, re.MULTILINE):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        anchors[slug] = heading
    return anchors


def _alerts(path):
    doc = yaml.safe_load(path.read_text())
    return [r for g in doc["groups"] for r in g["rules"] if "alert" in r]


def test_every_alert_has_a_runbook_section_with_substance() -> None:
    text = RUNBOOKS.read_text()
    anchors = _anchors(text)
    for path in RULE_FILES:
        alerts = _alerts(path)
        assert len(alerts) >= 14, path
        for rule in alerts:
            url = rule["annotations"].get("runbook_url", "")
            assert url.startswith("docs/runbooks.md#"), (rule["alert"], url)
            anchor = url.split("#", 1)[1]
            assert anchor in anchors, f"{rule['alert']}: no section #{anchor} in docs/runbooks.md"
            section = text.split(f"## {anchors[anchor]}\n", 1)[1].split("\n## ", 1)[0]
            for part in ("**Means:**", "**Check:**", "**Do:**"):
                assert part in section, f"{rule['alert']}: runbook section lacks {part}"


def test_no_runbook_section_without_an_alert() -> None:
    alerts = {r["alert"].lower() for r in _alerts(RULE_FILES[0])}
    sections = set(_anchors(RUNBOOKS.read_text())) - {"runbooks"}
    assert sections == alerts, sections ^ alerts


def _matches(labels: dict[str, str], matchers: list[str]) -> bool:
    for matcher in matchers:
        name, value = re.fullmatch(r'(\w+)="([^"]*)"', matcher).groups()  # type: ignore[union-attr]
        if labels.get(name) != value:
            return False
    return True


def test_every_inhibit_rule_can_silence_something() -> None:
    """An inhibit rule acts only between alerts that agree on its `equal` labels: with
    `equal: [alertname]` and one severity per alert it never did. Each rule must pair
    some source alert with some other target alert, and every alert names its component."""
    config = yaml.safe_load((REPO_ROOT / "infra" / "alertmanager" / "alertmanager.yml").read_text())
    labels = [r["labels"] | {"alertname": r["alert"]} for r in _alerts(RULE_FILES[0])]
    assert all(lbl.get("component") in {"wallet-api", "traefik", "redis"} for lbl in labels)
    for rule in config["inhibit_rules"]:
        pairs = [
            (s["alertname"], t["alertname"])
            for s in labels
            for t in labels
            if s is not t
            and _matches(s, rule["source_matchers"])
            and _matches(t, rule["target_matchers"])
            and all(s.get(k) == t.get(k) for k in rule["equal"])
        ]
        assert pairs, rule
        assert ("WalletApiDown", "WalletApiReplicaDown") in pairs
        assert ("RedisDown", "RedisMemoryHigh") in pairs
