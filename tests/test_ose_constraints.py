"""Heads as a real search dimension under latency cost, and the user's constraints on the chosen point."""

import math
from collections import defaultdict

import numpy as np
import pytest
import torch
import transformers as tr

from hf_bort.ose import (
    Architecture,
    LatencyModel,
    OSEConfig,
    OSEResult,
    OSESearch,
    SearchSpace,
    epsilon_buckets,
    inference_flops,
    parameter_count,
    read_text_lines,
)
from hf_bort.ose.latency import measure_latency_ms
from hf_bort.ose.search import _head_keys
from tests.conftest import TINY_DIMS


CONFIG = dict(vocab_size=30522, **TINY_DIMS, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
# A documented synthetic latency model (ms): a constant, per-FLOP costs, and attention (n² terms, which grow with the
# head count through the softmax) priced as a CPU prices it, several times a matmul FLOP.
SYNTHETIC_LATENCY = dict(coefficients=[0.5, 2e-8, 4e-7, 0.0, 5e-8, 0.05], holdout_error=0.0, n_fitted=0, n_holdout=0)


def _heads_siblings(archs) -> list[list[Architecture]]:
    """Groups of two or more architectures that differ only in their head count."""
    groups = defaultdict(list)
    for arch in archs:
        groups[(arch.depth, arch.hidden, arch.intermediate)].append(arch)
    return [g for g in groups.values() if len({a.heads for a in g}) > 1]


def test_heads_are_kept_apart_under_latency_and_trimming_still_covers_every_candidate():
    space = SearchSpace.from_config(tr.BertConfig(hidden_size=384, num_hidden_layers=6, num_attention_heads=12))
    latency = LatencyModel(seq_len=128, batch_size=1, **SYNTHETIC_LATENCY).predict(space)
    p, heads = parameter_count(space), space.arrays()["heads"]
    assert len(np.unique(latency)) > len(np.unique(p))  # the cost tells head counts apart
    for eps in (0.5, 0.1):
        old = epsilon_buckets(p, latency, eps)
        kept = epsilon_buckets(p, latency, eps, heads=heads)
        # Before: one point per cell, so barely any kept pair differs only in heads; now every cell keeps each count.
        assert len(_heads_siblings([space[int(k)] for k in kept])) > 5 * max(
            1, len(_heads_siblings(space[int(k)] for k in old))
        )
        # The trimming guarantee, per head count: a kept point with the same A within 1 + ε in p and in latency.
        close = (np.abs(np.log(p[:, None] / p[kept][None, :])) <= math.log1p(eps) + 1e-9) & (
            np.abs(np.log(latency[:, None] / latency[kept][None, :])) <= math.log1p(eps) + 1e-9
        )
        assert (close & (heads[:, None] == heads[kept][None, :])).any(axis=1).all()


def test_a_latency_fit_prices_heads_and_the_trimming_then_keeps_head_variants():
    """Timings from a known model (softmax priced 20x a matmul FLOP, as on a CPU) are fitted back exactly, and the
    fitted model tells head counts apart, so OSE's ε-trimming keeps candidates that differ only in heads."""
    space = SearchSpace.from_config(tr.BertConfig(hidden_size=384, num_hidden_layers=6, num_attention_heads=12))
    truth = LatencyModel(
        coefficients=[0.5, 2e-8, 1e-7, 4e-7, 5e-8, 0.05],
        seq_len=128,
        batch_size=1,
        holdout_error=0.0,
        n_fitted=0,
        n_holdout=0,
    )
    sample = space.subset(np.arange(0, len(space), 7))
    fitted = LatencyModel.from_timings(sample, truth.predict(sample), seq_len=128)
    assert fitted.holdout_error < 1e-6 and (fitted.n_fitted, fitted.n_holdout) == (
        len(sample) - fitted.n_holdout,
        round(0.25 * len(sample)),
    )
    latency = fitted.predict(space)
    np.testing.assert_allclose(latency, truth.predict(space), rtol=1e-6)
    one_head = space.subset(space.arrays()["heads"] == 1)
    twelve = space.subset(space.arrays()["heads"] == 12)
    assert (fitted.predict(twelve).min() > 0) and np.median(fitted.predict(twelve)) > np.median(
        fitted.predict(one_head)
    )
    kept = epsilon_buckets(parameter_count(space), latency, 0.1, heads=_head_keys(space, latency, 0.1))
    assert len(_heads_siblings([space[int(k)] for k in kept])) >= 10
    with pytest.raises(ValueError, match="one positive latency per candidate"):
        LatencyModel.from_timings(sample, truth.predict(sample)[:-1])
    with pytest.raises(ValueError, match="needs 6 coefficients .* refit it"):
        LatencyModel(
            coefficients=[0.5, 2e-8, 4e-7, 5e-8, 0.05],
            seq_len=128,
            batch_size=1,
            holdout_error=0.0,
            n_fitted=0,
            n_holdout=0,
        )


@pytest.fixture
def tiny_search(minilm_path, wikitext_dir, tmp_path):
    torch.manual_seed(0)
    parent = tr.BertModel(tr.BertConfig(**CONFIG)).eval()
    tokenizer = tr.AutoTokenizer.from_pretrained(minilm_path)
    texts = read_text_lines(wikitext_dir / "wiki.valid.raw")[:16]

    def make(**kwargs) -> OSESearch:
        latency_model = kwargs.pop("latency_model", None)
        space = SearchSpace.from_config(parent.config, step=16, **kwargs.pop("grid", {}))
        # w_e = 4: the error weighs enough that the best point is not simply the smallest one.
        defaults = dict(epsilon=1.0, interval=2, seq_len=16, batch_size=4, weights=[1, 1, 4], show_progress=False)
        config = OSEConfig(**{**defaults, "output_dir": tmp_path / "run", **kwargs})
        return OSESearch(
            parent, config, space=space, train_dataset=texts, tokenizer=tokenizer, latency_model=latency_model
        )

    return make


class PerHeadLatency:
    """A documented synthetic latency (ms): FLOPs at 1 GFLOP/s plus 0.5 ms per head per layer, the fixed cost of each
    head's small attention kernels that a CPU pays and FLOPs do not count."""

    def predict(self, space: SearchSpace) -> np.ndarray:
        arrays = space.arrays()
        return inference_flops(space, 16) / 1e6 + 0.5 * arrays["heads"] * arrays["depth"]


def test_the_search_evaluates_head_variants_where_the_cost_tells_them_apart(tiny_search):
    search = tiny_search(
        inference_cost="latency",
        latency_model=PerHeadLatency(),
        epsilon=0.5,
        interval=1,
        grid={"depths": [2]},
        output_dir=None,
    )
    result = search.run()
    siblings = _heads_siblings(r.architecture for r in result.records)
    assert siblings, [str(r.architecture) for r in result.records]
    for group in siblings:  # same p, costs more than 1 + ε apart: the search really compared the head counts
        records = sorted((result.record(a) for a in group), key=lambda r: r.inference_cost)
        assert len({r.params for r in records}) == 1
        assert records[-1].inference_cost > 1.5 * records[0].inference_cost
    # Under FLOPs the same grid's head variants cost nearly the same, so each (p, i) cell keeps one point, as before.
    space = search.space
    flops = inference_flops(space, 16)
    kept = epsilon_buckets(parameter_count(space), flops, 0.5)
    assert not _heads_siblings(space[int(k)] for k in kept)
    assert len(result.records) > len(kept)


def test_constraints_choose_the_lowest_w_among_the_points_that_meet_them(tiny_search):
    free = tiny_search().run()
    assert free.constraints == {}
    flops = dict(zip([r.architecture for r in free.records], [r.inference_cost for r in free.records]))
    smaller = sorted({r.params for r in free.records if r.params < free.record(free.best).params})
    assert smaller, "the unconstrained best is the smallest candidate; the test needs a tighter grid"
    limit = smaller[-1]

    constrained = tiny_search(max_params=limit).run()  # the journal is reused: constraints are run-only settings
    feasible = [r for r in constrained.records if r.params <= limit]
    assert constrained.best != free.best and constrained.best in {r.architecture for r in feasible}
    assert constrained.record(constrained.best).w == min(r.w for r in feasible)
    assert constrained.constraints == {"limits": {"max_params": limit}}
    assert [(r.architecture, r.error, r.w) for r in constrained.records] == [
        (r.architecture, r.error, r.w) for r in free.records
    ]  # the same candidates and W values; only the choice moved

    flop_limit = sorted(flops.values())[1]
    by_flops = tiny_search(max_flops=flop_limit).run()
    assert flops[by_flops.best] <= flop_limit
    assert by_flops.record(by_flops.best).w == min(
        r.w for r in by_flops.records if flops[r.architecture] <= flop_limit
    )


def test_a_constraint_nothing_meets_names_the_closest_candidate(tiny_search):
    free = tiny_search().run()
    smallest = min(free.records, key=lambda r: r.params)
    with pytest.raises(
        ValueError,
        match=rf"No evaluated candidate meets the constraints \{{'max_params': 1000.0\}}: the closest is "
        rf"{smallest.architecture} with {smallest.params:,.0f} parameters.*relax the constraints",
    ):
        tiny_search(max_params=1000).run()


def test_measured_speedup_constraint(tiny_search):
    free = tiny_search().run()
    result = tiny_search(min_speedup=1e-6, latency_repeats=3).run()
    assert result.best == free.best  # every candidate is faster than a millionth of the parent
    best = result.record(result.best)
    parent_ms = result.constraints["parent_latency_ms"]
    assert best.latency_ms > 0 and best.speedup == pytest.approx(parent_ms / best.latency_ms)
    assert result.constraints["latency_protocol"] == {"batch_size": 1, "seq_len": 16, "threads": 1, "repeats": 3}
    with pytest.raises(
        ValueError,
        match=r"No evaluated candidate meets the constraints \{'min_speedup': 1000000.0\}: "
        r"the closest is <D=.*ms \([0-9.]+x the parent's [0-9.]+ ms\)",
    ):
        tiny_search(min_speedup=1e6, latency_repeats=3).run()


def test_measure_latency_ms_restores_threads_and_rejects_bad_protocols():
    torch.manual_seed(0)
    model = tr.BertModel(tr.BertConfig(**CONFIG))
    threads = torch.get_num_threads()
    small = measure_latency_ms(model, seq_len=8, repeats=3)
    assert small > 0 and torch.get_num_threads() == threads and model.training  # mode restored too
    with pytest.raises(ValueError, match="repeats must be a positive integer, got 0"):
        measure_latency_ms(model, repeats=0)


def test_cli_search_under_a_speedup_constraint(minilm_path, wikitext_dir, tmp_path, capsys):
    from hf_bort.cli import main

    torch.manual_seed(0)
    tr.BertModel(tr.BertConfig(**CONFIG)).save_pretrained(tmp_path / "parent")
    tr.AutoTokenizer.from_pretrained(minilm_path).save_pretrained(tmp_path / "parent")
    argv = ["search", "--model", str(tmp_path / "parent"), "--train_file", str(wikitext_dir / "wiki.valid.raw")]
    argv += ["--epsilon", "1", "--interval", "2", "--seq_len", "16", "--batch_size", "4", "--step", "16"]
    argv += [
        "--max_texts",
        "16",
        "--min_speedup",
        "1e-6",
        "--latency_repeats",
        "2",
        "--output_dir",
        str(tmp_path / "r"),
    ]
    assert main(argv) == 0
    result = OSEResult.load(tmp_path / "r" / "result.json")
    best = result.record(result.best)
    assert result.constraints["limits"] == {"min_speedup": 1e-6} and best.speedup > 0
    assert f"met by the best point, measured {best.latency_ms:.2f} ms, {best.speedup:.2f}x the parent" in (
        capsys.readouterr().out
    )
