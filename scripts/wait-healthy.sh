#!/usr/bin/env bash
# Wait until every container of a compose project is ready:
#   - containers with a healthcheck must be "healthy";
#   - containers without one must be running (or, when their restart policy is "no",
#     have exited with status 0: one-shot jobs).
# On timeout, prints the containers that are not ready (with their last healthcheck
# output) and exits 1.
#
# Usage: scripts/wait-healthy.sh [TIMEOUT_SECONDS]
#   TIMEOUT_SECONDS       default $WAIT_TIMEOUT or 180
#   COMPOSE_PROJECT_NAME  project to watch (default: wallet-stack)
#   WAIT_INTERVAL         seconds between polls (default: 2)
set -euo pipefail

timeout="${1:-${WAIT_TIMEOUT:-180}}"
project="${COMPOSE_PROJECT_NAME:-wallet-stack}"
interval="${WAIT_INTERVAL:-2}"

[[ "$timeout" =~ ^[0-9]+$ ]] || { echo "wait-healthy: timeout must be a number of seconds, got '$timeout'" >&2; exit 2; }
command -v docker >/dev/null 2>&1 || { echo "wait-healthy: docker not found" >&2; exit 2; }

# One line per container: name|state|exit code|health (or "none")|restart policy
list_containers() {
  local ids
  ids="$(docker ps -aq --filter "label=com.docker.compose.project=${project}")"
  [[ -n "$ids" ]] || return 0
  # shellcheck disable=SC2086  # word splitting of the id list is intended
  docker inspect --format '{{.Name}}|{{.State.Status}}|{{.State.ExitCode}}|{{if .State.Health}}{{.State.Health.Status}}{{else}}none{{end}}|{{.HostConfig.RestartPolicy.Name}}' $ids |
    sed 's|^/||' | sort
}

# Prints the not-ready containers (name: reason); returns 0 when all are ready.
not_ready() {
  local lines="$1" name state code health restart bad=0
  while IFS='|' read -r name state code health restart; do
    [[ -n "$name" ]] || continue
    if [[ "$health" != none ]]; then
      if [[ "$state" != running || "$health" != healthy ]]; then
        echo "  ${name}: state=${state} health=${health}"; bad=1
      fi
    elif [[ "$state" != running ]] && ! [[ "$state" == exited && "$code" == 0 && "${restart:-no}" =~ ^(no|)$ ]]; then
      echo "  ${name}: state=${state} exit=${code} (no healthcheck)"; bad=1
    fi
  done <<<"$lines"
  return "$bad"
}

deadline=$((SECONDS + timeout))
while :; do
  lines="$(list_containers)"
  if [[ -n "$lines" ]] && report="$(not_ready "$lines")"; then
    echo "wait-healthy: all $(wc -l <<<"$lines" | tr -d ' ') containers of project '${project}' are ready"
    exit 0
  fi
  if ((SECONDS >= deadline)); then
    echo "wait-healthy: timeout after ${timeout}s; not ready in project '${project}':" >&2
    if [[ -z "$lines" ]]; then
      echo "  (no containers found; is the stack up? docker compose ... up -d)" >&2
    else
      printf '%s\n' "$report" >&2
      # Last healthcheck output of the unhealthy ones, to see why (truncated).
      while IFS='|' read -r name _ _ health _; do
        [[ "$health" == none || "$health" == healthy ]] && continue
        out="$(docker inspect --format '{{with .State.Health}}{{range .Log}}{{.Output}}{{end}}{{end}}' "$name" 2>/dev/null | tail -n 3 | cut -c1-200)"
        if [[ -n "$out" ]]; then
          printf '  --- %s last healthcheck output:\n' "$name" >&2
          while IFS= read -r l; do printf '      %s\n' "$l" >&2; done <<<"$out"
        fi
      done <<<"$lines"
    fi
    exit 1
  fi
  sleep "$interval"
done
