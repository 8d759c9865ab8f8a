#!/usr/bin/env bash
# A private OpenSSH server on loopback, for the SSH storage's tests and for trying it by hand.
# It runs from its own directory with its own host key, its own client key and
# its own authorized_keys; the machine's own sshd and ~/.ssh are never touched.
#
#   sshd.sh install              installs openssh-server with apt-get unless /usr/sbin/sshd exists
#   sshd.sh start DIR [PORT]     creates in DIR (unless already there) an ed25519 host key, an ed25519
#                                client key pair (id_ed25519, no passphrase) authorized for the
#                                current user, sshd_config and known_hosts; starts sshd on
#                                127.0.0.1:PORT (default 2222; pid in DIR/sshd.pid, log in DIR/sshd.log),
#                                waits until it answers, then prints the environment to reach it:
#                                  FREEZER_TEST_SSH_HOST=127.0.0.1  FREEZER_TEST_SSH_PORT=2222
#                                  FREEZER_TEST_SSH_USER=root       FREEZER_TEST_SSH_DIR=DIR
#                                  FREEZER_TEST_SSH_KEY=DIR/id_ed25519
#                                  FREEZER_TEST_SSH_KNOWN_HOSTS=DIR/known_hosts
#                                one per line. Running it again on a running DIR only prints them again;
#                                on a stopped (killed) DIR it starts the same server again: same port,
#                                same keys.
#   sshd.sh kill DIR             stops the server and every connection it serves (as a crash or a
#                                reboot of the host would) but keeps DIR, so `start DIR` brings the same
#                                server back: what the reconnect tests need.
#   sshd.sh stop DIR             stops the server and its connections and removes DIR.
#
# Works as root (logs in as root with the key: PermitRootLogin prohibit-password) and as any other
# user (who can then log in only as themselves). Everything but the environment lines goes to stderr,
# so `eval "$(sshd.sh start D)"` works (the values contain no shell metacharacters as long as DIR has
# none).
set -euo pipefail

SSHD=/usr/sbin/sshd
DEFAULT_PORT=2222
HOST=127.0.0.1

log() {
    printf 'sshd.sh: %s\n' "$*" >&2
}

die() {
    log "error: $*"
    exit 1
}

usage() {
    echo "usage: $0 install | start DIR [PORT] | kill DIR | stop DIR" >&2
    exit 2
}

cmd_install() {
    if [[ -x "$SSHD" ]]; then
        log "openssh-server already installed: $("$SSHD" -V 2>&1 | head -n1)"
        return
    fi
    ((EUID == 0)) || die "$SSHD is missing and installing it needs root: apt-get install -y openssh-server"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q --no-install-recommends openssh-server
    # The package starts the machine's own sshd on port 22 where systemd runs; ours does not need it.
}

# True while process $1 runs: exists and is not a zombie (an exited daemon stays a zombie until
# init reaps it, which can take seconds in a container).
running() {
    local stat
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    stat=${stat##*) }
    [[ "${stat%% *}" != Z ]]
}

# True while the process in the pid file runs and is an sshd (not a reused pid).
pid_alive() {
    local pid
    [[ -f "$PIDFILE" ]] || return 1
    pid=$(cat "$PIDFILE" 2>/dev/null) || return 1
    [[ "$pid" =~ ^[0-9]+$ ]] && running "$pid" &&
        tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q sshd
}

port_busy() {
    # /dev/tcp connects succeed only when something listens.
    (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null
}

# Prints the pids of every descendant of $1, from one snapshot of the process table.
descendants() {
    ps -e -o pid=,ppid= | awk -v root="$1" '
        { parent[$1] = $2 }
        END {
            for (p in parent) {
                q = p
                while ((q in parent) && q != root && q > 1) q = parent[q]
                if (q == root && p != root) print p
            }
        }'
}

make_keys() {
    command -v ssh-keygen >/dev/null 2>&1 || die "ssh-keygen not found (openssh-client)"
    [[ -f "$DIR/ssh_host_ed25519_key" ]] ||
        ssh-keygen -q -t ed25519 -N '' -C "freezer-test-host" -f "$DIR/ssh_host_ed25519_key"
    [[ -f "$DIR/id_ed25519" ]] ||
        ssh-keygen -q -t ed25519 -N '' -C "freezer-test-client" -f "$DIR/id_ed25519"
    cp "$DIR/id_ed25519.pub" "$DIR/authorized_keys"
    chmod 600 "$DIR/ssh_host_ed25519_key" "$DIR/id_ed25519" "$DIR/authorized_keys"
}

write_config() {
    cat >"$CONF" <<EOF
# Written by scripts/services/sshd.sh: a private test server, loopback only, key logins only.
Port $PORT
ListenAddress $HOST
HostKey $DIR/ssh_host_ed25519_key
PidFile $PIDFILE
AuthorizedKeysFile $DIR/authorized_keys
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
UsePAM no
StrictModes no
UseDNS no
PrintMotd no
X11Forwarding no
AllowTcpForwarding no
MaxStartups 100:30:200
Subsystem sftp internal-sftp
EOF
}

# known_hosts as `ssh-keyscan -p PORT 127.0.0.1` would write it (without scanning): `[host]:port`
# for ports other than 22.
write_known_hosts() {
    local name=$HOST
    [[ "$PORT" == 22 ]] || name="[$HOST]:$PORT"
    printf '%s %s\n' "$name" "$(cut -d' ' -f1,2 "$DIR/ssh_host_ed25519_key.pub")" >"$DIR/known_hosts"
}

wait_ready() {
    local i
    for ((i = 0; i < 100; i++)); do
        if pid_alive && port_busy "$PORT"; then
            return
        fi
        sleep 0.05
    done
    tail -n 20 "$LOGFILE" >&2 || true
    die "sshd did not start listening on $HOST:$PORT within 5 s (log: $LOGFILE)"
}

print_env() {
    echo "FREEZER_TEST_SSH_HOST=$HOST"
    echo "FREEZER_TEST_SSH_PORT=$PORT"
    echo "FREEZER_TEST_SSH_USER=$(id -un)"
    echo "FREEZER_TEST_SSH_DIR=$DIR"
    echo "FREEZER_TEST_SSH_KEY=$DIR/id_ed25519"
    echo "FREEZER_TEST_SSH_KNOWN_HOSTS=$DIR/known_hosts"
}

set_paths() {
    CONF="$DIR/sshd_config"
    PIDFILE="$DIR/sshd.pid"
    LOGFILE="$DIR/sshd.log"
}

cmd_start() {
    [[ -x "$SSHD" ]] || die "$SSHD is missing (run: $0 install)"
    mkdir -p "$DIR"
    DIR=$(cd "$DIR" && pwd)
    set_paths
    if [[ -z "$PORT" ]]; then
        PORT=$(cat "$DIR/port" 2>/dev/null || echo "$DEFAULT_PORT")
    fi
    [[ "$PORT" =~ ^[0-9]+$ ]] && ((PORT > 0 && PORT < 65536)) || die "invalid port $PORT"
    if pid_alive; then
        [[ "$(cat "$DIR/port" 2>/dev/null)" == "$PORT" ]] ||
            die "the sshd in $DIR already runs on port $(cat "$DIR/port" 2>/dev/null); stop it first"
        log "sshd already running in $DIR (pid $(cat "$PIDFILE"))"
        print_env
        return
    fi
    port_busy "$PORT" && die "port $HOST:$PORT is in use (another sshd? stop it first)"
    # Privilege separation needs this directory when sshd runs as root.
    if ((EUID == 0)); then
        mkdir -p /run/sshd
        chmod 755 /run/sshd
    fi
    make_keys
    echo "$PORT" >"$DIR/port"
    write_config
    write_known_hosts
    rm -f "$PIDFILE"
    "$SSHD" -t -f "$CONF" 2>>"$LOGFILE" || {
        tail -n 5 "$LOGFILE" >&2
        die "sshd rejects $CONF (log: $LOGFILE)"
    }
    # sshd daemonizes (its own session, detached from this script and the caller's terminal) and
    # writes its pid file once it listens.
    "$SSHD" -f "$CONF" -E "$LOGFILE" </dev/null || {
        tail -n 20 "$LOGFILE" >&2 || true
        die "sshd failed to start (log: $LOGFILE)"
    }
    wait_ready
    log "sshd ready on $HOST:$PORT as $(id -un) (dir $DIR)"
    print_env
}

# Stops the server and every session process it forked; returns once they are gone.
kill_server() {
    local pid pids i
    pid_alive || return 0
    pid=$(cat "$PIDFILE")
    # Sessions first: they outlive the listener otherwise (each connection is its own process).
    mapfile -t pids < <(descendants "$pid")
    pids+=("$pid")
    kill "${pids[@]}" 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do
        local alive=()
        for p in "${pids[@]}"; do
            running "$p" && alive+=("$p")
        done
        ((${#alive[@]} == 0)) && break
        sleep 0.05
    done
    for p in "${pids[@]}"; do
        if running "$p"; then
            log "sshd process $p did not stop in 5 s; killing it"
            kill -9 "$p" 2>/dev/null || true
        fi
    done
    rm -f "$PIDFILE"
}

cmd_kill() {
    DIR=${DIR%/}
    set_paths
    kill_server
}

cmd_stop() {
    DIR=${DIR%/}
    set_paths
    kill_server
    # Refuse to remove anything that does not look like a directory this script made.
    if [[ -d "$DIR" ]]; then
        if [[ -f "$CONF" || -f "$DIR/ssh_host_ed25519_key" ]]; then
            rm -rf -- "$DIR"
        elif ! rmdir -- "$DIR" 2>/dev/null; then
            log "not removing $DIR: it holds no sshd_config"
        fi
    fi
}

case "${1:-}" in
install)
    [[ $# -eq 1 ]] || usage
    cmd_install
    ;;
start)
    [[ $# -eq 2 || $# -eq 3 ]] || usage
    DIR=$2
    PORT=${3:-}
    cmd_start
    ;;
kill)
    [[ $# -eq 2 ]] || usage
    DIR=$2
    cmd_kill
    ;;
stop)
    [[ $# -eq 2 ]] || usage
    DIR=$2
    cmd_stop
    ;;
*)
    usage
    ;;
esac
