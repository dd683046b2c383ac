"""OSE search space and closed-form costs: parameter counts equal instantiated models, FLOPs equal a counter."""

import itertools

import numpy as np
import pytest
import torch
import transformers as tr
from torch.utils.flop_counter import FlopCounterMode

from hf_bort import BortConfig
from hf_bort.ose import Architecture, LatencyModel, SearchSpace, inference_flops, parameter_count, pareto_front
from hf_bort.ose.costs import costs_of, flops_breakdown


TINY = dict(vocab_size=99, max_position_embeddings=64)


def _configs():
    bert = dict(TINY, hidden_size=32, num_hidden_layers=3, num_attention_heads=4, intermediate_size=37)
    return {
        "bert": tr.BertConfig(**bert),
        "roberta": tr.RobertaConfig(**{**bert, "max_position_embeddings": 66}),
        "distilbert": tr.DistilBertConfig(**TINY, dim=32, n_layers=3, n_heads=4, hidden_dim=37),
        "albert": tr.AlbertConfig(**bert, embedding_size=16),
        "albert-groups": tr.AlbertConfig(
            **{**bert, "num_hidden_layers": 4}, embedding_size=16, num_hidden_groups=2, inner_group_num=2
        ),
        "electra": tr.ElectraConfig(**bert, embedding_size=16),
        "deberta-v2": tr.DebertaV2Config(
            **bert,
            relative_attention=True,
            position_buckets=16,
            norm_rel_ebd="layer_norm",
            share_att_key=True,
            pos_att_type=["p2c", "c2p"],
            position_biased_input=False,
            type_vocab_size=0,
        ),
        "deberta-v2-unshared": tr.DebertaV2Config(
            **bert, relative_attention=True, share_att_key=False, pos_att_type=["p2c", "c2p"], embedding_size=16
        ),
        "gpt2": tr.GPT2Config(
            vocab_size=99, n_positions=64, n_embd=32, n_layer=3, n_head=4, bos_token_id=0, eos_token_id=0
        ),
        "gpt2-inner": tr.GPT2Config(
            vocab_size=99, n_positions=64, n_embd=32, n_layer=3, n_head=4, n_inner=40, bos_token_id=0, eos_token_id=0
        ),
        "llama": tr.LlamaConfig(**{**bert, "num_key_value_heads": 2}),
        "qwen2": tr.Qwen2Config(**{**bert, "num_key_value_heads": 2}),
        "bort": BortConfig(**bert),
    }


def _numel(config) -> int:
    return sum(p.numel() for p in tr.AutoModel.from_config(config).parameters())


@pytest.mark.parametrize("name", list(_configs()))
def test_parameter_count_equals_instantiated_model(name):
    config = _configs()[name]
    space = SearchSpace.from_config(config, step=8)
    assert space.parent_architecture in space
    params = parameter_count(space)
    picks = np.random.default_rng(0).choice(len(space), size=3, replace=False).tolist()
    picks.append(list(space).index(space.parent_architecture))
    for index in picks:
        assert params[index] == _numel(space.to_config(space[index])), space[index]


def test_dimensions_read_through_attribute_map_and_aliases():
    configs = _configs()
    assert SearchSpace.from_config(configs["distilbert"]).parent_architecture == Architecture(3, 4, 32, 37)
    # GPT-2's n_inner=None means 4 * n_embd.
    assert SearchSpace.from_config(configs["gpt2"]).parent_architecture == Architecture(3, 4, 32, 128)
    assert SearchSpace.from_config(configs["gpt2-inner"]).parent_architecture == Architecture(3, 4, 32, 40)
    gpt2 = SearchSpace.from_config(configs["gpt2-inner"], step=8).to_config(Architecture(2, 2, 16, 24))
    assert (gpt2.n_layer, gpt2.n_head, gpt2.n_embd, gpt2.n_inner) == (2, 2, 16, 24)


def test_default_grids_and_grouped_query_heads():
    space = SearchSpace.from_config(_configs()["bert"], step=8)
    arrays = space.arrays()
    assert sorted(set(arrays["depth"].tolist())) == [1, 2, 3]
    assert sorted(set(arrays["hidden"].tolist())) == [8, 16, 24, 32]
    assert sorted(set(arrays["intermediate"].tolist())) == [8, 16, 24, 32, 37]
    assert (arrays["hidden"] % arrays["heads"] == 0).all()
    expected = sum(1 for a, h in itertools.product(range(1, 5), [8, 16, 24, 32]) if h % a == 0) * 3 * 5
    assert len(space) == expected == len(list(space))

    llama = SearchSpace.from_config(_configs()["llama"], step=8)
    assert set(llama.arrays()["heads"].tolist()) == {2, 4}  # multiples of the 2 query heads per key-value head
    assert llama.to_config(Architecture(2, 2, 16, 24)).num_key_value_heads == 1


def test_explicit_grids_and_constraints():
    config = _configs()["bert"]
    space = SearchSpace.from_config(
        config, depths=[1, 3], num_heads=[2], hidden_sizes=[16, 32], intermediate_sizes=[20]
    )
    assert list(space) == [Architecture(d, 2, h, 20) for d in (1, 3) for h in (16, 32)]
    full = SearchSpace.from_config(config, step=8)
    limit = float(np.median(parameter_count(full)))
    constrained = SearchSpace.from_config(config, step=8, max_params=limit)
    assert len(constrained) == int((parameter_count(full) <= limit).sum()) < len(full)
    assert (parameter_count(constrained) <= limit).all()
    flops_limit = float(np.median(inference_flops(full, 32)))
    assert (
        inference_flops(SearchSpace.from_config(config, step=8, max_flops=flops_limit, seq_len=32), 32) <= flops_limit
    ).all()


def test_bad_spaces_raise_clear_errors():
    config = _configs()["bert"]
    with pytest.raises(ValueError, match="empty after the constraints"):
        SearchSpace.from_config(config, max_params=10)
    with pytest.raises(ValueError, match="divides any hidden size"):
        SearchSpace.from_config(config, num_heads=[3], hidden_sizes=[32])
    with pytest.raises(ValueError, match=r"intermediate.*parent_dims=\{'intermediate'"):
        SearchSpace.from_config(
            tr.PreTrainedConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, vocab_size=9)
        )
    with pytest.raises(ValueError, match="latency_model"):
        SearchSpace.from_config(config, max_latency_ms=1.0)
    explicit = SearchSpace.from_config(
        tr.PreTrainedConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, vocab_size=9),
        parent_dims={"intermediate": 64},
        step=32,
    )
    assert explicit.parent_architecture == Architecture(2, 4, 32, 64)


def test_inference_flops_matmuls_equal_torch_flop_counter():
    """The matmul share of i(ξ) equals what torch's FlopCounterMode counts on the real model (eager attention)."""
    config = _configs()["bert"]
    config._attn_implementation = "eager"
    space = SearchSpace.from_config(config, step=8)
    seq_len = 16
    parts = flops_breakdown(space, seq_len)
    arrays = space.arrays()
    attention_matmuls = 4 * seq_len**2 * arrays["hidden"] * arrays["depth"]
    for index in np.random.default_rng(1).choice(len(space), size=4, replace=False):
        candidate = space.to_config(space[int(index)])
        candidate._attn_implementation = "eager"
        model = tr.AutoModel.from_config(candidate).eval()
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            model(input_ids=torch.ones(1, seq_len, dtype=torch.long))
        assert counter.get_total_flops() == parts["matmul"][index] + attention_matmuls[index]
    total = inference_flops(space, seq_len)
    assert (total > parts["matmul"]).all()  # softmax, norms and activations on top


def test_pareto_front_matches_brute_force():
    rng = np.random.default_rng(0)
    for columns in (2, 3):
        points = rng.integers(0, 8, size=(300, columns)).astype(float)
        expected = [
            i
            for i, row in enumerate(points)
            if not any((other <= row).all() and (other < row).any() for other in points)
        ]
        assert pareto_front(points).tolist() == expected


def test_bert_large_cost_front_and_released_bort():
    config = tr.BertConfig(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096)
    space = SearchSpace.from_config(config)
    bort = Architecture(4, 8, 1024, 768)
    assert bort in space
    p, i = parameter_count(space), inference_flops(space)
    front = pareto_front(np.stack([p, i], axis=1))
    bort_p, bort_i = costs_of(space, bort)
    # p and i both grow with every dimension, so the cost-only front of a full grid is its smallest corner alone,
    # and Bort lies strictly above it in both costs.
    assert [space[int(k)] for k in front] == [Architecture(1, 1, 64, 64)]
    assert p[front[0]] < bort_p and i[front[0]] < bort_i


def test_latency_model_fits_and_reports_holdout_error():
    space = SearchSpace.from_config(_configs()["bert"], step=8)
    model = LatencyModel.fit(space, n_samples=6, seq_len=16, repeats=2)
    assert model.n_fitted + model.n_holdout == 6 and np.isfinite(model.holdout_error)
    predicted = model.predict(space)
    assert predicted.shape == (len(space),) and (predicted >= 0).all()
    limit = float(np.median(predicted))
    constrained = SearchSpace.from_config(_configs()["bert"], step=8, max_latency_ms=limit, latency_model=model)
    assert len(constrained) == int((predicted <= limit).sum()) >= 1
    assert (model.predict(constrained) <= limit).all()


def test_costs_module_does_not_import_the_space_at_run_time():
    """space.py imports costs.py to filter by cost; costs.py must not import space.py back (no import cycle)."""
    import ast
    import inspect

    from hf_bort.ose import costs

    tree = ast.parse(inspect.getsource(costs))
    module_level = [node.module for node in tree.body if isinstance(node, ast.ImportFrom)]
    assert "space" not in module_level  # only under `if TYPE_CHECKING:`, for annotations
