#!/usr/bin/env python3
"""Print bench/run.sh's results: one table per set, then freezer-worker's ratios against its peers.

    report.py RESULTS_TSV SETS_TSV

RESULTS_TSV: set, tool, op, rc, wall, user, sys, rss_kib, stored_bytes, data_bytes, check (header line first).
SETS_TSV:    set, files, dirs, bytes.
Exit status: 0 (targets are reported, not enforced; run.sh decides its own exit status from checks).
"""

import csv
import sys

MiB = 1024 * 1024

TOOLS = {
    "freezer-zstd": "freezer-worker (zstd)",
    "freezer-gzip": "freezer-worker (gzip)",
    "tar-zstd": "tar|zstd -T2 -3|openssl",
    "tar-gzip": "tar|gzip -6|openssl",
    "restic": "restic",
}
OPS = {
    "backup": "backup full",
    "backup-incr": "backup incremental",
    "restore": "restore",
    "restore-incr": "restore after incr",
}

# (set or None for every set, label, op, freezer tool, peer tool, minimum ratio or None for information)
RATIOS = [
    ("small", "backup: freezer(zstd) vs restic", "backup", "freezer-zstd", "restic", 2.0),
    ("large", "backup: freezer(zstd) vs restic", "backup", "freezer-zstd", "restic", 1.5),
    ("small", "backup: freezer(zstd) vs tar|zstd|openssl", "backup", "freezer-zstd", "tar-zstd", None),
    ("large", "backup: freezer(zstd) vs tar|zstd|openssl", "backup", "freezer-zstd", "tar-zstd", 0.9),
    (None, "backup: freezer(zstd) vs tar|gzip|openssl", "backup", "freezer-zstd", "tar-gzip", None),
    (None, "backup: freezer(gzip) vs tar|gzip|openssl", "backup", "freezer-gzip", "tar-gzip", 2.0),
    (None, "restore: freezer(zstd) vs restic", "restore", "freezer-zstd", "restic", 1.3),
    (None, "restore: freezer(zstd) vs tar|zstd|openssl", "restore", "freezer-zstd", "tar-zstd", None),
    (None, "restore: freezer(gzip) vs tar|gzip|openssl", "restore", "freezer-gzip", "tar-gzip", None),
    (None, "incremental: freezer(zstd) vs restic", "backup-incr", "freezer-zstd", "restic", None),
]
INCR_MAX_S = 0.3
RSS_MAX_MIB = 64


def load(path):
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    for r in rows:
        r["rc"] = int(r["rc"])
        for k in ("wall", "user", "sys"):
            r[k] = float(r[k]) if r[k] not in ("", "-") else None
        for k in ("rss_kib", "stored_bytes", "data_bytes"):
            r[k] = int(r[k]) if r[k] not in ("", "-") else None
    return rows


def ok(r):
    return r is not None and r["rc"] == 0 and r["check"] in ("ok", "-") and r["wall"] is not None


def fmt(v, spec, none="-"):
    return none if v is None else format(v, spec)


def table(rows, size):
    head = f"{'tool':<26} {'operation':<19} {'wall s':>8} {'CPU s':>8} {'RSS MiB':>8} {'stored bytes':>14} {'stored %':>8} {'MiB/s':>8}  check"
    print(head)
    print("-" * len(head))
    for r in rows:
        cpu = None if r["user"] is None else r["user"] + r["sys"]
        rss = None if r["rss_kib"] is None else r["rss_kib"] / 1024
        stored = r["stored_bytes"]
        if r["op"] == "backup-incr" and stored is not None:
            stored_s = f"+{stored}"
        else:
            stored_s = fmt(stored, "d")
        pct = None
        if stored is not None and r["op"] == "backup" and size:
            pct = 100.0 * stored / size
        tput = None
        if r["op"] != "backup-incr" and r["wall"] and r["data_bytes"] and ok(r):
            tput = r["data_bytes"] / MiB / r["wall"]
        check = r["check"] if r["rc"] == 0 else f"FAILED (exit {r['rc']})"
        print(
            f"{TOOLS.get(r['tool'], r['tool']):<26} {OPS.get(r['op'], r['op']):<19} {fmt(r['wall'], '8.2f'):>8} "
            f"{fmt(cpu, '8.2f'):>8} {fmt(rss, '8.1f'):>8} {stored_s:>14} {fmt(pct, '7.1f'):>8} "
            f"{fmt(tput, '8.1f'):>8}  {check}"
        )


def verdict(value, target, cmp):
    if value is None:
        return "n/a"
    return "PASS" if cmp(value, target) else "FAIL"


def ratios(set_name, rows):
    by = {(r["tool"], r["op"]): r for r in rows}
    out = []
    for only, label, op, mine, peer, target in RATIOS:
        if only is not None and only != set_name:
            continue
        a, b = by.get((mine, op)), by.get((peer, op))
        if not (ok(a) and ok(b)):
            why = "freezer-worker not run" if a is None else "peer not run" if b is None else "a run failed"
            out.append((label, None, target, f"n/a ({why})"))
            continue
        fw, pw = max(a["wall"], 0.005), max(b["wall"], 0.005)  # %e has 10 ms resolution
        ratio = pw / fw
        v = "info" if target is None else verdict(ratio, target, lambda x, t: x >= t)
        out.append((label, ratio, target, v))
    print("freezer-worker throughput / peer throughput (= peer wall / freezer wall):")
    for label, ratio, target, v in out:
        t = "" if target is None else f"target >= {target:.1f}x"
        r = "     -  " if ratio is None else f"{ratio:6.2f}x "
        print(f"  {label:<46} {r} {t:<16} {v}")
    a = by.get(("freezer-zstd", "backup-incr"))
    if ok(a):
        # The issue's 0.3 s target is for the 1% change on 50,000 small files; the large set's
        # change appends to a 256 MiB file, which the file-level tar engine stores again whole.
        if set_name == "small":
            v = verdict(a["wall"], INCR_MAX_S, lambda x, t: x < t)
        else:
            v = "info (file-level engine re-stores the appended file)"
        print(f"  {'incremental: freezer(zstd) wall':<46} {a['wall']:6.2f}s  target < {INCR_MAX_S} s     {v}")
        b = by.get(("restic", "backup-incr"))
        if ok(b):
            print(f"  {'incremental: restic wall':<46} {b['wall']:6.2f}s")
    else:
        print(f"  {'incremental: freezer(zstd) wall':<46}      -   target < {INCR_MAX_S} s     n/a")
    rss = [r["rss_kib"] for r in rows if r["tool"].startswith("freezer") and r["rss_kib"] is not None]
    if rss:
        m = max(rss) / 1024
        v = verdict(m, RSS_MAX_MIB, lambda x, t: x < t)
        print(f"  {'freezer-worker peak RSS (all its runs)':<46} {m:6.1f} MiB  target < {RSS_MAX_MIB} MiB  {v}")
    else:
        print(f"  {'freezer-worker peak RSS (all its runs)':<46}      -       target < {RSS_MAX_MIB} MiB  n/a")
    return [v for _, _, _, v in out]


def main(argv):
    rows = load(argv[1])
    sets = {}
    with open(argv[2], newline="") as f:
        for s in csv.reader(f, delimiter="\t"):
            sets[s[0]] = (int(s[1]), int(s[2]), int(s[3]))
    for name, (files, dirs, size) in sets.items():
        sel = [r for r in rows if r["set"] == name]
        print()
        print(f"== {name} set: {files} files in {dirs} directories, {size} bytes ({size / MiB:.1f} MiB) ==")
        table(sel, size)
        print()
        ratios(name, sel)
    bad = [r for r in rows if not ok(r)]
    print()
    if bad:
        print("!!! FAILED RUNS OR RESTORE MISMATCHES:")
        for r in bad:
            print(f"!!!   {r['set']}: {TOOLS.get(r['tool'], r['tool'])} {OPS.get(r['op'], r['op'])}: "
                  f"{r['check'] if r['rc'] == 0 else 'exit ' + str(r['rc'])}")
    else:
        print("All runs succeeded and every restore matched its source (content, size, mode, mtime).")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
