"""Every metric hf_bort scores predictions with, and which of them GLUE reports for each task, defined once.

The GLUE metric module (`glue_metric.py`, which `evaluate` copies together with this file), the GLUE task table
(`hf_bort.glue`), Agora's ranking of settings and rounds and the benchmarks all read this file. It imports nothing of
hf_bort, so that `evaluate` can load it beside `glue_metric.py` from its module cache, and scipy and scikit-learn only
when a score is computed, so that reading the tables stays light.
"""

import numpy as np


METRICS = ("accuracy", "f1", "matthews_correlation", "pearson", "spearmanr")
REGRESSION_METRICS = ("pearson", "spearmanr")

# The metrics GLUE reports, per configuration of the GLUE metric (a task, MNLI's two dev sets, the diagnostic set),
# the headline metric first.
GLUE_METRICS = {
    "cola": ("matthews_correlation",),
    "sst2": ("accuracy",),
    "mrpc": ("accuracy", "f1"),
    "stsb": ("pearson", "spearmanr"),
    "qqp": ("accuracy", "f1"),
    "mnli": ("accuracy",),
    "mnli_matched": ("accuracy",),
    "mnli_mismatched": ("accuracy",),
    "qnli": ("accuracy",),
    "rte": ("accuracy",),
    "wnli": ("accuracy",),
    "ax": ("matthews_correlation",),
}


def score(name: str, predictions, references) -> float:
    """`name` of the predictions against the references; higher is better.

    `f1` is the F1 of the positive class (label 1) of a binary task, as GLUE reports it for MRPC and QQP, and 0 when
    nothing is predicted positive. A correlation with a constant (predictions or references) is 0 rather than NaN, as
    scikit-learn defines Matthews' correlation: a collapsed model scores as uninformative, and results stay valid JSON.
    """
    from scipy.stats import pearsonr, spearmanr
    from sklearn.metrics import f1_score, matthews_corrcoef

    predictions, references = np.asarray(predictions), np.asarray(references)
    if name == "accuracy":
        return float(np.mean(predictions == references))
    if name == "f1":
        return float(f1_score(references, predictions, zero_division=0.0))
    if name == "matthews_correlation":
        return float(matthews_corrcoef(references, predictions))
    if name not in REGRESSION_METRICS:
        raise ValueError(f"Unknown metric {name!r}; choose one of {list(METRICS)}.")
    if np.std(predictions) == 0 or np.std(references) == 0:
        return 0.0
    correlation = pearsonr if name == "pearson" else spearmanr
    return float(correlation(predictions, references)[0])


def paired_standard_error(name: str, first, second, references, resamples: int = 200, seed: int = 0) -> float:
    """The standard error of `score(name, first) - score(name, second)` on the same rows, by a paired bootstrap.

    Why paired: two models scored on one small split share most of their right and wrong rows, so their difference
    varies far less than either score does; resampling rows (not models) keeps that pairing. Works for every metric
    in `METRICS`, where a closed form exists only for accuracy.
    """
    first, second, references = np.asarray(first), np.asarray(second), np.asarray(references)
    if not len(first) == len(second) == len(references) or len(references) < 2:
        raise ValueError(
            f"paired_standard_error needs two prediction arrays and references of one length >= 2, got "
            f"{len(first)}, {len(second)} and {len(references)}."
        )
    rows = np.random.default_rng(seed).integers(0, len(references), size=(resamples, len(references)))
    differences = [score(name, first[r], references[r]) - score(name, second[r], references[r]) for r in rows]
    return float(np.std(differences, ddof=1))


__all__ = ["GLUE_METRICS", "METRICS", "REGRESSION_METRICS", "paired_standard_error", "score"]
