#!/usr/bin/env bash
# Freezer benchmark: freezer-worker against tar|zstd|openssl, tar|gzip|openssl and restic, on the same
# generated dataset, in one invocation. See bench/README.md.
#
#   bench/run.sh                      full scale (~1.4 GiB of data under /tmp/freezer-bench)
#   BENCH_SCALE=0.02 bench/run.sh     smoke test
#
# Environment: BENCH_DIR (default /tmp/freezer-bench), BENCH_SCALE (default 1.0), BENCH_SETS (default
# "small large"), BENCH_CLEAN=1 (remove BENCH_DIR at the end), BENCH_KEEP_REPOS=1 (keep the backups),
# FREEZER_BIN (default: build target/release/freezer-worker with cargo).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
BENCH_DIR=$(realpath -m "${BENCH_DIR:-/tmp/freezer-bench}")
BENCH_SCALE=${BENCH_SCALE:-1.0}
BENCH_SETS=${BENCH_SETS:-small large}
BENCH_CLEAN=${BENCH_CLEAN:-0}
BENCH_KEEP_REPOS=${BENCH_KEEP_REPOS:-0}
PY=${PYTHON:-python3}

DATA=$BENCH_DIR/data       # the dataset, kept between runs
RUN=$BENCH_DIR/run         # backups, restores, logs and results of this run, emptied at the start
LOGS=$RUN/logs
RESULTS=$RUN/results.tsv
SETS_TSV=$RUN/sets.tsv
PASSFILE=$BENCH_DIR/passphrase

# Every tool runs with its defaults: no FREEZER_* settings (FREEZER_KDF_ITERATIONS, FREEZER_HOSTNAME, ...)
# for freezer-worker, no stray restic settings.
FREEZER_BIN=${FREEZER_BIN:-}
for v in $(compgen -e); do
    if [[ $v == FREEZER_* && $v != FREEZER_BIN ]]; then
        unset "$v"
    fi
done
unset RESTIC_REPOSITORY RESTIC_REPOSITORY_FILE RESTIC_PASSWORD RESTIC_PASSWORD_COMMAND
export RESTIC_PASSWORD_FILE=$PASSFILE
export RESTIC_CACHE_DIR=$RUN/restic-cache

# The peers' exact commands ($1 = set or restore target, $2 = pass file, $3 = archive file).
OPENSSL_ENC='openssl enc -aes-256-cfb -pbkdf2 -md sha256 -iter 10000'
TAR_ZSTD_BACKUP="set -o pipefail; tar -C \"\$1\" -cf - . | zstd -T2 -3 -q | $OPENSSL_ENC -pass \"file:\$2\" -out \"\$3\""
TAR_ZSTD_RESTORE="set -o pipefail; $OPENSSL_ENC -d -pass \"file:\$2\" -in \"\$3\" | zstd -d -q | tar -C \"\$1\" -xf -"
TAR_GZIP_BACKUP="set -o pipefail; tar -C \"\$1\" -cf - . | gzip -6 | $OPENSSL_ENC -pass \"file:\$2\" -out \"\$3\""
TAR_GZIP_RESTORE="set -o pipefail; $OPENSSL_ENC -d -pass \"file:\$2\" -in \"\$3\" | gzip -d | tar -C \"\$1\" -xf -"

CMD=()       # command line built by freezer_backup / freezer_restore
FREEZER=""   # path of a working freezer-worker, or empty: skipped
RESTIC=""    # path of restic, or empty: skipped
PROBLEMS=0   # failed runs and restore mismatches

# shellcheck source=lib.sh
. "$HERE/lib.sh"

# ------------------------------------------------------------------------------------------ set-up

check_tools() {
    if [[ ! -x /usr/bin/time ]]; then
        say "installing GNU time (/usr/bin/time is missing)"
        apt_install time || die "/usr/bin/time is missing and could not be installed (apt-get install -y time)"
    fi
    local cmd
    for cmd in tar zstd gzip openssl; do
        if ! command -v "$cmd" >/dev/null 2>&1; then
            say "installing $cmd"
            apt_install "$cmd" || die "$cmd is missing and could not be installed"
        fi
    done
    if ! command -v restic >/dev/null 2>&1; then
        say "installing restic"
        apt_install restic || warn "restic is missing and could not be installed: restic is SKIPPED"
    fi
    RESTIC=$(command -v restic || true)
}

# ------------------------------------------------------------------------------------- measuring

# timed NAME CMD...: run CMD under GNU time, output in $LOGS/NAME.{out,err}; sets T_RC, T_WALL (s),
# T_USER and T_SYS (s, children included), T_RSS (KiB, the largest process).
timed() {
    local name=$1
    shift
    T_RC=0
    /usr/bin/time -f '%e %U %S %M' -o "$LOGS/$name.time" "$@" >"$LOGS/$name.out" 2>"$LOGS/$name.err" || T_RC=$?
    # On failure GNU time writes "Command exited with non-zero status N" first; the numbers come last.
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
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$T_RC" "$T_WALL" "$T_USER" "$T_SYS" \
        "$T_RSS" "$4" "$5" "$6" >>"$RESULTS"
    awk -v s="$1" -v t="$2" -v o="$3" -v w="$T_WALL" -v u="$T_USER" -v y="$T_SYS" -v m="$T_RSS" \
        -v c="$(if [[ $T_RC == 0 ]]; then echo "$6"; else echo "FAILED (exit $T_RC)"; fi)" \
        'BEGIN { printf "  %-6s %-13s %-13s %7.2f s wall %7.2f s CPU %7.1f MiB RSS  %s\n", s, t, o, w, u + y, m / 1024, c }'
}

# warm PATH...: read every byte once so that each tool starts with a warm page cache. (GNU tar does not
# read file contents when its archive is /dev/null, hence the pipe through cat.) Then flush dirty pages
# (`sync`) so that no tool pays for the write-back of the one measured before it; as root the page
# cache is dropped first, so every tool starts from the same state.
warm() {
    local p
    sync
    # As root, also drop the page cache so that every tool starts from the same memory state (the
    # first write-heavy run after the backups otherwise pays for reclaiming their cache).
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

stored() { du -sb "$1" | cut -f1; }

# GNU time runs programs, not shell functions: these fill the array CMD with a command line.
freezer_backup() { # SET_DIR CONTAINER NAME [extra args...]
    CMD=("$FREEZER" backup --path-to-backup "$1" --container "$2" --backup-name "$3"
        --encrypt-pass-file "$PASSFILE" --json "${@:4}")
}

freezer_restore() { # CONTAINER NAME OUT
    CMD=("$FREEZER" restore --container "$1" --backup-name "$2" --restore-abs-path "$3" --encrypt-pass-file "$PASSFILE")
}

# ------------------------------------------------------------------------------------------- a set

bench_set() {
    local set=$1
    local src=$DATA/$set repos=$RUN/repos/$set out=$RUN/restore/$set name="bench-$set"
    local bytes files dirs listing0 listing1 c f o before codec
    py reset "$DATA" "$set"
    bytes=$(py size "$src")
    read -r files dirs < <(py count "$src")
    printf '%s\t%s\t%s\t%s\n' "$set" "$files" "$dirs" "$bytes" >>"$SETS_TSV"
    say ""
    say "== $set set: $files files, $dirs directories, $bytes bytes =="
    listing0=$RUN/$set-source.listing
    py listing "$src" "$listing0"
    mkdir -p "$repos" "$out"

    # --- full backups
    if [[ -n $FREEZER ]]; then
        for codec in zstd gzip; do
            c=$repos/freezer-$codec
            mkdir -p "$c"
            warm "$src"
            if [[ $codec == zstd ]]; then
                freezer_backup "$src" "$c" "$name"
            else
                freezer_backup "$src" "$c" "$name" --compression gzip
            fi
            timed "$set-freezer-$codec-backup" "${CMD[@]}"
            record "$set" "freezer-$codec" backup "$(stored "$c")" "$bytes" "$(rc_check)"
        done
    fi
    for codec in zstd gzip; do
        f=$repos/tar-$codec.enc
        warm "$src"
        if [[ $codec == zstd ]]; then
            timed "$set-tar-zstd-backup" bash -c "$TAR_ZSTD_BACKUP" _ "$src" "$PASSFILE" "$f"
        else
            timed "$set-tar-gzip-backup" bash -c "$TAR_GZIP_BACKUP" _ "$src" "$PASSFILE" "$f"
        fi
        record "$set" "tar-$codec" backup "$(stored "$f")" "$bytes" "$(rc_check)"
    done
    if [[ -n $RESTIC ]]; then
        c=$repos/restic
        restic --repo "$c" init >"$LOGS/$set-restic-init.out" 2>&1 || die "restic init failed, see $LOGS/$set-restic-init.out"
        warm "$src"
        timed "$set-restic-backup" restic --repo "$c" backup "$src"
        record "$set" restic backup "$(stored "$c")" "$bytes" "$(rc_check)"
    fi

    # --- restores of the full backups
    if [[ -n $FREEZER ]]; then
        for codec in zstd gzip; do
            c=$repos/freezer-$codec o=$out/freezer-$codec
            mkdir -p "$o"
            warm "$c"
            freezer_restore "$c" "$name" "$o"
            timed "$set-freezer-$codec-restore" "${CMD[@]}"
            verify "$listing0" "$o" "$set-freezer-$codec-restore"
            record "$set" "freezer-$codec" restore - "$bytes" "$V_CHECK"
            rm -rf "$o"
        done
    fi
    for codec in zstd gzip; do
        f=$repos/tar-$codec.enc o=$out/tar-$codec
        mkdir -p "$o"
        warm "$f"
        if [[ $codec == zstd ]]; then
            timed "$set-tar-zstd-restore" bash -c "$TAR_ZSTD_RESTORE" _ "$o" "$PASSFILE" "$f"
        else
            timed "$set-tar-gzip-restore" bash -c "$TAR_GZIP_RESTORE" _ "$o" "$PASSFILE" "$f"
        fi
        verify "$listing0" "$o" "$set-tar-$codec-restore"
        record "$set" "tar-$codec" restore - "$bytes" "$V_CHECK"
        rm -rf "$o"
    done
    if [[ -n $RESTIC ]]; then
        c=$repos/restic o=$out/restic
        warm "$c"
        timed "$set-restic-restore" restic --repo "$c" restore latest --target "$o"
        verify "$listing0" "$o$src" "$set-restic-restore"   # restic restores the absolute path
        record "$set" restic restore - "$bytes" "$V_CHECK"
        rm -rf "$o"
    fi

    # --- the change, then incremental backups and their restores
    py change "$DATA" "$set"
    bytes=$(py size "$src")
    listing1=$RUN/$set-source-changed.listing
    py listing "$src" "$listing1"
    if [[ -n $FREEZER ]]; then
        c=$repos/freezer-zstd
        before=$(stored "$c")
        warm "$src"
        freezer_backup "$src" "$c" "$name"
        timed "$set-freezer-zstd-incr" "${CMD[@]}"
        local check=-
        if [[ $T_RC == 0 ]]; then
            if [[ -n $(find "$c" -path '*/1_*/manifest.json' -print -quit) ]]; then
                check=ok
            else
                check="not level 1"
                warn "!!! $set: the second freezer-worker backup did not write a level 1 backup"
                PROBLEMS=$((PROBLEMS + 1))
            fi
        fi
        record "$set" freezer-zstd backup-incr "$(($(stored "$c") - before))" "$bytes" "$check"
    fi
    if [[ -n $RESTIC ]]; then
        c=$repos/restic
        before=$(stored "$c")
        warm "$src"
        timed "$set-restic-incr" restic --repo "$c" backup "$src"
        record "$set" restic backup-incr "$(($(stored "$c") - before))" "$bytes" "$(rc_check)"
    fi
    if [[ -n $FREEZER ]]; then
        c=$repos/freezer-zstd o=$out/freezer-zstd-incr
        mkdir -p "$o"
        warm "$c"
        freezer_restore "$c" "$name" "$o"
        timed "$set-freezer-zstd-restore-incr" "${CMD[@]}"
        verify "$listing1" "$o" "$set-freezer-zstd-restore-incr"
        record "$set" freezer-zstd restore-incr - "$bytes" "$V_CHECK"
        rm -rf "$o"
    fi
    if [[ -n $RESTIC ]]; then
        c=$repos/restic o=$out/restic-incr
        warm "$c"
        timed "$set-restic-restore-incr" restic --repo "$c" restore latest --target "$o"
        verify "$listing1" "$o$src" "$set-restic-restore-incr"
        record "$set" restic restore-incr - "$bytes" "$V_CHECK"
        rm -rf "$o"
    fi

    py reset "$DATA" "$set"   # back to the pristine dataset for the next run
    if [[ $BENCH_KEEP_REPOS != 1 ]]; then
        rm -rf "$repos"
    fi
}

# ------------------------------------------------------------------------------------------- main

main() {
    "$PY" -c 'import sys; s = float(sys.argv[1]); sys.exit(0 if 0 < s <= 100 else 1)' "$BENCH_SCALE" 2>/dev/null ||
        die "BENCH_SCALE must be a number in (0, 100], not '$BENCH_SCALE'"
    local s
    for s in $BENCH_SETS; do
        [[ $s == small || $s == large ]] || die "BENCH_SETS may hold 'small' and 'large', not '$s'"
    done

    check_tools
    mkdir -p "$BENCH_DIR"
    rm -rf "$RUN"
    mkdir -p "$LOGS"
    setup_freezer --path-to-backup "engine not ready?"
    [[ -s $PASSFILE ]] || printf 'freezer-bench-passphrase\n' >"$PASSFILE"
    chmod 600 "$PASSFILE"

    py ensure "$DATA" "$BENCH_SCALE"

    say ""
    say "Freezer benchmark, $(date -u +%Y-%m-%dT%H:%M:%SZ), $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')), scale $BENCH_SCALE"
    say "  work dir:       $BENCH_DIR"
    if [[ -n $FREEZER ]]; then
        say "  freezer-worker: $FREEZER ($("$FREEZER" --version 2>/dev/null || echo 'version unknown'))"
    else
        say "  freezer-worker: SKIPPED (see the message above)"
    fi
    if [[ -n $RESTIC ]]; then
        say "  restic:         $RESTIC ($(restic version 2>/dev/null | head -n1))"
    else
        say "  restic:         SKIPPED (not installed)"
    fi
    say "  zstd:           $(zstd --version 2>&1 | head -n1)"
    say "  gzip:           $(gzip --version | head -n1)"
    say "  openssl:        $(openssl version)"
    say "  tar:            $(tar --version | head -n1)"
    if [[ -w /proc/sys/vm/drop_caches ]]; then
        say "Page cache: synced and dropped before each measurement (root), then every input is read once right before each"
    else
        say "Page cache: synced, not dropped (not root); every input is read once right before each"
    fi
    say "measurement (dataset before a backup, repository or archive before a restore), so all tools start warm."

    printf 'set\ttool\top\trc\twall\tuser\tsys\trss_kib\tstored_bytes\tdata_bytes\tcheck\n' >"$RESULTS"
    : >"$SETS_TSV"
    for s in $BENCH_SETS; do
        bench_set "$s"
    done

    say ""
    say "Results (also in $RESULTS):"
    say "  wall = elapsed seconds; CPU = user + system seconds; RSS = peak resident set size."
    say "  The tar pipelines are timed as one 'bash -c': their CPU is the sum over all processes of the"
    say "  pipeline, their RSS is that of the largest single process (not the sum)."
    say "  stored = du -sb of the repository or archive file; for an incremental, the bytes it added."
    say "  MiB/s = dataset bytes / wall. Commands:"
    say "    freezer-worker backup --path-to-backup SET --container REPO --backup-name NAME --encrypt-pass-file P --json [--compression gzip]"
    say "    freezer-worker restore --container REPO --backup-name NAME --restore-abs-path OUT --encrypt-pass-file P"
    say "    tar -C SET -cf - . | zstd -T2 -3 -q | $OPENSSL_ENC -pass file:P -out F   (restore: $OPENSSL_ENC -d | zstd -d | tar -x)"
    say "    tar -C SET -cf - . | gzip -6 | $OPENSSL_ENC -pass file:P -out F          (restore: $OPENSSL_ENC -d | gzip -d | tar -x)"
    say "    restic backup SET (fresh repository per set, default compression), restic restore latest --target OUT"
    "$PY" "$HERE/report.py" "$RESULTS" "$SETS_TSV"

    if [[ $BENCH_CLEAN == 1 ]]; then
        say "BENCH_CLEAN=1: removing $BENCH_DIR"
        rm -rf "$BENCH_DIR"
    fi
    if [[ $PROBLEMS != 0 ]]; then
        warn "!!! $PROBLEMS failed run(s) or restore mismatch(es), see above and $LOGS"
        exit 1
    fi
}

main "$@"
