#!/bin/sh
# Starts a Redis Sentinel for the wallet-stack's HA topology (the compose overlay
# docker-compose.ha.yml, the chart's redis.sentinel.enabled: a byte-identical copy in
# helm/wallet-stack/files/redis/, and the test suites).
#
# Sentinel rewrites its own config file, so it lives in /data/sentinel.conf and is
# kept across restarts. On the first start the file is written from:
#   SENTINEL_HOST            this Sentinel's host name, announced to the others
#   SENTINEL_PEERS           every Sentinel as host:port,... (this one may be listed)
#   SENTINEL_MASTER_NAME     the name clients ask for (REDIS_MASTER_NAME)
#   SENTINEL_PRIMARY         the first primary's host (a peer's answer wins: after a
#                            failover, a new Sentinel must watch the current primary)
#   SENTINEL_QUORUM, SENTINEL_DOWN_AFTER_MS, SENTINEL_FAILOVER_TIMEOUT_MS,
#   SENTINEL_PORT (26379), REDIS_PORT (6379)
#   REDISCLI_AUTH            this Sentinel's own password (requirepass), the one it
#                            uses with its peers, and the data nodes' password unless:
#   SENTINEL_AUTH_USER       the ACL user it acts as on the data nodes (REPLICAOF and
#                            CONFIG REWRITE are beyond the app's user), whose password
#                            is REDIS_ADMIN_PASSWORD
# Host names, not addresses: containers and pods change address when they restart.
set -eu

# write_data_file (a file in /data, also where root may not write), sentinel_primary
# shellcheck source=infra/redis/data-file.sh
. "${0%/*}/data-file.sh"

: "${SENTINEL_HOST:?}" "${SENTINEL_MASTER_NAME:?}" "${SENTINEL_PRIMARY:?}"
port="${SENTINEL_PORT:-26379}"
conf=/data/sentinel.conf

if [ ! -s "$conf" ]; then
	primary="$SENTINEL_PRIMARY"
	primary_port="${REDIS_PORT:-6379}"
	for peer in $(echo "${SENTINEL_PEERS:-}" | tr ',' ' '); do
		[ "${peer%:*}" != "$SENTINEL_HOST" ] || continue
		named="$(sentinel_primary "$peer" "$SENTINEL_MASTER_NAME")" || continue
		primary="${named% *}"
		primary_port="${named#* }"
		echo "sentinel.sh: peer $peer names $primary:$primary_port the primary"
		break
	done
	# Sentinel refuses a monitor line whose host does not resolve yet.
	tries=0
	until getent hosts "$primary" >/dev/null 2>&1; do
		tries=$((tries + 1))
		if [ "$tries" -gt 120 ]; then
			echo "sentinel.sh: $primary does not resolve" >&2
			exit 1
		fi
		sleep 1
	done
	name="$SENTINEL_MASTER_NAME"
	{
		echo "port $port"
		echo "dir /data"
		echo "sentinel resolve-hostnames yes"
		echo "sentinel announce-hostnames yes"
		echo "sentinel announce-ip $SENTINEL_HOST"
		echo "sentinel announce-port $port"
		if [ -n "${REDISCLI_AUTH:-}" ]; then
			echo "requirepass \"$REDISCLI_AUTH\""
			echo "sentinel sentinel-pass \"$REDISCLI_AUTH\""
		fi
		echo "sentinel monitor $name $primary $primary_port ${SENTINEL_QUORUM:-2}"
		if [ -n "${SENTINEL_AUTH_USER:-}" ]; then
			: "${REDIS_ADMIN_PASSWORD:?REDIS_ADMIN_PASSWORD: the password of SENTINEL_AUTH_USER}"
			echo "sentinel auth-user $name $SENTINEL_AUTH_USER"
			echo "sentinel auth-pass $name \"$REDIS_ADMIN_PASSWORD\""
		elif [ -n "${REDISCLI_AUTH:-}" ]; then
			echo "sentinel auth-pass $name \"$REDISCLI_AUTH\""
		fi
		echo "sentinel down-after-milliseconds $name ${SENTINEL_DOWN_AFTER_MS:-3000}"
		echo "sentinel failover-timeout $name ${SENTINEL_FAILOVER_TIMEOUT_MS:-30000}"
		echo "sentinel parallel-syncs $name 1"
	} | write_data_file "$conf"
fi

if [ "$(id -u)" = 0 ] && command -v docker-entrypoint.sh >/dev/null 2>&1; then
	exec docker-entrypoint.sh redis-server "$conf" --sentinel
fi
exec redis-server "$conf" --sentinel
