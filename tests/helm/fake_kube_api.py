"""Minimal fake Kubernetes API (loopback only) so `helm install --dry-run=server`
can exercise the chart's `lookup` calls without a cluster.

Serves discovery for the kinds the chart renders, GET of the Secrets given at
start (with Helm ownership metadata so install may adopt them), empty Secret
lists (no release history) and 404 for everything else. Used by
test_lookup.py; run standalone: python fake_kube_api.py PORT SECRETS.json
"""

from __future__ import annotations

import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

GROUPS = {
    "apps": ["v1"],
    "policy": ["v1"],
    "networking.k8s.io": ["v1"],
    "autoscaling": ["v2"],
    "rbac.authorization.k8s.io": ["v1"],
    "traefik.io": ["v1alpha1"],
    "monitoring.coreos.com": ["v1"],
}
RESOURCES = {
    "v1": [
        ("secrets", "Secret"),
        ("services", "Service"),
        ("configmaps", "ConfigMap"),
        ("pods", "Pod"),
        ("serviceaccounts", "ServiceAccount"),
    ],
    "apps/v1": [("deployments", "Deployment"), ("statefulsets", "StatefulSet")],
    "policy/v1": [("poddisruptionbudgets", "PodDisruptionBudget")],
    "networking.k8s.io/v1": [("networkpolicies", "NetworkPolicy"), ("ingresses", "Ingress")],
    "autoscaling/v2": [("horizontalpodautoscalers", "HorizontalPodAutoscaler")],
    "rbac.authorization.k8s.io/v1": [("roles", "Role"), ("rolebindings", "RoleBinding")],
    "traefik.io/v1alpha1": [
        ("ingressroutes", "IngressRoute"),
        ("middlewares", "Middleware"),
        ("serverstransports", "ServersTransport"),
        ("tlsoptions", "TLSOption"),
    ],
    "monitoring.coreos.com/v1": [
        ("servicemonitors", "ServiceMonitor"),
        ("prometheusrules", "PrometheusRule"),
    ],
}


def make_handler(secrets: dict, release: str):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):  # quiet
            pass

        def _send(self, code: int, obj: dict) -> None:
            body = json.dumps(obj).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _not_found(self) -> None:
            self._send(
                404,
                {
                    "kind": "Status",
                    "apiVersion": "v1",
                    "status": "Failure",
                    "reason": "NotFound",
                    "code": 404,
                },
            )

        def do_GET(self):
            path = self.path.split("?")[0]
            parts = path.strip("/").split("/")
            if path == "/version":
                return self._send(200, {"major": "1", "minor": "31", "gitVersion": "v1.31.0"})
            if path == "/api":
                return self._send(
                    200,
                    {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []},
                )
            if path == "/apis":
                return self._send(
                    200,
                    {
                        "kind": "APIGroupList",
                        "apiVersion": "v1",
                        "groups": [
                            {
                                "name": g,
                                "versions": [
                                    {"groupVersion": f"{g}/{v}", "version": v} for v in vs
                                ],
                                "preferredVersion": {
                                    "groupVersion": f"{g}/{vs[0]}",
                                    "version": vs[0],
                                },
                            }
                            for g, vs in GROUPS.items()
                        ],
                    },
                )
            gv = None
            if parts[0] == "api" and len(parts) == 2:
                gv = parts[1]
            elif parts[0] == "apis" and len(parts) == 3:
                gv = f"{parts[1]}/{parts[2]}"
            if gv in RESOURCES:
                return self._send(
                    200,
                    {
                        "kind": "APIResourceList",
                        "apiVersion": "v1",
                        "groupVersion": gv,
                        "resources": [
                            {
                                "name": n,
                                "singularName": "",
                                "namespaced": True,
                                "kind": k,
                                "verbs": [
                                    "get",
                                    "list",
                                    "watch",
                                    "create",
                                    "update",
                                    "patch",
                                    "delete",
                                ],
                            }
                            for n, k in RESOURCES[gv]
                        ],
                    },
                )
            if (
                parts[:3] == ["api", "v1", "namespaces"]
                and len(parts) == 6
                and parts[4] == "secrets"
            ):
                name, ns = parts[5], parts[3]
                if name not in secrets:
                    return self._not_found()
                return self._send(
                    200,
                    {
                        "apiVersion": "v1",
                        "kind": "Secret",
                        "type": "Opaque",
                        "data": secrets[name],
                        "metadata": {
                            "name": name,
                            "namespace": ns,
                            "labels": {"app.kubernetes.io/managed-by": "Helm"},
                            "annotations": {
                                "meta.helm.sh/release-name": release,
                                "meta.helm.sh/release-namespace": ns,
                            },
                        },
                    },
                )
            if (
                parts[:3] == ["api", "v1", "namespaces"]
                and len(parts) == 5
                and parts[4] == "secrets"
            ):
                return self._send(
                    200, {"kind": "SecretList", "apiVersion": "v1", "metadata": {}, "items": []}
                )
            return self._not_found()

    return Handler


class FakeKubeAPI:
    """Context manager: a fake API server on 127.0.0.1 (ephemeral port)."""

    def __init__(self, secrets: dict, release: str = "wallet-stack"):
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(secrets, release))
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def kubeconfig(self, namespace: str) -> str:
        return (
            "apiVersion: v1\nkind: Config\n"
            f'clusters:\n- name: fake\n  cluster: {{server: "{self.url}"}}\n'
            "contexts:\n- name: fake\n"
            f"  context: {{cluster: fake, user: fake, namespace: {namespace}}}\n"
            "current-context: fake\nusers:\n- name: fake\n  user: {}\n"
        )

    def __enter__(self) -> FakeKubeAPI:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


if __name__ == "__main__":
    with open(sys.argv[2], encoding="utf-8") as fh:
        data = json.load(fh)
    srv = ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), make_handler(data, "wallet-stack"))
    srv.serve_forever()
