"""OSE search space and closed-form costs: parameter counts equal instantiated models, FLOPs equal a counter."""

import itertools

import numpy as np
import pytest
import torch
import transformers as tr
from torch.utils.flop_counter import FlopCounterMode

from hf_bort import BortConfig
from hf_bort.ose import Architecture, LatencyModel, SearchSpace, inference_flops, parameter_count, pareto_front
from hf_bort.ose.costs import config_costs, costs_of, flops_breakdown, flops_speedup, forward_mflops


TINY = dict(vocab_size=99, max_position_embeddings=64)
_BORT_TINY = dict(TINY, hidden_size=32, num_hidden_layers=3, num_attention_heads=4, intermediate_size=37)


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
    # BERT layout: every head count at the parent's head width 8, whatever the hidden size (the student is a Bort)
    assert sorted(set(arrays["heads"].tolist())) == [1, 2, 3, 4] and set(arrays["head_dim"].tolist()) == {8}
    assert len(space) == 3 * 4 * 4 * 5 == len(list(space))
    assert space.allocation == "importance" and Architecture(1, 1, 16, 8, 8) in space  # 1 head of 8 in 16 dims
    # DistilBERT ties the head width to hidden / heads, as before
    distil = SearchSpace.from_config(_configs()["distilbert"], step=8).arrays()
    assert (distil["hidden"] % distil["heads"] == 0).all() and (
        distil["head_dim"] == distil["hidden"] // distil["heads"]
    ).all()
    expected = sum(1 for a, h in itertools.product(range(1, 5), [8, 16, 24, 32]) if h % a == 0) * 3 * 5
    assert len(distil["depth"]) == expected

    llama = SearchSpace.from_config(_configs()["llama"], step=8)
    assert set(llama.arrays()["heads"].tolist()) == {2, 4}  # multiples of the 2 query heads per key-value head
    assert llama.allocation == "uniform" and set(llama.arrays()["head_dim"].tolist()) == {8}  # rotary: fixed
    assert llama.to_config(Architecture(2, 2, 16, 24, 8)).num_key_value_heads == 1


def test_heads_change_the_costs_at_a_fixed_hidden_size():
    """With heads at the parent's width, fewer heads mean fewer parameters and FLOPs (the tied space priced
    <6, 3, 384, 768> like <6, 12, 384, 768>, within 0.3%)."""
    minilm = tr.BertConfig(hidden_size=384, num_hidden_layers=6, num_attention_heads=12, intermediate_size=1536)
    space = SearchSpace.from_config(minilm)
    twelve, three = (SearchSpace.from_architectures(space, [Architecture(6, a, 384, 768, 32)]) for a in (12, 3))
    assert parameter_count(twelve)[0] - parameter_count(three)[0] == 6 * 4 * (384 * 9 * 32 + 9 * 32) - 6 * 9 * 32
    assert inference_flops(three)[0] < 0.8 * inference_flops(twelve)[0]


def test_explicit_grids_and_constraints():
    config = _configs()["bert"]
    space = SearchSpace.from_config(
        config, depths=[1, 3], num_heads=[2], head_dims=[4, 8], hidden_sizes=[16, 32], intermediate_sizes=[20]
    )
    assert list(space) == [Architecture(d, 2, h, 20, w) for d in (1, 3) for h in (16, 32) for w in (4, 8)]
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
        SearchSpace.from_config(_configs()["distilbert"], num_heads=[3], hidden_sizes=[32])
    with pytest.raises(ValueError, match=r"num_heads \[3\] are not multiples of 2.*grouped-query"):
        SearchSpace.from_config(_configs()["llama"], num_heads=[2, 3])
    with pytest.raises(ValueError, match=r"head_dims \[16\] go beyond the parent's head width 8"):
        SearchSpace.from_config(config, head_dims=[16])
    with pytest.raises(ValueError, match="'distilbert' model's heads are hidden / heads wide"):
        SearchSpace.from_config(_configs()["distilbert"], head_dims=[8])
    with pytest.raises(ValueError, match="'llama' model keeps its heads 8 wide.*rotary"):
        SearchSpace.from_config(_configs()["llama"], head_dims=[4])
    with pytest.raises(ValueError, match="'gpt2' model cannot load.*allocation='uniform'"):
        SearchSpace.from_config(_configs()["gpt2"], allocation="importance")
    with pytest.raises(ValueError, match="per_layer_config.*uniform parent"):
        SearchSpace.from_config(BortConfig(hidden_size=32, per_layer_config={0: {"num_attention_heads": 2}}))
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
    attention_matmuls = 4 * seq_len**2 * arrays["heads"] * arrays["head_dim"] * arrays["depth"]
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
    # the released Bort's 8 heads are 128 wide, twice RoBERTa-large's: outside the grid, priced all the same
    bort = Architecture(4, 8, 1024, 768)
    assert bort not in space and Architecture(4, 16, 1024, 768, 64) in space
    p, i = parameter_count(space), inference_flops(space)
    front = pareto_front(np.stack([p, i], axis=1))
    bort_p, bort_i = costs_of(space, bort)
    assert bort_p == sum(x.numel() for x in tr.AutoModel.from_config(BortConfig(vocab_size=30522)).parameters())
    # p and i both grow with every dimension, so the cost-only front of a full grid is its smallest corner alone,
    # and Bort lies strictly above it in both costs.
    assert [space[int(k)] for k in front] == [Architecture(1, 1, 64, 64, 64)]
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


def _flop_counter_total(model, seq_len: int) -> int:
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(input_ids=torch.ones(1, seq_len, dtype=torch.long))
    return counter.get_total_flops()


@pytest.mark.parametrize(
    "per_layer",
    [
        {0: {"num_attention_heads": 2, "intermediate_size": 20}, 1: {"head_dim": 4}, 2: {"skip": ["mlp"]}},
        {0: {"skip": ["attention"]}, 1: {"num_attention_heads": 1, "intermediate_size": 3}},
    ],
)
def test_heterogeneous_costs_equal_numel_and_the_flop_counter(per_layer):
    """A heterogeneous Bort's p and i, summed layer by layer (per-layer heads, head widths, FFN widths and skipped
    sub-layers), equal the instantiated model's parameter count and torch's FLOP counter (matmuls)."""
    config = BortConfig(**_BORT_TINY, per_layer_config=per_layer)
    config._attn_implementation = "eager"
    model = tr.AutoModel.from_config(config).eval()
    params, flops = config_costs(config, seq_len=16)
    assert params == sum(x.numel() for x in model.parameters())
    layers = list(config.per_layer_config)
    attention = [0 if "attention" in (c.skip or []) else c.num_attention_heads * c.head_dim for c in layers]
    counted = _flop_counter_total(model, 16)
    elementwise = flops - counted - sum(6 * 16 * 16 * a // c.head_dim for a, c in zip(attention, layers) if a)
    assert 0 < elementwise < 0.5 * flops  # the rest is softmax, norms, activations and residual additions


def test_every_allocation_of_a_point_costs_the_point():
    """Costs are linear in each layer's heads and FFN width, so an uneven split of a point's totals costs exactly the
    point: the FPTAS can search the totals and leave the split to importance."""
    config = _configs()["bert"]
    space = SearchSpace.from_config(config, step=8)
    arch = Architecture(3, 2, 32, 20, 8)
    single = SearchSpace.from_architectures(space, [arch])
    for heads, neurons in (([1, 3, 2], [37, 3, 20]), ([4, 1, 1], [8, 8, 44])):
        student = space.to_config(arch, {"heads": heads, "intermediate": neurons})
        assert student.is_heterogeneous
        assert config_costs(student, 16)[0] == parameter_count(single)[0]
        assert config_costs(student, 16)[1] == pytest.approx(inference_flops(single, 16)[0], rel=1e-12)


def test_flops_speedup_is_the_smallest_ratio_of_forward_flops_and_refuses_other_shapes():
    """A one-layer student of a three-layer parent needs more than a third of its FLOPs (the embeddings stay); the
    budget is the ratio at the shape where it is smallest, and ratios of counts on different shapes are refused."""
    parent = _configs()["bert"]
    student = tr.BertConfig(**{**parent.to_dict(), "num_hidden_layers": 1})
    shapes = ((1, 16), (2, 32))
    counted = forward_mflops(student, shapes)
    assert counted == {"1x16": config_costs(student, 16)[1] / 1e6, "2x32": 2 * config_costs(student, 32)[1] / 1e6}
    speed = flops_speedup(counted, forward_mflops(parent, shapes))
    ratios = [config_costs(parent, n)[1] / config_costs(student, n)[1] for n in (16, 32)]
    assert speed["speedup"] == pytest.approx(min(ratios)) and 1 < speed["speedup"] < 3
    assert speed["ratios"] == pytest.approx(dict(zip(("1x16", "2x32"), ratios)))
    with pytest.raises(ValueError, match="different shapes"):
        flops_speedup(counted, forward_mflops(parent, shapes[:1]))
