#!/usr/bin/env python3
"""Bandwidth-limit accuracy for bench/s3.sh (Python 3.11 standard library only).

    limitcheck.py run SAMPLES_TSV DIR INTERVAL -- CMD [ARGS...]
        Runs CMD (its stdout and stderr are this process's) and, every INTERVAL seconds until it exits,
        writes one line "t dir_bytes wchar" to SAMPLES_TSV: seconds since CMD started, the total size
        of the regular files under DIR (hidden and temporary files included), and CMD's write counter
        (wchar of /proc/PID/io, bytes passed to write(2) by all its threads; -1 when unreadable).
        The exit status is CMD's.

    limitcheck.py analyze LABEL SAMPLES_TSV LIMIT WINDOW RAMP
        Prints one TSV line per series (dir, wchar):
            label series limit active_s bytes avg_ratio windows max_ratio min_ratio
        The active span runs from the last sample below 1% of the series' final value to the first
        at or above 99% of it (a lock file or the closing index does not count as transfer);
        RAMP seconds are cut off at each end. Over every WINDOW-second window that fits in what is
        left, sliding by the sampling interval, the average rate (linear interpolation between
        samples) divided by LIMIT gives max_ratio and min_ratio; windows is their number (0: the run
        was too short, max_ratio/min_ratio are "-"). avg_ratio is the whole active span's rate / LIMIT.

A series is made monotone (running maximum) first: a file renamed while the directory is walked can
be missed once, which is a sampling artefact, not a transfer going backwards.
"""

import bisect
import os
import subprocess
import sys
import time


def dir_bytes(root: str) -> int:
    total = 0
    stack = [root]
    while stack:
        d = stack.pop()
        try:
            with os.scandir(d) as it:
                for e in it:
                    try:
                        if e.is_dir(follow_symlinks=False):
                            stack.append(e.path)
                        elif e.is_file(follow_symlinks=False):
                            total += e.stat(follow_symlinks=False).st_size
                    except FileNotFoundError:
                        pass  # renamed or removed while walking
        except (FileNotFoundError, NotADirectoryError):
            pass
    return total


def wchar(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/io") as f:
            for line in f:
                if line.startswith("wchar:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return -1


def run(samples: str, root: str, interval: float, cmd: list[str]) -> int:
    rows = []
    start = time.monotonic()
    proc = subprocess.Popen(cmd)
    last_w = 0
    k = 0
    while True:
        t = time.monotonic() - start
        w = wchar(proc.pid)
        if w >= 0:
            last_w = w
        rows.append((t, dir_bytes(root), w if w >= 0 else last_w))
        if proc.poll() is not None:
            break
        k += 1
        pause = start + k * interval - time.monotonic()
        if pause > 0:
            try:
                proc.wait(timeout=pause)
            except subprocess.TimeoutExpired:
                pass
    rc = proc.wait()
    # A last sample after the exit: everything written is on disk (wchar is gone with the process).
    rows.append((time.monotonic() - start, dir_bytes(root), last_w))
    with open(samples, "w") as f:
        for t, b, w in rows:
            f.write(f"{t:.4f}\t{b}\t{w}\n")
    return rc


def analyze_series(ts: list[float], vs: list[int], limit: float, window: float, ramp: float):
    mono = []
    m = 0
    for v in vs:
        m = max(m, v)
        mono.append(m)
    final = mono[-1] if mono else 0
    if final <= 0 or len(ts) < 2:
        return None

    def first_at(level: float) -> int:
        for i, v in enumerate(mono):
            if v >= level:
                return i
        return len(mono) - 1

    # From the last sample before 1% of the bytes (the transfer started after it) to the first at 99%.
    t0, t1 = ts[max(first_at(0.01 * final) - 1, 0)], ts[first_at(0.99 * final)]

    def at(t: float) -> float:  # linear interpolation of the monotone series
        i = bisect.bisect_right(ts, t)
        if i <= 0:
            return mono[0]
        if i >= len(ts):
            return mono[-1]
        ta, tb = ts[i - 1], ts[i]
        va, vb = mono[i - 1], mono[i]
        return va if tb <= ta else va + (vb - va) * (t - ta) / (tb - ta)

    active = t1 - t0
    moved = at(t1) - at(t0)
    avg = (moved / active / limit) if active > 0 else None
    step = max(min(ts[j + 1] - ts[j] for j in range(len(ts) - 1)), 0.05)
    step = min(step, 0.25)
    rates = []
    s = t0 + ramp
    while s + window <= t1 - ramp + 1e-9:
        rates.append((at(s + window) - at(s)) / window / limit)
        s += step
    return active, final, avg, rates


def analyze(label: str, samples: str, limit: float, window: float, ramp: float) -> None:
    ts, ds, ws = [], [], []
    with open(samples) as f:
        for line in f:
            t, d, w = line.split("\t")
            ts.append(float(t))
            ds.append(int(d))
            ws.append(int(w))
    for series, vs in (("dir", ds), ("wchar", ws)):
        r = analyze_series(ts, vs, limit, window, ramp)
        if r is None:
            print(f"{label}\t{series}\t{int(limit)}\t-\t0\t-\t0\t-\t-")
            continue
        active, final, avg, rates = r
        mx = f"{max(rates):.4f}" if rates else "-"
        mn = f"{min(rates):.4f}" if rates else "-"
        av = "-" if avg is None else f"{avg:.4f}"
        print(f"{label}\t{series}\t{int(limit)}\t{active:.2f}\t{final}\t{av}\t{len(rates)}\t{mx}\t{mn}")


def main(argv: list[str]) -> int:
    if len(argv) >= 6 and argv[1] == "run" and argv[5] == "--":
        return run(argv[2], argv[3], float(argv[4]), argv[6:])
    if len(argv) == 7 and argv[1] == "analyze":
        analyze(argv[2], argv[3], float(argv[4]), float(argv[5]), float(argv[6]))
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
