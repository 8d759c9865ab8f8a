#!/usr/bin/env bash
# A five-minute tour of freezer-worker: an encrypted full backup, an incremental one after some
# changes, a listing, and a restore that must equal the source. Everything happens in a temporary
# directory that is removed on exit.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

step() {
    printf '\n==> %s\n' "$*"
}

step "cargo build --release -p freezer-worker"
cargo build --release -p freezer-worker
target_dir=${CARGO_TARGET_DIR:-target}
[[ "$target_dir" == /* ]] || target_dir="$(pwd)/$target_dir"
worker="$target_dir/release/freezer-worker"

work=$(mktemp -d "${TMPDIR:-/tmp}/freezer-demo.XXXXXX")
trap 'rm -rf "$work"' EXIT
src="$work/src"        # what we back up
repo="$work/repo"      # the container (local storage) the backups go to
out="$work/restored"   # where we restore
pass="$work/passphrase"

step "creating a demo source in $src"
mkdir -p "$src/docs/drafts" "$src/data" "$repo" "$out"
echo "Freezer demo" >"$src/README.txt"
printf 'line %d\n' $(seq 1 1000) >"$src/docs/notes.txt"
echo "to be deleted" >"$src/docs/drafts/old.txt"
head -c 1048576 /dev/urandom >"$src/data/random.bin"
ln -s docs/notes.txt "$src/notes-link"
# A random passphrase, as `openssl enc -pass file:` reads it (first line).
head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$pass"
echo >>"$pass"
chmod 600 "$pass"
find "$src" | sort

step "backup 1: full (level 0), zstd-compressed, encrypted"
"$worker" backup --path-to-backup "$src" --container "$repo" --backup-name demo \
    --compression zstd --encrypt-pass-file "$pass"

step "changing the source: one file changed, one added, one deleted"
echo "line 1001" >>"$src/docs/notes.txt"
echo "new file" >"$src/docs/new.txt"
rm "$src/docs/drafts/old.txt"

step "backup 2: incremental (level 1)"
"$worker" backup --path-to-backup "$src" --container "$repo" --backup-name demo \
    --encrypt-pass-file "$pass"

step "list"
"$worker" list --container "$repo"

step "restore the newest backup into $out"
"$worker" restore --container "$repo" --backup-name demo --restore-abs-path "$out" \
    --encrypt-pass-file "$pass"

step "diff -r source restored"
diff -r --no-dereference "$src" "$out"
echo "demo OK"
