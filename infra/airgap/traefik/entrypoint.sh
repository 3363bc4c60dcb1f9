#!/bin/sh
# Same dispatch as the official traefik image's entrypoint.
set -e

# first argument is a flag: run traefik with it
if [ "${1#-}" != "$1" ]; then
	set -- traefik "$@"
fi

# first argument is a traefik subcommand (version, healthcheck, ...): run it through traefik
if traefik "$1" --help >/dev/null 2>&1; then
	set -- traefik "$@"
else
	echo "= '$1' is not a Traefik command: assuming shell execution." 1>&2
fi

exec "$@"
