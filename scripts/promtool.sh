#!/usr/bin/env bash
# Run promtool: the local binary if there is one (Debian: apt-get install prometheus),
# else the one inside the Prometheus image, with the repo mounted read-only.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
if command -v promtool >/dev/null 2>&1; then
	exec promtool "$@"
fi
if ! docker info >/dev/null 2>&1; then
	echo "promtool.sh: no promtool binary and no Docker engine: install prometheus (it ships promtool)" >&2
	exit 2
fi
exec docker run --rm -v "$PWD:/repo:ro" -w /repo --entrypoint promtool \
	"${PROMETHEUS_IMAGE:-prom/prometheus:v3.5.0}" "$@"
