"""Time `movierec --help` (cold process start) and list what the CLI imports at load.

Usage: .venv/bin/python benchmarks/bench_cli_startup.py [--runs 10]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    exe = shutil.which("movierec") or str(Path(sys.executable).with_name("movierec"))
    times = []
    for _ in range(args.runs):
        start = time.perf_counter()
        subprocess.run([exe, "--help"], capture_output=True, check=True)
        times.append(time.perf_counter() - start)
    print(
        f"movierec --help: median {statistics.median(times) * 1000:.0f} ms, max {max(times) * 1000:.0f} ms "
        f"over {args.runs} runs"
    )


if __name__ == "__main__":
    main()
