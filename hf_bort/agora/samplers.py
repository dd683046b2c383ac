"""Samplers: new rows near a given one, in a representation space. Agora calls them on its dev errors.

A sampler either perturbs single strings (`AgoraSampler.perturb`: token edits, or a user callable), which
`sample_near` applies to whole examples, handling sentence pairs and dropping variants equal to their source or to
each other; or it picks whole rows itself (`AgoraSampler.sample`: the pool samplers of `hf_bort.agora.pool`, which
return real unlabelled text nearest to each error).

Token samplers can keep only variants whose sentence representation (the mean-pooled last hidden state of an
`encoder`) has a cosine similarity to the source's within `[min_similarity, max_similarity]`: near, but not a
copy. The `contextual` sampler is the masked-LM sampler with that band always on. Samplers are looked up by name
in `SAMPLERS`; add one there (a class with a `from_agora` constructor) to make it available to `AgoraArguments`.
"""

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn
from transformers import AutoModel, AutoModelForMaskedLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from ..errors import load_checkpoint


def row_key(row: tuple[str, ...]) -> tuple[str, ...]:
    """A row as compared for overlap: lower case, whitespace collapsed (a leak survives neither)."""
    return tuple(" ".join(text.lower().split()) for text in row)


class AgoraSampler:
    """Base class of the pluggable samplers: implement `perturb` (variants of a text) or `sample` (whole rows)."""

    # False: the rows do not depend on the errors given (active-learning baselines): no source, no agreement
    targeted = True

    @classmethod
    def from_agora(
        cls, student: nn.Module, student_tokenizer: PreTrainedTokenizerBase, **kwargs: Any
    ) -> "AgoraSampler":
        """Build from `AgoraArguments` (sampler kwargs merged in) and the student's model and tokenizer."""
        return cls(**kwargs)

    def prepare(
        self,
        *,
        text_columns: tuple[str, ...],
        known_rows: set[tuple[str, ...]],
        held_out_rows: set[tuple[str, ...]],
        min_rows: int,
    ) -> None:
        """Called once by `AgoraTrainer` before training with the task's text columns, the `row_key`s of the rows it
        has (train, dev, selection) and of those it must never train on (`agora_held_out_dataset`), and the fewest
        rows an expansion may ask for. Text samplers need none of it."""

    def sample(
        self,
        examples: list[tuple[str, ...]],
        num_samples: int,
        generator: torch.Generator,
        pair_perturbation: str = "both",
        exclude: set[tuple[str, ...]] | None = None,
    ) -> list[list[tuple[str, ...]]]:
        """Up to `num_samples` new rows near each example (a tuple of its text columns), nearest first; rows in
        `exclude` (the current training set) are not wanted. By default, `perturb`'s variants via `sample_near`."""
        return sample_near(self, examples, num_samples, generator, pair_perturbation)

    def perturb(self, texts: list[str], num_samples: int, generator: torch.Generator) -> list[list[str]]:
        """Return, for each text, up to `num_samples` variants of it (fewer, or none, is allowed)."""
        raise NotImplementedError(
            f"{type(self).__name__} implements neither perturb(texts, num_samples, generator) nor sample(examples, "
            "num_samples, generator, ...): an AgoraSampler needs one of them."
        )


class CallableSampler(AgoraSampler):
    """Wraps a user function `fn(text, num_samples) -> list[str]`."""

    def __init__(self, fn: Callable[[str, int], Sequence[str]]):
        self.fn = fn

    def perturb(self, texts: list[str], num_samples: int, generator: torch.Generator) -> list[list[str]]:
        out = []
        for text in texts:
            variants = self.fn(text, num_samples)
            if isinstance(variants, str) or not all(isinstance(v, str) for v in variants):
                raise TypeError(f"A sampler callable must return a list of strings, got {variants!r} for {text!r}.")
            out.append(list(variants)[:num_samples])
        return out


class _TokenSampler(AgoraSampler, ABC):
    """Replaces a random `replace_fraction` of the non-special tokens of each text; subclasses pick the fills.

    With an `encoder` (a model or path; `encoder_tokenizer` defaults to its own or the sampler's), `oversample`
    times as many candidates are drawn and only those whose mean-pooled representation lies within the cosine
    band `[min_similarity, max_similarity]` of the source's are kept; `band_rejected` counts the others.
    """

    def __init__(
        self,
        tokenizer: PreTrainedTokenizerBase,
        replace_fraction: float,
        num_neighbours: int,
        max_length: int,
        encoder: str | nn.Module | None = None,
        encoder_tokenizer: PreTrainedTokenizerBase | None = None,
        min_similarity: float = -1.0,
        max_similarity: float = 1.0,
        oversample: int = 3,
    ):
        if not 0 < replace_fraction <= 1:
            raise ValueError(f"replace_fraction must be in (0, 1], got {replace_fraction}.")
        if not -1 <= min_similarity <= max_similarity <= 1:
            raise ValueError(
                f"The similarity band [{min_similarity}, {max_similarity}] must satisfy -1 <= min <= max <= 1."
            )
        if oversample < 1:
            raise ValueError(f"oversample must be >= 1, got {oversample}.")
        self.tokenizer = tokenizer
        self.replace_fraction = replace_fraction
        self.num_neighbours = num_neighbours
        self.max_length = max_length
        self.special_ids = set(tokenizer.all_special_ids)
        if isinstance(encoder, str):
            encoder_path, encoder = encoder, load_checkpoint(AutoModel, encoder, "sampler encoder")
            encoder_tokenizer = encoder_tokenizer or AutoTokenizer.from_pretrained(encoder_path)
        self.encoder = encoder.eval() if encoder is not None else None
        self.encoder_tokenizer = encoder_tokenizer or tokenizer
        self.min_similarity = min_similarity
        self.max_similarity = max_similarity
        self.oversample = oversample
        self.band_rejected = 0

    def perturb(self, texts: list[str], num_samples: int, generator: torch.Generator) -> list[list[str]]:
        draws = num_samples * self.oversample if self.encoder is not None else num_samples
        found = [
            [self.tokenizer.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=True) for ids in found]
            for found in self.perturb_ids(texts, draws, generator)
        ]
        if self.encoder is None:
            return found
        out = []
        for text, variants in zip(texts, found):
            unique = list(dict.fromkeys(v for v in variants if v != text))
            similarity = self.similarity([text] * len(unique), unique).tolist() if unique else []
            kept = [v for v, s in zip(unique, similarity) if self.min_similarity <= s <= self.max_similarity]
            self.band_rejected += len(unique) - len(kept)
            out.append(kept[:num_samples])
        return out

    @torch.no_grad()
    def embed(self, texts: list[str]) -> torch.Tensor:
        """Mean-pooled last hidden state of the encoder (its sentence representation), one row per text."""
        if self.encoder is None:
            raise ValueError("This sampler has no encoder: pass encoder= to measure sentence similarity.")
        device = next(self.encoder.parameters()).device
        rows = []
        for start in range(0, len(texts), 64):
            encoded = self.encoder_tokenizer(
                texts[start : start + 64],
                truncation=True,
                max_length=self.max_length,
                padding=True,
                return_tensors="pt",
            ).to(device)
            hidden = self.encoder(**encoded, output_hidden_states=True).hidden_states[-1].float()
            mask = encoded["attention_mask"].unsqueeze(-1).float()
            rows.append(((hidden * mask).sum(1) / mask.sum(1)).cpu())
        return torch.cat(rows)

    def similarity(self, sources: list[str], variants: list[str]) -> torch.Tensor:
        """Cosine similarity of each variant's sentence representation to its source's."""
        embedded = self.embed(list(sources) + list(variants))
        return nn.functional.cosine_similarity(embedded[: len(sources)], embedded[len(sources) :], dim=-1)

    def perturb_ids(self, texts: list[str], num_samples: int, generator: torch.Generator) -> list[list[list[int]]]:
        """Token ids (special tokens included) of each variant; `perturb` decodes them."""
        encoded = self.tokenizer(texts, truncation=True, max_length=self.max_length, return_special_tokens_mask=True)
        jobs = []  # (text index, token ids with special tokens, positions to replace)
        for i, (ids, special) in enumerate(zip(encoded["input_ids"], encoded["special_tokens_mask"])):
            candidates = [p for p, (t, s) in enumerate(zip(ids, special)) if not s and t not in self.special_ids]
            if not candidates:
                continue
            count = max(1, round(self.replace_fraction * len(candidates)))
            for _ in range(num_samples):
                order = torch.randperm(len(candidates), generator=generator)[:count]
                jobs.append((i, ids, sorted(candidates[p] for p in order.tolist())))
        fills = self._fill(jobs, generator) if jobs else []
        out: list[list[list[int]]] = [[] for _ in texts]
        for (i, ids, positions), new_tokens in zip(jobs, fills):
            new_ids = list(ids)
            for p, t in zip(positions, new_tokens):
                new_ids[p] = t
            out[i].append(new_ids)
        return out

    @abstractmethod
    def _fill(self, jobs: list[tuple[int, list[int], list[int]]], generator: torch.Generator) -> list[list[int]]:
        """New token ids for the positions of each job."""

    def _allowed(self, size: int, device: torch.device) -> torch.Tensor:
        """Mask of the ids a fill may use: real vocabulary entries that are not special tokens."""
        allowed = torch.zeros(size, dtype=torch.bool, device=device)
        allowed[: min(size, len(self.tokenizer))] = True
        allowed[[i for i in self.special_ids if i < size]] = False
        return allowed


class EmbeddingNeighbourSampler(_TokenSampler):
    """Replaces tokens by one of their `num_neighbours` nearest (cosine) neighbours in an input-embedding space.

    `embeddings` is a model (its current `get_input_embeddings()` is read at every call, so the space follows
    training) or a fixed `[vocab, dim]` tensor; it must use `tokenizer`'s vocabulary.
    """

    def __init__(
        self,
        embeddings: nn.Module | torch.Tensor,
        tokenizer: PreTrainedTokenizerBase,
        replace_fraction: float = 0.15,
        num_neighbours: int = 10,
        max_length: int = 128,
        chunk_size: int = 1024,
        **band: Any,
    ):
        super().__init__(tokenizer, replace_fraction, num_neighbours, max_length, **band)
        self.embeddings = embeddings
        self.chunk_size = chunk_size

    @classmethod
    def from_agora(
        cls, student: nn.Module, student_tokenizer: PreTrainedTokenizerBase, **kwargs: Any
    ) -> "AgoraSampler":
        """The student's own (current) embeddings and tokenizer unless `embeddings=`/`tokenizer=` are given."""
        return cls(kwargs.pop("embeddings", student), kwargs.pop("tokenizer", student_tokenizer), **kwargs)

    def _matrix(self) -> torch.Tensor:
        if isinstance(self.embeddings, torch.Tensor):
            return self.embeddings
        return self.embeddings.get_input_embeddings().weight

    @torch.no_grad()
    def neighbours(self, token_ids: torch.Tensor) -> torch.Tensor:
        """`[len(token_ids), num_neighbours]` nearest allowed ids of each token, itself excluded."""
        weight = self._matrix().detach().float()
        normed = nn.functional.normalize(weight, dim=-1)
        allowed = self._allowed(weight.shape[0], weight.device)
        token_ids = token_ids.to(weight.device)
        result = []
        for chunk in token_ids.split(self.chunk_size):
            sims = normed[chunk] @ normed.T
            sims[:, ~allowed] = float("-inf")
            sims[torch.arange(len(chunk)), chunk] = float("-inf")
            result.append(sims.topk(self.num_neighbours, dim=-1).indices)
        return torch.cat(result).cpu()

    def _fill(self, jobs, generator):
        unique = sorted({ids[p] for _, ids, positions in jobs for p in positions})
        table = dict(zip(unique, self.neighbours(torch.tensor(unique)).tolist()))
        fills = []
        for _, ids, positions in jobs:
            picks = torch.randint(self.num_neighbours, (len(positions),), generator=generator).tolist()
            fills.append([table[ids[p]][k] for p, k in zip(positions, picks)])
        return fills


class MaskedLMSampler(_TokenSampler):
    """Masks tokens and fills each with one of the masked LM's `num_neighbours` most likely tokens.

    `model` is any `AutoModelForMaskedLM` (instance or path); its own tokenizer is used.
    """

    registry_name = "masked_lm"

    def __init__(
        self,
        model: str | PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase | None = None,
        replace_fraction: float = 0.15,
        num_neighbours: int = 10,
        max_length: int = 128,
        batch_size: int = 64,
        device: str | torch.device | None = None,
        **band: Any,
    ):
        if isinstance(model, str):
            path, model = model, load_checkpoint(AutoModelForMaskedLM, model, "sampler masked LM")
            tokenizer = tokenizer or AutoTokenizer.from_pretrained(path)
        if tokenizer is None:
            raise ValueError("MaskedLMSampler needs the masked LM's tokenizer when given a model instance.")
        if tokenizer.mask_token_id is None:
            raise ValueError(f"The tokenizer {type(tokenizer).__name__} has no mask token; it cannot fill masks.")
        super().__init__(tokenizer, replace_fraction, num_neighbours, max_length, **band)
        self.model = model.eval() if device is None else model.to(device).eval()
        self.batch_size = batch_size

    @classmethod
    def from_agora(
        cls, student: nn.Module, student_tokenizer: PreTrainedTokenizerBase, **kwargs: Any
    ) -> "AgoraSampler":
        """A masked LM of its own (`model=` in `agora_sampler_kwargs`); the student's tokenizer is not used."""
        if "model" not in kwargs:
            raise ValueError(
                f"The {cls.registry_name!r} sampler needs a masked LM: agora_sampler_kwargs={{'model': 'path/or/id'}}."
            )
        return cls(**kwargs)

    @torch.no_grad()
    def _fill(self, jobs, generator):
        device = next(self.model.parameters()).device
        fills = []
        for start in range(0, len(jobs), self.batch_size):
            batch = jobs[start : start + self.batch_size]
            masked = []
            for _, ids, positions in batch:
                ids = list(ids)
                for p in positions:
                    ids[p] = self.tokenizer.mask_token_id
                masked.append(ids)
            padded = self.tokenizer.pad({"input_ids": masked}, padding_side="right", return_tensors="pt").to(device)
            logits = self.model(**padded).logits.float()
            allowed = self._allowed(logits.shape[-1], logits.device)
            for row, (_, ids, positions) in enumerate(batch):
                scores = logits[row, positions]
                scores[:, ~allowed] = float("-inf")
                scores[torch.arange(len(positions)), torch.tensor([ids[p] for p in positions])] = float("-inf")
                top = scores.topk(self.num_neighbours, dim=-1)
                probs = top.values.softmax(-1).cpu()
                picks = torch.multinomial(probs, 1, generator=generator).squeeze(-1)
                fills.append(top.indices.cpu().gather(1, picks[:, None]).squeeze(-1).tolist())
        return fills


class ContextualSampler(MaskedLMSampler):
    """Masked-LM fills kept only when the variant's sentence representation stays in a cosine band of the source's.

    The band (default [0.85, 0.98]) rejects fills that change the meaning (too distinct) and near copies (too
    similar). `encoder` (default: the masked LM itself) gives the representation: the mean-pooled last hidden
    state, e.g. a sentence-transformers encoder such as all-MiniLM-L6-v2. Duplicates are dropped.
    """

    registry_name = "contextual"

    def __init__(
        self,
        model: str | PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase | None = None,
        encoder: str | nn.Module | None = None,
        min_similarity: float = 0.85,
        max_similarity: float = 0.98,
        **kwargs: Any,
    ):
        super().__init__(model, tokenizer, min_similarity=min_similarity, max_similarity=max_similarity, **kwargs)
        if encoder is None:
            self.encoder, self.encoder_tokenizer = self.model, self.tokenizer
        elif isinstance(encoder, str):
            self.encoder = load_checkpoint(AutoModel, encoder, "sampler encoder").eval()
            self.encoder_tokenizer = kwargs.get("encoder_tokenizer") or AutoTokenizer.from_pretrained(encoder)
        else:
            self.encoder = encoder.eval()


SAMPLERS: dict[str, type[AgoraSampler]] = {
    "embedding_neighbours": EmbeddingNeighbourSampler,
    "masked_lm": MaskedLMSampler,
    "contextual": ContextualSampler,
}


def build_sampler(
    sampler: str | AgoraSampler | Callable[[str, int], Sequence[str]],
    *,
    student: nn.Module,
    student_tokenizer: PreTrainedTokenizerBase,
    replace_fraction: float,
    num_neighbours: int,
    max_length: int,
    **kwargs: Any,
) -> AgoraSampler:
    """Turn a sampler name (looked up in `SAMPLERS`, built by its `from_agora`), instance or callable into a sampler."""
    if isinstance(sampler, AgoraSampler):
        return sampler
    if callable(sampler):
        return CallableSampler(sampler)
    if sampler not in SAMPLERS:
        raise ValueError(f"Unknown Agora sampler {sampler!r}; choose one of {list(SAMPLERS)}, or pass a callable.")
    if "pool" in kwargs and not getattr(SAMPLERS[sampler], "uses_pool", False):
        pools = [name for name, cls in SAMPLERS.items() if getattr(cls, "uses_pool", False)]
        raise ValueError(f"An Agora pool is given but the {sampler!r} sampler uses none; choose one of {pools}.")
    common = {"replace_fraction": replace_fraction, "num_neighbours": num_neighbours, "max_length": max_length}
    try:
        return SAMPLERS[sampler].from_agora(student, student_tokenizer, **common, **kwargs)
    except TypeError as error:  # an unknown keyword in agora_sampler_kwargs
        raise ValueError(f"agora_sampler_kwargs do not fit the {sampler!r} sampler: {error}.") from None


def sample_near(
    sampler: AgoraSampler,
    examples: list[tuple[str, ...]],
    num_samples: int,
    generator: torch.Generator,
    pair_perturbation: str = "both",
) -> list[list[tuple[str, ...]]]:
    """Variants of each example (a tuple of its text columns), without duplicates or copies of the source.

    For pairs, `pair_perturbation` says which side changes: 'first', 'second', 'both', or 'either' (a random side
    per variant).
    """
    width = len(examples[0]) if examples else 1
    sides = {"first": [0], "second": [1], "both": [0, 1], "either": [0, 1]}[pair_perturbation] if width == 2 else [0]
    variants = {
        side: sampler.perturb([example[side] for example in examples], num_samples, generator) for side in sides
    }
    results = []
    for i, example in enumerate(examples):
        seen = {example}
        kept = []
        for j in range(num_samples):
            changed = sides
            if pair_perturbation == "either" and width == 2:
                changed = [int(torch.randint(2, (1,), generator=generator))]
            new = list(example)
            for side in changed:
                if j < len(variants[side][i]):
                    new[side] = variants[side][i][j]
            new = tuple(new)
            if new not in seen:
                seen.add(new)
                kept.append(new)
        results.append(kept)
    return results


__all__ = [
    "SAMPLERS",
    "AgoraSampler",
    "CallableSampler",
    "ContextualSampler",
    "EmbeddingNeighbourSampler",
    "MaskedLMSampler",
    "build_sampler",
    "sample_near",
]
