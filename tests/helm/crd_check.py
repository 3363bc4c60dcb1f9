#!/usr/bin/env python3
"""Structural check of the custom resources rendered by the wallet-stack chart.

kubernetes-validate only knows built-in kinds, so it skips (WARNs on) the
Traefik and prometheus-operator objects. This checker covers them: apiVersion,
kind, required fields, allowed keys (a hand-written subset of the upstream CRD
schemas, traefik.io/v1alpha1 for Traefik v3 and monitoring.coreos.com/v1) and
references between rendered objects (IngressRoute -> Middleware/Service/
ServersTransport, Middleware -> Secret, Service serverstransport annotation ->
ServersTransport).

Usage: crd_check.py RENDERED.yaml...   (exit 1 on any problem)
As a module: check_documents(list_of_dicts) -> (n_crd_objects, [errors]).
"""

from __future__ import annotations

import re
import sys
from typing import Any

import yaml

TRAEFIK = "traefik.io/v1alpha1"
MONITORING = "monitoring.coreos.com/v1"

# kind -> apiVersion of every custom resource the chart may render
CRD_KINDS = {
    "IngressRoute": TRAEFIK,
    "Middleware": TRAEFIK,
    "ServersTransport": TRAEFIK,
    "TLSOption": TRAEFIK,
    "ServiceMonitor": MONITORING,
    "PrometheusRule": MONITORING,
}
CRD_GROUPS = {"traefik.io", "monitoring.coreos.com", "traefik.containo.us"}

INGRESSROUTE_SPEC = {"entryPoints", "routes", "tls", "parentRefs"}
ROUTE_KEYS = {"kind", "match", "middlewares", "observability", "priority", "services", "syntax"}
ROUTE_SERVICE_KEYS = {
    "healthCheck",
    "kind",
    "name",
    "namespace",
    "nativeLB",
    "nodePortLB",
    "passHostHeader",
    "passiveHealthCheck",
    "port",
    "responseForwarding",
    "scheme",
    "serversTransport",
    "sticky",
    "strategy",
    "weight",
}
TLS_KEYS = {"certResolver", "domains", "options", "secretName", "store"}
# traefik.io/v1alpha1 TLSOption spec (Traefik v3 CRD).
TLSOPTION_SPEC = {
    "alpnProtocols", "cipherSuites", "clientAuth", "curvePreferences", "disableSessionTickets",
    "maxVersion", "minVersion", "preferServerCipherSuites", "sniStrict",
}  # fmt: skip
TLS_VERSIONS = {"VersionTLS10", "VersionTLS11", "VersionTLS12", "VersionTLS13"}
MIDDLEWARE_TYPES = {
    "addPrefix",
    "basicAuth",
    "buffering",
    "chain",
    "circuitBreaker",
    "compress",
    "contentType",
    "digestAuth",
    "errors",
    "forwardAuth",
    "grpcWeb",
    "headers",
    "inFlightReq",
    "ipAllowList",
    "passTLSClientCert",
    "plugin",
    "rateLimit",
    "redirectRegex",
    "redirectScheme",
    "replacePath",
    "replacePathRegex",
    "retry",
    "stripPrefix",
    "stripPrefixRegex",
}
BASICAUTH_KEYS = {"headerField", "realm", "removeHeader", "secret"}
# serverstransports.traefik.io v1alpha1 (Traefik v3)
SERVERSTRANSPORT_SPEC = {
    "certificatesSecrets",
    "cipherSuites",
    "disableHTTP2",
    "forwardingTimeouts",
    "insecureSkipVerify",
    "maxIdleConnsPerHost",
    "maxVersion",
    "minVersion",
    "peerCertURI",
    "rootCAs",
    "rootCAsSecrets",
    "serverName",
    "spiffe",
}
FORWARDING_TIMEOUTS = {
    "dialTimeout",
    "idleConnTimeout",
    "pingTimeout",
    "readIdleTimeout",
    "responseHeaderTimeout",
}
# the CRD's pattern for every forwardingTimeouts field (int-or-string)
DURATION_RE = re.compile(r"^([0-9]+(ns|us|µs|ms|s|m|h)?)+$")
SERVICE_SERVERSTRANSPORT_ANNOTATION = "traefik.ingress.kubernetes.io/service.serverstransport"
SM_SPEC = {
    "attachMetadata",
    "bodySizeLimit",
    "endpoints",
    "fallbackScrapeProtocol",
    "jobLabel",
    "keepDroppedTargets",
    "labelLimit",
    "labelNameLengthLimit",
    "labelValueLengthLimit",
    "namespaceSelector",
    "podTargetLabels",
    "sampleLimit",
    "scrapeClass",
    "scrapeProtocols",
    "selector",
    "selectorMechanism",
    "targetLabels",
    "targetLimit",
}
SM_ENDPOINT = {
    "authorization",
    "basicAuth",
    "bearerTokenFile",
    "bearerTokenSecret",
    "enableHttp2",
    "filterRunning",
    "followRedirects",
    "honorLabels",
    "honorTimestamps",
    "interval",
    "metricRelabelings",
    "noProxy",
    "oauth2",
    "params",
    "path",
    "port",
    "proxyConnectHeader",
    "proxyFromEnvironment",
    "proxyUrl",
    "relabelings",
    "scheme",
    "scrapeTimeout",
    "targetPort",
    "tlsConfig",
    "trackTimestampsStaleness",
}
RELABEL_KEYS = {
    "action",
    "modulus",
    "regex",
    "replacement",
    "separator",
    "sourceLabels",
    "targetLabel",
}
RELABEL_ACTIONS = {
    "replace",
    "keep",
    "drop",
    "hashmod",
    "labelmap",
    "labeldrop",
    "labelkeep",
    "lowercase",
    "uppercase",
    "keepequal",
    "dropequal",
}
RULE_KEYS = {"alert", "annotations", "expr", "for", "keep_firing_for", "labels", "record"}
GROUP_KEYS = {
    "interval",
    "labels",
    "limit",
    "name",
    "partial_response_strategy",
    "query_offset",
    "rules",
}


def is_crd(doc: dict) -> bool:
    group = str(doc.get("apiVersion", "")).split("/")[0]
    return doc.get("kind") in CRD_KINDS or group in CRD_GROUPS


def _unknown(where: str, obj: Any, allowed: set, errors: list) -> None:
    if not isinstance(obj, dict):
        errors.append(f"{where}: expected a mapping, got {type(obj).__name__}")
        return
    extra = set(obj) - allowed
    if extra:
        errors.append(f"{where}: unknown field(s) {sorted(extra)}")


def _nonempty_str(where: str, value: Any, errors: list) -> None:
    if not isinstance(value, str) or not value:
        errors.append(f"{where}: must be a non-empty string")


def _check_relabelings(where: str, items: Any, errors: list) -> None:
    if not isinstance(items, list):
        errors.append(f"{where}: must be a list")
        return
    for i, r in enumerate(items):
        _unknown(f"{where}[{i}]", r, RELABEL_KEYS, errors)
        if (
            isinstance(r, dict)
            and "action" in r
            and str(r["action"]).lower() not in RELABEL_ACTIONS
        ):
            errors.append(f"{where}[{i}].action: invalid {r['action']!r}")


def check_ingressroute(name: str, spec: dict, errors: list) -> list:
    refs = []
    _unknown(f"{name}.spec", spec, INGRESSROUTE_SPEC, errors)
    eps = spec.get("entryPoints", [])
    if not isinstance(eps, list) or not all(isinstance(e, str) and e for e in eps):
        errors.append(f"{name}.spec.entryPoints: must be a list of strings")
    routes = spec.get("routes")
    if not isinstance(routes, list) or not routes:
        errors.append(f"{name}.spec.routes: required non-empty list")
        routes = []
    for i, r in enumerate(routes):
        w = f"{name}.spec.routes[{i}]"
        _unknown(w, r, ROUTE_KEYS, errors)
        if not isinstance(r, dict):
            continue
        _nonempty_str(f"{w}.match", r.get("match"), errors)
        if r.get("kind", "Rule") != "Rule":
            errors.append(f"{w}.kind: must be Rule")
        match = str(r.get("match", ""))
        if match.count("`") % 2 or match.count("(") != match.count(")"):
            errors.append(f"{w}.match: unbalanced quotes/parentheses: {match}")
        for j, m in enumerate(r.get("middlewares", []) or []):
            _unknown(f"{w}.middlewares[{j}]", m, {"name", "namespace"}, errors)
            if isinstance(m, dict):
                _nonempty_str(f"{w}.middlewares[{j}].name", m.get("name"), errors)
                refs.append(("Middleware", m.get("name")))
        services = r.get("services")
        if not isinstance(services, list) or not services:
            errors.append(f"{w}.services: required non-empty list")
            services = []
        for j, s in enumerate(services):
            sw = f"{w}.services[{j}]"
            _unknown(sw, s, ROUTE_SERVICE_KEYS, errors)
            if not isinstance(s, dict):
                continue
            _nonempty_str(f"{sw}.name", s.get("name"), errors)
            kind = s.get("kind", "Service")
            if kind not in ("Service", "TraefikService"):
                errors.append(f"{sw}.kind: must be Service or TraefikService")
            if kind == "Service":
                port = s.get("port")
                if not (isinstance(port, int) and 0 < port < 65536) and not (
                    isinstance(port, str) and port
                ):
                    errors.append(f"{sw}.port: Service needs a port (int or name)")
                if "namespace" not in s:
                    refs.append(("Service", s.get("name")))
            st = s.get("serversTransport")
            if st is not None:
                _nonempty_str(f"{sw}.serversTransport", st, errors)
                if isinstance(st, str) and "@" not in st:  # same namespace, this provider
                    refs.append(("ServersTransport", st))
    tls = spec.get("tls")
    if tls is not None:
        _unknown(f"{name}.spec.tls", tls, TLS_KEYS, errors)
        if isinstance(tls, dict) and tls.get("secretName") and tls.get("certResolver"):
            errors.append(f"{name}.spec.tls: secretName and certResolver are exclusive")
        options = tls.get("options") if isinstance(tls, dict) else None
        if options is not None:
            _unknown(f"{name}.spec.tls.options", options, {"name", "namespace"}, errors)
            if isinstance(options, dict):
                _nonempty_str(f"{name}.spec.tls.options.name", options.get("name"), errors)
                refs.append(("TLSOption", options.get("name")))
    return refs


def check_tlsoption(name: str, spec: dict, errors: list) -> None:
    _unknown(f"{name}.spec", spec, TLSOPTION_SPEC, errors)
    for key in ("minVersion", "maxVersion"):
        if key in spec and spec[key] not in TLS_VERSIONS:
            errors.append(f"{name}.spec.{key}: {spec[key]!r} is not one of {sorted(TLS_VERSIONS)}")
    if "sniStrict" in spec and not isinstance(spec["sniStrict"], bool):
        errors.append(f"{name}.spec.sniStrict: must be a boolean")
    for key in ("cipherSuites", "curvePreferences"):
        value = spec.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            errors.append(f"{name}.spec.{key}: must be a list of strings")


def check_middleware(name: str, spec: dict, errors: list) -> list:
    refs = []
    if not isinstance(spec, dict) or len(spec) != 1 or next(iter(spec)) not in MIDDLEWARE_TYPES:
        errors.append(
            f"{name}.spec: exactly one known middleware type expected, got {list(spec or {})}"
        )
        return refs
    if "basicAuth" in spec:
        ba = spec["basicAuth"]
        _unknown(f"{name}.spec.basicAuth", ba, BASICAUTH_KEYS, errors)
        if isinstance(ba, dict):
            _nonempty_str(f"{name}.spec.basicAuth.secret", ba.get("secret"), errors)
            refs.append(("Secret", ba.get("secret")))
    return refs


def check_serverstransport(name: str, spec: dict, errors: list) -> None:
    _unknown(f"{name}.spec", spec, SERVERSTRANSPORT_SPEC, errors)
    ft = spec.get("forwardingTimeouts") if isinstance(spec, dict) else None
    if ft is None:
        return
    _unknown(f"{name}.spec.forwardingTimeouts", ft, FORWARDING_TIMEOUTS, errors)
    if not isinstance(ft, dict):
        return
    for key, value in ft.items():
        if isinstance(value, bool) or not (
            (isinstance(value, int) and value >= 0)
            or (isinstance(value, str) and DURATION_RE.match(value))
        ):
            errors.append(
                f"{name}.spec.forwardingTimeouts.{key}: {value!r} is not a duration "
                "(int or Go duration string, e.g. 3s)"
            )


def check_servicemonitor(name: str, spec: dict, errors: list) -> None:
    _unknown(f"{name}.spec", spec, SM_SPEC, errors)
    if not isinstance(spec, dict):
        return
    sel = spec.get("selector")
    if not isinstance(sel, dict) or not (sel.get("matchLabels") or sel.get("matchExpressions")):
        errors.append(f"{name}.spec.selector: required label selector")
    eps = spec.get("endpoints")
    if not isinstance(eps, list) or not eps:
        errors.append(f"{name}.spec.endpoints: required non-empty list")
        eps = []
    for i, ep in enumerate(eps):
        w = f"{name}.spec.endpoints[{i}]"
        _unknown(w, ep, SM_ENDPOINT, errors)
        if not isinstance(ep, dict):
            continue
        if not ep.get("port") and not ep.get("targetPort"):
            errors.append(f"{w}: port or targetPort required")
        for key in ("relabelings", "metricRelabelings"):
            if key in ep:
                _check_relabelings(f"{w}.{key}", ep[key], errors)
    ns = spec.get("namespaceSelector")
    if ns is not None:
        _unknown(f"{name}.spec.namespaceSelector", ns, {"any", "matchNames"}, errors)


def check_prometheusrule(name: str, spec: dict, errors: list) -> None:
    _unknown(f"{name}.spec", spec, {"groups"}, errors)
    groups = spec.get("groups") if isinstance(spec, dict) else None
    if not isinstance(groups, list) or not groups:
        errors.append(f"{name}.spec.groups: required non-empty list")
        return
    seen = set()
    for i, g in enumerate(groups):
        w = f"{name}.spec.groups[{i}]"
        _unknown(w, g, GROUP_KEYS, errors)
        if not isinstance(g, dict):
            continue
        _nonempty_str(f"{w}.name", g.get("name"), errors)
        if g.get("name") in seen:
            errors.append(f"{w}.name: duplicate group {g.get('name')!r}")
        seen.add(g.get("name"))
        rules = g.get("rules")
        if not isinstance(rules, list) or not rules:
            errors.append(f"{w}.rules: required non-empty list")
            continue
        for j, r in enumerate(rules):
            rw = f"{w}.rules[{j}]"
            _unknown(rw, r, RULE_KEYS, errors)
            if not isinstance(r, dict):
                continue
            _nonempty_str(f"{rw}.expr", r.get("expr"), errors)
            if ("alert" in r) == ("record" in r):
                errors.append(f"{rw}: exactly one of alert/record required")
            for k in ("labels", "annotations"):
                if k in r and not (
                    isinstance(r[k], dict) and all(isinstance(v, str) for v in r[k].values())
                ):
                    errors.append(f"{rw}.{k}: must map to strings")


def check_documents(docs: list) -> tuple[int, list]:
    errors: list = []
    refs: list = []
    present = {
        (d.get("kind"), (d.get("metadata") or {}).get("name")) for d in docs if isinstance(d, dict)
    }
    n = 0
    for d in docs:
        if not isinstance(d, dict) or not is_crd(d):
            continue
        n += 1
        kind = d.get("kind")
        meta = d.get("metadata") or {}
        name = f"{kind}/{meta.get('name')}"
        if kind not in CRD_KINDS:
            errors.append(f"{name}: custom kind {kind} ({d.get('apiVersion')}) has no checker")
            continue
        if d.get("apiVersion") != CRD_KINDS[kind]:
            errors.append(
                f"{name}: apiVersion {d.get('apiVersion')!r}, expected {CRD_KINDS[kind]!r}"
            )
        _nonempty_str(f"{name}.metadata.name", meta.get("name"), errors)
        _unknown(name, d, {"apiVersion", "kind", "metadata", "spec"}, errors)
        spec = d.get("spec")
        if not isinstance(spec, dict):
            errors.append(f"{name}.spec: required mapping")
            continue
        if kind == "IngressRoute":
            refs += [(name, r) for r in check_ingressroute(name, spec, errors)]
        elif kind == "Middleware":
            refs += [(name, r) for r in check_middleware(name, spec, errors)]
        elif kind == "ServersTransport":
            check_serverstransport(name, spec, errors)
        elif kind == "TLSOption":
            check_tlsoption(name, spec, errors)
        elif kind == "ServiceMonitor":
            check_servicemonitor(name, spec, errors)
        elif kind == "PrometheusRule":
            check_prometheusrule(name, spec, errors)
    for owner, (kind, target) in refs:
        # Middlewares and the wallet-api/whoami Services are always created by this
        # chart. A Secret may be an existingSecret and the Prometheus route targets
        # a Service of another release, so those may legitimately be absent.
        if kind == "Secret":
            continue
        if kind == "Service" and owner.endswith("-prometheus"):
            continue
        if (kind, target) not in present:
            errors.append(f"{owner}: references {kind}/{target} which is not rendered")
    # Ingress mode: a Service names its ServersTransport as <namespace>-<name>@kubernetescrd
    transports = {
        f"{(d.get('metadata') or {}).get('namespace')}-{(d.get('metadata') or {}).get('name')}"
        for d in docs
        if isinstance(d, dict) and d.get("kind") == "ServersTransport"
    }
    for d in docs:
        if not isinstance(d, dict) or d.get("kind") != "Service":
            continue
        meta = d.get("metadata") or {}
        ref = (meta.get("annotations") or {}).get(SERVICE_SERVERSTRANSPORT_ANNOTATION)
        if ref is None:
            continue
        target, _, provider = str(ref).partition("@")
        if provider == "kubernetescrd" and target not in transports:
            errors.append(
                f"Service/{meta.get('name')}: annotation {SERVICE_SERVERSTRANSPORT_ANNOTATION}="
                f"{ref} names no rendered ServersTransport (have {sorted(transports)})"
            )
        elif not provider:
            errors.append(
                f"Service/{meta.get('name')}: {SERVICE_SERVERSTRANSPORT_ANNOTATION}={ref} "
                "needs a provider suffix (<namespace>-<name>@kubernetescrd)"
            )
    # Ingress mode: router middlewares and TLS options name CRDs as <namespace>-<name>@kubernetescrd.
    crds = {
        (d.get("kind"), f"{(d.get('metadata') or {}).get('namespace')}-{(d.get('metadata') or {}).get('name')}")
        for d in docs
        if isinstance(d, dict) and d.get("kind") in ("Middleware", "TLSOption")
    }  # fmt: skip
    for d in docs:
        if not isinstance(d, dict) or d.get("kind") != "Ingress":
            continue
        annotations = (d.get("metadata") or {}).get("annotations") or {}
        for key, kind in (("traefik.ingress.kubernetes.io/router.middlewares", "Middleware"),
                          ("traefik.ingress.kubernetes.io/router.tls.options", "TLSOption")):  # fmt: skip
            for ref in filter(None, str(annotations.get(key, "")).split(",")):
                target, _, provider = ref.strip().partition("@")
                if provider != "kubernetescrd" or (kind, target) not in crds:
                    errors.append(
                        f"Ingress/{(d.get('metadata') or {}).get('name')}: {key} names {ref}, "
                        f"no rendered {kind}"
                    )
    return n, errors


def main(argv: list) -> int:
    total, failed = 0, False
    for path in argv:
        with open(path, encoding="utf-8") as fh:
            docs = [d for d in yaml.safe_load_all(fh) if d]
        n, errors = check_documents(docs)
        total += n
        for e in errors:
            print(f"ERROR {path}: {e}")
        failed |= bool(errors)
    print(
        f"crd_check: {total} custom resource(s) checked in {len(argv)} file(s): "
        f"{'FAILED' if failed else 'ok'}"
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
