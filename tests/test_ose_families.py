"""OSE extraction on every family it reads: one tiny random config per family (`FAMILY_CONFIGS`).

Adding a family to `hf_bort/ose/families.py` means adding one row here; every test below then covers it.
"""

import os
import subprocess
import sys
import textwrap

import pytest
import torch
import transformers as tr

from hf_bort import BortConfig
from hf_bort.ose import Architecture, SearchSpace, compute_importance, extract_subnetwork, parameter_count
from hf_bort.ose.extract import IMPORTANCE_METHODS
from hf_bort.ose.families import extractable_families


DIMS = dict(
    vocab_size=99, hidden_size=32, num_hidden_layers=3, num_attention_heads=4, intermediate_size=37,
    max_position_embeddings=64,
)  # fmt: skip
NO_DROPOUT = dict(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
DECODER = dict(**DIMS, num_key_value_heads=2, bos_token_id=1, eos_token_id=2, pad_token_id=0)
FAMILY_CONFIGS = {
    "bert": lambda: tr.BertConfig(**DIMS, **NO_DROPOUT),
    "roberta": lambda: tr.RobertaConfig(**{**DIMS, "max_position_embeddings": 66}, **NO_DROPOUT),
    "xlm-roberta": lambda: tr.XLMRobertaConfig(**{**DIMS, "max_position_embeddings": 66}, **NO_DROPOUT),
    "electra": lambda: tr.ElectraConfig(**DIMS, **NO_DROPOUT, embedding_size=16),
    "distilbert": lambda: tr.DistilBertConfig(
        vocab_size=99, dim=32, n_layers=3, n_heads=4, hidden_dim=37, dropout=0.0, attention_dropout=0.0
    ),
    "albert": lambda: tr.AlbertConfig(**DIMS, **NO_DROPOUT, embedding_size=16),
    "albert-groups": lambda: tr.AlbertConfig(
        **{**DIMS, "num_hidden_layers": 4}, **NO_DROPOUT, embedding_size=16, num_hidden_groups=2, inner_group_num=2
    ),
    "deberta-v2": lambda: tr.DebertaV2Config(
        **DIMS,
        **NO_DROPOUT,
        relative_attention=True,
        position_buckets=8,
        share_att_key=False,
        pos_att_type=["p2c", "c2p"],
        embedding_size=16,
    ),  # fmt: skip
    "gpt2": lambda: tr.GPT2Config(
        vocab_size=99,
        n_positions=64,
        n_embd=32,
        n_layer=3,
        n_head=4,
        n_inner=37,
        bos_token_id=1,
        eos_token_id=2,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
    ),  # fmt: skip
    "llama": lambda: tr.LlamaConfig(**DECODER),
    "qwen2": lambda: tr.Qwen2Config(**DECODER),
    "mistral": lambda: tr.MistralConfig(**DECODER),
    "bort": lambda: BortConfig(**DIMS, **NO_DROPOUT),
}
CAUSAL = {"gpt2", "llama", "qwen2", "mistral"}
# Smaller candidates: fewer layers, heads (trimmed / widened head dims where head_dim follows H / A), hidden, neurons.
SMALLER = (Architecture(2, 2, 16, 20), Architecture(1, 4, 24, 8))


def _config(name):
    return FAMILY_CONFIGS[name]()


def _head_class(name):
    return tr.AutoModelForCausalLM if name in CAUSAL else tr.AutoModelForMaskedLM


def _parent(name, head=True):
    torch.manual_seed(0)
    config = _config(name)
    return (_head_class(name).from_config(config) if head else tr.AutoModel.from_config(config)).eval()


def _inputs(batch=2):
    ids = torch.randint(3, 99, (batch, 10), generator=torch.Generator().manual_seed(0))
    mask = torch.ones_like(ids)
    mask[-1, 7:] = 0
    return {"input_ids": ids, "attention_mask": mask}


def test_every_family_has_a_test_row():
    families = {name.split("-groups")[0] for name in FAMILY_CONFIGS}
    assert set(extractable_families()) - {"camembert"} == families  # camembert is RoBERTa's row


@pytest.mark.parametrize("name", list(FAMILY_CONFIGS))
def test_parent_architecture_is_reproduced(name):
    for head in (False, True):
        parent = _parent(name, head)
        arch = SearchSpace.from_config(parent.config).parent_architecture
        child = extract_subnetwork(parent, arch).eval()
        assert type(child) is type(parent)
        with torch.no_grad():
            torch.testing.assert_close(child(**_inputs())[0], parent(**_inputs())[0], atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", list(FAMILY_CONFIGS))
def test_smaller_extractions_run_train_and_match_their_cost_row(name):
    parent = _parent(name)
    space = SearchSpace.from_config(parent.config, allocation="uniform")  # extract_subnetwork's default
    for arch in SMALLER:
        if arch.heads % space.shape.kv_group:
            continue
        child = extract_subnetwork(parent, arch).train()
        assert type(child) is type(parent)
        # The extracted config is exactly the candidate the costs priced (head_dim, key-value heads included).
        assert SearchSpace.from_config(child.config).parent_architecture == space.canonical(arch)
        priced = parameter_count(SearchSpace.from_architectures(space, [arch]))[0]
        assert sum(p.numel() for p in tr.AutoModel.from_config(child.config).parameters()) == priced
        batch = {**_inputs(), "labels": _inputs()["input_ids"].masked_fill(_inputs()["attention_mask"] == 0, -100)}
        optimizer = torch.optim.AdamW(child.parameters(), lr=1e-2)
        before = {n: p.detach().clone() for n, p in child.named_parameters()}
        loss = child(**batch).loss
        assert torch.isfinite(loss)
        loss.backward()
        optimizer.step()
        assert all(torch.isfinite(p).all() for p in child.parameters())
        changed = [n for n, p in child.named_parameters() if not torch.equal(p, before[n])]
        assert len(changed) > len(before) // 2
        with torch.no_grad():
            assert child(**batch).loss < loss
        if name in CAUSAL:
            out = child.eval().generate(
                _inputs(1)["input_ids"], max_new_tokens=3, do_sample=False, pad_token_id=0, min_new_tokens=3
            )
            assert out.shape == (1, 13)


def test_smaller_extractions_load_with_plain_transformers(tmp_path):
    """Every non-Bort family's extraction loads in a Python where hf_bort cannot be imported, same outputs."""
    names = [n for n in FAMILY_CONFIGS if n != "bort"]
    expected = {}
    for name in names:
        parent = _parent(name)
        arch = SMALLER[0]
        child = extract_subnetwork(parent, arch).eval()
        child.save_pretrained(tmp_path / name)
        assert "auto_map" not in child.config.to_dict()
        with torch.no_grad():
            expected[name] = child(**_inputs()).logits
    torch.save({"inputs": _inputs(), "expected": expected}, tmp_path / "io.pt")
    site_dirs = [p for p in sys.path if p.endswith("site-packages")]
    script = textwrap.dedent(
        f"""
        import sys
        sys.path.extend({site_dirs!r})
        import importlib.util, torch
        assert importlib.util.find_spec("hf_bort") is None, "hf_bort must not be importable here"
        from transformers import AutoModelForCausalLM, AutoModelForMaskedLM
        io = torch.load({str(tmp_path / "io.pt")!r})
        for name, logits in io["expected"].items():
            auto = AutoModelForCausalLM if name in {sorted(CAUSAL)!r} else AutoModelForMaskedLM
            model = auto.from_pretrained({str(tmp_path)!r} + "/" + name).eval()
            with torch.no_grad():
                got = model(**io["inputs"]).logits
            assert torch.allclose(got, logits, atol=1e-6), name
            print("LOADED", name, type(model).__name__, model.config.num_hidden_layers)
        assert "hf_bort" not in sys.modules
        """
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(HF_HUB_OFFLINE="1")
    result = subprocess.run(
        [sys.executable, "-I", "-S", "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("LOADED") == len(names)


def test_unsupported_family_lists_the_supported_ones():
    parent = tr.BartModel(tr.BartConfig(vocab_size=99, d_model=32, encoder_layers=1, decoder_layers=1))
    with pytest.raises(ValueError, match=r"model_type 'bart'.*bert.*gpt2.*llama.*qwen2.*add a FamilySpec row"):
        extract_subnetwork(parent, Architecture(1, 1, 16, 16))
    with pytest.raises(ValueError, match=r"model_type 'bart'.*add a FamilySpec row"):
        compute_importance(parent)


def test_a_malformed_layout_row_is_refused():
    from hf_bort.ose.families import WeightLayout

    good = dict(query="q", attention_output="o", ffn_output="down", hidden_outputs=())
    modules = {"q": ("q", "hidden"), "o": ("hidden", "o"), "down": ("hidden", "neuron")}
    WeightLayout(blocks="layers", modules=modules, **good)
    with pytest.raises(ValueError, match=r"'down' has axis kinds \('hidden', 'neurons'\)"):
        WeightLayout(blocks="layers", modules={**modules, "down": ("hidden", "neurons")}, **good)
    with pytest.raises(ValueError, match="ffn_output='mlp' is not one of its modules"):
        WeightLayout(blocks="layers", modules=modules, **{**good, "ffn_output": "mlp"})


def test_grouped_query_attention_keeps_groups_and_head_dim():
    parent = _parent("llama", head=False)
    with torch.no_grad():  # make key-value head 1 (query heads 2 and 3) clearly the more important group
        for layer in parent.layers:
            layer.self_attn.o_proj.weight[:, 16:] *= 20
            layer.self_attn.v_proj.weight[8:] *= 20
    child = extract_subnetwork(parent, Architecture(3, 2, 16, 20))
    assert (child.config.num_attention_heads, child.config.num_key_value_heads, child.config.head_dim) == (2, 1, 8)
    kept = child.layers[0].self_attn
    original = parent.layers[0].self_attn
    # The kept value head is parent kv head 1; its query heads are parent heads 2 and 3 (rows 16..31).
    torch.testing.assert_close(kept.v_proj.weight, original.v_proj.weight[8:16][:, _hidden_index(parent, 16)])
    torch.testing.assert_close(kept.q_proj.weight, original.q_proj.weight[16:32][:, _hidden_index(parent, 16)])
    with pytest.raises(ValueError, match="not a multiple of 2"):
        extract_subnetwork(parent, Architecture(3, 3, 16, 20))


def _hidden_index(parent, hidden):
    scores = compute_importance(parent).hidden
    return torch.sort(torch.argsort(-scores.double(), stable=True)[:hidden]).values


def test_albert_depth_is_repeats_of_the_shared_groups():
    parent = _parent("albert-groups", head=False)
    child = extract_subnetwork(parent, Architecture(1, 4, 32, 37))
    assert (child.config.num_hidden_layers, child.config.num_hidden_groups) == (1, 1)
    longer = extract_subnetwork(_parent("albert", head=False), Architecture(2, 4, 32, 37)).eval()
    assert len(longer.encoder.albert_layer_groups) == 1 and longer.config.num_hidden_layers == 2


# ----- importance -----


def _zero_neuron_and_head(parent, name):
    """Zero FFN neuron 5 and head 1 (every weight that reads or writes them) in layer 0 of a tiny parent."""
    base = parent.base_model
    from hf_bort.ose.extract import _geometry

    g = _geometry(parent)
    layout = g.layout
    prefix = g.layers[0]
    with torch.no_grad():
        for module, kinds in layout.modules.items():
            try:
                mod = base.get_submodule(prefix + module)
            except AttributeError:
                continue
            for suffix in ("weight", "bias"):
                tensor = getattr(mod, suffix, None)
                if tensor is None:
                    continue
                view = tensor.T if layout.transposed and tensor.dim() == 2 else tensor
                for axis, kind in enumerate(kinds if suffix == "weight" else kinds[:1]):
                    moved = view.movedim(axis, 0)
                    if kind == "neuron":
                        moved[5] = 0
                    if kind in ("q", "o") or (kind in ("k", "v") and g.group == 1):
                        moved[8:16] = 0  # head 1 (head_dim 8)
                    if kind == "qkv":
                        for offset in (0, 32, 64):
                            moved[offset + 8 : offset + 16] = 0


@pytest.mark.parametrize("name", list(FAMILY_CONFIGS))
def test_a_dead_neuron_and_head_score_lowest_under_every_method(name):
    """Every method on every family's layout: a neuron (and, without grouped-query attention, a head) whose
    weights are all zero scores lowest, and extraction leaves exactly that neuron out."""
    from hf_bort.ose.extract import _geometry

    parent = _parent(name)
    _zero_neuron_and_head(parent, name)
    g = _geometry(parent)
    batches = [_inputs() for _ in range(2)]
    arch = SearchSpace.from_config(parent.config).parent_architecture
    down = g.layers[0] + g.layout.ffn_output
    parent_down = parent.base_model.get_submodule(down).weight
    for method in IMPORTANCE_METHODS:
        scores = compute_importance(parent, None if method == "magnitude" else batches, method=method)
        assert scores.method == method
        neurons = scores.neurons[0]
        assert neurons[5] == neurons.min() and neurons[5] < 1e-6 * neurons.max(), method
        if g.group == 1:  # grouped-query heads share their key-value weights with live heads
            heads = scores.heads[0]
            assert heads[1] == heads.min() and heads[1] < 1e-6 * heads.max(), method
    child = extract_subnetwork(parent, Architecture(arch.depth, 4, 32, 36), importance=scores)
    kept = [i for i in range(37) if i != 5]
    expected = parent_down[kept] if g.layout.transposed else parent_down[:, kept]
    torch.testing.assert_close(child.base_model.get_submodule(down).weight, expected, rtol=0, atol=0)


def _loss(model, batch):
    labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
    return model(**batch, labels=labels).loss


def _scaled_head_loss(parent, batch, layer, head, factor):
    """The loss with head `head`'s output-projection columns scaled by `factor` (GPT-2: Conv1D rows)."""
    weight = parent.transformer.h[layer].attn.c_proj.weight
    saved = weight.detach().clone()
    with torch.no_grad():
        weight[head * 8 : (head + 1) * 8] *= factor
        logits = parent(**batch).logits.double()  # the model's own loss upcasts to float32 only
        labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
        loss = float(torch.nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1), labels[:, 1:].flatten()))
        weight.copy_(saved)
    return loss


def test_group_taylor_and_fisher_match_finite_differences():
    """∂L/∂(head gate) from the hooks equals the loss change of scaling the head's weights, computed by hand."""
    parent = _parent("gpt2").double()
    batches = [_inputs(), {k: v.flip(0) for k, v in _inputs().items()}]
    taylor = compute_importance(parent, batches, method="group-taylor")
    fisher = compute_importance(parent, batches, method="fisher")
    delta = 1e-5
    for layer in range(3):
        for head in range(4):
            slopes = [
                (
                    _scaled_head_loss(parent, b, layer, head, 1 + delta)
                    - _scaled_head_loss(parent, b, layer, head, 1 - delta)
                )
                / (2 * delta)
                for b in batches
            ]
            assert float(taylor.heads[layer][head]) == pytest.approx(abs(sum(slopes) / 2), rel=1e-3, abs=1e-7)
            assert float(fisher.heads[layer][head]) == pytest.approx(
                sum(s * s for s in slopes) / 2, rel=1e-3, abs=1e-9
            )


def test_group_taylor_neurons_equal_weight_gradients_summed_by_hand():
    """A neuron's gate gradient is Σ w·∂L/∂w over its output-projection weights (autograd on the parameters)."""
    parent = _parent("llama").double()
    batch = _inputs()
    scores = compute_importance(parent, [batch], method="group-taylor")
    parent.zero_grad()
    _loss(parent, batch).backward()
    down = parent.model.layers[1].mlp.down_proj.weight
    by_hand = (down * down.grad).sum(0).abs()
    torch.testing.assert_close(scores.neurons[1].double(), by_hand, rtol=1e-4, atol=1e-8)


def test_activation_scores_are_mean_absolute_activations():
    parent = _parent("qwen2", head=False)
    batch = _inputs()
    captured = []
    handle = parent.layers[2].mlp.down_proj.register_forward_pre_hook(lambda m, args: captured.append(args[0]))
    with torch.no_grad():
        parent(**batch)
    handle.remove()
    mask = batch["attention_mask"].bool()
    expected = captured[0][mask].abs().mean(0)
    scores = compute_importance(parent, [batch], method="activation")
    torch.testing.assert_close(scores.neurons[2], expected, rtol=1e-5, atol=1e-7)


def test_labels_are_used_only_by_a_parent_with_a_head():
    """A base model cannot take labels (OSE's task objective hands them over): it is scored on the label-free loss;
    a classifier is scored on its own task loss."""
    labelled = [{**_inputs(), "labels": torch.tensor([0, 1])}]
    base = _parent("bert", head=False)
    with_labels = compute_importance(base, labelled, method="fisher")
    without = compute_importance(base, [_inputs()], method="fisher")
    torch.testing.assert_close(with_labels.neurons[0], without.neurons[0])
    torch.manual_seed(0)
    classifier = tr.BertForSequenceClassification(_config("bert")).eval()
    task = compute_importance(classifier, labelled, method="fisher")
    proxy = compute_importance(classifier, [_inputs()], method="fisher")
    assert not torch.allclose(task.neurons[0], proxy.neurons[0], rtol=1e-2, atol=0)


def test_oseconfig_and_compressconfig_offer_every_importance_method():
    """The names live in extract's registry; the two configs' typed choices (what --help and HfArgumentParser offer)
    are checked against it, so a new method cannot be missing from either."""
    import typing

    from hf_bort.compression.compress_config import CompressConfig
    from hf_bort.ose import ose_config

    assert list(ose_config.IMPORTANCE_METHODS) == list(IMPORTANCE_METHODS)
    for config in (ose_config.OSEConfig, CompressConfig):
        assert set(typing.get_args(typing.get_type_hints(config)["importance"])) == set(IMPORTANCE_METHODS), config


def test_importance_needs_data_and_a_known_method():
    parent = _parent("bert", head=False)
    with pytest.raises(ValueError, match="'fisher' needs data="):
        compute_importance(parent, method="fisher")
    with pytest.raises(ValueError, match="Unknown importance method 'l1'.*magnitude, gradient, group-taylor"):
        compute_importance(parent, [_inputs()], method="l1")


# ----- search on decoders, and the device it runs on -----

LM_CONFIGS = {
    "gpt2": lambda: tr.GPT2Config(
        vocab_size=30522,
        n_positions=64,
        n_embd=32,
        n_layer=2,
        n_head=4,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        bos_token_id=101,
        eos_token_id=102,
    ),  # fmt: skip
    "llama": lambda: tr.LlamaConfig(**{**DECODER, "vocab_size": 30522, "num_hidden_layers": 2}),
    "qwen2": lambda: tr.Qwen2Config(**{**DECODER, "vocab_size": 30522, "num_hidden_layers": 2}),
}


@pytest.fixture
def lm_texts(wikitext_dir):
    from hf_bort.ose import read_text_lines

    return read_text_lines(wikitext_dir / "wiki.valid.raw")[:24]


@pytest.mark.parametrize(("name", "importance"), [("gpt2", "magnitude"), ("llama", "activation"), ("qwen2", "fisher")])
def test_lm_search_end_to_end_on_decoders(name, importance, minilm_path, lm_texts):
    """objective='lm': the parent's own architecture starts as an exact copy (KL ≈ 0); a smaller one does not."""
    from hf_bort.ose import OSEConfig, OSESearch

    torch.manual_seed(0)
    parent = tr.AutoModelForCausalLM.from_config(LM_CONFIGS[name]()).eval()
    base = SearchSpace.from_config(parent.config, step=8)
    smaller = Architecture(1, 2, 16, 16)
    space = SearchSpace.from_architectures(base, [smaller, base.parent_architecture])
    config = OSEConfig(
        objective="lm", epsilon=1.0, interval=2, seq_len=16, batch_size=4, importance=importance, show_progress=False
    )
    tokenizer = tr.AutoTokenizer.from_pretrained(minilm_path)
    search = OSESearch(
        parent, config, space=space, train_dataset=lm_texts[:16], eval_dataset=lm_texts[16:], tokenizer=tokenizer
    )
    result = search.run()
    assert [r.architecture for r in result.records] == [smaller, base.parent_architecture]
    own, small = result.record(base.parent_architecture), result.record(smaller)
    assert own.error < 1e-3 and own.eval_error < 1e-3
    assert small.error > 0.05 and small.eval_error > 0.05
    assert result.best in (smaller, base.parent_architecture) and result.settings["importance"] == importance


@pytest.mark.parametrize("name", list(LM_CONFIGS))
def test_cli_lm_search_on_a_decoder_folder(name, minilm_path, wikitext_dir, tmp_path):
    from hf_bort.cli import main
    from hf_bort.ose import OSEResult

    torch.manual_seed(0)
    tr.AutoModelForCausalLM.from_config(LM_CONFIGS[name]()).save_pretrained(tmp_path / "parent")
    tr.AutoTokenizer.from_pretrained(minilm_path).save_pretrained(tmp_path / "parent")
    argv = ["search", "--model", str(tmp_path / "parent"), "--train_file", str(wikitext_dir / "wiki.valid.raw")]
    argv += ["--objective", "lm", "--epsilon", "1", "--interval", "2", "--seq_len", "16", "--batch_size", "4"]
    argv += ["--step", "16", "--max_texts", "16", "--max_candidates", "2", "--output_dir", str(tmp_path / "run")]
    assert main(argv) == 0
    result = OSEResult.load(tmp_path / "run" / "result.json")
    assert result.objective == "lm" and len(result.records) == 2
    assert result.to_config().model_type == name


def test_lm_objective_needs_a_causal_lm(minilm_path):
    from hf_bort.ose import OSEConfig, OSESearch

    with pytest.raises(ValueError, match="objective='lm'.*needs a causal LM.*got GPT2Model.*AutoModelForCausalLM"):
        OSESearch(
            tr.GPT2Model(LM_CONFIGS["gpt2"]()),
            OSEConfig(objective="lm"),
            train_dataset=["a text"],
            tokenizer=tr.AutoTokenizer.from_pretrained(minilm_path),
        )


@pytest.mark.parametrize("accelerator", [False, True])
def test_ose_state_takes_the_accelerator_when_there_is_one(accelerator, monkeypatch):
    """PartialState() (one accelerator per process) with an accelerator; PartialState(cpu=True) (the gloo group of
    a CPU machine) without one."""
    import accelerate

    from hf_bort.ose.search import ose_state

    calls = []
    monkeypatch.setattr(torch.accelerator, "is_available", lambda: accelerator)
    monkeypatch.setattr(accelerate, "PartialState", lambda **kwargs: calls.append(kwargs) or "state")
    assert ose_state() == "state" and calls == [{"cpu": not accelerator}]


def test_search_runs_on_the_state_device(minilm_path, lm_texts, monkeypatch):
    """Parent, batches and teacher targets go to the device the Accelerate state names (here the CPU, as a
    float64 parent shows that extraction follows the parent's placement and dtype)."""
    from types import SimpleNamespace

    import hf_bort.ose.search as search_module
    from hf_bort.ose import OSEConfig, OSESearch

    seen = []
    state = SimpleNamespace(
        device=torch.device("cpu"), process_index=0, num_processes=1, is_main_process=True,
        wait_for_everyone=lambda: None,
    )  # fmt: skip
    monkeypatch.setattr(search_module, "ose_state", lambda: state)
    torch.manual_seed(0)
    parent = tr.AutoModelForCausalLM.from_config(LM_CONFIGS["llama"]()).double().eval()
    base = SearchSpace.from_config(parent.config, step=8)
    space = SearchSpace.from_architectures(base, [Architecture(1, 2, 16, 16)])
    config = OSEConfig(objective="lm", epsilon=1.0, interval=1, seq_len=8, batch_size=2, show_progress=False)
    search = OSESearch(
        parent,
        config,
        space=space,
        train_dataset=lm_texts[:4],
        tokenizer=tr.AutoTokenizer.from_pretrained(minilm_path),
    )
    original = search.objective.loss

    def spy(student, head, batch, target):
        seen.append((next(student.parameters()).device, next(student.parameters()).dtype, batch["input_ids"].device))
        return original(student, head, batch, target)

    monkeypatch.setattr(search.objective, "loss", spy)
    search.run()
    assert search.device == state.device and seen
    assert all(entry == (state.device, torch.float64, state.device) for entry in seen)


@pytest.mark.parametrize("name", list(FAMILY_CONFIGS))
def test_distill_search_runs_on_every_family(name, minilm_path, lm_texts):
    """The default objective (hidden-state distillation) on every family's base model, 2 candidates."""
    from hf_bort.ose import OSEConfig, OSESearch

    torch.manual_seed(0)
    config = _config(name)
    config.vocab_size = 30522  # the MiniLM tokenizer's ids
    parent = tr.AutoModel.from_config(config).eval()
    base = SearchSpace.from_config(parent.config, step=8)
    smaller = Architecture(1, 2, 16, 16)
    space = SearchSpace.from_architectures(base, [smaller, base.parent_architecture])
    args = OSEConfig(epsilon=1.0, interval=2, seq_len=16, batch_size=4, importance="group-taylor", show_progress=False)
    tokenizer = tr.AutoTokenizer.from_pretrained(minilm_path)
    result = OSESearch(parent, args, space=space, train_dataset=lm_texts[:8], tokenizer=tokenizer).run()
    own, small = result.record(base.parent_architecture).error, result.record(smaller).error
    assert own < 1e-3 and small > 10 * own, (own, small)  # the parent's own architecture is an exact copy
