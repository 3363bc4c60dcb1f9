#!/bin/sh
# Entrypoint of the air-gapped redis stand-in; behaves like the official image's:
#  - a first argument that is a flag or a *.conf file is passed to redis-server;
#  - protected mode is off unless a config file or a flag says otherwise (upstream builds
#    redis with protected-mode disabled; Debian's binary defaults to on);
#  - started as root, it fixes /data ownership and drops to the redis user.
set -e

if [ "${1#-}" != "$1" ] || [ "${1%.conf}" != "$1" ]; then
	set -- redis-server "$@"
fi

if [ "$1" = 'redis-server' ]; then
	shift
	case "${1:-}" in
	*.conf) ;;
	*)
		case " $* " in
		*protected-mode*) ;;
		*) set -- --protected-mode no "$@" ;;
		esac
		;;
	esac
	set -- redis-server "$@"

	if [ "$(id -u)" = '0' ]; then
		find . \! -user redis -exec chown redis '{}' + 2>/dev/null || true
		umask 0077
		exec setpriv --reuid=redis --regid=redis --init-groups "$@"
	fi
fi

exec "$@"
