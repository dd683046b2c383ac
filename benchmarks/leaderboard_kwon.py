"""The leaderboard's retraining-free peer: Kwon et al. 2022's mask search, rearrangement and mask tuning
(`kwon_prune.py`), run in its own venv (`benchmarks/setup_kwon.sh`, transformers 4.44.2 + scipy).

`compress_kwon(board, budget, task)` has `compress_textpruner`'s contract: the pruned model with its real per-layer
shapes (rebuilt by the leaderboard's `build_model`) and what the compression recorded, measured to meet the budget
with the leaderboard's SELECTION_MARGIN; the leaderboard's `PeerUnavailable` (with the reason) otherwise. Wiring, in
`benchmarks/leaderboard.py`: `"kwon"` in ALL_METHODS and, in COMPRESSORS,

    "kwon": importlib.import_module("benchmarks.leaderboard_kwon").compress_kwon,

Kwon's constraint is a fraction of the encoder's MACs (heads and FFN neurons, at the task's average dev length). It
is searched downwards from 1/budget: one call of the mask search alone gives the shapes every constraint would have
(the tuning changes values, not shapes; its mask gradients are kept for the pruning call); the largest constraint whose shapes meet the budget as measured (latency
does not depend on the weights) is pruned for real, and checked again; on a miss, the next one down.

Search rows: `KWON_ROWS` (default 2048, the reference's `--num_samples`), sampled with replacement from the
leaderboard's training rows; 64 in the quick run.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path


REPO = Path(__file__).resolve().parents[1]
KWON_PYTHON = Path(os.environ.get("KWON_PYTHON", REPO / ".venv-kwon" / "bin" / "python"))
KWON_SCRIPT = Path(__file__).with_name("kwon_prune.py")
KWON_ROWS = int(os.environ.get("KWON_ROWS", "2048"))
SHRINK = 0.85  # each constraint is this fraction of the one before
STEPS = 16  # constraints tried: 1/budget down to about 1/budget x 0.085


def constraints(budget: float) -> list[float]:
    """MAC fractions to try, largest first: 1/budget (the speed-up MACs alone would give) downwards."""
    return [round(SHRINK**k / budget, 4) for k in range(STEPS)]


def _leaderboard(board):
    """The namespace of the leaderboard module `board` comes from (run as a script, imported, or loaded by path):
    its PeerUnavailable, build_model and load_compressed, without importing it a second time."""
    return type(board).meets.__globals__


def _run(command: list[str], what: str, unavailable) -> str:
    done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": ""})
    if done.returncode != 0:
        raise unavailable(f"Kwon et al.'s pruning failed ({what}): {done.stderr.strip().splitlines()[-1:]}")
    return done.stdout.strip().splitlines()[-1]


def compress_kwon(board, budget: float, task: str):
    """Kwon et al. 2022 in its own venv: the largest MAC constraint whose pruned model meets the budget as measured."""
    lb = _leaderboard(board)
    unavailable = lb["PeerUnavailable"]
    if not KWON_PYTHON.exists():
        raise unavailable(f"Kwon et al.'s venv is missing ({KWON_PYTHON}); build it with benchmarks/setup_kwon.sh")
    key = board.settings.key(task)
    parent_folder = board._artefact(f"hf-parent-{task}-{key}")
    with board._lock(parent_folder):
        if not (parent_folder / "config.json").exists():
            board.parent_model(task, 0).save_pretrained(parent_folder)
            board.tokenizer.save_pretrained(parent_folder)
    data_path = board._artefact(f"train-{task}-{key}.json")
    with board._lock(data_path):
        if not data_path.exists():
            data_path.write_text(json.dumps(board.task(task).train))
    rows = 64 if board.settings.quick else KWON_ROWS
    base = [str(KWON_PYTHON), str(KWON_SCRIPT), "--model_dir", str(parent_folder), "--data", str(data_path)]
    base += [
        "--task",
        task,
        "--rows",
        str(rows),
        "--grads",
        str(board._artefact(f"kwon-grads-{task}-{key}-{rows}.pt")),
    ]
    grid = constraints(budget)
    start = time.perf_counter()
    searched = json.loads(_run([*base, "--shapes_only", "--constraint", *map(str, grid)], "mask search", unavailable))
    search_seconds = time.perf_counter() - start
    hidden = board.base_config.hidden_size
    tried = []
    for constraint in grid:
        shapes = {"hidden": hidden, "layers": searched[str(constraint)]}
        ok, timing = board.meets(lb["build_model"](shapes, board.base_config, 2), budget)
        if not ok:
            tried.append({"constraint": constraint, "skipped": "its searched shapes miss the budget", **timing})
            continue
        out = board._artefact(f"kwon-tmp-{task}-{budget:g}-{constraint:g}-{rows}")
        command = [*base, "--constraint", str(constraint), "--output_dir", str(out)]
        _run(command, f"constraint {constraint}", unavailable)
        model, info = lb["load_compressed"](out, board.base_config, 2)
        ok, timing = board.meets(model, budget)
        tried.append({"constraint": constraint, **timing})
        if ok:
            info = {**info, "shapes_search_seconds": search_seconds, "tried": tried, "command": command}
            return model, info
    raise unavailable(f"Kwon et al.'s pruning did not reach {budget}x as measured: {tried}")
