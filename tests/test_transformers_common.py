"""transformers' own common model tests (`ModelTesterMixin`, `ConfigTester`) run on Bort, uniform and heterogeneous.

The tests come from the PyPI sdist of the installed transformers (`make transformers-tests` extracts its `tests/`
into the ignored `.transformers-tests/`). The tester follows transformers' `BertModelTester`, without token types.
"""

import importlib.metadata
import os
import sys
import types
import unittest
from pathlib import Path

import pytest
import torch

from hf_bort import (
    BortConfig,
    BortForMaskedLM,
    BortForMultipleChoice,
    BortForQuestionAnswering,
    BortForSequenceClassification,
    BortForTokenClassification,
    BortModel,
)


# Where `make transformers-tests` extracts them; HF_BORT_TRANSFORMERS_TESTS points elsewhere (e.g. one shared copy).
TESTS_ROOT = Path(
    os.environ.get("HF_BORT_TRANSFORMERS_TESTS", Path(__file__).resolve().parents[1] / ".transformers-tests")
)
FETCH = "make transformers-tests (or: python tests/scripts/fetch_transformers_tests.py)"

# PreTrainedConfig's own settings, each set to a non-default value: ConfigTester checks that Bort's config keeps them.
CONFIG_COMMON_KWARGS = {
    "return_dict": False,
    "output_hidden_states": True,
    "output_attentions": True,
    "dtype": "float16",
    "chunk_size_feed_forward": 5,
    "architectures": ["BortModel"],
    "id2label": {0: "label"},
    "label2id": {"label": 0},
    "problem_type": "regression",
}

# The sdist ships tests/*.py but none of its subfolders, from which test_modeling_common imports two mixins and
# test_configuration_common one dict: the export tests (torch.export, ONNX, ExecuTorch backends, 130k characters of
# their own) and the `generate` tests, which an encoder that cannot generate has no use for, run as empty mixins, and
# the common config kwargs are the ones above.
STAND_INS = {
    "transformers_tests.exporters.test_export": {"ExportTesterMixin": type("ExportTesterMixin", (), {})},
    "transformers_tests.generation.test_utils": {"GenerationTesterMixin": type("GenerationTesterMixin", (), {})},
    "transformers_tests.utils.test_configuration_utils": {"config_common_kwargs": CONFIG_COMMON_KWARGS},
}


def _import_common_tests():
    """transformers' test modules from the extracted sdist. A missing or stale extraction fails this module with the
    command that fetches it (never a skip: CI must run these tests)."""
    version = importlib.metadata.version("transformers")
    stamp = TESTS_ROOT / "VERSION"
    found = stamp.read_text().strip() if stamp.is_file() else None
    if found != version:
        held = f"it holds those of transformers {found}" if found else "nothing was fetched there"
        pytest.fail(
            f"transformers' common model tests for the installed transformers {version} are not in {TESTS_ROOT} "
            f"({held}). Fetch them with: {FETCH}",
            pytrace=False,
        )
    sys.path.insert(0, str(TESTS_ROOT))
    for name, attributes in STAND_INS.items():
        if not (TESTS_ROOT / (name.replace(".", "/") + ".py")).is_file():
            sys.modules[name] = types.ModuleType(name)
            sys.modules[name].__dict__.update(attributes)
    from transformers_tests import test_configuration_common, test_modeling_common

    return test_modeling_common, test_configuration_common


common, config_common = _import_common_tests()
ModelTesterMixin, ConfigTester = common.ModelTesterMixin, config_common.ConfigTester
ids_tensor, random_attention_mask = common.ids_tensor, common.random_attention_mask
torch_device = common.torch_device

# The mixin tells base models, heads and their labels apart by transformers' own name tables, which list in-tree models
# only (Bort registers with the Auto classes at run time). Its module's copies of them list Bort too.
for table, model_class in {
    "MODEL_MAPPING_NAMES": BortModel,
    "MODEL_FOR_MASKED_LM_MAPPING_NAMES": BortForMaskedLM,
    "MODEL_FOR_MULTIPLE_CHOICE_MAPPING_NAMES": BortForMultipleChoice,
    "MODEL_FOR_QUESTION_ANSWERING_MAPPING_NAMES": BortForQuestionAnswering,
    "MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES": BortForSequenceClassification,
    "MODEL_FOR_TOKEN_CLASSIFICATION_MAPPING_NAMES": BortForTokenClassification,
}.items():
    setattr(common, table, {**getattr(common, table), "bort": model_class.__name__})


# A pruned student in two layers: layer 0 keeps 2 of 4 heads and 20 of 37 FFN neurons, layer 1 has 6 heads (wider
# attention than the residual stream) and no FFN.
HETEROGENEOUS_LAYERS = {
    0: {"num_attention_heads": 2, "intermediate_size": 20},
    1: {"num_attention_heads": 6, "skip": ["mlp"]},
}


class BortModelTester:
    """Tiny Bort configs and inputs for the common tests, after transformers' `BertModelTester` (no token types)."""

    def __init__(
        self,
        parent,
        batch_size=13,
        seq_length=7,
        is_training=True,
        use_input_mask=True,
        use_labels=True,
        vocab_size=99,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=37,
        hidden_act="gelu",
        hidden_dropout_prob=0.1,
        attention_probs_dropout_prob=0.1,
        max_position_embeddings=512,
        type_sequence_label_size=2,
        initializer_range=0.02,
        num_labels=3,
        num_choices=4,
        per_layer_config=None,
    ):
        self.parent = parent
        self.batch_size = batch_size
        self.seq_length = seq_length
        self.is_training = is_training
        self.use_input_mask = use_input_mask
        self.use_labels = use_labels
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.num_hidden_layers = num_hidden_layers
        self.num_attention_heads = num_attention_heads
        self.intermediate_size = intermediate_size
        self.hidden_act = hidden_act
        self.hidden_dropout_prob = hidden_dropout_prob
        self.attention_probs_dropout_prob = attention_probs_dropout_prob
        self.max_position_embeddings = max_position_embeddings
        self.type_sequence_label_size = type_sequence_label_size
        self.initializer_range = initializer_range
        self.num_labels = num_labels
        self.num_choices = num_choices
        self.per_layer_config = per_layer_config

    def get_config(self):
        return BortConfig(
            vocab_size=self.vocab_size,
            hidden_size=self.hidden_size,
            num_hidden_layers=self.num_hidden_layers,
            num_attention_heads=self.num_attention_heads,
            intermediate_size=self.intermediate_size,
            hidden_act=self.hidden_act,
            hidden_dropout_prob=self.hidden_dropout_prob,
            attention_probs_dropout_prob=self.attention_probs_dropout_prob,
            max_position_embeddings=self.max_position_embeddings,
            initializer_range=self.initializer_range,
            per_layer_config=self.per_layer_config,
        )

    def prepare_config_and_inputs(self):
        input_ids = ids_tensor([self.batch_size, self.seq_length], self.vocab_size)
        input_mask = random_attention_mask([self.batch_size, self.seq_length]) if self.use_input_mask else None
        sequence_labels = token_labels = choice_labels = None
        if self.use_labels:
            sequence_labels = ids_tensor([self.batch_size], self.type_sequence_label_size)
            token_labels = ids_tensor([self.batch_size, self.seq_length], self.num_labels)
            choice_labels = ids_tensor([self.batch_size], self.num_choices)
        return self.get_config(), input_ids, input_mask, sequence_labels, token_labels, choice_labels

    def prepare_config_and_inputs_for_common(self):
        config, input_ids, input_mask, *_ = self.prepare_config_and_inputs()
        return config, {"input_ids": input_ids, "attention_mask": input_mask}

    def _model(self, model_class, config):
        return model_class(config).to(torch_device).eval()

    def create_and_check_model(self, config, input_ids, input_mask, *labels):
        model = self._model(BortModel, config)
        with_mask = model(input_ids, attention_mask=input_mask)
        result = model(input_ids)
        expected = (self.batch_size, self.seq_length, self.hidden_size)
        self.parent.assertEqual(with_mask.last_hidden_state.shape, expected)
        self.parent.assertEqual(result.last_hidden_state.shape, expected)

    def create_and_check_for_masked_lm(self, config, input_ids, input_mask, sequence_labels, token_labels, _):
        model = self._model(BortForMaskedLM, config)
        result = model(input_ids, attention_mask=input_mask, labels=token_labels)
        self.parent.assertEqual(result.logits.shape, (self.batch_size, self.seq_length, self.vocab_size))
        self.parent.assertTrue(torch.isfinite(result.loss))

    def create_and_check_for_question_answering(self, config, input_ids, input_mask, sequence_labels, *_):
        model = self._model(BortForQuestionAnswering, config)
        result = model(
            input_ids, attention_mask=input_mask, start_positions=sequence_labels, end_positions=sequence_labels
        )
        self.parent.assertEqual(result.start_logits.shape, (self.batch_size, self.seq_length))
        self.parent.assertEqual(result.end_logits.shape, (self.batch_size, self.seq_length))

    def create_and_check_for_sequence_classification(self, config, input_ids, input_mask, sequence_labels, *_):
        config.num_labels = self.num_labels
        model = self._model(BortForSequenceClassification, config)
        result = model(input_ids, attention_mask=input_mask, labels=sequence_labels)
        self.parent.assertEqual(result.logits.shape, (self.batch_size, self.num_labels))

    def create_and_check_for_token_classification(self, config, input_ids, input_mask, _, token_labels, __):
        config.num_labels = self.num_labels
        model = self._model(BortForTokenClassification, config)
        result = model(input_ids, attention_mask=input_mask, labels=token_labels)
        self.parent.assertEqual(result.logits.shape, (self.batch_size, self.seq_length, self.num_labels))

    def create_and_check_for_multiple_choice(self, config, input_ids, input_mask, *labels):
        model = self._model(BortForMultipleChoice, config)

        def choices(tensor):
            return tensor.unsqueeze(1).expand(-1, self.num_choices, -1).contiguous()

        result = model(choices(input_ids), attention_mask=choices(input_mask), labels=labels[-1])
        self.parent.assertEqual(result.logits.shape, (self.batch_size, self.num_choices))


class BortModelTest(ModelTesterMixin, unittest.TestCase):
    all_model_classes = (
        BortModel,
        BortForMaskedLM,
        BortForMultipleChoice,
        BortForQuestionAnswering,
        BortForSequenceClassification,
        BortForTokenClassification,
    )
    per_layer_config = None

    def setUp(self):
        self.model_tester = BortModelTester(self, per_layer_config=self.per_layer_config)
        # hidden 37 (as BERT's test) needs an explicit head_dim; per_layer_config as config.json stores it (str keys)
        per_layer = {str(k): v for k, v in (self.per_layer_config or {}).items()}
        self.config_tester = ConfigTester(
            self,
            config_class=BortConfig,
            hidden_size=37,
            head_dim=8,
            **({"per_layer_config": per_layer} if per_layer else {}),
        )

    def test_config(self):
        self.config_tester.run_common_tests()

    def test_model(self):
        self.model_tester.create_and_check_model(*self.model_tester.prepare_config_and_inputs())

    def test_for_masked_lm(self):
        self.model_tester.create_and_check_for_masked_lm(*self.model_tester.prepare_config_and_inputs())

    def test_for_multiple_choice(self):
        self.model_tester.create_and_check_for_multiple_choice(*self.model_tester.prepare_config_and_inputs())

    def test_for_question_answering(self):
        self.model_tester.create_and_check_for_question_answering(*self.model_tester.prepare_config_and_inputs())

    def test_for_sequence_classification(self):
        self.model_tester.create_and_check_for_sequence_classification(*self.model_tester.prepare_config_and_inputs())

    def test_for_token_classification(self):
        self.model_tester.create_and_check_for_token_classification(*self.model_tester.prepare_config_and_inputs())


class HeterogeneousBortModelTest(BortModelTest):
    """The same common tests on a pruned student whose layers differ (`HETEROGENEOUS_LAYERS`)."""

    per_layer_config = HETEROGENEOUS_LAYERS

    def setUp(self):
        super().setUp()
        # num_attention_heads is per layer here, and transformers refuses to read it from the global config.
        self.config_tester.common_properties = ["hidden_size", "num_hidden_layers"]

    def test_the_common_tests_build_the_uneven_student(self):
        """Guards the form itself: the models the mixin builds from the tester's config have the per-layer sizes."""
        first, second = BortModel(self.model_tester.get_config()).encoder.layer
        self.assertEqual((first.attention.self.num_attention_heads, first.intermediate.dense.out_features), (2, 20))
        self.assertEqual(
            (second.attention.self.num_attention_heads, second.intermediate, second.output), (6, None, None)
        )

    def test_attention_outputs(self):
        """The common test checks the first layer's attentions against the tester's one head count: it runs with
        layer 0's, and then every layer's attentions are checked against that layer's own head count."""
        config, _ = self.model_tester.prepare_config_and_inputs_for_common()
        heads = [layer.num_attention_heads for layer in config.per_layer_config]
        self.model_tester.num_attention_heads = heads[0]
        super().test_attention_outputs()
        config, inputs_dict = self.model_tester.prepare_config_and_inputs_for_common()
        for model_class in self.all_model_classes:
            model = model_class._from_config(config, attn_implementation="eager").to(torch_device).eval()
            with torch.no_grad():
                attentions = model(
                    **self._prepare_for_class(inputs_dict, model_class), output_attentions=True
                ).attentions
            length = self.model_tester.seq_length
            self.assertEqual([tuple(a.shape[-3:]) for a in attentions], [(h, length, length) for h in heads])
