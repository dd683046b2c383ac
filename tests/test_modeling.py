"""Bort's model family: parity with transformers' BERT, every head, save/load, bad input."""

import pytest
import torch
from safetensors.torch import load_file
from transformers import (
    AutoModel,
    AutoModelForMaskedLM,
    AutoModelForMultipleChoice,
    AutoModelForQuestionAnswering,
    AutoModelForSequenceClassification,
    AutoModelForTokenClassification,
    BertConfig,
    BertForMaskedLM,
)

from hf_bort import (
    BortForMaskedLM,
    BortForMultipleChoice,
    BortForQuestionAnswering,
    BortForSequenceClassification,
    BortForTokenClassification,
    BortModel,
    convert_bert_checkpoint,
)


HEADS = {
    AutoModel: BortModel,
    AutoModelForMaskedLM: BortForMaskedLM,
    AutoModelForSequenceClassification: BortForSequenceClassification,
    AutoModelForMultipleChoice: BortForMultipleChoice,
    AutoModelForTokenClassification: BortForTokenClassification,
    AutoModelForQuestionAnswering: BortForQuestionAnswering,
}


def padded_batch(vocab_size: int, batch: int = 3, length: int = 10, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(3, vocab_size, (batch, length), generator=generator)
    attention_mask = torch.ones(batch, length, dtype=torch.long)
    attention_mask[1, length // 2 :] = 0
    if batch > 2:
        attention_mask[2, 3:] = 0
    input_ids[attention_mask == 0] = 1
    return input_ids, attention_mask


def reference_bert(seed: int = 0) -> BertForMaskedLM:
    """A tiny BERT in amazon/bort's layout: one token type, pad id 1."""
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=99,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=37,
        type_vocab_size=1,
        pad_token_id=1,
        layer_norm_eps=1e-5,
        max_position_embeddings=64,
    )
    bert = BertForMaskedLM(config).eval()
    with torch.no_grad():  # a non-zero token-type row, so folding it into the positions is really tested
        bert.bert.embeddings.token_type_embeddings.weight.normal_(0, 0.5)
    return bert


@pytest.mark.parametrize("attn_implementation", ["sdpa", "eager"])
def test_hidden_states_match_transformers_bert(attn_implementation):
    bert = reference_bert()
    with pytest.warns(UserWarning, match="never trained"):
        bort = convert_bert_checkpoint(bert).eval()
    bert.set_attn_implementation(attn_implementation)
    bort.set_attn_implementation(attn_implementation)
    input_ids, attention_mask = padded_batch(99)
    with torch.no_grad():
        expected = bert(input_ids, attention_mask=attention_mask, output_hidden_states=True)
        actual = bort(input_ids, attention_mask=attention_mask, output_hidden_states=True)
    assert len(actual.hidden_states) == len(expected.hidden_states) == 3
    for ours, theirs in zip(actual.hidden_states, expected.hidden_states):
        assert (ours - theirs).abs().max().item() <= 1e-5
    assert (actual.logits - expected.logits).abs().max().item() <= 1e-5


def test_sdpa_and_eager_agree_and_padding_does_not_leak(tiny_bort_config):
    torch.manual_seed(0)
    model = BortModel(tiny_bort_config).eval()
    input_ids, attention_mask = padded_batch(tiny_bort_config.vocab_size)
    with torch.no_grad():
        model.set_attn_implementation("sdpa")
        sdpa = model(input_ids, attention_mask=attention_mask).last_hidden_state
        model.set_attn_implementation("eager")
        eager = model(input_ids, attention_mask=attention_mask).last_hidden_state
        # the unpadded prefix of row 2 alone must give the same states as inside the padded batch
        alone = model(input_ids[2:, :3]).last_hidden_state
    assert (sdpa - eager).abs().max().item() <= 1e-5
    assert (alone[0] - eager[2, :3]).abs().max().item() <= 1e-5


def test_output_attentions_and_hidden_states(tiny_bort_config):
    model = BortModel(tiny_bort_config).eval()
    model.set_attn_implementation("eager")
    input_ids, attention_mask = padded_batch(tiny_bort_config.vocab_size)
    out = model(input_ids, attention_mask=attention_mask, output_attentions=True, output_hidden_states=True)
    assert len(out.attentions) == tiny_bort_config.num_hidden_layers
    assert out.attentions[0].shape == (3, 4, 10, 10)
    # padded keys get no attention weight
    assert out.attentions[0][2, :, :, 3:].abs().max().item() == 0.0
    assert len(out.hidden_states) == tiny_bort_config.num_hidden_layers + 1
    assert torch.equal(out.hidden_states[-1], out.last_hidden_state)


def head_inputs(model_class, config):
    input_ids, attention_mask = padded_batch(config.vocab_size, batch=2, length=8)
    if model_class is BortForMultipleChoice:
        return {
            "input_ids": input_ids.unsqueeze(1).repeat(1, 3, 1),
            "attention_mask": attention_mask.unsqueeze(1).repeat(1, 3, 1),
            "labels": torch.tensor([0, 2]),
        }, (2, 3)
    if model_class is BortForMaskedLM:
        labels = torch.full_like(input_ids, -100)
        labels[:, 1] = input_ids[:, 1]
        return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}, (2, 8, config.vocab_size)
    if model_class is BortForSequenceClassification:
        return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": torch.tensor([0, 1])}, (2, 2)
    if model_class is BortForTokenClassification:
        labels = torch.zeros_like(input_ids)
        labels[attention_mask == 0] = -100
        return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}, (2, 8, 2)
    if model_class is BortForQuestionAnswering:
        return {
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "start_positions": torch.tensor([1, 2]),
            "end_positions": torch.tensor([3, 2]),
        }, (2, 8)
    return {"input_ids": input_ids, "attention_mask": attention_mask}, (2, 8, config.hidden_size)


@pytest.mark.parametrize("auto_class", list(HEADS), ids=lambda c: c.__name__)
def test_every_head_shapes_loss_backward_and_auto_class(auto_class, tiny_bort_config):
    model = auto_class.from_config(tiny_bort_config)
    model_class = HEADS[auto_class]
    assert type(model) is model_class
    inputs, shape = head_inputs(model_class, tiny_bort_config)
    out = model(**inputs)
    if model_class is BortModel:
        assert out.last_hidden_state.shape == shape
        out.last_hidden_state.sum().backward()
    else:
        logits = out.start_logits if model_class is BortForQuestionAnswering else out.logits
        assert logits.shape == shape
        assert out.loss.ndim == 0 and torch.isfinite(out.loss)
        out.loss.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert any(g is not None and g.abs().sum() > 0 for g in grads)


def test_sequence_classification_regression_and_multi_label(tiny_bort_config):
    input_ids, attention_mask = padded_batch(tiny_bort_config.vocab_size, batch=2, length=8)
    tiny_bort_config.num_labels = 1
    regression = BortForSequenceClassification(tiny_bort_config)
    labels = torch.tensor([0.5, 3.0])
    out = regression(input_ids, attention_mask=attention_mask, labels=labels)
    assert regression.config.problem_type == "regression"
    assert torch.allclose(out.loss, torch.nn.functional.mse_loss(out.logits.squeeze(-1), labels))

    tiny_bort_config.num_labels = 3
    tiny_bort_config.problem_type = "multi_label_classification"
    multi = BortForSequenceClassification(tiny_bort_config)
    targets = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    out = multi(input_ids, attention_mask=attention_mask, labels=targets)
    assert torch.allclose(out.loss, torch.nn.functional.binary_cross_entropy_with_logits(out.logits, targets))


def test_mlm_decoder_is_tied_to_input_embeddings(tiny_bort_config):
    model = BortForMaskedLM(tiny_bort_config)
    assert model.lm_head.decoder.weight.data_ptr() == model.bort.embeddings.word_embeddings.weight.data_ptr()


def test_gradient_checkpointing_gives_the_same_gradients(tiny_bort_config):
    torch.manual_seed(0)
    model = BortForSequenceClassification(tiny_bort_config)
    inputs, _ = head_inputs(BortForSequenceClassification, tiny_bort_config)
    model(**inputs).loss.backward()
    plain = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    model.gradient_checkpointing_enable()
    model.train()
    model(**inputs).loss.backward()
    for before, after in zip(plain, (p.grad for p in model.parameters())):
        assert torch.allclose(before, after, atol=1e-6)


@pytest.mark.parametrize("model_class", list(HEADS.values()), ids=lambda c: c.__name__)
def test_save_and_load_round_trip_is_bit_exact(model_class, tiny_bort_config, tmp_path):
    torch.manual_seed(0)
    model = model_class(tiny_bort_config).eval()
    model.save_pretrained(tmp_path)
    saved = load_file(tmp_path / "model.safetensors")
    reloaded = model_class.from_pretrained(tmp_path).eval()
    original_state, reloaded_state = model.state_dict(), reloaded.state_dict()
    assert original_state.keys() == reloaded_state.keys()
    for name, tensor in original_state.items():
        assert torch.equal(tensor, reloaded_state[name]), name
    for name, tensor in saved.items():
        assert torch.equal(tensor, original_state[name]), name
    inputs, _ = head_inputs(model_class, tiny_bort_config)
    inputs = {k: v for k, v in inputs.items() if "label" not in k and "positions" not in k}
    with torch.no_grad():
        first, second = model(**inputs), reloaded(**inputs)
    # weights are bit-identical (above); kernels may pick other vector paths for differently aligned memory
    assert torch.allclose(first[0], second[0], atol=1e-6, rtol=0)


def test_from_pretrained_does_not_reinitialise_loaded_weights(tiny_bort_config, tmp_path):
    torch.manual_seed(0)
    model = BortForSequenceClassification(tiny_bort_config)
    with torch.no_grad():
        model.bort.embeddings.LayerNorm.weight.fill_(3.0)
        model.classifier.dense.bias.fill_(0.25)
    model.save_pretrained(tmp_path)
    reloaded = AutoModelForSequenceClassification.from_pretrained(tmp_path)
    assert torch.all(reloaded.bort.embeddings.LayerNorm.weight == 3.0)
    assert torch.all(reloaded.classifier.dense.bias == 0.25)


def test_fresh_head_on_a_base_checkpoint_is_initialised(tiny_bort_config, tmp_path):
    BortModel(tiny_bort_config).save_pretrained(tmp_path)
    classifier = BortForSequenceClassification.from_pretrained(tmp_path)
    weight = classifier.classifier.out_proj.weight
    assert 0.005 < weight.std().item() < 0.05  # normal(0, initializer_range=0.02), not left empty
    assert torch.all(classifier.classifier.out_proj.bias == 0)


def test_token_ids_outside_the_vocabulary_raise(tiny_bort_config):
    model = BortModel(tiny_bort_config)
    with pytest.raises(ValueError, match="outside \\[0, 99\\).*tokenizer"):
        model(torch.tensor([[5, 99]]))
    with pytest.raises(ValueError, match="outside"):
        model(torch.tensor([[-1, 5]]))


def test_sequences_longer_than_the_position_table_raise(tiny_bort_config):
    model = BortModel(tiny_bort_config)
    with pytest.raises(ValueError, match="max_position_embeddings=64.*[Tt]runcate"):
        model(torch.ones(1, 65, dtype=torch.long))


def test_mismatched_attention_mask_raises(tiny_bort_config):
    model = BortModel(tiny_bort_config)
    with pytest.raises(ValueError, match="attention_mask has shape \\(1, 5\\).*\\(1, 6\\)"):
        model(torch.ones(1, 6, dtype=torch.long), attention_mask=torch.ones(1, 5, dtype=torch.long))


def test_token_type_ids_from_bert_tokenizers_are_accepted_and_ignored(tiny_bort_config):
    model = BortModel(tiny_bort_config).eval()
    input_ids, attention_mask = padded_batch(tiny_bort_config.vocab_size)
    with torch.no_grad():
        plain = model(input_ids, attention_mask=attention_mask).last_hidden_state
        typed = model(input_ids, attention_mask=attention_mask, token_type_ids=torch.zeros_like(input_ids))
    assert torch.equal(plain, typed.last_hidden_state)


def _heterogeneous(config, per_layer):
    return type(config).from_dict({**config.to_dict(), "per_layer_config": per_layer})


def test_per_layer_heads_and_ffn_widths_compute_the_masked_uniform_model(tiny_bort_config):
    """A layer with 2 of 4 heads and 20 of 37 FFN neurons computes what the uniform layer computes with the other
    heads' value rows and the other neurons' output columns zeroed (the reference is built another way: by masks)."""
    torch.manual_seed(0)
    uniform = BortModel(tiny_bort_config).eval()
    pruned = BortModel(_heterogeneous(tiny_bort_config, {1: {"num_attention_heads": 2, "intermediate_size": 20}}))
    heads, neurons = torch.tensor([1, 3]), torch.arange(5, 25)
    rows = (heads[:, None] * 8 + torch.arange(8)).reshape(-1)
    state = uniform.state_dict()
    layer = "encoder.layer.1."
    sliced = dict(state)
    for part in ("query", "key", "value"):
        for suffix in ("weight", "bias"):
            sliced[f"{layer}attention.self.{part}.{suffix}"] = state[f"{layer}attention.self.{part}.{suffix}"][rows]
    sliced[f"{layer}attention.output.dense.weight"] = state[f"{layer}attention.output.dense.weight"][:, rows]
    for suffix in ("weight", "bias"):
        sliced[f"{layer}intermediate.dense.{suffix}"] = state[f"{layer}intermediate.dense.{suffix}"][neurons]
    sliced[f"{layer}output.dense.weight"] = state[f"{layer}output.dense.weight"][:, neurons]
    pruned.load_state_dict(sliced)
    with torch.no_grad():
        value = uniform.encoder.layer[1].attention.self.value
        dropped = torch.ones(32, dtype=torch.bool)
        dropped[rows] = False
        value.weight[dropped] = 0
        value.bias[dropped] = 0
        unused = torch.ones(37, dtype=torch.bool)
        unused[neurons] = False
        uniform.encoder.layer[1].output.dense.weight[:, unused] = 0
    input_ids, attention_mask = padded_batch(tiny_bort_config.vocab_size)
    with torch.no_grad():
        torch.testing.assert_close(
            pruned.eval()(input_ids, attention_mask=attention_mask).last_hidden_state,
            uniform(input_ids, attention_mask=attention_mask).last_hidden_state,
            atol=1e-5,
            rtol=1e-5,
        )


def test_skipped_sublayers_have_no_weights_and_pass_the_hidden_states_through(tiny_bort_config):
    config = _heterogeneous(tiny_bort_config, {0: {"skip": ["attention", "mlp"]}, 1: {"skip": ["mlp"]}})
    model = BortModel(config).eval()
    names = list(model.state_dict())
    assert not any(n.startswith("encoder.layer.0.") for n in names)
    assert not any(n.startswith(("encoder.layer.1.intermediate", "encoder.layer.1.output")) for n in names)
    input_ids, _ = padded_batch(config.vocab_size)
    with torch.no_grad():
        embeddings, after_0, after_1 = model(input_ids, output_hidden_states=True).hidden_states
        attention_only, _ = model.encoder.layer[1].attention(after_0)
    assert torch.equal(after_0, embeddings)  # layer 0 is the identity
    torch.testing.assert_close(after_1, attention_only, atol=1e-5, rtol=1e-5)  # layer 1 is its attention alone


@pytest.mark.parametrize("model_class", list(HEADS.values()), ids=lambda c: c.__name__)
def test_heterogeneous_models_save_and_load_bit_exact(model_class, tiny_bort_config, tmp_path):
    torch.manual_seed(0)
    config = _heterogeneous(tiny_bort_config, {0: {"num_attention_heads": 1, "intermediate_size": 5}})
    model = model_class(config).eval()
    model.save_pretrained(tmp_path)
    reloaded = HEADS_BY_CLASS[model_class].from_pretrained(tmp_path).eval()
    assert type(reloaded) is model_class
    assert reloaded.config.per_layer_config[0].num_attention_heads == 1
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, reloaded.state_dict()[name]), name
    inputs, _ = head_inputs(model_class, config)
    inputs = {k: v for k, v in inputs.items() if "label" not in k and "positions" not in k}
    with torch.no_grad():
        torch.testing.assert_close(model(**inputs)[0], reloaded(**inputs)[0], atol=1e-6, rtol=0)


HEADS_BY_CLASS = {model_class: auto_class for auto_class, model_class in HEADS.items()}


def test_value_checks_never_read_a_tensor_off_the_cpu(tiny_bort_config):
    """Id and position range checks copy values to the host: on an accelerator that would synchronise every forward,
    so they run on CPU tensors only. A meta-device forward (no values at all) shows they are skipped there."""
    model = BortModel(tiny_bort_config).to("meta")
    ids = torch.zeros(2, 5, dtype=torch.long, device="meta")
    out = model(ids, position_ids=torch.arange(5, device="meta")[None])  # no padding mask: transformers reads one back
    assert out.last_hidden_state.shape == (2, 5, 32) and out.last_hidden_state.device.type == "meta"
    with pytest.raises(ValueError, match="outside"):  # on the CPU the same call checks the values
        BortModel(tiny_bort_config)(torch.full((2, 5), 99))
