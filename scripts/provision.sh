#!/usr/bin/env bash
# Install the OS packages wallet-stack needs (provision/debian-packages.txt) with apt:
# only those whose command (or package) is missing. Idempotent; needs root to install.
#
#   scripts/provision.sh           install what is missing
#   scripts/provision.sh --check   list what is missing; exit 1 if anything is
set -euo pipefail

LIST="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/provision/debian-packages.txt"
check=0
case "${1:-}" in
"") ;;
--check) check=1 ;;
*)
	echo "usage: scripts/provision.sh [--check]" >&2
	exit 2
	;;
esac

missing=()
while read -r package command _; do
	case "$package" in "" | \#*) continue ;; esac
	if [ "$command" = "-" ]; then
		dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'install ok installed' && continue
	else
		command -v "$command" >/dev/null 2>&1 && continue
	fi
	missing+=("$package")
done <"$LIST"

if [ "${#missing[@]}" -eq 0 ]; then
	echo "provision: nothing missing"
	exit 0
fi
if [ "$check" -eq 1 ]; then
	echo "provision: missing: ${missing[*]}"
	exit 1
fi
command -v apt-get >/dev/null 2>&1 || {
	echo "provision: error: no apt-get here; install by hand: ${missing[*]}" >&2
	exit 1
}
sudo=()
if [ "$(id -u)" -ne 0 ]; then
	command -v sudo >/dev/null 2>&1 || {
		echo "provision: error: run as root (or install sudo) to install: ${missing[*]}" >&2
		exit 1
	}
	sudo=(sudo)
fi
echo "provision: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -q
"${sudo[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
# Debian starts docker-registry as a service on :5000 (every interface, no auth); make
# release-check runs its own on 127.0.0.1 only, so the packaged service is switched off.
if [[ " ${missing[*]} " == *" docker-registry "* ]] && [ -d /run/systemd/system ]; then
	"${sudo[@]}" systemctl disable --now docker-registry.service ||
		echo "provision: warning: could not stop docker-registry.service (it listens on :5000)" >&2
fi
