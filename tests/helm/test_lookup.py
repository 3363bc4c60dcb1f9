"""Generated secrets are kept on upgrade: the chart's `lookup` calls, exercised
with `helm install --dry-run=server` against a fake API server on loopback."""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import json
import os
import subprocess
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
CHART = HERE.parents[1] / "helm" / "wallet-stack"


def _fake_api_module():
    spec = importlib.util.spec_from_file_location(
        "wallet_stack_fake_kube_api", HERE / "fake_kube_api.py"
    )
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def e(s: str) -> str:
    return base64.b64encode(s.encode()).decode()


def d(s: str) -> str:
    return base64.b64decode(s).decode()


STORED_HASH = "admin:$2a$10$abcdefghijklmnopqrstuuIKf86pdcwpO2sVQ5UzC4OF.Xfw8WGTS\n"
EXISTING = {
    "wallet-stack-api-keys": {"api-keys": e("EXISTINGKEY")},
    "wallet-stack-redis-auth": {"redis-password": e("EXISTINGPW")},
    "wallet-stack-basic-auth": {
        "users": e(STORED_HASH),
        "username": e("admin"),
        "password": e("abc"),
    },
    "wallet-stack-tls": {"tls.crt": e("CRT"), "tls.key": e("KEY"), "ca.crt": e("CA")},
}


def _dry_run_server(helm, tmp_path, secrets: dict, *sets: str) -> dict:
    fake = _fake_api_module().FakeKubeAPI(secrets)
    with fake:
        kubeconfig = tmp_path / "kubeconfig"
        kubeconfig.write_text(fake.kubeconfig("wallet"))
        args = [
            helm.binary,
            "install",
            "wallet-stack",
            str(CHART),
            "-n",
            "wallet",
            "--dry-run=server",
            "--disable-openapi-validation",
            "--kubeconfig",
            str(kubeconfig),
        ]
        for s in sets:
            args += ["--set", s]
        env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}
        proc = subprocess.run(
            args, check=False, capture_output=True, text=True, timeout=120, env=env
        )
    assert proc.returncode == 0, proc.stderr
    manifest = proc.stdout.split("MANIFEST:", 1)[1].split("NOTES:", 1)[0]
    return {
        doc["metadata"]["name"]: doc
        for doc in yaml.safe_load_all(manifest)
        if doc and doc["kind"] == "Secret"
    }


def test_existing_generated_secrets_are_kept(helm, tmp_path):
    s = _dry_run_server(helm, tmp_path, EXISTING, "whoami.enabled=true")
    assert d(s["wallet-stack-api-keys"]["data"]["api-keys"]) == "EXISTINGKEY"
    # An upgrade from a chart without key definitions: the kept token is defined by its
    # digest, so clients using it go on working.
    defined = json.loads(d(s["wallet-stack-api-keys"]["data"]["api-keys.yaml"]))["keys"]
    digest = hashlib.sha256(b"EXISTINGKEY").hexdigest()
    assert [(k["id"], k["tenant"], k["digest"]) for k in defined] == [
        (f"key_{digest[:16]}", "default", f"sha256:{digest}")
    ]
    assert d(s["wallet-stack-redis-auth"]["data"]["redis-password"]) == "EXISTINGPW"
    ba = s["wallet-stack-basic-auth"]["data"]
    assert d(ba["users"]) == STORED_HASH, "unchanged credentials must keep the stored bcrypt line"
    assert d(ba["password"]) == "abc"
    tls = s["wallet-stack-tls"]["data"]
    assert (d(tls["tls.crt"]), d(tls["tls.key"]), d(tls["ca.crt"])) == ("CRT", "KEY", "CA")


def test_changed_user_rehashes_kept_password(helm, tmp_path):
    ba = _dry_run_server(helm, tmp_path, EXISTING, "whoami.enabled=true", "basicAuth.user=ops")[
        "wallet-stack-basic-auth"
    ]["data"]
    assert d(ba["username"]) == "ops" and d(ba["password"]) == "abc"
    assert d(ba["users"]).startswith("ops:$2")


def test_supplied_value_wins_over_stored(helm, tmp_path):
    s = _dry_run_server(helm, tmp_path, EXISTING, "redis.auth.password=rotated")
    assert d(s["wallet-stack-redis-auth"]["data"]["redis-password"]) == "rotated"


def test_fresh_install_generates(helm, tmp_path):
    s = _dry_run_server(helm, tmp_path, {}, "whoami.enabled=true")
    assert len(d(s["wallet-stack-api-keys"]["data"]["api-keys"])) == 40
    assert len(d(s["wallet-stack-redis-auth"]["data"]["redis-password"])) == 32
    assert d(s["wallet-stack-basic-auth"]["data"]["users"]).startswith("admin:$2")


def test_kept_tokens_stay_separate_keys(helm, tmp_path):
    """The Secret holds the tokens comma-separated (wallet.apiKeys.keys on an earlier
    release); an upgrade without them keeps each as its own key, not one joined token."""
    stored = {**EXISTING, "wallet-stack-api-keys": {"api-keys": e("TOKEN-A,TOKEN-B")}}
    s = _dry_run_server(helm, tmp_path, stored)
    assert d(s["wallet-stack-api-keys"]["data"]["api-keys"]) == "TOKEN-A,TOKEN-B"
    defined = json.loads(d(s["wallet-stack-api-keys"]["data"]["api-keys.yaml"]))["keys"]
    assert sorted(k["digest"] for k in defined) == sorted(
        f"sha256:{hashlib.sha256(t).hexdigest()}" for t in (b"TOKEN-A", b"TOKEN-B")
    )
