"""`OSEResult`: every evaluated candidate with its numbers, the Pareto front, the chosen point; save, load, plot."""

from __future__ import annotations

import json
import os
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path

from transformers import AutoConfig, PreTrainedConfig

from ..extras import require
from .space import Architecture


RELEASED_BORT = Architecture(depth=4, heads=8, hidden=1024, intermediate=768)


@dataclass
class CandidateRecord:
    """One evaluated candidate: its costs, its error estimate, and how that estimate was obtained."""

    architecture: Architecture
    params: float
    inference_cost: float
    error: float  # ê: held-out loss after the best short run over Θ, divided by the reference error e(T)
    raw_loss: float
    steps: int
    seconds: float
    seed: int
    eval_error: float | None = None  # the held-out ratio (eval dataset or held-out split); equals `error`
    w: float | None = None
    latency_ms: float | None = None  # measured on this device (`measure_latency_ms`), when a latency constraint asked
    speedup: float | None = None  # the parent's measured latency / this candidate's, same protocol, same run
    in_sample_error: float | None = None  # ê on the rows the short run trained on (for reading; W uses `error`)
    setting: dict | None = None  # the setting of Θ whose run gave `error` (the best held-out one)
    allocation: dict | None = None  # the student's heads and FFN width per layer (`space.layer_sizes`)
    timing: dict | None = None  # its speed-up per shape as measured before training (`Speedup.to_dict()` layout)

    def to_dict(self) -> dict:
        return {**asdict(self), "architecture": self.architecture.as_dict()}

    @classmethod
    def from_dict(cls, values: dict) -> CandidateRecord:
        return cls(**{**values, "architecture": Architecture(**values["architecture"])})


@dataclass
class OSEResult:
    """The outcome of `OSESearch.run()`.

    `records` holds every evaluated candidate; `front` the architectures non-dominated in (p, i, ê);
    `best` the one with the lowest W-coefficient (see `hf_bort.ose.search.w_coefficient`).
    """

    parent_architecture: Architecture
    max_point: dict  # T: {"params", "inference_cost", "error"}
    epsilon: float
    interval: int
    steps: int
    objective: str
    inference_cost_unit: str  # "flops" or "latency_ms"
    seq_len: int
    space_size: int
    records: list[CandidateRecord]
    front: list[Architecture]
    best: Architecture
    parent_config: dict = field(repr=False, default_factory=dict)
    settings: dict = field(default_factory=dict)
    config: dict = field(default_factory=dict)  # the OSEConfig of the search, as `OSEConfig.to_dict()`
    # The constraints the best point had to meet (`OSEConfig.constraints()`), with the parent's measured latency and
    # the measuring protocol when a latency constraint was set; empty when the search was unconstrained.
    constraints: dict = field(default_factory=dict)
    # What the search proves: the assumption on ê, the candidates in the space, meeting the constraints, kept by the
    # ε-cover and evaluated, those left open by `max_candidates`, and the factor within which the best W lies of the
    # optimum (1 + ε when none is open).
    guarantee: dict = field(default_factory=dict)
    allocation: str = "uniform"  # how the space spread heads and FFN neurons over layers (`SearchSpace.allocation`)

    def record(self, arch: Architecture) -> CandidateRecord:
        for rec in self.records:
            if rec.architecture == arch:
                return rec
        raise KeyError(f"{arch} was not evaluated in this search.")

    def to_config(self, arch: Architecture | None = None) -> PreTrainedConfig:
        """The config of `arch`'s student (default: the best point), with the per-layer sizes the search gave it;
        `AutoModel.from_config` builds it (the parent's class, or Bort, as the search built it)."""
        from .space import SearchSpace, config_shape, parent_architecture

        values = dict(self.parent_config)
        config = AutoConfig.for_model(values.pop("model_type"), **values)
        arch = arch or self.best
        evaluated = next((r for r in self.records if r.architecture == arch), None)
        parent = parent_architecture(config)
        space = SearchSpace(config, parent, config_shape(config, parent), {}, self.allocation)
        return space.to_config(arch, evaluated.allocation if evaluated else None)

    def to_dict(self) -> dict:
        return {
            **{k: v for k, v in asdict(self).items() if k not in ("records", "front", "best", "parent_architecture")},
            "parent_architecture": self.parent_architecture.as_dict(),
            "best": self.best.as_dict(),
            "front": [a.as_dict() for a in self.front],
            "records": [r.to_dict() for r in self.records],
        }

    def save(self, path: str | os.PathLike, *, overwrite: bool = False) -> None:
        path = Path(path)
        if path.exists() and not overwrite:
            raise FileExistsError(f"{path} exists; pass overwrite=True to replace it, or choose another path.")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=1))

    @classmethod
    def load(cls, path: str | os.PathLike) -> OSEResult:
        """Read a result written by `save`; a missing file, non-JSON or another schema fails with one clear line."""
        path = Path(path)
        fix = "pass the result.json that OSEResult.save or hf-bort search wrote"
        if not path.is_file():
            what = "is a folder" if path.is_dir() else "does not exist"
            raise FileNotFoundError(f"OSE result {path} {what}; {fix}.")
        try:
            values = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise ValueError(f"OSE result {path} is not JSON ({error}); {fix}.") from None
        required = {f.name for f in fields(cls) if f.default is MISSING and f.default_factory is MISSING}
        if not isinstance(values, dict) or not required <= set(values):
            found = sorted(values) if isinstance(values, dict) else type(values).__name__
            missing = sorted(required - set(values)) if isinstance(values, dict) else sorted(required)
            raise ValueError(f"{path} is not an OSE result: missing {missing} (found {found}); {fix}.")
        unknown = sorted(set(values) - {f.name for f in fields(cls)})
        if unknown:
            raise ValueError(f"{path} is not an OSE result of this hf_bort: unknown fields {unknown}; {fix}.")
        try:
            return cls(
                **{
                    **values,
                    "parent_architecture": Architecture(**values["parent_architecture"]),
                    "best": Architecture(**values["best"]),
                    "front": [Architecture(**a) for a in values["front"]],
                    "records": [CandidateRecord.from_dict(r) for r in values["records"]],
                }
            )
        except (TypeError, KeyError, AttributeError) as error:
            raise ValueError(f"{path} is not an OSE result: {type(error).__name__} {error}; {fix}.") from None

    def table(self, front_only: bool = False) -> str:
        """A fixed-width table of the candidates (sorted by parameters); * marks the front, > the best."""
        unit = "i (GFLOPs)" if self.inference_cost_unit == "flops" else "i (ms)"
        scale = 1e9 if self.inference_cost_unit == "flops" else 1.0
        header = f"{'':2}{'D':>3} {'A':>6} {'H':>5} {'I':>5} {'p (M)':>9} {unit:>11} {'ê':>7} {'W':>7} {'eval ê':>7}"
        lines = [header, "-" * len(header)]
        front = set(self.front)
        for rec in sorted(self.records, key=lambda r: (r.params, r.inference_cost)):
            if front_only and rec.architecture not in front:
                continue
            a = rec.architecture
            mark = (">" if a == self.best else " ") + ("*" if a in front else " ")
            ev = f"{rec.eval_error:7.4f}" if rec.eval_error is not None else f"{'-':>7}"
            lines.append(
                f"{mark}{a.depth:>3} {_heads(a):>6} {a.hidden:>5} {a.intermediate:>5} {rec.params / 1e6:9.3f} "
                f"{rec.inference_cost / scale:11.4f} {rec.error:7.4f} {rec.w:7.4f} {ev}"
            )
        return "\n".join(lines)

    def __str__(self) -> str:
        best = self.record(self.best)
        return (
            f"OSE over {self.space_size} candidates of {self.parent_architecture} (ε={self.epsilon}, s={self.interval}, "
            f"{self.steps} steps, objective {self.objective}): {len(self.records)} evaluated, {len(self.front)} on the "
            f"front; best {self.best}, p={best.params / 1e6:.2f}M, ê={best.error:.4f}, W={best.w:.4f}\n{self.table()}"
        )

    def plot(self, path: str | os.PathLike) -> Path:
        """A PNG of p against i and against ê: evaluated candidates, the front, the best, the parent, the released Bort.

        The released Bort <4, 8, 1024, 768> is marked in the (p, i) panel at its cost under the parent's family
        (the parent's vocabulary included), even when it is larger than the parent.
        """
        matplotlib = require("matplotlib")

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        from .costs import inference_flops, parameter_count
        from .space import SearchSpace

        scale = 1e9 if self.inference_cost_unit == "flops" else 1.0
        front = set(self.front)
        fig, (ax_cost, ax_err) = plt.subplots(1, 2, figsize=(12, 5))
        for ax, y_of, label in (
            (ax_cost, lambda r: r.inference_cost / scale, "i (GFLOPs)" if scale != 1.0 else "i (ms)"),
            (ax_err, lambda r: r.error, "ê (error / e(T))"),
        ):
            rest = [r for r in self.records if r.architecture not in front]
            on = sorted((r for r in self.records if r.architecture in front), key=lambda r: r.params)
            ax.scatter([r.params / 1e6 for r in rest], [y_of(r) for r in rest], s=14, c="0.7", label="evaluated")
            ax.plot(
                [r.params / 1e6 for r in on], [y_of(r) for r in on], "o-", c="C0", ms=5, label="Pareto front (p, i, ê)"
            )
            best = self.record(self.best)
            ax.scatter(
                [best.params / 1e6], [y_of(best)], marker="*", s=220, c="C3", zorder=5, label=f"best W {self.best}"
            )
            ax.set_xlabel("p (M parameters)")
            ax.set_ylabel(label)
            ax.grid(alpha=0.3)
        parent_config = self.to_config(self.parent_architecture)
        parent = self.parent_architecture  # a one-point grid that is valid for every family (e.g. GQA head groups)
        space = SearchSpace.from_config(
            parent_config,
            depths=[parent.depth],
            num_heads=[parent.heads],
            hidden_sizes=[parent.hidden],
            intermediate_sizes=[parent.intermediate],
        )
        inside = all(
            getattr(RELEASED_BORT, d) <= getattr(self.parent_architecture, d) for d in RELEASED_BORT.as_dict()
        )
        bort_label = "released Bort <4, 8, 1024, 768>" + ("" if inside else " (outside this parent's grid)")
        marks = [(self.parent_architecture, "parent", "k", "s"), (RELEASED_BORT, bort_label, "C2", "D")]
        for arch, label, color, marker in marks:
            single = SearchSpace.from_architectures(space, [arch])
            p = float(parameter_count(single)[0])
            i = (
                float(inference_flops(single, self.seq_len)[0]) / scale
                if self.inference_cost_unit == "flops"
                else None
            )
            if i is not None:
                ax_cost.scatter([p / 1e6], [i], marker=marker, s=80, c=color, zorder=6, label=label)
            if arch == self.parent_architecture:
                ax_err.axvline(p / 1e6, c=color, ls="--", lw=1, label=label)
        ax_cost.set_title(f"cost (ε={self.epsilon}, seq {self.seq_len})")
        ax_err.set_title(f"estimated error ({self.objective}, {self.steps} steps, last {self.interval} averaged)")
        ax_cost.legend(fontsize=7)
        ax_err.legend(fontsize=7)
        fig.tight_layout()
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=110)
        plt.close(fig)
        return path


def _heads(arch: Architecture) -> str:
    """A (or A x d where the heads do not fill the hidden size), as the table shows it."""
    return f"{arch.heads}x{arch.head_dim}" if arch.head_dim is not None else str(arch.heads)


__all__ = ["CandidateRecord", "OSEResult", "RELEASED_BORT"]
