#!/usr/bin/env bash
# Create the local, gitignored secrets of the wallet-stack (idempotent).
#
#   .env                      BASIC_AUTH_USER, BASIC_AUTH_PASSWORD, REDIS_PASSWORD, WALLET_API_KEYS
#   .secrets/htpasswd         bcrypt users file for Traefik's basic-auth middleware
#   .secrets/certs/ca.crt     local CA (trust it, or use `curl --cacert .secrets/certs/ca.crt`)
#   .secrets/certs/ca.key
#   .secrets/certs/localhost.crt/.key   leaf certificate for the *.localhost hosts
#
# Values already in .env are kept; a value exported in the environment wins over
# .env (and is written to it); missing values are generated randomly. Certificates
# are only (re)created when missing, not signed by the CA, or expiring within 30 days.
# Secrets are never printed.
#
# Options/environment:
#   ROOT_DIR=<dir>   where .env and .secrets/ live (default: the repository root)
#   FORCE_CERTS=1    recreate CA and leaf certificate
set -euo pipefail

ROOT_DIR="${ROOT_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}"
ENV_FILE="${ROOT_DIR}/.env"
SECRETS_DIR="${ROOT_DIR}/.secrets"
CERT_DIR="${SECRETS_DIR}/certs"
HTPASSWD_FILE="${SECRETS_DIR}/htpasswd"
BCRYPT_COST=10
LEAF_DAYS=365   # must stay <= 397 (browser / CA-B forum limit)
CA_DAYS=3650
HOSTS=(localhost traefik.localhost prometheus.localhost whoami.localhost wallet.localhost)
KEYS=(BASIC_AUTH_USER BASIC_AUTH_PASSWORD REDIS_PASSWORD WALLET_API_KEYS)

umask 077
RELOAD_TRAEFIK=0

log() { printf 'init-secrets: %s\n' "$*"; }
die() { printf 'init-secrets: error: %s\n' "$*" >&2; exit 1; }

command -v openssl >/dev/null 2>&1 || die "openssl not found; install it (e.g. apt-get install openssl)"

rand_hex() { openssl rand -hex "$1"; }

# --- .env --------------------------------------------------------------------
# Read KEY's value from .env (last occurrence wins, like compose); strips one
# level of matching single or double quotes. Prints nothing when absent.
env_file_get() {
  local key="$1" line value=""
  [[ -f "$ENV_FILE" ]] || return 0
  while IFS= read -r line || [[ -n "$line" ]]; do
    line="${line%$'\r'}"
    if [[ "$line" =~ ^[[:space:]]*(export[[:space:]]+)?${key}[[:space:]]*=(.*)$ ]]; then
      value="${BASH_REMATCH[2]}"
      value="${value#"${value%%[![:space:]]*}"}"
      if [[ "$value" =~ ^\'(.*)\'$ ]] || [[ "$value" =~ ^\"(.*)\"$ ]]; then
        value="${BASH_REMATCH[1]}"
      fi
    fi
  done <"$ENV_FILE"
  printf '%s' "$value"
}

# Render KEY=value for .env: unquoted when only "safe" characters are used,
# else single-quoted (compose and POSIX shells then take it literally).
env_line() {
  local key="$1" value="$2"
  if [[ "$value" =~ ^[A-Za-z0-9._~:/@+,%=-]*$ ]]; then
    printf '%s=%s\n' "$key" "$value"
  else
    printf "%s='%s'\n" "$key" "$value"
  fi
}

# Set KEY=value in .env: replaces the first line of KEY in place (drops later
# duplicates) or appends; every other line is kept as is.
env_file_set() {
  local key="$1" value="$2" tmp line done=0 re
  re="^[[:space:]]*(export[[:space:]]+)?${key}[[:space:]]*="
  tmp="$(mktemp "${ENV_FILE}.XXXXXX")"
  if [[ -f "$ENV_FILE" ]]; then
    while IFS= read -r line || [[ -n "$line" ]]; do
      if [[ "$line" =~ $re ]]; then
        [[ $done == 1 ]] || env_line "$key" "$value"
        done=1
      else
        printf '%s\n' "$line"
      fi
    done <"$ENV_FILE" >"$tmp"
  fi
  [[ $done == 1 ]] || env_line "$key" "$value" >>"$tmp"
  chmod 600 "$tmp"
  mv -f "$tmp" "$ENV_FILE"
}

validate() {
  local key="$1" value="$2"
  [[ -n "$value" ]] || die "$key is empty"
  [[ "$value" != *$'\n'* && "$value" != *"'"* ]] || die "$key must not contain newlines or single quotes"
  case "$key" in
    BASIC_AUTH_USER)
      [[ "$value" =~ ^[A-Za-z0-9._-]+$ ]] || die "BASIC_AUTH_USER may only use letters, digits, '.', '_' and '-'" ;;
    REDIS_PASSWORD)
      # goes verbatim into REDIS_URL=redis://:PASSWORD@redis:6379/0
      [[ "$value" =~ ^[A-Za-z0-9._~-]+$ ]] || die "REDIS_PASSWORD may only use URL-safe characters [A-Za-z0-9._~-]" ;;
    WALLET_API_KEYS)
      [[ "$value" =~ ^[A-Za-z0-9._~+/=,-]+$ ]] || die "WALLET_API_KEYS must be comma-separated tokens of [A-Za-z0-9._~+/=-]" ;;
  esac
}

generate() {
  case "$1" in
    BASIC_AUTH_USER) printf 'admin' ;;
    BASIC_AUTH_PASSWORD) rand_hex 18 ;;
    REDIS_PASSWORD) rand_hex 24 ;;
    WALLET_API_KEYS) rand_hex 32 ;;
  esac
}

[[ -f "$ENV_FILE" ]] || { : >"$ENV_FILE"; log "created ${ENV_FILE#"$ROOT_DIR"/}"; }
chmod 600 "$ENV_FILE"

# Current values live in VAL_<KEY> (no associative arrays: works with bash 3.2 on macOS).
val() { local v="VAL_$1"; printf '%s' "${!v}"; }
for key in "${KEYS[@]}"; do
  from_file="$(env_file_get "$key")"
  from_env="${!key:-}"
  if [[ -n "$from_env" ]]; then
    validate "$key" "$from_env"
    if [[ "$from_env" != "$from_file" ]]; then
      env_file_set "$key" "$from_env"
      log "$key: taken from the environment"
    fi
    printf -v "VAL_$key" '%s' "$from_env"
  elif [[ -n "$from_file" ]]; then
    validate "$key" "$from_file"
    printf -v "VAL_$key" '%s' "$from_file"
  else
    printf -v "VAL_$key" '%s' "$(generate "$key")"
    env_file_set "$key" "$(val "$key")"
    log "$key: generated"
  fi
done

# --- htpasswd (bcrypt) ---------------------------------------------------------
mkdir -p "$CERT_DIR"
chmod 700 "$SECRETS_DIR"

PYTHON=""
for p in python3 python; do
  if command -v "$p" >/dev/null 2>&1 && "$p" -c 'import bcrypt' >/dev/null 2>&1; then PYTHON="$p"; break; fi
done

# Outputs "user:hash" for the current credentials (password passed on stdin, never argv).
make_htpasswd_line() {
  if command -v htpasswd >/dev/null 2>&1; then
    printf '%s' "$(val BASIC_AUTH_PASSWORD)" | htpasswd -niB -C "$BCRYPT_COST" "$(val BASIC_AUTH_USER)" | sed '/^$/d'
  elif [[ -n "$PYTHON" ]]; then
    # shellcheck disable=SC2016  # "$2b$" etc. are Python text, not shell expansions
    printf '%s' "$(val BASIC_AUTH_PASSWORD)" | USER_NAME="$(val BASIC_AUTH_USER)" COST="$BCRYPT_COST" "$PYTHON" -c '
import os, sys, bcrypt
pw = sys.stdin.buffer.read()
h = bcrypt.hashpw(pw, bcrypt.gensalt(rounds=int(os.environ["COST"]))).decode()
print(os.environ["USER_NAME"] + ":" + h.replace("$2b$", "$2y$", 1))'
  else
    die "need a bcrypt tool: install apache2-utils (htpasswd) or the python3 'bcrypt' module (pip install bcrypt)"
  fi
}

# 0 when .secrets/htpasswd holds exactly the current user with the current password.
htpasswd_current() {
  [[ -s "$HTPASSWD_FILE" ]] || return 1
  local line user hash
  line="$(head -n1 "$HTPASSWD_FILE")"
  user="${line%%:*}"; hash="${line#*:}"
  [[ "$user" == "$(val BASIC_AUTH_USER)" && "$(wc -l <"$HTPASSWD_FILE")" -le 1 ]] || return 1
  if [[ -n "$PYTHON" ]]; then
    # shellcheck disable=SC2016  # Python text, not shell expansions
    printf '%s' "$(val BASIC_AUTH_PASSWORD)" | HASH="$hash" "$PYTHON" -c '
import os, sys, bcrypt
h = os.environ["HASH"].replace("$2y$", "$2b$", 1).encode()
sys.exit(0 if bcrypt.checkpw(sys.stdin.buffer.read(), h) else 1)' 2>/dev/null
  elif command -v htpasswd >/dev/null 2>&1; then
    printf '%s' "$(val BASIC_AUTH_PASSWORD)" | htpasswd -vi "$HTPASSWD_FILE" "$(val BASIC_AUTH_USER)" >/dev/null 2>&1
  else
    return 0  # cannot verify; keep the existing file
  fi
}

if htpasswd_current; then
  log "${HTPASSWD_FILE#"$ROOT_DIR"/}: up to date"
else
  line="$(make_htpasswd_line)"
  [[ "$line" == "$(val BASIC_AUTH_USER):\$2"* ]] || die "could not create a bcrypt hash"
  tmp="$(mktemp "${HTPASSWD_FILE}.XXXXXX")"
  printf '%s\n' "$line" >"$tmp"
  chmod 600 "$tmp"
  # Overwrite in place (same inode) so a running Traefik's bind mount sees the change.
  if [[ -f "$HTPASSWD_FILE" ]]; then
    cat "$tmp" >"$HTPASSWD_FILE"; rm -f "$tmp"; RELOAD_TRAEFIK=1
  else
    mv "$tmp" "$HTPASSWD_FILE"
  fi
  chmod 600 "$HTPASSWD_FILE"
  log "${HTPASSWD_FILE#"$ROOT_DIR"/}: written (bcrypt, user $(val BASIC_AUTH_USER))"
fi

# --- TLS: local CA + leaf certificate -------------------------------------------
CA_CRT="$CERT_DIR/ca.crt"; CA_KEY="$CERT_DIR/ca.key"
LEAF_CRT="$CERT_DIR/localhost.crt"; LEAF_KEY="$CERT_DIR/localhost.key"
tmpdir="$(mktemp -d)"
trap 'rm -rf "$tmpdir"' EXIT

ca_ok() {
  [[ -s "$CA_CRT" && -s "$CA_KEY" ]] && openssl x509 -in "$CA_CRT" -noout -checkend 2592000 >/dev/null 2>&1
}
leaf_ok() {
  [[ -s "$LEAF_CRT" && -s "$LEAF_KEY" ]] || return 1
  openssl x509 -in "$LEAF_CRT" -noout -checkend 2592000 >/dev/null 2>&1 || return 1
  openssl verify -CAfile "$CA_CRT" "$LEAF_CRT" >/dev/null 2>&1 || return 1
  local text h
  text="$(openssl x509 -in "$LEAF_CRT" -noout -text)"
  for h in "${HOSTS[@]}"; do
    grep -q "DNS:${h}\(,\|\$\)" <<<"$text" || return 1
  done
}

if [[ "${FORCE_CERTS:-0}" == 1 ]] || ! ca_ok; then
  cat >"$tmpdir/ca.cnf" <<'EOF'
[req]
distinguished_name = dn
prompt = no
[dn]
O = wallet-stack (local development)
CN = wallet-stack local CA
[v3_ca]
basicConstraints = critical, CA:TRUE, pathlen:0
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
EOF
  openssl req -x509 -new -newkey rsa:2048 -nodes -sha256 -days "$CA_DAYS" \
    -config "$tmpdir/ca.cnf" -extensions v3_ca \
    -keyout "$tmpdir/ca.key" -out "$tmpdir/ca.crt" >/dev/null 2>&1 || die "openssl failed to create the CA"
  mv -f "$tmpdir/ca.key" "$CA_KEY"; mv -f "$tmpdir/ca.crt" "$CA_CRT"
  chmod 600 "$CA_KEY"; chmod 644 "$CA_CRT"
  log "${CA_CRT#"$ROOT_DIR"/}: new local CA created"
fi

if [[ "${FORCE_CERTS:-0}" == 1 ]] || ! leaf_ok; then
  san=""
  for h in "${HOSTS[@]}"; do san+="${san:+, }DNS:${h}"; done
  san+=", IP:127.0.0.1, IP:::1"
  cat >"$tmpdir/leaf.cnf" <<EOF
[req]
distinguished_name = dn
prompt = no
[dn]
O = wallet-stack (local development)
CN = localhost
[v3_leaf]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = ${san}
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
EOF
  openssl req -new -newkey rsa:2048 -nodes -sha256 -config "$tmpdir/leaf.cnf" \
    -keyout "$tmpdir/leaf.key" -out "$tmpdir/leaf.csr" >/dev/null 2>&1 || die "openssl failed to create the CSR"
  openssl x509 -req -in "$tmpdir/leaf.csr" -CA "$CA_CRT" -CAkey "$CA_KEY" -CAcreateserial \
    -CAserial "$tmpdir/ca.srl" -days "$LEAF_DAYS" -sha256 -extfile "$tmpdir/leaf.cnf" -extensions v3_leaf \
    -out "$tmpdir/leaf.crt" >/dev/null 2>&1 || die "openssl failed to sign the certificate"
  chmod 600 "$tmpdir/leaf.key"; chmod 644 "$tmpdir/leaf.crt"
  # Write in place when the files exist (same inode: running bind mounts see the update).
  for pair in "leaf.key:$LEAF_KEY" "leaf.crt:$LEAF_CRT"; do
    src="$tmpdir/${pair%%:*}"; dst="${pair#*:}"
    if [[ -f "$dst" ]]; then cat "$src" >"$dst"; RELOAD_TRAEFIK=1; else mv "$src" "$dst"; fi
  done
  chmod 600 "$LEAF_KEY"; chmod 644 "$LEAF_CRT"
  log "${LEAF_CRT#"$ROOT_DIR"/}: issued for ${HOSTS[*]} (valid ${LEAF_DAYS} days)"
else
  log "${LEAF_CRT#"$ROOT_DIR"/}: up to date"
fi

if [[ $RELOAD_TRAEFIK == 1 ]]; then
  log "credentials/certificate changed: Traefik reads them at start; if it is running:"
  log "  docker compose -f docker-compose.traefik.yml restart traefik"
fi
cat <<EOF
init-secrets: done. Secrets are in .env and .secrets/ (gitignored, never commit them).
  basic-auth user/password (traefik/prometheus/whoami.localhost): grep BASIC_AUTH .env
  API key for wallet.localhost:                                   grep WALLET_API_KEYS .env
  trust the local CA: curl --cacert .secrets/certs/ca.crt https://whoami.localhost/ -u ...
EOF
