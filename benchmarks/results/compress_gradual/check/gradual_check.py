"""Does a short-run ê tell the gradual student from the one-cut one before recovery? (README.md beside this file)

For a cached leaderboard compress run (MRPC), rebuild its search, cut the chosen architecture's student from the
parent in one step and through one halfway epoch, and estimate both with the search's short runs of 9, 36 and 90
steps. An experiment on compress's internals at commit 48eeba3, kept as the record of the numbers in README.md.

    python gradual_check.py BUDGET CACHE/compress/mrpc-<budget>x-<keys>
"""

import copy
import json
import sys
import tempfile
import time
from pathlib import Path

import torch


sys.path.insert(0, str(Path(__file__).resolve().parents[4]))  # the repository root: benchmarks/ importable

from benchmarks import leaderboard as lb  # noqa: E402
from hf_bort import CompressConfig  # noqa: E402
from hf_bort.compression.compress import _check_labels, _gradual, _tokenize, compress_search  # noqa: E402
from hf_bort.ose.search import find_text_columns  # noqa: E402
from hf_bort.ose.space import Architecture, layer_sizes  # noqa: E402


budget, folder = float(sys.argv[1]), Path(sys.argv[2])
scratch = Path(tempfile.mkdtemp())
torch.set_num_threads(1)
s = lb.Settings(tasks=("mrpc",), budgets=(budget,))
board = lb.Leaderboard(s, folder.parents[1], scratch / "out")
data = board.task("mrpc")
arch = Architecture(**json.loads((folder / "results.json").read_text())["architecture"])
config = CompressConfig(
    output_dir=str(scratch / "compress"),
    min_speedup=budget,
    epsilon=s.ose_epsilon,
    interval=s.ose_interval,
    max_candidates=s.compress_max_candidates or s.ose_max_candidates,
    search_rows=min(2000, len(data.train_rows)),
    max_length=s.length("mrpc"),
    halfway_epochs=1.0,
    recovery_epochs=0,
    selection_margin=lb.SELECTION_MARGIN,
    latency_repeats=s.latency_repeats["1x128"],
    seed=0,
    show_progress=False,
)
parent = board.parent_model("mrpc", 0).eval()
columns = find_text_columns(list(data.train_rows.column_names), None, "train_dataset")
rows = {
    **_tokenize(data.train_rows, board.tokenizer, columns, config.max_length),
    "labels": _check_labels(parent, data.train_rows, "train_dataset"),
}
search = compress_search(parent, data.train_rows, config, board.tokenizer, text_column=[c for c in columns if c],
                         journal=False)  # fmt: skip
one = search.extract(arch)
start = time.time()
gradual, _ = _gradual(search, arch, copy.deepcopy(one), parent, rows, board.tokenizer, config, scratch / "halfway")
print("gradual step", round(time.time() - start), "s", flush=True)
print("one", layer_sizes(one.config), "\ngradual", layer_sizes(gradual.config), flush=True)
out = {}
for steps in (9, 36, 90):
    search.steps = steps
    targets = search._prepare_targets()
    for name, model in (("one", one), ("gradual", gradual)):
        runs = [
            search._short_run(copy.deepcopy(model), arch, targets, st)[0] for st in search.args.hyperparameter_space
        ]
        out[f"{name}@{steps}"] = min(runs)
        print(name, steps, round(min(runs), 4), flush=True)
print(json.dumps(out))
