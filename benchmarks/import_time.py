#!/usr/bin/env python
"""`import hf_bort` against `import transformers; from transformers import AutoModel`, in fresh interpreters.

Each statement runs in its own new Python process (nothing cached in memory), alternating, `--repeats` times; the
median wall time of each and their ratio are printed. Goal: hf_bort within 1.2x of transformers' own Auto import.

    python benchmarks/import_time.py --repeats 7
"""

import argparse
import os
import statistics
import subprocess
import sys
import time


STATEMENTS = {
    "transformers + AutoModel": "import transformers; from transformers import AutoModel",
    "hf_bort": "import hf_bort",
}


def _time_once(statement: str) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", statement], check=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    _time_once("import hf_bort")  # warm the file-system cache once for both
    times: dict[str, list[float]] = {name: [] for name in STATEMENTS}
    for _ in range(args.repeats):
        for name, statement in STATEMENTS.items():
            times[name].append(_time_once(statement))
    medians = {name: statistics.median(values) for name, values in times.items()}
    for name, values in times.items():
        print(f"{name:<26} median {medians[name]:.2f} s  (min {min(values):.2f}, max {max(values):.2f})")
    ratio = medians["hf_bort"] / medians["transformers + AutoModel"]
    print(f"ratio hf_bort / transformers+AutoModel: {ratio:.2f}x (goal <= 1.2x)")


if __name__ == "__main__":
    main()
