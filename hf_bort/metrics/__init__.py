"""Metrics shipped with hf_bort: their one definition (`scores`) and the GLUE metric as a local `evaluate` module (the
Hub's metric scripts are not needed). `evaluate` is imported only to load the module, so `scores` stays light."""

from pathlib import Path
from typing import TYPE_CHECKING


if TYPE_CHECKING:
    import evaluate

GLUE_METRIC_PATH = Path(__file__).with_name("glue_metric.py")


def load_glue_metric(task: str, **kwargs) -> "evaluate.EvaluationModule":
    """Load the GLUE metric of `task` (`sst2`, `mrpc`, ..., `mnli_matched`) from the module hf_bort ships."""
    import evaluate

    from ..glue import get_task

    name = task if task in ("mnli_matched", "mnli_mismatched", "ax") else get_task(task).name
    return evaluate.load(str(GLUE_METRIC_PATH), name, **kwargs)


__all__ = ["GLUE_METRIC_PATH", "load_glue_metric"]
