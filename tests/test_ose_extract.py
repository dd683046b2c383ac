"""Subnetwork extraction: exact at the parent's own architecture, function-preserving head widening, save/load."""

import copy
import itertools

import pytest
import torch
import transformers as tr

from hf_bort import BortConfig, BortForMaskedLM, BortForSequenceClassification, BortModel
from hf_bort.ose import Architecture, extract_subnetwork
from hf_bort.ose.extract import compute_importance, layer_allocation, place_subnetwork, spread_by_importance
from hf_bort.ose.space import layer_sizes


BERT = dict(
    vocab_size=99,
    hidden_size=32,
    num_hidden_layers=3,
    num_attention_heads=4,
    intermediate_size=37,
    max_position_embeddings=64,
    hidden_dropout_prob=0.0,
    attention_probs_dropout_prob=0.0,
)
PARENT = Architecture(3, 4, 32, 37)


def _inputs():
    ids = torch.randint(
        2, 99, (2, 10), generator=torch.Generator().manual_seed(0)
    )  # no padding id (RoBERTa positions)
    mask = torch.ones_like(ids)
    mask[1, 7:] = 0
    return {"input_ids": ids, "attention_mask": mask}


@pytest.mark.parametrize(
    "model_class", [tr.BertModel, tr.BertForSequenceClassification, tr.BertForMaskedLM, tr.RobertaModel, BortModel]
)
def test_parent_architecture_reproduces_outputs_exactly(model_class):
    torch.manual_seed(0)
    config_class = {tr.RobertaModel: tr.RobertaConfig, BortModel: BortConfig}.get(model_class, tr.BertConfig)
    config = config_class(**{**BERT, "max_position_embeddings": 66} if config_class is tr.RobertaConfig else BERT)
    parent = model_class(config).eval()
    child = extract_subnetwork(parent, PARENT).eval()
    assert type(child) is model_class
    with torch.no_grad():
        assert torch.equal(parent(**_inputs())[0], child(**_inputs())[0])


@pytest.mark.parametrize("config_class", [tr.BertConfig, tr.RobertaConfig])
def test_as_bort_matches_the_parent(config_class):
    torch.manual_seed(0)
    config = config_class(**{**BERT, "max_position_embeddings": 66, "type_vocab_size": 1})
    parent = tr.AutoModel.from_config(config).eval()
    bort = extract_subnetwork(parent, PARENT, as_bort=True).eval()
    assert isinstance(bort, BortModel)
    with torch.no_grad():
        torch.testing.assert_close(parent(**_inputs())[0], bort(**_inputs())[0], atol=1e-5, rtol=1e-5)


def test_widened_heads_preserve_the_pruned_network():
    """2 heads out of 4 widened to head_dim 16 compute what the pruned 2 heads of width 8 compute: new dims add 0."""
    torch.manual_seed(0)
    parent = tr.BertModel(tr.BertConfig(**BERT, type_vocab_size=1)).eval()
    arch = Architecture(3, 2, 32, 37)
    widened_bort = extract_subnetwork(parent, arch, as_bort=True).eval()
    widened = extract_subnetwork(parent, arch).eval()
    # as_bort builds the candidate the search scored (head_dim = hidden / heads), not the parent's 8-wide heads.
    assert widened_bort.config.head_dim == 16 and widened.config.num_attention_heads == 2
    # The pruned network: the same model with each head cut back to its 8 original dims.
    pruned = BortModel(BortConfig.from_dict({**widened_bort.config.to_dict(), "head_dim": 8})).eval()
    state = widened_bort.state_dict()
    keep = (torch.arange(32).view(2, 16)[:, :8]).reshape(-1)
    for name, tensor in state.items():
        if ".attention.self." in name:  # query/key/value rows; the query loses extraction's sqrt(16/8) rescale
            state[name] = tensor[keep] / (2**0.5 if ".query." in name else 1.0)
        elif name.endswith("attention.output.dense.weight"):
            state[name] = tensor[:, keep]
    pruned.load_state_dict(state)
    with torch.no_grad():
        torch.testing.assert_close(pruned(**_inputs())[0], widened(**_inputs())[0], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(widened_bort(**_inputs())[0], widened(**_inputs())[0], atol=1e-5, rtol=1e-5)
    # Widened dims are trainable: the query side is zero, the key side is not (no zero-gradient saddle).
    query = widened.encoder.layer[0].attention.self.query.weight.view(2, 16, 32)
    key = widened.encoder.layer[0].attention.self.key.weight.view(2, 16, 32)
    assert (query[:, 8:] == 0).all() and (key[:, 8:] != 0).any()


def test_most_important_units_are_kept():
    torch.manual_seed(0)
    parent = tr.BertModel(tr.BertConfig(**BERT)).eval()
    layer = parent.encoder.layer[1]
    with torch.no_grad():
        layer.attention.self.value.weight[24:32] *= 50  # head 3 of layer 1
        layer.intermediate.dense.weight[5] *= 50  # neuron 5
        for other in (0, 2):
            for p in parent.encoder.layer[other].parameters():
                p.mul_(0.01)
    child = extract_subnetwork(parent, Architecture(1, 1, 32, 1))
    kept = child.encoder.layer[0]
    assert torch.equal(kept.attention.self.value.weight[:8], layer.attention.self.value.weight[24:32])
    assert torch.equal(kept.intermediate.dense.weight, layer.intermediate.dense.weight[5:6])


def test_smaller_extractions_run_save_and_load_with_plain_transformers(tmp_path):
    torch.manual_seed(0)
    parent = tr.BertForSequenceClassification(tr.BertConfig(**BERT, num_labels=3)).eval()
    for arch in (Architecture(2, 2, 16, 20), Architecture(1, 4, 16, 8), Architecture(2, 1, 24, 37)):
        child = extract_subnetwork(parent, arch).eval()
        folder = tmp_path / f"{arch.depth}-{arch.heads}-{arch.hidden}"
        child.save_pretrained(folder)
        reloaded = tr.AutoModelForSequenceClassification.from_pretrained(folder).eval()
        assert type(reloaded) is tr.BertForSequenceClassification and reloaded.config.model_type == "bert"
        assert "auto_map" not in reloaded.config.to_dict()
        assert (reloaded.config.num_hidden_layers, reloaded.config.hidden_size) == (arch.depth, arch.hidden)
        assert sum(p.numel() for p in child.bert.parameters()) < sum(p.numel() for p in parent.bert.parameters())
        with torch.no_grad():
            assert torch.equal(child(**_inputs()).logits, reloaded(**_inputs()).logits)
    bort = extract_subnetwork(parent, Architecture(2, 3, 24, 20), as_bort=True)
    bort.save_pretrained(tmp_path / "bort")
    assert BortModel.from_pretrained(tmp_path / "bort").config.head_dim == 8


def test_gradient_importance_is_per_weight_taylor_summed_per_neuron():
    """The default data-driven score (the historical call shape): |Σ_batches w·∂L/∂w| per weight, summed over a
    neuron's input row, bias and output column; checked against autograd by hand on the label-free proxy loss."""
    torch.manual_seed(0)
    parent = tr.BertModel(tr.BertConfig(**BERT)).eval()
    batches = [_inputs() for _ in range(2)]
    scores = compute_importance(parent, batches)
    assert scores.method == "gradient" and compute_importance(parent).method == "magnitude"
    layer = parent.encoder.layer[1]
    parts = (layer.intermediate.dense.weight, layer.intermediate.dense.bias, layer.output.dense.weight)
    total = [torch.zeros_like(p) for p in parts]
    for batch in batches:
        parent.zero_grad()
        parent(**batch).last_hidden_state.pow(2).mean().backward()
        for acc, p in zip(total, parts):
            acc += p.detach() * p.grad
    expected = total[0].abs().sum(1) + total[1].abs() + total[2].abs().sum(0)
    torch.testing.assert_close(scores.neurons[1], expected, rtol=1e-5, atol=1e-9)
    child = extract_subnetwork(parent, Architecture(2, 2, 16, 20), importance="gradient", data=batches)
    assert child.config.num_hidden_layers == 2


def test_bad_extraction_requests_raise():
    parent = tr.BertModel(tr.BertConfig(**BERT))
    distilbert = tr.DistilBertModel(tr.DistilBertConfig(vocab_size=99, dim=32, n_layers=2, n_heads=4, hidden_dim=37))
    with pytest.raises(ValueError, match="does not divide hidden.*'distilbert' model needs head_dim"):
        extract_subnetwork(distilbert, Architecture(2, 3, 32, 20))
    with pytest.raises(ValueError, match="per-layer sizes.*'distilbert' model cannot load"):
        extract_subnetwork(distilbert, Architecture(2, 2, 32, 20), allocation="importance")
    with pytest.raises(ValueError, match="wider than the parent's heads \\(8\\)"):
        extract_subnetwork(parent, Architecture(2, 1, 32, 20, head_dim=16))
    with pytest.raises(ValueError, match=r"allocation\['heads'\] must hold 2 counts.*\[0, 4\]"):
        extract_subnetwork(parent, Architecture(2, 2, 32, 20), allocation={"heads": [2, 5], "intermediate": [4, 4]})
    with pytest.raises(ValueError, match="must lie in"):
        extract_subnetwork(parent, Architecture(4, 4, 32, 37))
    with pytest.raises(ValueError, match="needs data="):
        extract_subnetwork(parent, Architecture(2, 2, 32, 20), importance="gradient")
    gpt2 = tr.GPT2Model(tr.GPT2Config(vocab_size=99, n_embd=32, n_layer=2, n_head=4, n_positions=64))
    with pytest.raises(ValueError, match=r"as_bort=True converts BERT-layout parents.*got 'gpt2'"):
        extract_subnetwork(gpt2, Architecture(1, 2, 32, 64), as_bort=True)


def _kept_rows(student: torch.Tensor, parent: torch.Tensor) -> torch.Tensor:
    """Which parent rows a student weight holds, found by matching rows (not by re-running the selection)."""
    match = (student[:, None, :] == parent[None, :, :]).all(-1)
    assert (match.sum(1) == 1).all()
    return match.float().argmax(1)


def _masked_parent(parent, student, config):
    """The parent with every head and FFN neuron the student dropped masked out: value rows (and biases) and output
    columns zeroed. Same hidden size, every layer kept: it computes what the student computes."""
    masked = copy.deepcopy(parent)
    base, small = masked.base_model, student.base_model
    for layer, kept in zip(base.encoder.layer, small.encoder.layer):
        value, dense = layer.attention.self.value, layer.output.dense
        rows = _kept_rows(kept.attention.self.value.weight, value.weight)
        neurons = _kept_rows(kept.intermediate.dense.weight, layer.intermediate.dense.weight)
        with torch.no_grad():
            drop = torch.ones(value.weight.shape[0], dtype=torch.bool)
            drop[rows] = False
            value.weight[drop] = 0
            value.bias[drop] = 0
            unused = torch.ones(dense.weight.shape[1], dtype=torch.bool)
            unused[neurons] = False
            dense.weight[:, unused] = 0
    return masked


PARENTS = {
    "bert": (tr.BertConfig, tr.BertModel, dict(type_vocab_size=1)),
    "roberta": (tr.RobertaConfig, tr.RobertaModel, dict(max_position_embeddings=66, type_vocab_size=1)),
}


@pytest.mark.parametrize("family", list(PARENTS))
@pytest.mark.parametrize("allocation", ["importance", {"heads": [1, 4, 2], "intermediate": [37, 3, 20]}])
def test_heterogeneous_student_is_a_bort_that_computes_the_masked_parent(family, allocation, tmp_path):
    config_class, model_class, extra = PARENTS[family]
    torch.manual_seed(0)
    parent = model_class(config_class(**{**BERT, **extra})).eval()
    student = extract_subnetwork(parent, Architecture(3, 2, 32, 20, head_dim=8), allocation=allocation).eval()
    assert isinstance(student, BortModel) and student.config.is_heterogeneous
    heads = [layer.attention.self.num_attention_heads for layer in student.encoder.layer]
    neurons = [layer.intermediate.dense.out_features for layer in student.encoder.layer]
    if allocation == "importance":  # the totals of <3, 2, 32, 20>, every layer at least one head and neuron
        assert sum(heads) == 6 and sum(neurons) == 60 and min(heads) >= 1 and min(neurons) >= 1
    else:
        assert heads == allocation["heads"] and neurons == allocation["intermediate"]
    with torch.no_grad():
        expected = _masked_parent(parent, student, parent.config)(**_inputs())[0]
        torch.testing.assert_close(student(**_inputs())[0], expected, atol=1e-5, rtol=1e-5)
    student.save_pretrained(tmp_path)
    reloaded = tr.AutoModel.from_pretrained(tmp_path).eval()
    assert [layer.attention.self.num_attention_heads for layer in reloaded.encoder.layer] == heads
    with torch.no_grad():
        torch.testing.assert_close(reloaded(**_inputs())[0], expected, atol=1e-5, rtol=1e-5)


def test_fewer_heads_than_fill_the_hidden_size_keep_the_parents_head_width():
    """<3, 2x8, 32, 37>: two heads of the parent's width 8 (16 < 32 dims), no widening, a Bort even when uniform."""
    torch.manual_seed(0)
    parent = tr.BertModel(tr.BertConfig(**BERT, type_vocab_size=1)).eval()
    student = extract_subnetwork(parent, Architecture(3, 2, 32, 37, head_dim=8)).eval()
    assert isinstance(student, BortModel) and not student.config.is_heterogeneous
    assert (student.config.num_attention_heads, student.config.head_dim) == (2, 8)
    with torch.no_grad():
        expected = _masked_parent(parent, student, parent.config)(**_inputs())[0]
        torch.testing.assert_close(student(**_inputs())[0], expected, atol=1e-5, rtol=1e-5)


def test_skipped_sublayers_compute_the_parent_without_them():
    torch.manual_seed(0)
    parent = tr.BertModel(tr.BertConfig(**BERT, type_vocab_size=1)).eval()
    allocation = {"heads": [0, 4, 4], "intermediate": [37, 37, 0]}
    student = extract_subnetwork(parent, Architecture(3, 4, 32, 37), allocation=allocation).eval()
    assert [c.skip for c in student.config.per_layer_config] == [["attention"], [], ["mlp"]]
    reference = copy.deepcopy(parent)
    reference.encoder.layer[0].attention.forward = lambda hidden_states, *args, **kwargs: (hidden_states, None)
    reference.encoder.layer[2].feed_forward_chunk = lambda attention_output: attention_output
    with torch.no_grad():
        torch.testing.assert_close(student(**_inputs())[0], reference(**_inputs())[0], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(
    ("parent_class", "config_class", "bort_class"),
    [
        (tr.BertForSequenceClassification, tr.BertConfig, BortForSequenceClassification),
        (tr.RobertaForSequenceClassification, tr.RobertaConfig, BortForSequenceClassification),
        (tr.BertForMaskedLM, tr.BertConfig, BortForMaskedLM),
    ],
)
def test_bort_students_keep_the_parents_task_head(parent_class, config_class, bort_class):
    """BERT's pooler + classifier is Bort's classification head; RoBERTa's already has its shape; the MLM head maps
    by name. At the parent's own architecture the Bort student's logits are the parent's."""
    torch.manual_seed(0)
    extra = dict(max_position_embeddings=66) if config_class is tr.RobertaConfig else {}
    config = config_class(**{**BERT, **extra}, type_vocab_size=1, num_labels=3, id2label={0: "a", 1: "b", 2: "c"})
    parent = parent_class(config).eval()
    student = extract_subnetwork(parent, PARENT, as_bort=True).eval()
    assert type(student) is bort_class
    assert student.config.id2label == {0: "a", 1: "b", 2: "c"}
    with torch.no_grad():
        torch.testing.assert_close(student(**_inputs()).logits, parent(**_inputs()).logits, atol=1e-5, rtol=1e-5)


def test_spread_by_importance_keeps_the_most_score_with_a_unit_per_layer():
    """The allocation equals the brute-force best: of all counts with one unit or more per layer and the given total,
    the one whose kept units (each layer's top ones) score the most."""
    generator = torch.Generator().manual_seed(0)
    layers = [torch.rand(n, generator=generator) for n in (4, 3, 5)]
    for total in range(3, 13):
        counts = spread_by_importance(layers, total)
        best = max(
            (c for c in itertools.product(*(range(1, len(s) + 1) for s in layers)) if sum(c) == total),
            key=lambda c: sum(float(s.sort(descending=True).values[:k].sum()) for s, k in zip(layers, c)),
        )
        assert tuple(counts) == best, (total, counts, best)
    with pytest.raises(ValueError, match="Cannot spread 2 units over layers of sizes \\[4, 3, 5\\]"):
        spread_by_importance(layers, 2)


def test_a_parent_built_without_its_pooler_gives_a_student_without_one():
    """`BertModel(config, add_pooling_layer=False)`: the student is built without the pooler too (it has no weights
    to take), and at the parent's architecture computes the parent's hidden states."""
    torch.manual_seed(0)
    parent = tr.BertModel(tr.BertConfig(**BERT), add_pooling_layer=False).eval()
    child = extract_subnetwork(parent, PARENT).eval()
    assert child.pooler is None
    with torch.no_grad():
        assert torch.equal(parent(**_inputs())[0], child(**_inputs())[0])


def test_a_placed_subnetwork_computes_the_subnetwork_and_extracts_back_bit_exact():
    """place_subnetwork (gradual compression's step back to the parent's shape): the placed model computes what the
    trained sub-network computes, extraction by the same scores gives the sub-network back weight for weight, and the
    zeroed heads score nothing, so a student cut by re-scored importance comes from the sub-network's units."""
    torch.manual_seed(0)
    config = tr.BertConfig(vocab_size=99, hidden_size=32, num_hidden_layers=3, num_attention_heads=4, intermediate_size=48,
                        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)  # fmt: skip
    parent = tr.BertForSequenceClassification(config).eval()
    ids = torch.randint(5, 99, (8, 12))
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": torch.randint(0, 2, (8,))}
    scores = compute_importance(parent, [batch], method="fisher")
    full = extract_subnetwork(parent, Architecture(3, 4, 32, 48), as_bort=True, importance=scores)
    sizes = {"heads": [3, 1, 4], "intermediate": [30, 17, 48]}
    sub = extract_subnetwork(full, Architecture(3, 2, 32, 31, head_dim=8), allocation=sizes, importance=scores)
    with torch.no_grad():
        for weight in sub.parameters():  # as if trained
            weight.add_(torch.randn_like(weight) * 0.05)
    placed = place_subnetwork(full, sub, scores)
    assert type(placed) is type(full) and placed.config.num_attention_heads == 4
    inputs = {k: batch[k] for k in ("input_ids", "attention_mask")}
    with torch.no_grad():
        torch.testing.assert_close(placed(**inputs).logits, sub(**inputs).logits, atol=1e-6, rtol=1e-5)
    back = extract_subnetwork(placed, Architecture(3, 2, 32, 31, head_dim=8), allocation=sizes, importance=scores)
    assert back.state_dict().keys() == sub.state_dict().keys()
    assert all(torch.equal(back.state_dict()[k], v) for k, v in sub.state_dict().items())
    # layer 1 kept 1 of 4 heads: the 3 others are zero in the placed model and score exactly 0
    rescored = compute_importance(placed.eval(), [batch], method="fisher")
    assert int((rescored.heads[1] == 0).sum()) == 3 and int((rescored.heads[1] > 0).sum()) == 1
    assert int((rescored.neurons[1] == 0).sum()) >= 48 - 17

    dropped_layer = extract_subnetwork(full, Architecture(2, 4, 32, 48), importance=scores)
    with pytest.raises(ValueError, match="keeps all its 3 layers"):
        place_subnetwork(full, dropped_layer, scores)
    with pytest.raises(ValueError, match="BortForSequenceClassification extracted from this parent"):
        place_subnetwork(full, parent, scores)


def test_layer_allocation_is_what_extraction_builds():
    """The search times a candidate with `layer_allocation`'s per-layer sizes before it builds it: they must be the
    sizes the extracted student has."""
    torch.manual_seed(0)
    config = tr.BertConfig(vocab_size=99, hidden_size=32, num_hidden_layers=3, num_attention_heads=4,
                           intermediate_size=48)  # fmt: skip
    parent = tr.BertForSequenceClassification(config).eval()
    ids = torch.randint(5, 99, (8, 12))
    scores = compute_importance(parent, [{"input_ids": ids, "attention_mask": torch.ones_like(ids),
                                          "labels": torch.randint(0, 2, (8,))}], method="fisher")  # fmt: skip
    explicit = {"heads": [2, 0, 4], "intermediate": [5, 48, 0]}
    for arch, allocation in [
        (Architecture(2, 2, 32, 20, head_dim=8), "importance"),
        (Architecture(3, 1, 16, 7, head_dim=8), "importance"),
        (Architecture(2, 3, 24, 30, head_dim=8), "uniform"),
        (Architecture(3, 2, 32, 17, head_dim=8), explicit),
    ]:
        student = extract_subnetwork(parent, arch, importance=scores, allocation=allocation)
        assert layer_allocation(parent, arch, allocation, scores) == layer_sizes(student.config)
