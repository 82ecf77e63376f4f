#!/usr/bin/env bash
# Side-by-side benchmark of Hearth and Synapse on this machine, in one run: installs Synapse
# from PyPI into a venv under ~/.cache/hearth when missing, starts it on loopback with SQLite
# and every rate limit lifted, starts a release build of Hearth on another port, runs each
# hearth-bench workload against both (alternating which goes first), and prints each figure
# side by side with the ratio. The processes it started are stopped on exit.
#
#   bench/compare.sh                      # every workload
#   bench/compare.sh messages sync        # some of them
#
# SYNAPSE_VERSION (default 1.163.2) picks the Synapse release; HEARTH_PORT and SYNAPSE_PORT
# the ports (18008, 18009).
set -euo pipefail
cd "$(dirname "$0")/.."
root="$(pwd)"
synapse_version="${SYNAPSE_VERSION:-1.163.2}"
hearth_port="${HEARTH_PORT:-18008}"
synapse_port="${SYNAPSE_PORT:-18009}"
cache="$HOME/.cache/hearth"
venv="$cache/synapse-$synapse_version"
workloads=("$@")
[ ${#workloads[@]} -gt 0 ] || workloads=(memory accounts messages sync sliding media)

scripts/prerequisites
missing=()
python3 -c 'import venv, ensurepip' 2>/dev/null || missing+=(python3-venv)
"$root/scripts/install-packages" "the Synapse venv" "${missing[@]}"
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import synapse' 2>/dev/null; then
    echo "installing Synapse $synapse_version into $venv"
    python3 -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet "matrix-synapse==$synapse_version"
fi
cargo build --release --bins
bin="${CARGO_TARGET_DIR:-target}/release"

work="$(mktemp -d)"
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT

# Synapse: SQLite, open registration, no rate limits, client API only, quiet logs.
mkdir -p "$work/synapse"
secret() { python3 -c 'import secrets; print(secrets.token_hex(16))'; }
unlimited='{ per_second: 100000, burst_count: 100000 }'
cat >"$work/synapse/homeserver.yaml" <<YAML
server_name: "localhost"
pid_file: "$work/synapse/homeserver.pid"
listeners:
  - { port: $synapse_port, tls: false, type: http, x_forwarded: false, bind_addresses: ["127.0.0.1"],
      resources: [ { names: [client], compress: false } ] }
database: { name: sqlite3, args: { database: "$work/synapse/homeserver.db" } }
log_config: "$work/synapse/log.yaml"
media_store_path: "$work/synapse/media"
signing_key_path: "$work/synapse/signing.key"
report_stats: false
macaroon_secret_key: "$(secret)"
form_secret: "$(secret)"
registration_shared_secret: "$(secret)"
enable_registration: true
enable_registration_without_verification: true
trusted_key_servers: []
suppress_key_server_warning: true
max_upload_size: 100M
rc_message: $unlimited
rc_registration: $unlimited
rc_registration_token_validity: $unlimited
rc_login: { address: $unlimited, account: $unlimited, failed_attempts: $unlimited }
rc_joins: { local: $unlimited, remote: $unlimited }
rc_joins_per_room: $unlimited
rc_invites: { per_room: $unlimited, per_user: $unlimited, per_issuer: $unlimited }
rc_room_creation: $unlimited
rc_media_create: $unlimited
rc_presence: { per_user: $unlimited }
rc_key_requests: $unlimited
rc_3pid_validation: $unlimited
rc_admin_redaction: $unlimited
YAML
cat >"$work/synapse/log.yaml" <<YAML
version: 1
formatters: { plain: { format: "%(asctime)s %(levelname)s %(name)s %(message)s" } }
handlers: { file: { class: logging.FileHandler, filename: "$work/synapse/homeserver.log", formatter: plain } }
root: { level: WARNING, handlers: [file] }
disable_existing_loggers: false
YAML
"$venv/bin/python" -m synapse.app.homeserver -c "$work/synapse/homeserver.yaml" --generate-keys >/dev/null
"$venv/bin/python" -m synapse.app.homeserver -c "$work/synapse/homeserver.yaml" 2>"$work/synapse/stderr.log" &
pids+=($!)
synapse_pid=$!

HEARTH_DATA_DIR="$work/hearth" \
HEARTH_LISTEN="127.0.0.1:$hearth_port" \
HEARTH_REGISTRATION=open \
HEARTH_RATE_LIMITS__LOGIN__PER_SECOND=100000 HEARTH_RATE_LIMITS__LOGIN__BURST=100000 \
HEARTH_RATE_LIMITS__REGISTRATION__PER_SECOND=100000 HEARTH_RATE_LIMITS__REGISTRATION__BURST=100000 \
HEARTH_RATE_LIMITS__MESSAGE__PER_SECOND=100000 HEARTH_RATE_LIMITS__MESSAGE__BURST=100000 \
HEARTH_MEDIA__UPLOAD_RATE__PER_SECOND=100000 HEARTH_MEDIA__UPLOAD_RATE__BURST=100000 \
HEARTH_MEDIA__MAX_UPLOAD_SIZE=104857600 \
HEARTH_LOG__LEVEL=warn \
    "$bin/hearth" serve 2>"$work/hearth.log" &
pids+=($!)
hearth_pid=$!

wait_for() {
    for _ in $(seq 600); do
        curl -sf "http://127.0.0.1:$1/_matrix/client/versions" >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    echo "the server on port $1 did not come up" >&2
    cat "$work/synapse/stderr.log" "$work/hearth.log" >&2
    exit 1
}
wait_for "$hearth_port"
wait_for "$synapse_port"
echo "Hearth $(git rev-parse --short HEAD) (pid $hearth_pid) and Synapse $synapse_version (pid $synapse_pid, SQLite) on $(nproc) cores"

run() { # server port pid workload
    "$bin/hearth-bench" --url "http://127.0.0.1:$2" --pid "$3" --json "$4" >"$work/$1-$4.json"
}
turn=0
for workload in "${workloads[@]}"; do
    if [ $((turn % 2)) -eq 0 ]; then
        run hearth "$hearth_port" "$hearth_pid" "$workload"
        run synapse "$synapse_port" "$synapse_pid" "$workload"
    else
        run synapse "$synapse_port" "$synapse_pid" "$workload"
        run hearth "$hearth_port" "$hearth_pid" "$workload"
    fi
    turn=$((turn + 1))
    python3 "$root/bench/side_by_side.py" "$workload" "$work/hearth-$workload.json" "$work/synapse-$workload.json"
done
