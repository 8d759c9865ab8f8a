#!/usr/bin/env python3
"""Print bench/s3.sh's results: per set, freezer-worker and restic against garage, the raw object
put/get throughput, the ratios against the targets of issue #3, and the bandwidth limits' accuracy.

    s3report.py RESULTS_TSV SETS_TSV LIMITS_TSV

RESULTS_TSV: set, tool, op, rc, wall, user, sys, rss_kib, stored_bytes, data_bytes, check, server_cpu
             (header line first; set "raw" holds the rclone put/get of one object).
SETS_TSV:    set, files, dirs, bytes.
LIMITS_TSV:  limitcheck.py analyze lines: label, series, limit, active_s, bytes, avg_ratio, windows,
             max_ratio, min_ratio.
Exit status: 0 (targets are reported, not enforced; s3.sh decides its own exit status from checks).
"""

import csv
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from report import fmt, load, ok, verdict  # noqa: E402  (bench/report.py)

MiB = 1024 * 1024
TOOLS = {"freezer": "freezer-worker", "restic": "restic", "rclone": "rclone copyto"}
OPS = {"backup": "backup", "restore": "restore", "put": "put (upload)", "get": "get (download)"}

# (set, label, op, peer set, peer tool, peer op, minimum ratio or None for information); the ratio is
# freezer-worker's throughput (dataset bytes / wall) over the peer's (its bytes / wall).
RATIOS = [
    ("small", "backup: freezer vs restic", "backup", "small", "restic", "backup", 2.0),
    ("small", "backup: freezer vs raw put", "backup", "raw", "rclone", "put", None),
    ("small", "restore: freezer vs restic", "restore", "small", "restic", "restore", 1.5),
    ("small", "restore: freezer vs raw get", "restore", "raw", "rclone", "get", None),
    ("large", "backup: freezer vs restic", "backup", "large", "restic", "backup", 2.0),
    ("large", "backup: freezer vs raw put", "backup", "raw", "rclone", "put", 0.8),
    ("large", "restore: freezer vs restic", "restore", "large", "restic", "restore", 1.0),
    ("large", "restore: freezer vs raw get", "restore", "raw", "rclone", "get", 0.9),
]
LIMIT_MAX = 1.05  # over any 10-s window, the rate stays within 5% above the limit
LIMIT_MIN_INFO = 0.95


def tput(r):
    if not ok(r) or not r["data_bytes"]:
        return None
    return r["data_bytes"] / MiB / max(r["wall"], 0.005)  # %e has 10 ms resolution


def table(rows):
    head = (f"{'tool':<16} {'operation':<15} {'wall s':>8} {'CPU s':>7} {'garage CPU s':>12} {'RSS MiB':>8} "
            f"{'stored bytes':>13} {'MiB/s':>8}  check")
    print(head)
    print("-" * len(head))
    for r in rows:
        cpu = None if r["user"] is None else r["user"] + r["sys"]
        rss = None if r["rss_kib"] is None else r["rss_kib"] / 1024
        scpu = r.get("server_cpu")
        scpu = None if scpu in (None, "", "-") else float(scpu)
        check = r["check"] if r["rc"] == 0 else f"FAILED (exit {r['rc']})"
        print(f"{TOOLS.get(r['tool'], r['tool']):<16} {OPS.get(r['op'], r['op']):<15} {fmt(r['wall'], '8.2f'):>8} "
              f"{fmt(cpu, '7.2f'):>7} {fmt(scpu, '12.2f'):>12} {fmt(rss, '8.1f'):>8} "
              f"{fmt(r['stored_bytes'], 'd'):>13} {fmt(tput(r), '8.1f'):>8}  {check}")


def ratios(set_name, by):
    """Prints the set's ratios; returns them as (set, label, ratio, target, verdict, detail)."""
    out = []
    print("freezer-worker throughput / peer throughput:")
    for only, label, op, pset, ptool, pop, target in RATIOS:
        if only != set_name:
            continue
        a, b = by.get((set_name, "freezer", op)), by.get((pset, ptool, pop))
        ta, tb = tput(a), tput(b)
        t = "" if target is None else f"target >= {target:.1f}x"
        if ta is None or tb is None:
            why = ("freezer-worker not run" if a is None else "peer not run" if b is None else "a run failed")
            out.append((set_name, label, None, t, f"n/a ({why})", ""))
        else:
            ratio = ta / tb
            v = "info" if target is None else verdict(ratio, target, lambda x, t: x >= t)
            out.append((set_name, label, ratio, t, v, f"({ta:.1f} vs {tb:.1f} MiB/s)"))
    for _, label, ratio, t, v, detail in out:
        r = "     -  " if ratio is None else f"{ratio:6.2f}x "
        print(f"  {label:<30} {r} {t:<16} {v:<5} {detail}")
    return out


def limits(path):
    """Prints the limit runs; returns (label, short result, verdict) for the summary."""
    summary = []
    rows = []
    with open(path, newline="") as f:
        for r in csv.reader(f, delimiter="\t"):
            if r:
                rows.append(r)
    if not rows:
        return summary
    by = {}
    for label, series, limit, active, nbytes, avg, windows, mx, mn in rows:
        by.setdefault(label, {})[series] = dict(limit=int(limit), active=active, bytes=int(nbytes), avg=avg,
                                               windows=int(windows), max=mx, min=mn)
    print()
    print(f"Bandwidth limits (local storage, --compression none, incompressible data): rate over every "
          f"10-s window / limit, target max <= {LIMIT_MAX:.2f}")
    for label, ser in by.items():
        d = ser.get("dir")
        w = ser.get("wchar")
        limit = d["limit"] / MiB
        name = f"{label} at {limit:.2f} MiB/s"
        if d["bytes"] == 0:
            print(f"  {name:<34} n/a (nothing was written)")
            summary.append((name, "nothing written", "n/a"))
            continue
        cross = ""
        if w and w["windows"]:
            cross = f"; by the process's write counter: max {float(w['max']):.3f}x, min {float(w['min']):.3f}x"
        if d["windows"]:
            mx, mn = float(d["max"]), float(d["min"])
            v = verdict(mx, LIMIT_MAX, lambda x, t: x <= t)
            low = "" if mn >= LIMIT_MIN_INFO else f" (min below {LIMIT_MIN_INFO:.2f}x: the limit was not used fully)"
            print(f"  {name:<34} max {mx:.3f}x  min {mn:.3f}x  over {d['windows']} windows, active "
                  f"{float(d['active']):.1f} s, average {float(d['avg']):.3f}x   {v}{low}")
            if cross:
                print(f"  {'':<34} ({cross[2:]})")
            summary.append((name, f"10-s windows: max {mx:.3f}x, min {mn:.3f}x of the limit", v))
        else:
            avg = None if d["avg"] == "-" else float(d["avg"])
            if avg is not None and avg > LIMIT_MAX:
                v = "FAIL (not limited: no 10-s window, the transfer ended early)"
            else:
                v = "n/a (the run was too short for a 10-s window)"
            print(f"  {name:<34} no 10-s window: active {float(d['active']):.2f} s, average "
                  f"{fmt(avg, '.2f')}x the limit   {v}")
            summary.append((name, f"no 10-s window, average {fmt(avg, '.2f')}x the limit", v.split(" (")[0]))
    return summary


def main(argv):
    rows = load(argv[1])
    for r in rows:
        r.setdefault("server_cpu", None)
    by = {(r["set"], r["tool"], r["op"]): r for r in rows}
    sets = {}
    with open(argv[2], newline="") as f:
        for s in csv.reader(f, delimiter="\t"):
            if s:
                sets[s[0]] = (int(s[1]), int(s[2]), int(s[3]))
    summary = []
    for name, (files, dirs, size) in sets.items():
        sel = [r for r in rows if r["set"] == name]
        print()
        if name == "raw":
            print(f"== raw object: one file of {size} bytes ({size / MiB:.1f} MiB), incompressible ==")
            table(sel)
            continue
        print(f"== {name} set: {files} files in {dirs} directories, {size} bytes ({size / MiB:.1f} MiB) ==")
        table(sel)
        print()
        summary += ratios(name, by)
    lim = limits(argv[3])
    print()
    print("Summary (freezer-worker throughput / peer throughput; limits: rate / limit):")
    raw = {op: tput(by.get(("raw", "rclone", op))) for op in ("put", "get")}
    print(f"  raw put {fmt(raw['put'], '.1f')} MiB/s, raw get {fmt(raw['get'], '.1f')} MiB/s (rclone copyto, one object)")
    for set_name, label, ratio, t, v, detail in summary:
        r = "     -  " if ratio is None else f"{ratio:6.2f}x "
        print(f"  {set_name + ' ' + label:<40} {r} {t:<16} {v:<5} {detail}")
    for name, result, v in lim:
        print(f"  {name:<40} {result:<47} {v}")
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
