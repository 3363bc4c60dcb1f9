# shellcheck shell=bash
# Bootstrap (or re-activate) the project's virtualenv: `source virtual.sh`.
# Creates .venv with the wallet-api package and the repository tools (tools/: stackctl),
# both editable, and their pinned dependencies and dev tools.
# Re-sourcing is cheap: it reinstalls only when a lock file changed.

_wallet_root="$(cd "$(dirname "${BASH_SOURCE[0]:-$0}")" && pwd)"
_wallet_python="${PYTHON:-python3}"
_wallet_venv="${_wallet_root}/.venv"
_wallet_stamp="${_wallet_venv}/.installed-lock"
_wallet_lock="${_wallet_root}/services/wallet-api/requirements-dev.lock"

_wallet_bootstrap() {
  if [ ! -x "${_wallet_venv}/bin/python" ]; then
    "${_wallet_python}" -m venv "${_wallet_venv}" || {
      echo "virtual.sh: could not create ${_wallet_venv} with ${_wallet_python} (install python3-venv)" >&2
      return 1
    }
  fi
  local want
  want="$(cat "${_wallet_lock}" "${_wallet_root}/services/wallet-api/pyproject.toml" "${_wallet_root}/tools/pyproject.toml" | cksum)"
  if [ "$(cat "${_wallet_stamp}" 2>/dev/null)" != "${want}" ]; then
    echo "virtual.sh: installing pinned dependencies into .venv" >&2
    if ! {
      "${_wallet_venv}/bin/python" -m pip install -q -r "${_wallet_lock}" &&
        "${_wallet_venv}/bin/python" -m pip install -q --no-deps -e "${_wallet_root}/services/wallet-api" &&
        "${_wallet_venv}/bin/python" -m pip install -q --no-deps -e "${_wallet_root}/tools" &&
        echo "${want}" >"${_wallet_stamp}"
    }; then
      echo "virtual.sh: dependency install failed (see pip output above)" >&2
      return 1
    fi
  fi
}

if _wallet_bootstrap; then
  # shellcheck disable=SC1091
  . "${_wallet_venv}/bin/activate"
fi
unset -f _wallet_bootstrap
unset _wallet_root _wallet_python _wallet_venv _wallet_stamp _wallet_lock
