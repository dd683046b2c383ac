#!/usr/bin/env python
"""`import hf_bort` against `import transformers; from transformers import AutoModel`, in fresh interpreters.

Each statement runs in its own new Python process (nothing cached in memory), alternating, `--repeats` times; the
median wall time and the median CPU time (user + system of the child, which a loaded machine disturbs far less) of
each, and their ratios, are printed. Goal: hf_bort within 1.2x of transformers' own Auto import.

    python benchmarks/import_time.py --repeats 7
"""

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time


STATEMENTS = {
    "transformers + AutoModel": "import transformers; from transformers import AutoModel",
    "hf_bort": "import hf_bort",
}


def _time_once(statement: str) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one fresh interpreter running `statement`."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", statement], check=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    _time_once("import hf_bort")  # warm the file-system cache once for both
    runs: dict[str, list[tuple[float, float]]] = {name: [] for name in STATEMENTS}
    for _ in range(args.repeats):
        for name, statement in STATEMENTS.items():
            runs[name].append(_time_once(statement))
    print(f"{'statement':<26} {'wall median (min-max)':>24} {'CPU median (min-max)':>24}")
    medians = {}
    for name, values in runs.items():
        walls, cpus = [w for w, _ in values], [c for _, c in values]
        medians[name] = (statistics.median(walls), statistics.median(cpus))
        print(
            f"{name:<26} {medians[name][0]:>7.2f} s ({min(walls):.2f}-{max(walls):.2f})"
            f" {medians[name][1]:>9.2f} s ({min(cpus):.2f}-{max(cpus):.2f})"
        )
    base = medians["transformers + AutoModel"]
    print(
        f"ratio hf_bort / transformers+AutoModel: wall {medians['hf_bort'][0] / base[0]:.2f}x, "
        f"CPU {medians['hf_bort'][1] / base[1]:.2f}x (goal <= 1.2x)"
    )


if __name__ == "__main__":
    main()
