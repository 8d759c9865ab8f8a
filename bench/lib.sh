# Helpers shared by the benchmark scripts (run.sh, s3.sh): messages, package installs, the
# freezer-worker binary, and the check of a restored tree. Sourced; expects HERE, ROOT, PY, LOGS,
# FREEZER_BIN and the counters FREEZER, PROBLEMS, T_RC of the caller.

say() { printf '%s\n' "$*"; }
warn() { printf 'bench: %s\n' "$*" >&2; }
die() { warn "$*"; exit 1; }
py() { "$PY" "$HERE/dataset.py" "$@"; }

# apt_install PACKAGE: install a Debian package when we are root and have apt-get; 1 otherwise.
APT_UPDATED=0
apt_install() {
    if [[ $(id -u) != 0 ]] || ! command -v apt-get >/dev/null 2>&1; then
        return 1
    fi
    if [[ $APT_UPDATED == 0 ]]; then
        apt-get update -qq >/dev/null 2>&1 || true
        APT_UPDATED=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$1" >/dev/null 2>&1
}

# setup_freezer FLAG WHY: sets FREEZER to $FREEZER_BIN or a fresh release build, unless it is
# missing or `backup --help` does not list FLAG (WHY says what that means); then it is SKIPPED.
setup_freezer() {
    local flag=$1 why=$2 bin
    if [[ -n $FREEZER_BIN ]]; then
        bin=$FREEZER_BIN
    else
        say "building freezer-worker: cargo build --release -p freezer-worker"
        if ! (cd "$ROOT" && cargo build --release -p freezer-worker); then
            warn "cargo build failed: freezer-worker is SKIPPED"
            return 0
        fi
        bin=${CARGO_TARGET_DIR:-$ROOT/target}/release/freezer-worker
    fi
    if [[ ! -x $bin ]]; then
        warn "freezer-worker binary '$bin' not found or not executable: freezer-worker is SKIPPED"
        return 0
    fi
    if ! "$bin" backup --help 2>&1 | grep -q -- "$flag"; then
        warn "'$bin backup --help' does not list $flag ($why): freezer-worker is SKIPPED"
        return 0
    fi
    FREEZER=$bin
}

# rc_check: the check column of a backup ("ok" when it exited 0; its failure is shown from rc).
rc_check() { if [[ $T_RC == 0 ]]; then echo ok; else echo -; fi; }

# verify LISTING DIR NAME: compare DIR's checksum listing with the source's; sets V_CHECK.
verify() {
    local want=$1 dir=$2 name=$3
    V_CHECK=-
    [[ $T_RC == 0 ]] || return 0
    if [[ ! -d $dir ]]; then
        V_CHECK=MISMATCH
    else
        py listing "$dir" "$LOGS/$name.listing"
        if cmp -s "$want" "$LOGS/$name.listing"; then
            V_CHECK=ok
            return 0
        fi
        V_CHECK=MISMATCH
    fi
    PROBLEMS=$((PROBLEMS + 1))
    warn "!!!!!!!!!! RESTORE MISMATCH: $name: $dir differs from the source !!!!!!!!!!"
    if [[ -d $dir ]]; then
        diff "$want" "$LOGS/$name.listing" | head -n 20 | sed 's/^/    /' >&2 || true
    else
        warn "    (no restored directory at all)"
    fi
}

