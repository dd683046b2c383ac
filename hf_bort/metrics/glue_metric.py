"""GLUE's official metrics as an `evaluate` module, shipped inside hf_bort so that it loads without the Hub.

Load it with `evaluate.load("<path to this file>", "<task>")`, or simply `hf_bort.metrics.load_glue_metric(task)`.
`evaluate` copies this file into its module cache before importing it, so it must not import hf_bort itself; it copies
`scores.py`, which defines the metrics, beside it (the one relative import `evaluate` follows).
"""

import datasets
import evaluate

from .scores import GLUE_METRICS, score


_CITATION = """\
@inproceedings{wang2019glue,
  title={{GLUE}: A Multi-Task Benchmark and Analysis Platform for Natural Language Understanding},
  author={Wang, Alex and Singh, Amanpreet and Michael, Julian and Hill, Felix and Levy, Omer and Bowman, Samuel R.},
  booktitle={International Conference on Learning Representations},
  year={2019}
}
"""

_DESCRIPTION = """\
The metrics GLUE reports for each of its tasks: Matthews correlation (CoLA), accuracy and F1 of the positive
class (MRPC, QQP), Pearson and Spearman correlation (STS-B, a regression task) and accuracy (all others).
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions: predicted label ids, or predicted scores for `stsb`.
    references: gold label ids, or gold scores for `stsb`.
Returns: a dict with the task's metrics, e.g. {"accuracy": 0.9, "f1": 0.92} for `mrpc`.
Example:
    >>> metric = evaluate.load("glue_metric.py", "mrpc")
    >>> metric.compute(predictions=[0, 1, 1], references=[0, 1, 0])
    {'accuracy': 0.6666666666666666, 'f1': 0.6666666666666666}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class GlueMetric(evaluate.Metric):
    """One configuration per GLUE task (`cola`, `sst2`, ..., `mnli_matched`, `ax`)."""

    def _info(self) -> evaluate.MetricInfo:
        if self.config_name not in GLUE_METRICS:
            raise KeyError(
                f"Unknown GLUE task {self.config_name!r} for the GLUE metric. Choose one of: "
                f"{', '.join(GLUE_METRICS)}."
            )
        dtype = "float32" if self.config_name == "stsb" else "int64"
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({"predictions": datasets.Value(dtype), "references": datasets.Value(dtype)}),
            format="numpy",
        )

    def _compute(self, predictions, references) -> dict[str, float]:
        return {name: score(name, predictions, references) for name in GLUE_METRICS[self.config_name]}
