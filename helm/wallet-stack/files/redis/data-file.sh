# shellcheck shell=sh
# Sourced by redis-server.sh and sentinel.sh (the chart ships byte copies of all three).
# Writes stdin to the file $1 in /data. Started as root (compose) with cap_drop ALL,
# root has no CAP_DAC_OVERRIDE: it cannot create files in a /data that belongs to the
# redis user (the image's ownership, or the entrypoint's chown on an earlier start).
# Then the file is written as that user, who is the one to rewrite it later anyway.
write_data_file() {
	if (: >"$1") 2>/dev/null; then # a subshell: a failed redirection ends it, not us
		cat >"$1"
	elif command -v gosu >/dev/null 2>&1; then
		gosu redis tee "$1" >/dev/null
	else
		setpriv --reuid=redis --regid=redis --init-groups tee "$1" >/dev/null
	fi
}
