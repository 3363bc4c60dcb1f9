# shellcheck shell=sh
# Helpers sourced by redis-server.sh and sentinel.sh (the chart ships byte copies of
# all three).

# as_redis command...: runs it as the redis user (gosu in the image, setpriv elsewhere).
# Started as root (compose) with cap_drop ALL, root has no CAP_DAC_OVERRIDE: it can
# neither create files in a /data that belongs to the redis user (the image's ownership,
# or the entrypoint's chown on an earlier start) nor read the config files Redis
# rewrites there (readable by that user only).
as_redis() {
	if command -v gosu >/dev/null 2>&1; then
		gosu redis "$@"
	else
		setpriv --reuid=redis --regid=redis --init-groups "$@"
	fi
}

# write_data_file: writes stdin to the file $1 in /data; as the redis user when root
# may not (that user is the one to rewrite it later anyway).
write_data_file() {
	if (: >"$1") 2>/dev/null; then # a subshell: a failed redirection ends it, not us
		cat >"$1"
	else
		as_redis tee "$1" >/dev/null
	fi
}

# read_data_file: prints the file $1 in /data; as the redis user when root may not.
read_data_file() {
	if [ -r "$1" ] && cat "$1" 2>/dev/null; then
		return 0
	fi
	as_redis cat "$1"
}

# sentinel_primary host:port master-name: prints "host port" of the primary that the
# Sentinel at host:port names for master-name. Fails, printing nothing, when that
# Sentinel cannot be asked (3 s) or its answer is not a host and a port.
sentinel_primary() {
	_answer="$(timeout 3 redis-cli --no-auth-warning -h "${1%:*}" -p "${1##*:}" \
		SENTINEL get-master-addr-by-name "$2" 2>/dev/null)" || return 1
	_host="$(echo "$_answer" | sed -n 1p)"
	_port="$(echo "$_answer" | sed -n 2p)"
	case "$_port" in '' | *[!0-9]*) return 1 ;; esac
	[ -n "$_host" ] || return 1
	echo "$_host $_port"
}
