"""The GLUE metric module shipped in hf_bort/metrics, checked against scikit-learn and scipy on fixed inputs."""

import evaluate
import numpy as np
import pytest
from scipy.stats import pearsonr, spearmanr
from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef

from hf_bort.glue import GLUE_TASKS
from hf_bort.metrics import GLUE_METRIC_PATH, load_glue_metric
from hf_bort.metrics.scores import GLUE_METRICS, METRICS, paired_standard_error, score


_RNG = np.random.default_rng(0)
_LABELS = {n: _RNG.integers(0, 3 if n == "mnli" else 2, size=50) for n in GLUE_TASKS}
_PREDICTIONS = {n: np.where(_RNG.random(50) < 0.7, labels, 1 - np.minimum(labels, 1)) for n, labels in _LABELS.items()}
_SCORES = np.round(_RNG.uniform(0, 5, size=40), 2)
_SCORE_PREDICTIONS = _SCORES + _RNG.normal(0, 1.0, size=40)


def _reference(name, predictions, references):
    if name == "stsb":
        return {"pearson": pearsonr(predictions, references)[0], "spearmanr": spearmanr(predictions, references)[0]}
    if name == "cola":
        return {"matthews_correlation": matthews_corrcoef(references, predictions)}
    out = {"accuracy": accuracy_score(references, predictions)}
    if name in ("mrpc", "qqp"):
        out["f1"] = f1_score(references, predictions)
    return out


@pytest.mark.parametrize("name", list(GLUE_TASKS))
def test_matches_sklearn_and_scipy(name):
    predictions, references = (_SCORE_PREDICTIONS, _SCORES) if name == "stsb" else (_PREDICTIONS[name], _LABELS[name])
    result = load_glue_metric(name).compute(predictions=predictions, references=references)
    expected = _reference(name, predictions, references)
    assert result.keys() == expected.keys() == set(GLUE_TASKS[name].metrics)
    for key, value in expected.items():
        assert result[key] == pytest.approx(value, abs=1e-6)
    assert 0.1 < abs(next(iter(result.values()))) < 1.0  # the fixed inputs are neither trivial nor perfect


def test_loads_through_evaluate_by_path_and_accumulates_batches():
    metric = evaluate.load(str(GLUE_METRIC_PATH), "mrpc")
    predictions, references = _PREDICTIONS["mrpc"], _LABELS["mrpc"]
    for start in range(0, 50, 20):
        metric.add_batch(predictions=predictions[start : start + 20], references=references[start : start + 20])
    assert metric.compute() == pytest.approx(_reference("mrpc", predictions, references))


def test_mnli_splits_and_aliases():
    assert load_glue_metric("mnli_mismatched").compute(predictions=[0, 1, 2], references=[0, 1, 1]) == {
        "accuracy": pytest.approx(2 / 3)
    }
    assert load_glue_metric("SST-2").config_name == "sst2"


def test_unknown_task_is_a_clear_error():
    with pytest.raises(ValueError, match="Unknown GLUE task 'sts'"):
        load_glue_metric("sts")
    with pytest.raises(KeyError, match="Unknown GLUE task 'squad'"):
        evaluate.load(str(GLUE_METRIC_PATH), "squad")


def test_every_metric_is_defined_once_and_a_constant_prediction_scores_zero():
    """`scores.score` is what the GLUE module, Agora and the benchmarks call; where a correlation is undefined (a model
    that predicts one value) it is 0, as scikit-learn's Matthews correlation is, rather than NaN."""
    assert load_glue_metric("stsb").compute(predictions=[2.5, 2.5, 2.5], references=[1.0, 2.0, 4.0]) == {
        "pearson": 0.0,
        "spearmanr": 0.0,
    }
    assert score("matthews_correlation", [1, 1, 1], [0, 1, 1]) == 0.0
    assert score("f1", [0, 0, 0], [0, 1, 1]) == 0.0  # nothing predicted positive
    assert score("f1", _PREDICTIONS["mrpc"], _LABELS["mrpc"]) == pytest.approx(
        f1_score(_LABELS["mrpc"], _PREDICTIONS["mrpc"])
    )
    assert {name for names in GLUE_METRICS.values() for name in names} == set(METRICS)
    with pytest.raises(ValueError, match="Unknown metric 'f2'"):
        score("f2", [0], [0])


def test_paired_standard_error_matches_the_closed_form_for_accuracy_and_refuses_unequal_lengths():
    """For accuracy the paired difference is a mean of per-row differences d_i in {-1, 0, 1}: its standard error is
    std(d) / sqrt(n). The bootstrap must agree within its own sampling error (~1.6% at 2,000 resamples)."""
    rng = np.random.default_rng(0)
    references = rng.integers(0, 2, 120)
    first = np.where(rng.random(120) < 0.8, references, 1 - references)
    second = np.where(rng.random(120) < 0.7, references, 1 - references)
    difference = (first == references).astype(float) - (second == references).astype(float)
    closed_form = difference.std() / np.sqrt(len(references))
    bootstrap = paired_standard_error("accuracy", first, second, references, resamples=2000)
    assert bootstrap == pytest.approx(closed_form, rel=0.06)
    assert paired_standard_error("accuracy", first, first, references) == 0.0  # identical models never differ
    assert paired_standard_error("f1", first, second, references) > 0
    with pytest.raises(ValueError, match="of one length"):
        paired_standard_error("accuracy", first, second[:-1], references)
