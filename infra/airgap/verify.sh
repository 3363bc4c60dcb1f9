#!/usr/bin/env bash
# Smoke-test the air-gapped stand-in images built by scripts/airgap.sh.
# usage: infra/airgap/verify.sh   (reads image names from the environment or .airgap.env)
# Every container/network/image it creates is named airgap-verify-* and removed on exit.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
if [ -f "$REPO_ROOT/.airgap.env" ]; then
	while IFS='=' read -r key value; do
		case "$key" in
		*_IMAGE) [ -n "${!key:-}" ] || export "$key=$value" ;;
		esac
	done <"$REPO_ROOT/.airgap.env"
fi
: "${DEBIAN_IMAGE:?run scripts/airgap.sh first}" "${PYTHON_IMAGE:?}" "${REDIS_IMAGE:?}"
: "${TRAEFIK_IMAGE:?}" "${PROMETHEUS_IMAGE:?}" "${WHOAMI_IMAGE:?}"

ID="airgap-verify-$$"
NET="$ID-net"
WORK="$(mktemp -d)"
PASSED=0
FAILED=0

cleanup() {
	docker rm -f "$ID-redis" "$ID-sentinel" "$ID-traefik" "$ID-prom" "$ID-whoami" >/dev/null 2>&1 || true
	docker network rm "$NET" >/dev/null 2>&1 || true
	docker rmi "$ID-pip:latest" >/dev/null 2>&1 || true
	rm -rf "$WORK"
}
trap cleanup EXIT

ok() {
	PASSED=$((PASSED + 1))
	printf 'ok   %s\n' "$*"
}
fail() {
	FAILED=$((FAILED + 1))
	printf 'FAIL %s\n' "$*"
}
# wait_for SECONDS CMD...: retry CMD once a second.
wait_for() {
	local n=$1
	shift
	until "$@" >/dev/null 2>&1; do
		n=$((n - 1))
		[ "$n" -gt 0 ] || return 1
		sleep 1
	done
}

docker network create "$NET" >/dev/null

# --- debian ------------------------------------------------------------------
if out="$(docker run --rm "$DEBIAN_IMAGE" sh -c 'test -s "$SSL_CERT_FILE" && . /etc/os-release && echo "$PRETTY_NAME"')"; then
	ok "debian: $out, CA bundle present"
else
	fail "debian: $out"
fi

# --- redis: password + AOF, ping via redis-cli, runs as the redis user -------------
docker run -d --name "$ID-redis" --network "$NET" "$REDIS_IMAGE" \
	redis-server --appendonly yes --requirepass s3cret >/dev/null
if wait_for 20 docker exec "$ID-redis" redis-cli -a s3cret --no-auth-warning ping &&
	[ "$(docker exec "$ID-redis" redis-cli -a s3cret --no-auth-warning ping)" = PONG ]; then
	user="$(docker exec "$ID-redis" sh -c 'ps -o user= -C redis-server 2>/dev/null || stat -c %U /proc/1')"
	noauth="$(docker exec "$ID-redis" redis-cli ping 2>&1 || true)"
	aof="$(docker exec "$ID-redis" sh -c 'ls -d /data/appendonlydir 2>/dev/null' || true)"
	ok "redis: PONG with --requirepass (server user: $user; without password: ${noauth%%$'\n'*}; AOF dir: ${aof:-missing})"
else
	fail "redis: no PONG: $(docker logs "$ID-redis" 2>&1 | tail -n 2 | tr '\n' ' ')"
fi
# reachable from another container (protected mode off, like upstream)
if [ "$(docker run --rm --network "$NET" --entrypoint redis-cli "$REDIS_IMAGE" -h "$ID-redis" -a s3cret --no-auth-warning ping)" = PONG ]; then
	ok "redis: reachable from another container on a user network"
else
	fail "redis: not reachable over the network"
fi

# --- redis sentinel: what docker-compose.ha.yml runs (infra/redis/sentinel.sh) -----------
docker run -d --name "$ID-sentinel" --network "$NET" --entrypoint sh "$REDIS_IMAGE" -c \
	"printf 'port 26379\nsentinel resolve-hostnames yes\nsentinel monitor m $ID-redis 6379 1\nsentinel auth-pass m s3cret\n' >/tmp/s.conf && exec redis-server /tmp/s.conf --sentinel" >/dev/null
if wait_for 20 sh -c "docker exec '$ID-sentinel' redis-cli -p 26379 sentinel get-master-addr-by-name m | grep -q 6379"; then
	ok "redis: redis-server --sentinel watches the primary ($(docker run --rm --entrypoint sh "$REDIS_IMAGE" -c 'command -v redis-sentinel || echo no redis-sentinel binary'))"
else
	fail "redis: sentinel: $(docker logs "$ID-sentinel" 2>&1 | tail -n 2 | tr '\n' ' ')"
fi

# --- traefik: version, and healthcheck --ping like compose uses it ----------------
if out="$(docker run --rm "$TRAEFIK_IMAGE" version)"; then
	ok "traefik: $(printf '%s\n' "$out" | awk '$1 == "Version:" { print "version " $2 }')"
else
	fail "traefik: version failed"
fi
docker run -d --name "$ID-traefik" --network "$NET" "$TRAEFIK_IMAGE" \
	--ping=true --entrypoints.web.address=:80 --log.level=ERROR >/dev/null
if wait_for 20 docker exec "$ID-traefik" traefik healthcheck --ping; then
	ok "traefik: 'traefik healthcheck --ping' passes (flags-only command goes through the entrypoint)"
else
	fail "traefik: healthcheck --ping: $(docker logs "$ID-traefik" 2>&1 | tail -n 2 | tr '\n' ' ')"
fi

# --- prometheus: trivial config, /-/healthy via wget from inside, promtool ------------
cat >"$WORK/prometheus.yml" <<'EOF'
global:
  scrape_interval: 5s
scrape_configs:
  - job_name: self
    static_configs:
      - targets: ["127.0.0.1:9090"]
EOF
chmod 0644 "$WORK/prometheus.yml"
chmod 0755 "$WORK"
docker run -d --name "$ID-prom" --network "$NET" \
	-v "$WORK/prometheus.yml:/etc/prometheus/prometheus.yml:ro" "$PROMETHEUS_IMAGE" >/dev/null
if wait_for 30 docker exec "$ID-prom" wget -qO- http://127.0.0.1:9090/-/healthy; then
	body="$(docker exec "$ID-prom" wget -qO- http://127.0.0.1:9090/-/healthy)"
	ready="$(docker exec "$ID-prom" wget -qO- http://127.0.0.1:9090/-/ready || true)"
	ok "prometheus: /-/healthy says '${body}', /-/ready says '${ready}' (user $(docker exec "$ID-prom" id -un))"
else
	fail "prometheus: not healthy: $(docker logs "$ID-prom" 2>&1 | tail -n 2 | tr '\n' ' ')"
fi
if out="$(docker exec "$ID-prom" promtool check config /etc/prometheus/prometheus.yml 2>&1)"; then
	ok "prometheus: promtool check config: $(printf '%s' "$out" | tail -n 1)"
else
	fail "prometheus: promtool: $out"
fi

# --- whoami: request echo on :80, fetched from another container --------------------
docker run -d --name "$ID-whoami" --network "$NET" "$WHOAMI_IMAGE" >/dev/null
fetch_whoami() {
	docker run --rm --network "$NET" --entrypoint wget "$PROMETHEUS_IMAGE" -qO- "$@"
}
if wait_for 20 fetch_whoami "http://$ID-whoami/health" && out="$(fetch_whoami --header 'X-Probe: 1' "http://$ID-whoami/")" &&
	grep -q '^Hostname: ' <<<"$out" && grep -q '^GET / HTTP/1.1' <<<"$out" && grep -q '^X-Probe: 1' <<<"$out"; then
	ok "whoami: echo from another container: $(printf '%s\n' "$out" | head -n 1) / $(printf '%s\n' "$out" | grep -m1 '^RemoteAddr')"
else
	fail "whoami: unexpected answer: $(printf '%s' "${out:-}" | head -n 3 | tr '\n' ' ')"
fi
if docker run --rm --network "$NET" "$WHOAMI_IMAGE" --help >/dev/null 2>&1 &&
	docker exec "$ID-whoami" python3 -c 'import urllib.request as u; u.urlopen("http://127.0.0.1/health", timeout=5)'; then
	ok "whoami: /health answers 200, --help works"
else
	fail "whoami: /health or --help"
fi

# --- python: a Dockerfile FROM the stand-in pip-installs flask (system and venv) ------
mkdir -p "$WORK/pip"
cat >"$WORK/pip/Dockerfile" <<'EOF'
ARG PYTHON_IMAGE
FROM ${PYTHON_IMAGE}
RUN pip install --no-cache-dir --root-user-action=ignore flask \
 && python -m venv /opt/venv && /opt/venv/bin/pip install --no-cache-dir itsdangerous
CMD ["python", "-c", "import flask, importlib.metadata as m, sys; print(sys.version.split()[0], 'flask', m.version('flask'))"]
EOF
if docker build -q -t "$ID-pip:latest" --build-arg "PYTHON_IMAGE=$PYTHON_IMAGE" "$WORK/pip" >"$WORK/pip.log" 2>&1 &&
	out="$(docker run --rm --user 10001 "$ID-pip:latest")"; then
	ok "python: docker build FROM stand-in pip-installed flask (system + venv); as uid 10001: $out"
else
	fail "python: pip build failed: $(grep -v '^[[:space:]]*$' "$WORK/pip.log" | tail -n 1)"
fi

printf '%d passed, %d failed\n' "$PASSED" "$FAILED"
[ "$FAILED" -eq 0 ]
