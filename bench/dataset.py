#!/usr/bin/env python3
"""Deterministic benchmark dataset for bench/run.sh (Python 3.11 standard library only).

    dataset.py ensure  DATA_DIR SCALE     generate DATA_DIR/{small,large} unless present (marker matches)
    dataset.py change  DATA_DIR SET       apply the incremental change to one set (small | large)
    dataset.py reset   DATA_DIR SET       undo `change` (rewrites the changed files to their original content)
    dataset.py size    DIR                total bytes of regular files under DIR
    dataset.py count   DIR                "<files> <dirs>" under DIR (the root not counted)
    dataset.py listing DIR OUT            checksum listing (path, type, size, mode, mtime s, sha256), sorted
    dataset.py random  FILE SIZE          FILE of SIZE incompressible bytes (seeded by FILE's name; bench/s3.sh)

Every byte comes from random.Random seeded with a fixed string (no os.urandom), so the dataset is the
same on every machine and every run. The marker DATA_DIR/.marker holds the format version and the scale;
DATA_DIR/.state-<set> says whether a set is pristine or changed.
"""

import hashlib
import json
import os
import random
import shutil
import stat
import sys

VERSION = 1
SEED = "freezer-bench-20261125"
KiB = 1024
MiB = 1024 * KiB

# Full-scale (BENCH_SCALE=1) shape.
SMALL_FILES = 50_000  # 1..16 KiB each, ~415 MiB in total
SMALL_DIRS = 500  # leaf directories, 25 per top-level directory
LARGE_FILE_SIZE = 256 * MiB  # 4 files, 1 GiB in total
APPEND_SIZE = 8 * MiB  # appended to large/app.log by `change`
CHANGE_MOD = 100  # small files with index % 100 == CHANGE_REM are rewritten by `change` (1%)
CHANGE_REM = 37

POOL_SIZE = 16 * MiB  # text pool that text-like content is sliced from


def params(scale: float) -> dict:
    return {
        "small_files": max(20, round(SMALL_FILES * scale)),
        "small_dirs": max(2, round(SMALL_DIRS * scale)),
        "large_size": max(1 * MiB, round(LARGE_FILE_SIZE * scale)),
        "append_size": max(64 * KiB, round(APPEND_SIZE * scale)),
    }


# --------------------------------------------------------------------------------------------- text

WORDS = (
    "the of and to in is that for it as was with be by on not he this are or his from at which but have "
    "an they you were her she there been one all we their has would when if so no will what more can out "
    "about up time them some could into only other new then these may first any like now my such make "
    "over our even most after also did many before must through back years where much your way well down "
    "should because each just those people how too little state good very world still own see men work "
    "long get here between both life being under never day same another know while last might us great "
    "old year off come since against go came right used take three backup restore archive segment chain "
    "level manifest index storage container worker dispatcher session retention snapshot volume"
).split()
SERVICES = ("nginx", "postgres", "sshd", "cron", "kernel", "freezer-worker", "redis", "rabbitmq", "systemd")
LEVELS = ("INFO", "INFO", "INFO", "DEBUG", "WARN", "ERROR")
PATHS = ("/api/v1/items", "/api/v1/users", "/static/app.js", "/healthz", "/metrics", "/login", "/api/v2/orders")
AGENTS = ('"Mozilla/5.0 (X11; Linux x86_64)"', '"curl/7.88.1"', '"Prometheus/2.45.0"', '"python-requests/2.31"')


def _text_pool() -> bytes:
    """About POOL_SIZE bytes of log lines and prose, deterministic."""
    r = random.Random(SEED + "-pool")
    out = []
    n = 0
    t = 1_764_078_776  # 2025-11-25, seconds
    while n < POOL_SIZE:
        t += r.randrange(0, 3)
        hh, mm, ss = (t // 3600) % 24, (t // 60) % 60, t % 60
        ts = f"2026-11-25T{hh:02d}:{mm:02d}:{ss:02d}.{r.randrange(1_000_000):06d}Z"
        kind = r.random()
        if kind < 0.45:
            line = (
                f'{ts} web{r.randrange(1, 9):02d} nginx[{r.randrange(300, 9000)}]: '
                f'10.{r.randrange(256)}.{r.randrange(256)}.{r.randrange(256)} "GET '
                f'{r.choice(PATHS)}/{r.randrange(100000)} HTTP/1.1" {r.choice((200, 200, 200, 304, 404, 500))} '
                f"{r.randrange(50, 90000)} {r.choice(AGENTS)} rt={r.random():.3f}\n"
            )
        elif kind < 0.75:
            words = " ".join(r.choice(WORDS) for _ in range(r.randrange(4, 14)))
            line = (
                f"{ts} {r.choice(SERVICES)}[{r.randrange(100, 60000)}] {r.choice(LEVELS)} {words} "
                f"id={r.getrandbits(32):08x}\n"
            )
        else:
            words = " ".join(r.choice(WORDS) for _ in range(r.randrange(8, 20)))
            line = words[0].upper() + words[1:] + ".\n"
        b = line.encode()
        out.append(b)
        n += len(b)
    return b"".join(out)[:POOL_SIZE]


_POOL = None


def pool() -> bytes:
    global _POOL
    if _POOL is None:
        _POOL = _text_pool()
    return _POOL


def text_bytes(r: random.Random, size: int) -> bytes:
    """Text-like bytes: 4 KiB slices of the pool at random offsets, each led by a unique line (so
    block-level dedup, e.g. restic's, cannot find repeated chunks)."""
    p = pool()
    parts = []
    n = 0
    while n < size:
        head = f"# {r.getrandbits(64):016x} seq={n}\n".encode()
        take = min(4 * KiB, size - n)
        off = r.randrange(0, len(p) - take)
        part = head + p[off : off + take]
        parts.append(part)
        n += len(part)
    return b"".join(parts)[:size]


def semi_bytes(r: random.Random, size: int) -> bytes:
    """Hex of random bytes: ~4 bits of entropy per byte (compresses to about half)."""
    return r.randbytes((size + 1) // 2).hex().encode()[:size]


# ------------------------------------------------------------------------------------------- small


def small_file(i: int, p: dict, variant: int) -> tuple[str, bytes]:
    """Relative path and content of small file i (variant 0: original, 1: after `change`)."""
    rs = random.Random(f"{SEED}-small-meta-{i}")
    size = rs.randint(1 * KiB, 16 * KiB)
    k = rs.random()
    kind = "txt" if k < 0.45 else "bin" if k < 0.80 else "dat"
    d = i % p["small_dirs"]
    rel = f"d{d // 25:03d}/s{d % 25:02d}/f{i:06d}.{kind}"
    r = random.Random(f"{SEED}-small-{i}-v{variant}")
    if kind == "txt":
        data = text_bytes(r, size)
    elif kind == "bin":
        data = r.randbytes(size)
    else:
        half = size // 2
        data = text_bytes(r, half) + r.randbytes(size - half)
    return rel, data


def write_file(path: str, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)


def gen_small(root: str, p: dict) -> None:
    made = set()
    for i in range(p["small_files"]):
        rel, data = small_file(i, p, 0)
        d = os.path.dirname(rel)
        if d not in made:
            os.makedirs(os.path.join(root, d), exist_ok=True)
            made.add(d)
        write_file(os.path.join(root, rel), data)


# ------------------------------------------------------------------------------------------- large

CHUNK = 4 * MiB


def _write_stream(path: str, size: int, block) -> None:
    with open(path, "wb") as f:
        n = 0
        while n < size:
            b = block(min(CHUNK, size - n))
            f.write(b)
            n += len(b)


def gen_large(root: str, p: dict) -> None:
    size = p["large_size"]
    os.makedirs(root, exist_ok=True)

    # 1. random: incompressible.
    r1 = random.Random(SEED + "-large-random")
    _write_stream(os.path.join(root, "random.bin"), size, r1.randbytes)

    # 2. log-like text.
    r2 = random.Random(SEED + "-large-log")
    _write_stream(os.path.join(root, "app.log"), size, lambda n: text_bytes(r2, n))

    # 3. half zeros: runs of random data and zeros, 4 KiB .. 1 MiB each, alternating (a disk image).
    r3 = random.Random(SEED + "-large-halfzero")

    def halfzero(n: int) -> bytes:
        parts, m, zero = [], 0, False
        while m < n:
            run = min(r3.randrange(1, 257) * 4 * KiB, n - m)
            parts.append(bytes(run) if zero else r3.randbytes(run))
            m += run
            zero = not zero
        return b"".join(parts)

    _write_stream(os.path.join(root, "disk.img"), size, halfzero)

    # 4. mixed: 1 MiB blocks of text, random, hex (semi-compressible) and zeros, in random order.
    r4 = random.Random(SEED + "-large-mixed")

    def mixed(n: int) -> bytes:
        parts, m = [], 0
        while m < n:
            run = min(1 * MiB, n - m)
            k = r4.randrange(4)
            if k == 0:
                parts.append(text_bytes(r4, run))
            elif k == 1:
                parts.append(r4.randbytes(run))
            elif k == 2:
                parts.append(semi_bytes(r4, run))
            else:
                parts.append(bytes(run))
            m += run
        return b"".join(parts)

    _write_stream(os.path.join(root, "mixed.dat"), size, mixed)


# ------------------------------------------------------------------------------------------ change


def change(data_dir: str, which: str, p: dict) -> None:
    if get_state(data_dir, which) != "pristine":
        reset(data_dir, which, p)
    set_state(data_dir, which, "changed")  # first: an interrupted change is undone by the next reset
    if which == "small":
        root = os.path.join(data_dir, "small")
        for i in range(CHANGE_REM, p["small_files"], CHANGE_MOD):
            rel, data = small_file(i, p, 1)
            write_file(os.path.join(root, rel), data)
    else:
        r = random.Random(SEED + "-large-append")
        with open(os.path.join(data_dir, "large", "app.log"), "ab") as f:
            f.write(text_bytes(r, p["append_size"]))


def reset(data_dir: str, which: str, p: dict) -> None:
    if get_state(data_dir, which) == "pristine":
        return
    if which == "small":
        root = os.path.join(data_dir, "small")
        for i in range(CHANGE_REM, p["small_files"], CHANGE_MOD):
            rel, data = small_file(i, p, 0)
            write_file(os.path.join(root, rel), data)
    else:
        os.truncate(os.path.join(data_dir, "large", "app.log"), p["large_size"])
    set_state(data_dir, which, "pristine")


def get_state(data_dir: str, which: str) -> str:
    try:
        with open(os.path.join(data_dir, f".state-{which}")) as f:
            return f.read().strip()
    except FileNotFoundError:
        return "changed"  # unknown: assume the worst, reset rewrites


def set_state(data_dir: str, which: str, state: str) -> None:
    write_file(os.path.join(data_dir, f".state-{which}"), (state + "\n").encode())


# ------------------------------------------------------------------------------------------ marker


def marker_text(scale: float) -> str:
    return json.dumps({"version": VERSION, "seed": SEED, "scale": scale}, sort_keys=True) + "\n"


def read_marker(data_dir: str) -> dict:
    with open(os.path.join(data_dir, ".marker")) as f:
        return json.load(f)


def ensure(data_dir: str, scale: float) -> None:
    p = params(scale)
    try:
        with open(os.path.join(data_dir, ".marker")) as f:
            if f.read() == marker_text(scale):
                for which in ("small", "large"):
                    reset(data_dir, which, p)
                print(f"dataset: present in {data_dir} (version {VERSION}, scale {scale}), reused")
                return
    except FileNotFoundError:
        pass
    if os.path.exists(data_dir):
        shutil.rmtree(data_dir)
    os.makedirs(data_dir)
    print(
        f"dataset: generating in {data_dir} (version {VERSION}, scale {scale}): "
        f"{p['small_files']} small files in {p['small_dirs']} dirs, 4 large files of {p['large_size']} bytes",
        flush=True,
    )
    gen_small(os.path.join(data_dir, "small"), p)
    gen_large(os.path.join(data_dir, "large"), p)
    for which in ("small", "large"):
        set_state(data_dir, which, "pristine")
    write_file(os.path.join(data_dir, ".marker"), marker_text(scale).encode())


# ------------------------------------------------------------------------------------------- tools


def walk(root: str):
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(dirnames + filenames):
            yield os.path.join(dirpath, name)


def size(root: str) -> int:
    total = 0
    for path in walk(root):
        st = os.lstat(path)
        if stat.S_ISREG(st.st_mode):
            total += st.st_size
    return total


def count(root: str) -> tuple[int, int]:
    files = dirs = 0
    for path in walk(root):
        st = os.lstat(path)
        if stat.S_ISDIR(st.st_mode):
            dirs += 1
        else:
            files += 1
    return files, dirs


def listing(root: str, out: str) -> None:
    lines = []
    for path in walk(root):
        rel = os.path.relpath(path, root)
        st = os.lstat(path)
        mode = f"{stat.S_IMODE(st.st_mode):04o}"
        if stat.S_ISREG(st.st_mode):
            h = hashlib.sha256()
            with open(path, "rb") as f:
                while b := f.read(1 * MiB):
                    h.update(b)
            lines.append(f"{rel}\tfile\t{st.st_size}\t{mode}\t{int(st.st_mtime)}\t{h.hexdigest()}")
        elif stat.S_ISDIR(st.st_mode):
            lines.append(f"{rel}\tdir\t-\t{mode}\t-\t-")
        elif stat.S_ISLNK(st.st_mode):
            lines.append(f"{rel}\tsymlink\t-\t-\t-\t{os.readlink(path)}")
        else:
            lines.append(f"{rel}\tother\t-\t{mode}\t-\t-")
    lines.sort()
    with open(out, "w") as f:
        f.write("\n".join(lines) + ("\n" if lines else ""))


def random_file(path: str, n: int) -> None:
    """n incompressible bytes, the same for the same file name and size."""
    r = random.Random(f"{SEED}-random-{os.path.basename(path)}")
    _write_stream(path, n, r.randbytes)


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    cmd, args = argv[1], argv[2:]
    if cmd == "ensure":
        ensure(args[0], float(args[1]))
    elif cmd in ("change", "reset"):
        data_dir, which = args[0], args[1]
        p = params(float(read_marker(data_dir)["scale"]))
        (change if cmd == "change" else reset)(data_dir, which, p)
    elif cmd == "size":
        print(size(args[0]))
    elif cmd == "count":
        print(*count(args[0]))
    elif cmd == "listing":
        listing(args[0], args[1])
    elif cmd == "random":
        random_file(args[0], int(args[1]))
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
