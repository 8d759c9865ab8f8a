#!/usr/bin/env bash
# A single-node garage S3 server on loopback, for tests and benchmarks.
#
#   garage.sh install      installs garage 2.5.0 with cargo unless `garage` is already on PATH
#   garage.sh start DIR    writes DIR/garage.toml, starts the server (pid in DIR/garage.pid, log in
#                          DIR/garage.log), waits until it answers, sets up the layout, a fixed test key
#                          and the bucket `freezer-test`, then prints the environment to reach it:
#                            AWS_ACCESS_KEY_ID=... AWS_SECRET_ACCESS_KEY=...
#                            FREEZER_S3_ENDPOINT=http://127.0.0.1:3900 AWS_REGION=us-east-1
#                          one per line. Running it again on a running DIR only prints them again.
#   garage.sh stop DIR     stops the server started in DIR and removes DIR.
#   garage.sh halt DIR     stops the server but keeps DIR: `start DIR` brings the same data back
#                          (fault tests: the S3 server goes away in the middle of a backup).
#
# Ports (127.0.0.1 only): 3900 S3 API, 3901 RPC, 3903 admin API; GARAGE_PORT_BASE=P moves them to
# P, P+1 and P+3, so several instances (one per test) can run at once.
# Everything but the final environment lines goes to stderr, so `eval "$(garage.sh start D)"` works
# (the values contain no shell metacharacters).
set -euo pipefail

GARAGE_VERSION=2.5.0
# The fixed test key: `GK` + 24 hex digits, and a 64-hex-digit secret. Test credentials only.
KEY_ID=GK0123456789abcdef01234567
KEY_SECRET=f0e1d2c3b4a5968778695a4b3c2d1e0f0123456789abcdef0123456789abcdef
BUCKET=freezer-test
REGION=us-east-1
PORT_BASE=${GARAGE_PORT_BASE:-3900}
S3_PORT=$PORT_BASE
RPC_PORT=$((PORT_BASE + 1))
ADMIN_PORT=$((PORT_BASE + 3))

log() {
    printf 'garage.sh: %s\n' "$*" >&2
}

die() {
    log "error: $*"
    exit 1
}

usage() {
    echo "usage: $0 install | start DIR | stop DIR | halt DIR" >&2
    exit 2
}

ensure_cargo_path() {
    if ! command -v garage >/dev/null 2>&1 && [[ -x "$HOME/.cargo/bin/garage" ]]; then
        PATH="$HOME/.cargo/bin:$PATH"
    fi
}

cmd_install() {
    ensure_cargo_path
    if command -v garage >/dev/null 2>&1; then
        log "garage already installed: $(command -v garage) ($(garage --version 2>/dev/null | head -n1))"
        return
    fi
    command -v cargo >/dev/null 2>&1 || die "cargo not found; install Rust (rustup) first"
    log "installing garage $GARAGE_VERSION with cargo (about 10 minutes on 2 cores)"
    cargo install "garage@$GARAGE_VERSION" --locked --no-default-features --features bundled-libs,lmdb
}

# Runs the garage CLI against the server configured in $CONF.
g() {
    garage -c "$CONF" "$@"
}

# True while the process in the pid file runs and is a garage (not a reused pid).
pid_alive() {
    local pid
    [[ -f "$PIDFILE" ]] || return 1
    pid=$(cat "$PIDFILE")
    [[ "$pid" =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null &&
        tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q garage
}

port_busy() {
    # /dev/tcp connects succeed only when something listens.
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

write_config() {
    local secret token
    secret=$(od -An -N32 -tx1 /dev/urandom | tr -d ' \n')
    token=$(od -An -N32 -tx1 /dev/urandom | tr -d ' \n')
    mkdir -p "$DIR/meta" "$DIR/data"
    cat >"$CONF" <<EOF
metadata_dir = "$DIR/meta"
data_dir = "$DIR/data"
db_engine = "lmdb"
replication_factor = 1

rpc_bind_addr = "127.0.0.1:$RPC_PORT"
rpc_public_addr = "127.0.0.1:$RPC_PORT"
rpc_secret = "$secret"

[s3_api]
s3_region = "$REGION"
api_bind_addr = "127.0.0.1:$S3_PORT"
root_domain = ".s3.garage.localhost"

[admin]
api_bind_addr = "127.0.0.1:$ADMIN_PORT"
admin_token = "$token"
EOF
    chmod 600 "$CONF"
}

# wait_ready: 0 once garage answers; 1 if it exited during start-up (the caller retries).
wait_ready() {
    local i
    for ((i = 0; i < 300; i++)); do
        if ! pid_alive; then
            tail -n 20 "$DIR/garage.log" >&2 || true
            log "garage exited during start-up (log: $DIR/garage.log)"
            return 1
        fi
        if g status >/dev/null 2>&1 && port_busy "$S3_PORT"; then
            return 0
        fi
        sleep 0.1
    done
    die "garage did not become ready within 30 s (log: $DIR/garage.log)"
}

# launch: starts the server in its own session; the pid file holds the server's own pid (the
# shell that writes it execs garage), whatever setsid does about forking.
launch() {
    RUST_LOG=${RUST_LOG:-garage=warn} setsid bash -c 'echo $$ >"$1"; exec garage -c "$2" server' \
        _ "$PIDFILE" "$CONF" </dev/null >>"$DIR/garage.log" 2>&1 &
    local i
    for ((i = 0; i < 50; i++)); do
        [[ -s "$PIDFILE" ]] && return
        sleep 0.02
    done
}

setup_cluster() {
    local node
    node=$(g node id -q 2>/dev/null) || die "garage node id failed"
    node=${node%%@*}
    # A fresh node has no layout yet (version 0); apply version 1 once.
    if ! g layout show 2>/dev/null | grep -q "Current cluster layout version: [1-9]"; then
        g layout assign -z dc1 -c 1G "$node" >/dev/null
        g layout apply --version 1 >/dev/null
    fi
    if ! g key info "$KEY_ID" >/dev/null 2>&1; then
        g key import --yes -n freezer-test "$KEY_ID" "$KEY_SECRET" >/dev/null
    fi
    g key allow --create-bucket "$KEY_ID" >/dev/null
    if ! g bucket info "$BUCKET" >/dev/null 2>&1; then
        # Creation can race the layout becoming active on the first start: retry briefly.
        local i
        for ((i = 0; i < 50; i++)); do
            g bucket create "$BUCKET" >/dev/null 2>&1 && break
            sleep 0.1
        done
        g bucket info "$BUCKET" >/dev/null 2>&1 || die "could not create bucket $BUCKET"
    fi
    g bucket allow --read --write --owner "$BUCKET" --key "$KEY_ID" >/dev/null
}

print_env() {
    echo "AWS_ACCESS_KEY_ID=$KEY_ID"
    echo "AWS_SECRET_ACCESS_KEY=$KEY_SECRET"
    echo "FREEZER_S3_ENDPOINT=http://127.0.0.1:$S3_PORT"
    echo "AWS_REGION=$REGION"
}

cmd_start() {
    ensure_cargo_path
    command -v garage >/dev/null 2>&1 || die "garage is not installed (run: $0 install)"
    PIDFILE="$DIR/garage.pid"
    local running=false
    if pid_alive; then
        running=true
    else
        local p
        for p in "$S3_PORT" "$RPC_PORT" "$ADMIN_PORT"; do
            port_busy "$p" && die "port 127.0.0.1:$p is in use (another garage? stop it first)"
        done
    fi
    mkdir -p "$DIR"
    DIR=$(cd "$DIR" && pwd)
    CONF="$DIR/garage.toml"
    PIDFILE="$DIR/garage.pid"
    if $running; then
        log "garage already running in $DIR (pid $(cat "$PIDFILE"))"
    else
        [[ -f "$CONF" ]] || write_config
        # setsid: the server gets its own session, so it survives this script and the caller's
        # terminal, and `stop` can end it (and only it) by its pid. A start that dies at once (seen
        # rarely right after another instance stopped) is retried.
        local attempt
        for attempt in 1 2 3; do
            rm -f "$PIDFILE"
            launch
            wait_ready && break
            ((attempt < 3)) || die "garage did not start (3 attempts; log: $DIR/garage.log)"
            sleep 0.5
        done
    fi
    setup_cluster
    log "garage ready on http://127.0.0.1:$S3_PORT, bucket $BUCKET (dir $DIR)"
    print_env
}

cmd_stop() {
    cmd_halt
    # Refuse to remove anything that does not look like a garage directory.
    if [[ -d "$DIR" ]]; then
        if [[ -f "$DIR/garage.toml" || -f "$PIDFILE" ]]; then
            rm -rf -- "$DIR"
        elif ! rmdir -- "$DIR" 2>/dev/null; then
            log "not removing $DIR: it holds no garage.toml"
        fi
    fi
}

cmd_halt() {
    DIR=${DIR%/}
    PIDFILE="$DIR/garage.pid"
    if pid_alive; then
        local pid i
        pid=$(cat "$PIDFILE")
        kill "$pid" 2>/dev/null || true
        for ((i = 0; i < 100; i++)); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$pid" 2>/dev/null; then
            log "garage (pid $pid) did not stop in 10 s; killing it"
            kill -9 "$pid" 2>/dev/null || true
            sleep 0.2
        fi
    fi
}

case "${1:-}" in
install)
    [[ $# -eq 1 ]] || usage
    cmd_install
    ;;
start)
    [[ $# -eq 2 ]] || usage
    DIR=$2
    cmd_start
    ;;
stop)
    [[ $# -eq 2 ]] || usage
    DIR=$2
    cmd_stop
    ;;
halt)
    [[ $# -eq 2 ]] || usage
    DIR=$2
    cmd_halt
    ;;
*)
    usage
    ;;
esac
