"""How long an analyst waits while `movierec nightly` runs: a reader beside a whole night.

A reader runs `movierec sql "SELECT count(*) FROM latest_recommendations" --json` every `--interval`
seconds (one process per read, as a dashboard or a cron job would) while night 2 runs (FULL = BASE plus ~1%
new ratings, users and movies; `benchmarks/snapshots.py`). Each read's wall time includes the CLI's start,
so the wait is reported as the read's wall time minus the median of reads made just before the night, on
an idle database. Beside it, this process opens the database read-only (the same retry policy) and closes
it again every 0.05 s: with no process start and no query, the time to open is the wait for a writer's
lock (plus the views' check), and every write-lock window longer than 0.05 s is met. The difference
between the two readers is CPU contention: a new process and a query over the published lists compete
with the night for the 2 cores.
Night 1 (fresh home, 20 saved queries, `movierec nightly BASE`) only prepares the home.

    .venv/bin/python benchmarks/bench_reader_wait.py --full DIR [--base DIR] [--home DIR] [--interval 1.5]

Prints one JSON line per night and a Markdown row: reads, failures, idle median, longest read, longest
wait, and the nightly stage that was running at the longest read; then the in-process reader's.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from bench_batch import TEXTS
from bench_nightly import product_env
from snapshots import make_base

QUERY = "SELECT count(*) FROM latest_recommendations"
OPEN_EVERY = 0.05  # seconds between the in-process opens: any write-lock window longer than this is met


def read_once(home: Path) -> tuple[float, float, int, str]:
    """(start, wall s, exit code, first line of stderr) of one `movierec sql` process."""
    start = time.perf_counter()
    cmd = [sys.executable, "-m", "movierec.cli", "sql", QUERY, "--json"]
    proc = subprocess.run(cmd, env=product_env(home), capture_output=True, text=True)
    err = (proc.stderr.strip().splitlines() or [""])[0][:200]
    return start, time.perf_counter() - start, proc.returncode, err


def open_once(home: Path) -> tuple[float, float, int, str]:
    """(start, seconds, 0, '') of opening the database read-only inside this process and closing it again:
    `connect(read_only=True)`, the retry policy of `movierec sql`, so the time is the wait for a writer's
    lock plus the views' check of a few milliseconds."""
    from movierec.config import Settings
    from movierec.db import connect

    start = time.perf_counter()
    with connect(Settings(home=home), read_only=True):
        pass
    return start, time.perf_counter() - start, 0, ""


class Reader(threading.Thread):
    """Reads every `interval` seconds until stopped (the next read starts `interval` after the last one)."""

    def __init__(self, home: Path, interval: float, read: Callable = read_once) -> None:
        super().__init__(daemon=True)
        self.home, self.interval, self.read = home, interval, read
        self.reads: list[tuple[float, float, int, str]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            self.reads.append(self.read(self.home))
            self.stop.wait(self.interval)


def night(home: Path, data: Path, label: str, interval: float | None) -> dict:
    """One `movierec nightly DATA`, with a reader beside it when `interval` is given."""
    idle = [read_once(home)[1] for _ in range(5)] if interval else []
    reader = Reader(home, interval) if interval else None
    opener = Reader(home, OPEN_EVERY, open_once) if interval else None
    load = os.getloadavg()
    t0 = time.perf_counter()
    if reader and opener:
        reader.start()
        opener.start()
    proc = subprocess.run([sys.executable, "-m", "movierec.cli", "nightly", str(data), "--json", "--quiet"],
                          env=product_env(home), capture_output=True, text=True)  # fmt: skip
    wall = time.perf_counter() - t0
    if reader and opener:
        for r in (reader, opener):
            r.stop.set()
            r.join()
    if proc.returncode:
        sys.exit(f"night {label} failed: {proc.stderr[-3000:]}")
    stages = json.loads(proc.stdout)["stages"]
    out: dict = {"night": label, "wall_s": round(wall, 1), "load_start": [round(x, 2) for x in load],
                 "load_end": [round(x, 2) for x in os.getloadavg()]}  # fmt: skip

    def during(start: float) -> str:
        """The stage running at `start` (stages run back to back)."""
        elapsed = start - t0
        for s in stages:
            if elapsed < s["seconds"]:
                return s["stage"]
            elapsed -= s["seconds"]
        return "after the night"

    if reader and opener and reader.reads:
        base = statistics.median(idle)
        start, longest, _, _ = max(reader.reads, key=lambda r: r[1])
        at = during(start)
        o_start, o_longest, _, _ = max(opener.reads, key=lambda r: r[1])
        out |= {
            "reads": len(reader.reads),
            "failed": [r[3] for r in reader.reads if r[2] != 0],
            "idle_read_median_s": round(base, 2),
            "longest_read_s": round(longest, 2),
            "longest_wait_s": round(max(0.0, longest - base), 2),
            "longest_during": at,
            "in_process_reads": len(opener.reads),
            "in_process_open_median_s": round(statistics.median(r[1] for r in opener.reads), 3),
            "in_process_longest_open_s": round(o_longest, 3),
            "in_process_longest_open_during": during(o_start),
            "in_process_opens_over_1s": sum(r[1] > 1 for r in opener.reads),
        }
    out["stages"] = {s["stage"]: round(s["seconds"], 1) for s in stages}
    print(json.dumps(out), flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--full", type=Path, required=True, help="a MovieLens-format directory (the night-2 data)"
    )
    ap.add_argument(
        "--base", type=Path, help="night-1 data; default: FULL-base beside FULL (made when missing)"
    )
    ap.add_argument("--home", type=Path, default=Path("/tmp/movierec-bench-reader-wait"))
    ap.add_argument("--interval", type=float, default=1.5, help="seconds between reads")
    args = ap.parse_args()
    base = args.base or args.full.with_name(args.full.name + "-base")
    print(json.dumps(make_base(args.full, base)), flush=True)

    shutil.rmtree(args.home, ignore_errors=True)
    for i, text in enumerate(TEXTS):
        # No genre filters: a genre cannot be validated before the first ingest has filled the catalogue.
        cmd = [sys.executable, "-m", "movierec.cli", "queries", "add", f"q{i:02d}", text]
        subprocess.run(cmd, env=product_env(args.home), check=True, capture_output=True)
    night(args.home, base, "1: fresh home (prepares the home, no reader)", None)
    r = night(args.home, args.full, f"2: +1% ratings, reader every {args.interval:.1f} s", args.interval)
    print("\n| night 2 wall | reads | failed | idle read (median) | longest read | longest wait | during |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: | --- |")
    print(f"| {r['wall_s']:.0f} s | {r['reads']} | {len(r['failed'])} | {r['idle_read_median_s']:.2f} s | "
          f"{r['longest_read_s']:.2f} s | {r['longest_wait_s']:.2f} s | {r['longest_during']} |")  # fmt: skip
    o = {k.removeprefix("in_process_"): v for k, v in r.items() if k.startswith("in_process_")}
    print(
        f"\nin-process opens every {OPEN_EVERY} s: {o['reads']}; median {o['open_median_s']:.3f} s, "
        f"longest {o['longest_open_s']:.3f} s during {o['longest_open_during']}, "
        f"{o['opens_over_1s']} over 1 s"
    )


if __name__ == "__main__":
    main()
