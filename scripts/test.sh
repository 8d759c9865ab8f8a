#!/usr/bin/env bash
# Runs Freezer's whole test suite: the one command for developers and CI (`.ci/run` execs it).
#
# On a fresh Debian 12 machine, as root, it first installs the command-line tools the tests call
# (only those missing). Extra arguments go to `cargo test`, e.g. `scripts/test.sh -p freezer-worker`
# or `scripts/test.sh -- --nocapture`.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

started=$SECONDS

step() {
    printf '\n==> %s\n' "$*"
}

# Tools the tests run (to read xattrs, and to check the `openssl enc | zstd -d | tar -x` escape hatch
# and the other codecs), each with the Debian package that provides it.
declare -A TOOL_PACKAGE=(
    [getfattr]=attr
    [setfattr]=attr
    [zstd]=zstd
    [xz]=xz-utils
    [bzip2]=bzip2
    [gzip]=gzip
    [openssl]=openssl
    [tar]=tar
)

ensure_tools() {
    local tool
    local -a missing=()
    for tool in "${!TOOL_PACKAGE[@]}"; do
        command -v "$tool" >/dev/null 2>&1 || missing+=("${TOOL_PACKAGE[$tool]}")
    done
    if ((${#missing[@]} == 0)); then
        echo "all tools the tests need are present"
        return
    fi
    mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
    if ((EUID != 0)); then
        echo "warning: not root, so not installing: ${missing[*]} (tests that need them will fail)" >&2
        return
    fi
    step "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q --no-install-recommends "${missing[@]}"
}

ensure_cargo() {
    if ! command -v cargo >/dev/null 2>&1 && [[ -x "$HOME/.cargo/bin/cargo" ]]; then
        PATH="$HOME/.cargo/bin:$PATH"
    fi
    if ! command -v cargo >/dev/null 2>&1; then
        echo "error: cargo not found; install Rust (rustup) first" >&2
        exit 1
    fi
}

# Prints one closing line that sums every `test result:` line of a cargo test log, so the outcome of
# the whole workspace is read in one place (the last cargo line alone is often an empty doc-test run).
summarize() {
    awk '
        /^test result: / {
            for (i = 1; i <= NF; i++) {
                if ($(i + 1) ~ /^passed/)  passed  += $i
                if ($(i + 1) ~ /^failed/)  failed  += $i
                if ($(i + 1) ~ /^ignored/) ignored += $i
            }
        }
        END { printf "tests: %d passed, %d failed, %d skipped\n", passed, failed, ignored }
    ' "$1"
}

step "tools"
ensure_tools
ensure_cargo

# Storage servers: each storage test starts its own garage (S3) or sshd on free loopback ports
# through scripts/services/*.sh (so tests run in parallel and can stop their server mid-run); here
# they are installed when missing. With them installed, a test that cannot find one fails instead
# of skipping (FREEZER_REQUIRE_SERVICES=1).
step "services"
scripts/services/garage.sh install
PATH="$HOME/.cargo/bin:$PATH"
scripts/services/sshd.sh install
# Prometheus scrapes a worker in the metrics test (Debian package).
if ! command -v prometheus >/dev/null 2>&1; then
    if ((EUID == 0)); then
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends prometheus
    else
        echo "warning: prometheus is missing and we are not root: the metrics test will fail" >&2
    fi
fi
# RabbitMQ and Redis run on the machine already (Debian packages, started before a session); start whichever stopped.
if ! (exec 3<>/dev/tcp/127.0.0.1/6379) 2>/dev/null; then
    echo "starting redis-server"
    redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
        --dir /var/lib/redis --logfile /var/log/redis/ci.log
fi
if ! (exec 3<>/dev/tcp/127.0.0.1/5672) 2>/dev/null; then
    echo "starting rabbitmq-server"
    rabbitmq-server -detached
    rabbitmqctl await_startup
fi
export FREEZER_REQUIRE_SERVICES=1

step "cargo build --workspace --bins"
t=$SECONDS
# The end-to-end tests (crate tests/) run the real binaries, which `cargo test` does not build for
# another package: build them first.
cargo build --workspace --bins
build_time=$((SECONDS - t))

step "cargo test --workspace $*"
t=$SECONDS
log=$(mktemp)
trap 'rm -f "$log"' EXIT
set +e
cargo test --workspace "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
test_time=$((SECONDS - t))

echo
echo "scripts/test.sh: build ${build_time}s, test ${test_time}s, total $((SECONDS - started))s, exit ${status}"
summarize "$log"
exit "$status"
