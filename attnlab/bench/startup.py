"""Back-to-back start-up timing of the CLI (issue 17): rounds of ``import torch``, ``attnlab --help`` and
``attnlab list``, with the wall and CPU time of each run and the same-round differences from torch.

    python -m attnlab.bench.startup 10        # 10 rounds after one warm-up round (results: benchmarks/cli.md)

The children may write .pyc files (as an installed copy has them), whatever PYTHONDONTWRITEBYTECODE says here.
"""
from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time

COMMANDS = {
    "torch": [sys.executable, "-c", "import torch"],
    "help": [sys.executable, "-m", "attnlab.cli", "--help"],
    "list": [sys.executable, "-m", "attnlab.cli", "list"],
}


def run_once(cmd: list[str], env: dict) -> tuple[float, float]:
    """Wall seconds and child CPU seconds (user + system) of one run of ``cmd``."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run(cmd, stdout=subprocess.DEVNULL, check=True, env=env)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def span(values: list[float], sign: str = "") -> str:
    v = sorted(values)
    return f"{v[0]:{sign}.2f}..{v[-1]:{sign}.2f} (median {statistics.median(v):{sign}.2f}) s"


def main(rounds: int) -> None:
    if rounds < 1:
        raise SystemExit(f"rounds: expected an int >= 1, received {rounds}")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    runs: dict[str, list[tuple[float, float]]] = {k: [] for k in COMMANDS}
    for r in range(rounds + 1):
        for name, cmd in COMMANDS.items():
            measured = run_once(cmd, env)
            if r:  # round 0 warms the file cache and writes the .pyc files
                runs[name].append(measured)
    for name, v in runs.items():
        print(f"{name:6s} wall {span([w for w, _ in v])}; CPU {span([c for _, c in v])}")
    for name in ("help", "list"):
        pairs = list(zip(runs[name], runs["torch"]))
        print(f"{name} - torch, same round: wall {span([a[0] - b[0] for a, b in pairs], '+')}; "
              f"CPU {span([a[1] - b[1] for a, b in pairs], '+')}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m attnlab.bench.startup", description=__doc__.split("\n")[0])
    parser.add_argument("rounds", nargs="?", type=int, default=10, help="timed rounds after one warm-up round")
    main(parser.parse_args().rounds)
