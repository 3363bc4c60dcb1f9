"""What the kubelet does with a rendered pod spec, re-done locally (no cluster).

- `expand`: Kubernetes' `$(VAR)` expansion (env values, command, args).
- `resolve_env`: a container's env list with `secretKeyRef` / `configMapKeyRef`
  looked up in the rendered manifests and `fieldRef` metadata.name/namespace.
- `docker_run_flags`: pod + container securityContext, emptyDir / PVC / Secret volumes
  and resource limits translated to `docker run` flags; refuses what it cannot translate
  faithfully (so a new securityContext field cannot be silently ignored). A Secret
  volume is the rendered Secret's items written to files (the kubelet's default mode
  0644) and bind-mounted read-only.
- `http_probe` / `exec_probe`: one probe attempt, judged like the kubelet
  (httpGet: 200 <= status < 400 within timeoutSeconds, redirects not followed;
  exec: exit code 0 within timeoutSeconds).

Used by test_probes_in_docker.py and (expansion, secrets) by parity_check.py.
"""

from __future__ import annotations

import atexit
import base64
import http.client
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

# Kubernetes API defaults of a Probe.
PROBE_DEFAULTS = {
    "initialDelaySeconds": 0,
    "periodSeconds": 10,
    "timeoutSeconds": 1,
    "successThreshold": 1,
    "failureThreshold": 3,
}
KUBE_PROBE_UA = "kube-probe/1.29"


class UnsupportedSpec(Exception):
    """A manifest field this simulation cannot reproduce faithfully."""


def probe_setting(probe: Mapping, key: str) -> int:
    return int(probe.get(key, PROBE_DEFAULTS[key]))


# ------------------------------------------------------------------ expansion


def expand(text: str, env: Mapping[str, str]) -> str:
    """Kubernetes `$(VAR)` expansion (k8s.io/kubernetes third_party/forked/golang/expansion):
    `$$` -> `$`; `$(NAME)` -> env[NAME], left verbatim when NAME is undefined;
    any other `$` is literal."""
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch != "$" or i + 1 >= n:
            out.append(ch)
            i += 1
            continue
        nxt = text[i + 1]
        if nxt == "$":
            out.append("$")
            i += 2
        elif nxt == "(":
            end = text.find(")", i + 2)
            if end == -1:  # unterminated: literal
                out.append(text[i:])
                break
            name = text[i + 2 : end]
            out.append(env[name] if name in env else text[i : end + 1])
            i = end + 1
        else:
            out.append(ch)
            i += 1
    return "".join(out)


# ------------------------------------------------------------------ manifests


def find(manifests: Iterable[dict], kind: str, name: str) -> dict:
    for doc in manifests:
        if doc.get("kind") == kind and doc["metadata"]["name"] == name:
            return doc
    raise KeyError(f"{kind}/{name} is not in the rendered manifests")


def pod_spec(workload: dict) -> dict:
    return workload["spec"]["template"]["spec"]


def pod_labels(workload: dict) -> dict:
    return workload["spec"]["template"]["metadata"].get("labels", {})


def container_of(workload: dict, name: str) -> dict:
    for c in pod_spec(workload)["containers"]:
        if c["name"] == name:
            return c
    raise KeyError(f"no container {name!r} in {workload['kind']}/{workload['metadata']['name']}")


def services_selecting(manifests: Iterable[dict], workload: dict) -> list[dict]:
    labels = pod_labels(workload)
    return [
        d
        for d in manifests
        if d.get("kind") == "Service"
        and d["spec"].get("selector")
        and d["spec"]["selector"].items() <= labels.items()
    ]


def resolve_port(port: int | str, container: Mapping) -> int:
    """A probe/Service port: a number, or the name of one of the container's ports."""
    if isinstance(port, int) or (isinstance(port, str) and port.isdigit()):
        return int(port)
    for p in container.get("ports", []):
        if p.get("name") == port:
            return int(p["containerPort"])
    raise KeyError(f"port {port!r} is not a named port of container {container['name']!r}")


def secret_value(manifests: Iterable[dict], name: str, key: str) -> str | None:
    for d in manifests:
        if d.get("kind") == "Secret" and d["metadata"]["name"] == name:
            if key in d.get("stringData", {}):
                return str(d["stringData"][key])
            if key in d.get("data", {}):
                return base64.b64decode(d["data"][key]).decode()
            return None
    return None


def configmap_value(manifests: Iterable[dict], name: str, key: str) -> str | None:
    for d in manifests:
        if d.get("kind") == "ConfigMap" and d["metadata"]["name"] == name:
            return d.get("data", {}).get(key)
    return None


def resolve_env(
    container: Mapping, manifests: list[dict], *, pod_name: str, namespace: str
) -> list[tuple[str, str]]:
    """The container's environment as the kubelet builds it, in order; each
    value may reference variables defined before it with $(VAR)."""
    if container.get("envFrom"):
        raise UnsupportedSpec("envFrom is not simulated")
    resolved: dict[str, str] = {}
    order: list[str] = []
    for e in container.get("env", []):
        name = e["name"]
        if "valueFrom" in e:
            src = e["valueFrom"]
            if "secretKeyRef" in src or "configMapKeyRef" in src:
                ref = src.get("secretKeyRef") or src["configMapKeyRef"]
                lookup = secret_value if "secretKeyRef" in src else configmap_value
                value = lookup(manifests, ref["name"], ref["key"])
                if value is None:
                    if ref.get("optional"):
                        continue
                    raise UnsupportedSpec(
                        f"env {name}: {ref['name']}/{ref['key']} is not rendered by the chart "
                        "(an existingSecret?): supply it as a value"
                    )
            elif "fieldRef" in src:
                path = src["fieldRef"]["fieldPath"]
                fields = {"metadata.name": pod_name, "metadata.namespace": namespace}
                if path not in fields:
                    raise UnsupportedSpec(f"env {name}: fieldRef {path} is not simulated")
                value = fields[path]
            else:
                raise UnsupportedSpec(f"env {name}: valueFrom {sorted(src)} is not simulated")
        else:
            value = expand(str(e.get("value", "")), resolved)
        if name not in resolved:
            order.append(name)
        resolved[name] = value
    return [(k, resolved[k]) for k in order]


# ------------------------------------------------------------------ docker run


def quantity_bytes(q: str | int) -> int:
    """A memory quantity as Kubernetes (`256Mi`, `1.5G`) or compose (bytes) writes it."""
    units = {
        "Ki": 1024,
        "Mi": 1024**2,
        "Gi": 1024**3,
        "Ti": 1024**4,
        "k": 1000,
        "M": 1000**2,
        "G": 1000**3,
        "T": 1000**4,
    }
    m = re.fullmatch(r"(\d+(?:\.\d+)?)([A-Za-z]*)", str(q))
    if not m or (m.group(2) and m.group(2) not in units):
        raise UnsupportedSpec(f"memory quantity {q!r}")
    return int(float(m.group(1)) * units.get(m.group(2), 1))


def quantity_cpus(q: str | float) -> float:
    """A CPU quantity as Kubernetes (`500m`, `"1"`) or compose (`1.5`) writes it."""
    m = re.fullmatch(r"(\d+)m|(\d+(?:\.\d+)?)", str(q))
    if not m:
        raise UnsupportedSpec(f"cpu quantity {q!r}")
    return int(m.group(1)) / 1000 if m.group(1) else float(m.group(2))


# securityContext fields and how (whether) docker can express them
_SC_KNOWN = {
    "runAsUser",
    "runAsGroup",
    "runAsNonRoot",
    "fsGroup",
    "supplementalGroups",
    "readOnlyRootFilesystem",
    "allowPrivilegeEscalation",
    "capabilities",
    "seccompProfile",
    "privileged",
}


@dataclass
class RunSpec:
    flags: list[str]
    entrypoint: str | None
    args: list[str]
    notes: list[str]
    # Named volumes to create and hand to group `fs_group` (mode 2770) before `docker run`:
    # what the kubelet's fsGroup ownership change does to a fresh PersistentVolume.
    owned_volumes: list[str] = field(default_factory=list)
    fs_group: int | None = None


def docker_run_flags(
    workload: dict,
    container: Mapping,
    env: Mapping[str, str],
    *,
    tmpfs_for_pvc: bool = False,
    volume_prefix: str = "kubelet-sim",
    manifests: list[dict] | None = None,
    files_dir: Path | None = None,
    configmaps: Mapping[str, Mapping[str, str]] | None = None,
) -> RunSpec:
    """`docker run` flags reproducing what the pod spec asks of the runtime.

    Secret volumes need the rendered `manifests` (the Secret) and a `files_dir` to
    write its items to. ConfigMap volumes (`configmaps`: name -> data) become read-only
    bind mounts of a temporary directory holding one file per key (mode 0644, like the
    kubelet's default), removed when the process exits."""
    spec = pod_spec(workload)
    psc = dict(spec.get("securityContext") or {})
    csc = dict(container.get("securityContext") or {})
    unknown = (set(psc) | set(csc)) - _SC_KNOWN
    if unknown:
        raise UnsupportedSpec(f"securityContext fields not simulated: {sorted(unknown)}")
    sc = {**psc, **csc}  # container-level wins
    flags: list[str] = []
    notes: list[str] = []

    uid, gid = sc.get("runAsUser"), sc.get("runAsGroup")
    if uid is not None:
        flags += ["--user", f"{uid}:{gid}" if gid is not None else str(uid)]
    if sc.get("runAsNonRoot") and (uid is None or int(uid) == 0):
        raise UnsupportedSpec(
            "runAsNonRoot without a non-zero runAsUser: the kubelet would check the image USER"
        )
    groups = list(sc.get("supplementalGroups") or [])
    fs_group = psc.get("fsGroup")
    owned_volumes: list[str] = []
    if fs_group is not None:
        groups.append(fs_group)
        notes.append(
            f"fsGroup {fs_group} -> --group-add; PVCs as named volumes owned by group {fs_group} "
            "(mode 2770, what the kubelet's fsGroup ownership change leaves)"
        )
    for g in dict.fromkeys(groups):
        flags += ["--group-add", str(g)]
    if sc.get("readOnlyRootFilesystem"):
        flags.append("--read-only")
    if sc.get("allowPrivilegeEscalation") is False:
        flags += ["--security-opt", "no-new-privileges"]
    if sc.get("privileged"):
        flags.append("--privileged")
    caps = sc.get("capabilities") or {}
    for cap in caps.get("drop", []):
        flags += ["--cap-drop", cap]
    for cap in caps.get("add", []):
        flags += ["--cap-add", cap]
    seccomp = (sc.get("seccompProfile") or {}).get("type")
    if seccomp == "Unconfined":
        flags += ["--security-opt", "seccomp=unconfined"]
    elif seccomp not in (None, "RuntimeDefault"):
        raise UnsupportedSpec(f"seccompProfile {seccomp}")
    # RuntimeDefault = docker's default seccomp profile: nothing to add.

    volumes = {v["name"]: v for v in spec.get("volumes", [])}
    claims = {t["metadata"]["name"] for t in workload["spec"].get("volumeClaimTemplates", [])}
    for m in container.get("volumeMounts", []):
        path, vol = m["mountPath"], volumes.get(m["name"])
        if m.get("subPath"):
            raise UnsupportedSpec(f"volumeMount {m['name']}: subPath")
        if vol is not None and "emptyDir" in vol:
            opts = []
            size = (vol["emptyDir"] or {}).get("sizeLimit")
            if size:
                opts.append(f"size={quantity_bytes(size)}")
            flags += ["--tmpfs", f"{path}:{','.join(opts)}" if opts else path]
        elif vol is not None and "configMap" in vol and configmaps is not None:
            name = vol["configMap"]["name"]
            if name not in configmaps:
                raise UnsupportedSpec(f"volume {m['name']}: ConfigMap {name} is not rendered")
            directory = Path(tempfile.mkdtemp(prefix="kubelet-sim-configmap-"))
            atexit.register(shutil.rmtree, directory, True)
            directory.chmod(0o755)
            for key, value in configmaps[name].items():
                (directory / key).write_text(value)
                (directory / key).chmod(0o644)
            flags += ["--volume", f"{directory}:{path}:ro"]
        elif vol is None and m["name"] in claims:
            # PVC from volumeClaimTemplates. With fsGroup: a named volume the caller hands
            # to that group first (a fresh PV after the kubelet's ownership change); else an
            # anonymous volume initialised from the image's directory.
            if fs_group is not None and not tmpfs_for_pvc:
                name = f"{volume_prefix}-{m['name']}"
                owned_volumes.append(name)
                # nocopy: docker would otherwise copy the image directory's owner and mode
                # onto the empty volume, undoing the ownership change.
                flags += ["--mount", f"type=volume,src={name},dst={path},volume-nocopy"]
            else:
                flags += ["--tmpfs", path] if tmpfs_for_pvc else ["--volume", path]
        elif vol is not None and "secret" in vol and manifests is not None and files_dir:
            if not m.get("readOnly"):
                raise UnsupportedSpec(f"volume {m['name']}: a writable Secret volume")
            host = _secret_files(manifests, vol["secret"], files_dir / m["name"])
            flags += ["--volume", f"{host}:{path}:ro"]
        else:
            raise UnsupportedSpec(
                f"volume {m['name']}: only emptyDir, configMap, volumeClaimTemplates and "
                "Secret (with the manifests) are simulated"
            )

    limits = (container.get("resources") or {}).get("limits") or {}
    if "memory" in limits:
        flags += ["--memory", str(quantity_bytes(limits["memory"]))]
    if "cpu" in limits:
        flags += ["--cpus", str(quantity_cpus(limits["cpu"]))]

    if container.get("workingDir"):
        flags += ["--workdir", container["workingDir"]]
    # Kubernetes ignores the image HEALTHCHECK; only the manifest's probes count.
    flags.append("--no-healthcheck")

    command = [expand(c, env) for c in container.get("command", [])]
    args = [expand(a, env) for a in container.get("args", [])]
    entrypoint = None
    if command:
        entrypoint, args = command[0], command[1:] + args
    return RunSpec(flags=flags, entrypoint=entrypoint, args=args, notes=notes,
                   owned_volumes=owned_volumes, fs_group=fs_group)  # fmt: skip


def _secret_files(manifests: list[dict], spec: Mapping, directory: Path) -> Path:
    """The files a Secret volume shows: its `items` (or every key), mode 0644."""
    name = spec["secretName"]
    secret = next(
        (d for d in manifests if d.get("kind") == "Secret" and d["metadata"]["name"] == name),
        None,
    )
    if secret is None:
        raise UnsupportedSpec(f"Secret {name} is not rendered by the chart (an existingSecret?)")
    items = spec.get("items") or [{"key": k, "path": k} for k in secret.get("data", {})]
    if set(spec) - {"secretName", "items"}:
        raise UnsupportedSpec(f"secret volume fields not simulated: {sorted(set(spec))}")
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o755)
    for item in items:
        value = secret_value(manifests, name, item["key"])
        if value is None:
            raise UnsupportedSpec(f"Secret {name} has no key {item['key']}")
        target = directory / item["path"]
        target.write_text(value)
        target.chmod(0o644)
    return directory


# ------------------------------------------------------------------ probes


@dataclass
class ProbeResult:
    ok: bool
    status: int | None
    elapsed: float
    detail: str = ""

    def __str__(self) -> str:
        what = self.status if self.status is not None else self.detail
        return f"{'ok' if self.ok else 'FAIL'} {what} in {self.elapsed * 1000:.0f} ms"


def http_probe(
    probe: Mapping, container: Mapping, host: str, port_map: Mapping[int, int]
) -> ProbeResult:
    """One httpGet probe attempt. `port_map` maps container ports to where they are
    reachable from here (the kubelet dials the pod IP; we dial a published port)."""
    hg = probe["httpGet"]
    if hg.get("host"):
        raise UnsupportedSpec("httpGet.host")
    if hg.get("scheme", "HTTP") != "HTTP":
        raise UnsupportedSpec(f"httpGet.scheme {hg['scheme']}")
    port = port_map[resolve_port(hg["port"], container)]
    timeout = probe_setting(probe, "timeoutSeconds")
    headers = {"User-Agent": KUBE_PROBE_UA, "Accept": "*/*", "Connection": "close"}
    headers.update({h["name"]: h["value"] for h in hg.get("httpHeaders", [])})
    started = time.monotonic()
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", hg.get("path", "/"), headers=headers)
        resp = conn.getresponse()
        resp.read()
        status = resp.status
    except (OSError, http.client.HTTPException) as exc:
        return ProbeResult(False, None, time.monotonic() - started, f"{type(exc).__name__}: {exc}")
    finally:
        conn.close()
    elapsed = time.monotonic() - started
    return ProbeResult(200 <= status < 400 and elapsed <= timeout, status, elapsed)


def exec_probe(probe: Mapping, docker_container: str) -> ProbeResult:
    cmd = probe["exec"]["command"]
    timeout = probe_setting(probe, "timeoutSeconds")
    started = time.monotonic()
    try:
        proc = subprocess.run(
            ["docker", "exec", docker_container, *cmd],
            capture_output=True,
            text=True,
            timeout=timeout + 5,  # docker exec's own overhead; judged below
            check=False,
        )
    except subprocess.TimeoutExpired:
        return ProbeResult(False, None, time.monotonic() - started, "timeout")
    elapsed = time.monotonic() - started
    detail = (proc.stdout + proc.stderr).strip()[-200:]
    return ProbeResult(proc.returncode == 0, proc.returncode, elapsed, detail)


def wait_like_kubelet(
    attempt, probe: Mapping, *, alive=lambda: True
) -> tuple[bool, list[ProbeResult]]:
    """Run `attempt()` like the kubelet runs a startup/readiness probe: after
    initialDelaySeconds, every periodSeconds, until success or failureThreshold
    consecutive failures. `alive()` False aborts (container exited)."""
    time.sleep(probe_setting(probe, "initialDelaySeconds"))
    results: list[ProbeResult] = []
    for _ in range(probe_setting(probe, "failureThreshold")):
        result = attempt()
        results.append(result)
        if result.ok:
            return True, results
        if not alive():
            break
        time.sleep(max(0.0, probe_setting(probe, "periodSeconds") - result.elapsed))
    return False, results
