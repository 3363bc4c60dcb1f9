#!/bin/sh
# Starts redis-server for the wallet-stack: compose (docker-compose.yml and the HA
# overlay docker-compose.ha.yml), the Helm chart (a byte-identical copy in
# helm/wallet-stack/files/redis/) and the test suites run this same file.
#
#   sh redis-server.sh [redis-server flags...]     (the flags win over what it adds)
#
# maxmemory: REDIS_MAXMEMORY_PERCENT (default 75) of the container's memory limit
# (cgroup v2 memory.max, or v1 memory.limit_in_bytes), so one setting sizes both.
# The rest is headroom: the AOF rewrite forks (copy-on-write), client and replication
# buffers are not counted in maxmemory but live in the same limit. With no limit,
# maxmemory stays unset (and a line says so). The eviction policy is the caller's
# flag (--maxmemory-policy noeviction): wallet-api refuses to run with any other.
#
# High availability (REDIS_HA_HOST set: the Sentinel overlay, the chart's
# redis.sentinel.enabled): the node runs from /data/redis-ha.conf. Sentinel's
# CONFIG REWRITE keeps that file current when it promotes or re-points the node,
# so a restarted node keeps its role. On the first start the node is a replica of
# REDIS_HA_PRIMARY unless it is that node. On every start, when one of the Sentinels
# (REDIS_HA_SENTINELS, host:port,...) names the current primary of
# REDIS_HA_MASTER_NAME, the node follows it (or stays primary if it is named):
# a primary that crashed comes back as a replica instead of serving old data.
#
# Finally it execs redis-server: through the image's docker-entrypoint.sh when it
# runs as root (compose: the entrypoint chowns /data and drops to the redis user),
# directly otherwise (the chart runs it as uid 999).
set -eu

# write_data_file and read_data_file (files in /data, also where root may not write
# or read), sentinel_primary
# shellcheck source=infra/redis/data-file.sh
. "${0%/*}/data-file.sh"

limit=""
if [ -r /sys/fs/cgroup/memory.max ]; then
	limit="$(cat /sys/fs/cgroup/memory.max)"
elif [ -r /sys/fs/cgroup/memory/memory.limit_in_bytes ]; then
	limit="$(cat /sys/fs/cgroup/memory/memory.limit_in_bytes)"
fi
case "$limit" in
'' | max | *[!0-9]*) limit="" ;;
esac
# cgroup v1 says "no limit" with a number near 2^63.
if [ "${#limit}" -ge 19 ]; then limit=""; fi
percent="${REDIS_MAXMEMORY_PERCENT:-75}"
case "$percent" in
'' | *[!0-9]*)
	echo "redis-server.sh: REDIS_MAXMEMORY_PERCENT must be a whole number, got '$percent'" >&2
	exit 2
	;;
esac
if [ -n "$limit" ]; then
	maxmemory=$((limit * percent / 100))
	echo "redis-server.sh: maxmemory $maxmemory bytes ($percent% of the container limit $limit)"
	set -- --maxmemory "$maxmemory" "$@"
else
	echo "redis-server.sh: no container memory limit found: maxmemory not set"
fi

conf=""
if [ -n "${REDIS_HA_HOST:-}" ]; then
	: "${REDIS_HA_PRIMARY:?REDIS_HA_PRIMARY: the host of the first primary}"
	port="${REDIS_PORT:-6379}"
	conf=/data/redis-ha.conf
	if [ ! -s "$conf" ]; then
		if [ "$REDIS_HA_HOST" = "$REDIS_HA_PRIMARY" ]; then
			echo "# first start: primary (Sentinel rewrites this file)" | write_data_file "$conf"
		else
			echo "replicaof $REDIS_HA_PRIMARY $port" | write_data_file "$conf"
		fi
	fi
	# Sentinel's CONFIG REWRITE (on a promotion or re-pointing) also writes the ACL
	# users into the file, and they come again as the caller's --user flags: Redis
	# refuses a user defined twice, so the node would not start again after a failover.
	# The flags stay the one source of the users; the file keeps only the topology.
	current="$(read_data_file "$conf")"
	if printf '%s\n' "$current" | grep -q '^user '; then
		printf '%s\n' "$current" | grep -v '^user ' | write_data_file "$conf"
		echo "redis-server.sh: dropped the ACL users CONFIG REWRITE wrote to $conf (the flags define them)"
	fi
	for sentinel in $(echo "${REDIS_HA_SENTINELS:-}" | tr ',' ' '); do
		primary="$(sentinel_primary "$sentinel" "${REDIS_HA_MASTER_NAME:-mymaster}")" || continue
		host="${primary% *}"
		hport="${primary#* }"
		if [ "$host" = "$REDIS_HA_HOST" ]; then
			echo "redis-server.sh: Sentinel $sentinel names this node the primary"
			set -- "$@" --replicaof no one
		else
			echo "redis-server.sh: Sentinel $sentinel names $host:$hport the primary: following it"
			set -- "$@" --replicaof "$host" "$hport"
		fi
		break
	done
	set -- "$conf" "$@"
fi

if [ "$(id -u)" = 0 ] && command -v docker-entrypoint.sh >/dev/null 2>&1; then
	exec docker-entrypoint.sh redis-server "$@"
fi
exec redis-server "$@"
