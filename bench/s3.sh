#!/usr/bin/env bash
# Freezer S3 benchmark (issue #3): freezer-worker backup and restore of the small-file and large-file
# sets to a garage S3 server on loopback, in the same run as restic to the same garage (its S3 backend)
# and the raw put/get throughput of one large object (rclone copyto); then the accuracy of
# --upload-limit and --download-limit. See bench/README.md.
#
#   bench/s3.sh                       full scale (~1.4 GiB of data, a 1 GiB raw object)
#   BENCH_SCALE=0.02 bench/s3.sh      smoke test
#
# Environment: BENCH_DIR (default /tmp/freezer-bench; the dataset in BENCH_DIR/data is shared with
# run.sh), BENCH_SCALE (default 1.0), BENCH_SETS (default "small large"), BENCH_CLEAN=1 (remove
# BENCH_DIR at the end), FREEZER_BIN (default: build target/release/freezer-worker with cargo),
# BENCH_GARAGE_PORT (default 3950: first S3 port tried), BENCH_QUEUE_SIZE (freezer-worker --queue-size;
# default: its own), BENCH_LIMIT (default 16M at full scale), BENCH_LIMIT_SECONDS (default 40 at full
# scale), BENCH_LIMITS=0 (skip the limit runs).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
BENCH_DIR=$(realpath -m "${BENCH_DIR:-/tmp/freezer-bench}")
BENCH_SCALE=${BENCH_SCALE:-1.0}
BENCH_SETS=${BENCH_SETS:-small large}
BENCH_CLEAN=${BENCH_CLEAN:-0}
BENCH_GARAGE_PORT=${BENCH_GARAGE_PORT:-3950}
BENCH_QUEUE_SIZE=${BENCH_QUEUE_SIZE:-}
BENCH_LIMIT=${BENCH_LIMIT:-}
BENCH_LIMIT_SECONDS=${BENCH_LIMIT_SECONDS:-}
BENCH_LIMITS=${BENCH_LIMITS:-1}
PY=${PYTHON:-python3}
GARAGE_SH=$ROOT/scripts/services/garage.sh

DATA=$BENCH_DIR/data       # the dataset, kept between runs (shared with run.sh)
RUN=$BENCH_DIR/s3run       # garage, restores, logs and results of this run, emptied at the start
LOGS=$RUN/logs
RESULTS=$RUN/results.tsv
SETS_TSV=$RUN/sets.tsv
LIMITS_TSV=$RUN/limits.tsv
PASSFILE=$BENCH_DIR/passphrase
GDIR=$RUN/garage           # garage's config, metadata and data (garage.sh stop removes it)
BUCKET=freezer-test
SAMPLE_INTERVAL=0.25       # bandwidth-limit sampling period, s
LIMIT_WINDOW=10            # ... window the rate is averaged over, s
LIMIT_RAMP=1               # ... cut off at each end of the transfer, s

# Every tool runs with its defaults: no FREEZER_* settings, no stray restic, rclone or AWS settings
# (AWS_CA_BUNDLE excepted: the S3 clients must work with it set, see below).
FREEZER_BIN=${FREEZER_BIN:-}
for v in $(compgen -e); do
    if [[ ($v == FREEZER_* && $v != FREEZER_BIN) || $v == RCLONE_* || ($v == AWS_* && $v != AWS_CA_BUNDLE) ]]; then
        unset "$v"
    fi
done
unset RESTIC_REPOSITORY RESTIC_REPOSITORY_FILE RESTIC_PASSWORD RESTIC_PASSWORD_COMMAND
export RESTIC_PASSWORD_FILE=$PASSFILE
export RESTIC_CACHE_DIR=$RUN/restic-cache
export RCLONE_CONFIG=$RUN/rclone.conf   # empty: the remote is configured by the variables below

CMD=()            # command line built by freezer_cmd / restic_cmd / rclone_cmd
FREEZER=""        # path of a working freezer-worker, or empty: skipped
RESTIC=""         # path of restic, or empty: skipped
RCLONE=""         # path of rclone, or empty: skipped
CA_NOTE=""        # how AWS_CA_BUNDLE was found
PROBLEMS=0        # failed runs and restore mismatches
S3_PORT="" S3_ENDPOINT="" S3_KEY_ID="" S3_SECRET="" S3_REGION="" GARAGE_PID=""
WCONF=$RUN/worker.toml   # freezer-worker's configuration: the storage "garage"

# shellcheck source=lib.sh
. "$HERE/lib.sh"

check_tools() {
    if [[ ! -x /usr/bin/time ]]; then
        say "installing GNU time (/usr/bin/time is missing)"
        apt_install time || die "/usr/bin/time is missing and could not be installed (apt-get install -y time)"
    fi
    if ! command -v restic >/dev/null 2>&1; then
        say "installing restic"
        apt_install restic || warn "restic is missing and could not be installed: restic is SKIPPED"
    fi
    RESTIC=$(command -v restic || true)
    if ! command -v rclone >/dev/null 2>&1; then
        say "installing rclone"
        apt_install rclone || warn "rclone is missing and could not be installed: the raw put/get is SKIPPED"
    fi
    RCLONE=$(command -v rclone || true)
    if ! command -v garage >/dev/null 2>&1 && [[ -x $HOME/.cargo/bin/garage ]]; then
        PATH=$HOME/.cargo/bin:$PATH
    fi
    if ! command -v garage >/dev/null 2>&1; then
        say "installing garage ($GARAGE_SH install: cargo install, about 10 minutes)"
        "$GARAGE_SH" install || die "garage could not be installed"
        PATH=$HOME/.cargo/bin:$PATH
    fi
}

# The environment sets CA-bundle variables (AWS_CA_BUNDLE among them); freezer-worker and restic must
# work against the plain-http endpoint with them set, so they keep them. Where the variable is not set,
# the system bundle is used, so that the case is exercised anyway.
setup_ca_bundle() {
    if [[ -n ${AWS_CA_BUNDLE:-} ]]; then
        CA_NOTE="AWS_CA_BUNDLE=$AWS_CA_BUNDLE (from the environment)"
    elif [[ -r /etc/ssl/certs/ca-certificates.crt ]]; then
        export AWS_CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt
        CA_NOTE="AWS_CA_BUNDLE=$AWS_CA_BUNDLE (set by s3.sh: the environment had none)"
    else
        CA_NOTE="AWS_CA_BUNDLE not set (none in the environment, no system bundle found)"
    fi
}

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Starts garage in $GDIR on the first port base from BENCH_GARAGE_PORT (steps of 10) whose S3, RPC and
# admin ports (P, P+1, P+3) are free and where it starts (a port can still be unbindable, e.g. a
# previous server's connections in TIME_WAIT); reads the credentials it prints.
start_garage() {
    local base=$BENCH_GARAGE_PORT i started=0 line
    for ((i = 0; i < 20; i++, base += 10)); do
        if port_busy "$base" || port_busy $((base + 1)) || port_busy $((base + 3)); then
            continue
        fi
        if GARAGE_PORT_BASE=$base "$GARAGE_SH" start "$GDIR" >"$LOGS/garage-start.env" 2>"$LOGS/garage-start.err"; then
            started=1
            break
        fi
        cp "$GDIR/garage.log" "$LOGS/garage-$base.log" 2>/dev/null || true
        warn "garage did not start on port base $base (log: $LOGS/garage-$base.log; $(tail -n 1 "$LOGS/garage-start.err")); trying the next"
        "$GARAGE_SH" stop "$GDIR" 2>/dev/null || true
    done
    if [[ $started != 1 ]]; then
        cat "$LOGS/garage-start.err" >&2 2>/dev/null || true
        die "garage did not start on any port base from $BENCH_GARAGE_PORT on (logs: $LOGS/garage-*.log)"
    fi
    while IFS= read -r line; do
        case $line in
        AWS_ACCESS_KEY_ID=*) S3_KEY_ID=${line#*=} ;;
        AWS_SECRET_ACCESS_KEY=*) S3_SECRET=${line#*=} ;;
        FREEZER_S3_ENDPOINT=*) S3_ENDPOINT=${line#*=} ;;
        AWS_REGION=*) S3_REGION=${line#*=} ;;
        esac
    done <"$LOGS/garage-start.env"
    [[ -n $S3_KEY_ID && -n $S3_SECRET && -n $S3_ENDPOINT && -n $S3_REGION ]] ||
        die "garage.sh start printed no credentials (see $LOGS/garage-start.env)"
    S3_PORT=$base
    GARAGE_PID=$(cat "$GDIR/garage.pid")

    # freezer-worker: a configuration file with the storage "garage" (the container is given per run).
    printf '%s\n' "$S3_SECRET" >"$RUN/garage.secret"
    chmod 600 "$RUN/garage.secret"
    cat >"$WCONF" <<EOF
[storages.garage]
type = "s3"
container = "$BUCKET/bench"
endpoint = "$S3_ENDPOINT"
region = "$S3_REGION"
access_key_id = "$S3_KEY_ID"
secret_access_key_file = "$RUN/garage.secret"
EOF
    # rclone: the remote "garage" from variables.
    : >"$RCLONE_CONFIG"
    export RCLONE_CONFIG_GARAGE_TYPE=s3 RCLONE_CONFIG_GARAGE_PROVIDER=Other
    export RCLONE_CONFIG_GARAGE_ENDPOINT=$S3_ENDPOINT RCLONE_CONFIG_GARAGE_REGION=$S3_REGION
    export RCLONE_CONFIG_GARAGE_ACCESS_KEY_ID=$S3_KEY_ID RCLONE_CONFIG_GARAGE_SECRET_ACCESS_KEY=$S3_SECRET
    export RCLONE_CONFIG_GARAGE_FORCE_PATH_STYLE=true
}

cleanup() {
    local rc=$?
    if [[ -n $GARAGE_PID || -f $GDIR/garage.pid ]]; then
        "$GARAGE_SH" stop "$GDIR" 2>/dev/null || warn "garage.sh stop $GDIR failed"
    fi
    return $rc
}

# ------------------------------------------------------------------------------------- measuring

garage_ticks() {
    local s
    s=$(cat "/proc/$GARAGE_PID/stat" 2>/dev/null) || { echo 0; return; }
    s=${s##*) }
    # shellcheck disable=SC2086
    set -- $s
    echo $((${12} + ${13}))   # utime + stime (fields 14 and 15 of stat; 3 is the first after the name)
}
CLK_TCK=$(getconf CLK_TCK)

# timed NAME CMD...: run CMD under GNU time, output in $LOGS/NAME.{out,err}; sets T_RC, T_WALL (s),
# T_USER and T_SYS (s, children included), T_RSS (KiB), T_SCPU (garage's CPU seconds meanwhile).
timed() {
    local name=$1 g0 g1
    shift
    T_RC=0
    g0=$(garage_ticks)
    /usr/bin/time -f '%e %U %S %M' -o "$LOGS/$name.time" "$@" >"$LOGS/$name.out" 2>"$LOGS/$name.err" || T_RC=$?
    g1=$(garage_ticks)
    T_SCPU=$(awk -v a="$g0" -v b="$g1" -v h="$CLK_TCK" 'BEGIN { printf "%.2f", (b - a) / h }')
    T_WALL=0 T_USER=0 T_SYS=0 T_RSS=0
    read -r T_WALL T_USER T_SYS T_RSS < <(tail -n 1 "$LOGS/$name.time") || true
    if [[ $T_RC != 0 ]]; then
        warn "!!! $name FAILED with exit status $T_RC; last lines of $LOGS/$name.err:"
        tail -n 15 "$LOGS/$name.err" | sed 's/^/    /' >&2
        PROBLEMS=$((PROBLEMS + 1))
    fi
}

# record SET TOOL OP STORED DATA_BYTES CHECK: append the last timed run to the results.
record() {
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$T_RC" "$T_WALL" "$T_USER" "$T_SYS" \
        "$T_RSS" "$4" "$5" "$6" "$T_SCPU" >>"$RESULTS"
    awk -v s="$1" -v t="$2" -v o="$3" -v w="$T_WALL" -v u="$T_USER" -v y="$T_SYS" -v g="$T_SCPU" -v b="$5" \
        -v c="$(if [[ $T_RC == 0 ]]; then echo "$6"; else echo "FAILED (exit $T_RC)"; fi)" \
        'BEGIN { printf "  %-6s %-8s %-8s %7.2f s wall %7.2f s CPU %7.2f s garage CPU %8.1f MiB/s  %s\n", s, t, o, w, u + y, g, (w > 0 ? b / 1048576 / w : 0), c }'
}

# drop_warm PATH...: sync and, as root, drop the page cache, then read every PATH once, so that every
# tool starts from the same memory state with its input warm (see run.sh).
drop_warm() {
    local p
    sync
    if [[ -w /proc/sys/vm/drop_caches ]]; then
        echo 3 >/proc/sys/vm/drop_caches
    fi
    for p in "$@"; do
        if [[ -d $p ]]; then
            tar -C "$p" -cf - . | cat >/dev/null
        else
            cat "$p" >/dev/null
        fi
    done
}

freezer_qs() { if [[ -n $BENCH_QUEUE_SIZE ]]; then echo "--queue-size=$BENCH_QUEUE_SIZE"; fi; }
restic_cmd() { # SET ARGS...: restic on the repository of SET in garage, credentials for it only
    CMD=(env "AWS_ACCESS_KEY_ID=$S3_KEY_ID" "AWS_SECRET_ACCESS_KEY=$S3_SECRET" "$RESTIC"
        -r "s3:$S3_ENDPOINT/$BUCKET/restic-$1" -o s3.bucket-lookup=path -o "s3.region=$S3_REGION" "${@:2}")
}
# rclone 1.60's S3 backend refuses to start with AWS_CA_BUNDLE set against a plain-http endpoint
# ("LoadCustomCABundleError ... unsupported transport"): it alone runs without it.
rclone_cmd() { CMD=(env -u AWS_CA_BUNDLE "$RCLONE" "$@"); }

json_field() { # FILE FIELD: a top-level field of a JSON document, or "-"
    "$PY" -c 'import json, sys
try:
    print(json.load(open(sys.argv[1]))[sys.argv[2]])
except Exception:
    print("-")' "$1" "$2"
}

# ---------------------------------------------------------------------------------- raw put / get

bench_raw() {
    local size f=$RUN/raw.bin back=$RUN/raw-back.bin
    size=$("$PY" -c 'import sys; print(max(8 << 20, round((1 << 30) * float(sys.argv[1]))))' "$BENCH_SCALE")
    say ""
    say "== raw object: $size bytes, incompressible (rclone copyto, without AWS_CA_BUNDLE) =="
    py random "$f" "$size"
    printf '%s\t1\t0\t%s\n' raw "$size" >>"$SETS_TSV"
    drop_warm "$f"
    rclone_cmd copyto "$f" "garage:$BUCKET/raw/raw.bin"
    timed raw-put "${CMD[@]}"
    record raw rclone put "$size" "$size" "$(rc_check)"
    drop_warm "$GDIR"
    rclone_cmd copyto "garage:$BUCKET/raw/raw.bin" "$back"
    timed raw-get "${CMD[@]}"
    local check=-
    if [[ $T_RC == 0 ]]; then
        if cmp -s "$f" "$back"; then
            check=ok
        else
            check=MISMATCH
            PROBLEMS=$((PROBLEMS + 1))
            warn "!!!!!!!!!! RAW GET MISMATCH: $back differs from $f !!!!!!!!!!"
        fi
    fi
    record raw rclone get - "$size" "$check"
    rm -f "$f" "$back"
    rclone_cmd purge "garage:$BUCKET/raw"
    "${CMD[@]}" >>"$LOGS/purge.log" 2>&1 || true
}

# ------------------------------------------------------------------------------------------- a set

bench_set() {
    local set=$1
    local src=$DATA/$set out=$RUN/restore/$set name="bench-$set" bytes files dirs listing0 o stored
    py reset "$DATA" "$set"
    bytes=$(py size "$src")
    read -r files dirs < <(py count "$src")
    printf '%s\t%s\t%s\t%s\n' "$set" "$files" "$dirs" "$bytes" >>"$SETS_TSV"
    say ""
    say "== $set set: $files files, $dirs directories, $bytes bytes =="
    listing0=$RUN/$set-source.listing
    py listing "$src" "$listing0"
    mkdir -p "$out"

    # --- backups
    if [[ -n $FREEZER ]]; then
        drop_warm "$src"
        CMD=("$FREEZER" --config "$WCONF" backup --storage garage --container "$BUCKET/bench-$set"
            --path-to-backup "$src" --backup-name "$name" --encrypt-pass-file "$PASSFILE" --json $(freezer_qs))
        timed "$set-freezer-backup" "${CMD[@]}"
        stored=-
        [[ $T_RC != 0 ]] || stored=$(json_field "$LOGS/$set-freezer-backup.out" bytes_stored)
        record "$set" freezer backup "$stored" "$bytes" "$(rc_check)"
    fi
    if [[ -n $RESTIC ]]; then
        restic_cmd "$set" init
        "${CMD[@]}" >"$LOGS/$set-restic-init.out" 2>&1 || die "restic init failed, see $LOGS/$set-restic-init.out"
        drop_warm "$src"
        restic_cmd "$set" backup "$src"
        timed "$set-restic-backup" "${CMD[@]}"
        stored=-
        if [[ $T_RC == 0 ]]; then
            restic_cmd "$set" stats --mode raw-data --json
            "${CMD[@]}" >"$LOGS/$set-restic-stats.json" 2>/dev/null || true
            stored=$(json_field "$LOGS/$set-restic-stats.json" total_size)
        fi
        record "$set" restic backup "$stored" "$bytes" "$(rc_check)"
    fi

    # --- restores
    if [[ -n $FREEZER ]]; then
        o=$out/freezer
        drop_warm "$GDIR"
        CMD=("$FREEZER" --config "$WCONF" restore --storage garage --container "$BUCKET/bench-$set"
            --backup-name "$name" --restore-abs-path "$o" --encrypt-pass-file "$PASSFILE" $(freezer_qs))
        timed "$set-freezer-restore" "${CMD[@]}"
        verify "$listing0" "$o" "$set-freezer-restore"
        record "$set" freezer restore - "$bytes" "$V_CHECK"
        rm -rf "$o"
    fi
    if [[ -n $RESTIC ]]; then
        o=$out/restic
        drop_warm "$GDIR"
        restic_cmd "$set" restore latest --target "$o"
        timed "$set-restic-restore" "${CMD[@]}"
        verify "$listing0" "$o$src" "$set-restic-restore"   # restic restores the absolute path
        record "$set" restic restore - "$bytes" "$V_CHECK"
        rm -rf "$o"
    fi

    # Keep garage's store small, so that warming it before the next set's restores stays cheap.
    if [[ -n $RCLONE ]]; then
        rclone_cmd purge "garage:$BUCKET/bench-$set"
        "${CMD[@]}" >>"$LOGS/purge.log" 2>&1 || true
        rclone_cmd purge "garage:$BUCKET/restic-$set"
        "${CMD[@]}" >>"$LOGS/purge.log" 2>&1 || true
    fi
}

# ------------------------------------------------------------------------------- bandwidth limits

# limit_line: the last run's directory series, in words (the report has the verdicts).
limit_line() {
    tail -n 2 "$LIMITS_TSV" | awk -F'\t' '$2 == "dir" {
        printf "  %s: %s bytes in %s s (active span), average %s x the limit, %d 10-s windows, max %s x, min %s x\n",
            $1, $5, $4, $6, $7, $8, $9 }'
}

# The limiter is backend-independent: measured on local storage, where the bytes that reach the
# container (upload) or the restore target (download) can be sampled. Incompressible data and
# --compression none, so bytes written = bytes transferred (plus the small encryption overhead).
bench_limits() {
    local limit=$1 seconds=$2 total n i src=$RUN/limit-src c=$RUN/limit-container o=$RUN/limit-restore
    local listing=$RUN/limit-source.listing seg
    total=$((limit * seconds))
    say ""
    say "== bandwidth limits: $limit bytes/s ($(awk -v l="$limit" 'BEGIN { printf "%.2f", l / 1048576 }') MiB/s), $total bytes (${seconds} s at the limit), local storage =="
    rm -rf "$src" "$c" "$o"
    mkdir -p "$src/d" "$c"
    n=4
    for ((i = 0; i < n; i++)); do
        py random "$src/d/limit-$i.bin" $((total / n))
    done
    py listing "$src" "$listing"

    # Upload: backup with --upload-limit, sampling the container.
    drop_warm "$src"
    local rc=0
    "$PY" "$HERE/limitcheck.py" run "$LOGS/limit-upload.samples" "$c" "$SAMPLE_INTERVAL" -- \
        "$FREEZER" backup --path-to-backup "$src" --container "$c" --backup-name limit --encrypt-pass-file "$PASSFILE" \
        --compression none --upload-limit "$limit" --json $(freezer_qs) \
        >"$LOGS/limit-upload.out" 2>"$LOGS/limit-upload.err" || rc=$?
    if [[ $rc != 0 ]]; then
        warn "!!! the --upload-limit backup FAILED (exit $rc), see $LOGS/limit-upload.err"
        PROBLEMS=$((PROBLEMS + 1))
        return 0
    fi
    "$PY" "$HERE/limitcheck.py" analyze "--upload-limit (backup)" "$LOGS/limit-upload.samples" "$limit" \
        "$LIMIT_WINDOW" "$LIMIT_RAMP" >>"$LIMITS_TSV"
    limit_line

    # Download: restore of that backup (its segments are sized for the limit: at most a quarter of a
    # second's budget, which freezer-worker does itself under --upload-limit) with --download-limit,
    # sampling the restore target.
    seg=$(find "$c" -type f -printf '%s\n' | sort -n | tail -n 1)
    say "  (largest stored object: $seg bytes)"
    drop_warm "$c"
    rc=0
    "$PY" "$HERE/limitcheck.py" run "$LOGS/limit-download.samples" "$o" "$SAMPLE_INTERVAL" -- \
        "$FREEZER" restore --container "$c" --backup-name limit --restore-abs-path "$o" --encrypt-pass-file "$PASSFILE" \
        --download-limit "$limit" $(freezer_qs) \
        >"$LOGS/limit-download.out" 2>"$LOGS/limit-download.err" || rc=$?
    T_RC=$rc
    if [[ $rc != 0 ]]; then
        warn "!!! the --download-limit restore FAILED (exit $rc), see $LOGS/limit-download.err"
        PROBLEMS=$((PROBLEMS + 1))
    else
        verify "$listing" "$o" limit-download
        say "  restore check: $V_CHECK"
        "$PY" "$HERE/limitcheck.py" analyze "--download-limit (restore)" "$LOGS/limit-download.samples" "$limit" \
            "$LIMIT_WINDOW" "$LIMIT_RAMP" >>"$LIMITS_TSV"
        limit_line
    fi
    rm -rf "$src" "$c" "$o"
}

# ------------------------------------------------------------------------------------------- main

main() {
    "$PY" -c 'import sys; s = float(sys.argv[1]); sys.exit(0 if 0 < s <= 100 else 1)' "$BENCH_SCALE" 2>/dev/null ||
        die "BENCH_SCALE must be a number in (0, 100], not '$BENCH_SCALE'"
    local s limit seconds
    for s in $BENCH_SETS; do
        [[ $s == small || $s == large ]] || die "BENCH_SETS may hold 'small' and 'large', not '$s'"
    done
    # The limit runs: 16 MiB/s for 40 s at full scale; smaller scales lower the limit (not under
    # 1 MiB/s) and the duration (not under 15 s: a 10-s window needs the ramps cut off around it).
    if [[ -z $BENCH_LIMIT ]]; then
        limit=$("$PY" -c 'import sys; print(max(1 << 20, round((16 << 20) * min(1.0, float(sys.argv[1])))))' "$BENCH_SCALE")
    else
        limit=$("$PY" -c 'import sys
s = sys.argv[1].strip(); m = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(s[-1:].upper(), 1)
print(int(s[:-1] if m > 1 else s) * m)' "$BENCH_LIMIT") || die "BENCH_LIMIT: expected bytes/s with an optional K, M or G suffix"
    fi
    if [[ -z $BENCH_LIMIT_SECONDS ]]; then
        seconds=$("$PY" -c 'import sys; print(max(15, round(40 * min(1.0, float(sys.argv[1])))))' "$BENCH_SCALE")
    else
        seconds=$BENCH_LIMIT_SECONDS
    fi

    check_tools
    setup_ca_bundle
    mkdir -p "$BENCH_DIR"
    if [[ -f $GDIR/garage.pid ]]; then
        "$GARAGE_SH" stop "$GDIR" 2>/dev/null || true   # left over from an interrupted run
    fi
    rm -rf "$RUN"
    mkdir -p "$LOGS"
    setup_freezer --storage "no S3 support yet?"
    [[ -s $PASSFILE ]] || printf 'freezer-bench-passphrase\n' >"$PASSFILE"
    chmod 600 "$PASSFILE"

    py ensure "$DATA" "$BENCH_SCALE"
    trap cleanup EXIT
    trap 'exit 130' INT TERM
    start_garage

    say ""
    say "Freezer S3 benchmark, $(date -u +%Y-%m-%dT%H:%M:%SZ), $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')), scale $BENCH_SCALE, load average $(cut -d' ' -f1-3 /proc/loadavg)"
    say "  work dir:       $BENCH_DIR (this run: $RUN)"
    say "  garage:         $(garage --version 2>/dev/null | head -n1), $S3_ENDPOINT, bucket $BUCKET, pid $GARAGE_PID (same machine, same cores)"
    if [[ -n $FREEZER ]]; then
        say "  freezer-worker: $FREEZER ($("$FREEZER" --version 2>/dev/null || echo 'version unknown'))${BENCH_QUEUE_SIZE:+, --queue-size $BENCH_QUEUE_SIZE}"
    else
        say "  freezer-worker: SKIPPED (see the message above)"
    fi
    if [[ -n $RESTIC ]]; then
        say "  restic:         $RESTIC ($(restic version 2>/dev/null | head -n1))"
    else
        say "  restic:         SKIPPED (not installed)"
    fi
    if [[ -n $RCLONE ]]; then
        say "  rclone:         $RCLONE ($(rclone version 2>/dev/null | head -n1))"
    else
        say "  rclone:         SKIPPED (not installed): no raw put/get"
    fi
    say "  CA bundle:      $CA_NOTE; kept for freezer-worker and restic,"
    say "                  unset for rclone only (rclone 1.60 refuses a custom CA bundle with a plain-http endpoint)"
    if [[ -w /proc/sys/vm/drop_caches ]]; then
        say "Page cache: synced and dropped before each measurement (root), then the input is read once (dataset"
    else
        say "Page cache: synced, not dropped (not root); the input is read once right before each measurement (dataset"
    fi
    say "before a backup or put, garage's whole store before a restore or get), so all tools start warm."

    printf 'set\ttool\top\trc\twall\tuser\tsys\trss_kib\tstored_bytes\tdata_bytes\tcheck\tserver_cpu\n' >"$RESULTS"
    : >"$SETS_TSV"
    : >"$LIMITS_TSV"
    if [[ -n $RCLONE ]]; then
        bench_raw
    fi
    for s in $BENCH_SETS; do
        bench_set "$s"
    done
    if [[ $BENCH_LIMITS == 1 && -n $FREEZER ]]; then
        bench_limits "$limit" "$seconds"
    fi

    say ""
    say "Results (also in $RESULTS and $LIMITS_TSV):"
    say "  wall = elapsed seconds; CPU = the client's user + system seconds; garage CPU = the server's"
    say "  meanwhile (both on the same cores); RSS = the client's peak; MiB/s = dataset (or object) bytes / wall."
    say "  stored = bytes_stored of freezer-worker's --json, restic stats --mode raw-data. Commands:"
    say "    freezer-worker --config F backup --storage garage --container $BUCKET/bench-SET --path-to-backup SET --backup-name N --encrypt-pass-file P --json"
    say "    freezer-worker --config F restore --storage garage --container $BUCKET/bench-SET --backup-name N --restore-abs-path OUT --encrypt-pass-file P"
    say "      (F: [storages.garage] type = \"s3\", endpoint, region, access_key_id, secret_access_key_file)"
    say "    restic -r s3:$S3_ENDPOINT/$BUCKET/restic-SET -o s3.bucket-lookup=path backup SET | restore latest --target OUT"
    say "    rclone copyto FILE garage:$BUCKET/raw/raw.bin | copyto garage:$BUCKET/raw/raw.bin FILE (s3, provider Other, path style)"
    "$PY" "$HERE/s3report.py" "$RESULTS" "$SETS_TSV" "$LIMITS_TSV"

    if [[ $BENCH_CLEAN == 1 ]]; then
        say "BENCH_CLEAN=1: removing $BENCH_DIR"
        "$GARAGE_SH" stop "$GDIR" 2>/dev/null || true
        GARAGE_PID=""
        rm -rf "$BENCH_DIR"
    fi
    if [[ $PROBLEMS != 0 ]]; then
        warn "!!! $PROBLEMS failed run(s) or restore mismatch(es), see above and $LOGS"
        exit 1
    fi
}

main "$@"
