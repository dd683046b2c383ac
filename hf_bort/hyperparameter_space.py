"""Θ, a set of hyperparameter settings, read in one place: each setting is a dict of overrides of one arguments
dataclass (`TrainingArguments` for Agora), given as a list of settings, a grid (a dict of lists: every combination),
their JSON, or the path of a JSON file, so that Θ is one command-line flag. Every value is checked against the field's
type when Θ is read, before anything runs."""

import dataclasses
import difflib
import enum
import itertools
import json
import os
import types
import typing
from collections.abc import Collection
from typing import Any


def parse_hyperparameter_space(
    space: Any, arguments: type, *, source: str, fixed: Collection[str] = ()
) -> list[dict[str, Any]]:
    """Θ as a list of settings, each a dict of fields of the dataclass `arguments` (not those in `fixed`, which belong
    to the whole run); None is the one setting that changes nothing. `source` names Θ in errors (its flag)."""
    if space is None:
        return [{}]
    if isinstance(space, (str, os.PathLike)):
        text = str(space)
        if not text.lstrip().startswith(("[", "{")):
            if not os.path.isfile(text):
                raise ValueError(
                    f"{source}={text!r} is neither JSON nor an existing JSON file; give a list of settings "
                    "'[{\"learning_rate\": 5e-5}]', a grid '{\"learning_rate\": [2e-5, 5e-5]}' or a file path."
                )
            source, text = f"{source} file {text}", open(text, encoding="utf-8").read()
        try:
            space = json.loads(text)
        except json.JSONDecodeError as error:
            raise ValueError(f"{source} is not valid JSON ({error.msg} at character {error.pos}).") from None
    if isinstance(space, dict):
        if not space:
            raise ValueError(f"{source} is an empty grid; give at least one field with a list of values.")
        grid = {key: values if isinstance(values, list) else [values] for key, values in space.items()}
        empty = [key for key, values in grid.items() if not values]
        if empty:
            raise ValueError(f"{source} grid has no values for {empty}; give each field at least one value.")
        settings = [dict(zip(grid, values)) for values in itertools.product(*grid.values())]
    elif isinstance(space, list):
        settings = space
    else:
        raise ValueError(f"{source} must be a list of settings or a grid (dict of lists), got {type(space).__name__}.")
    if not settings:
        raise ValueError(f"{source} is empty: Θ needs at least one setting (use [{{}}] for the arguments as given).")
    fields = {f.name: f for f in dataclasses.fields(arguments) if f.init}
    hints = typing.get_type_hints(arguments)
    name = arguments.__name__
    for index, setting in enumerate(settings):
        if not isinstance(setting, dict):
            raise ValueError(f"{source}: every setting must be a dict of {name} fields, got {setting!r}.")
        unknown = sorted(set(setting) - set(fields))
        if unknown:
            close = {key: difflib.get_close_matches(key, fields, n=1) for key in unknown}
            hint = "; ".join(f"{key}: did you mean {match[0]}?" for key, match in close.items() if match)
            raise ValueError(f"{source}: {unknown} are not {name} fields{f' ({hint})' if hint else ''}.")
        run_wide = sorted(set(setting) & set(fixed))
        if run_wide:
            raise ValueError(f"{source}: {run_wide} belong to the whole run and cannot vary between settings.")
        for key, value in setting.items():
            if not _matches(value, hints[key]):
                raise ValueError(
                    f"{source}: setting {index} has {key}={value!r}, but {name}.{key} takes "
                    f"{_type_name(hints[key])}{_example(fields[key])}."
                )
    return [dict(s) for s in settings]


def _matches(value: Any, hint: Any) -> bool:
    """Whether a JSON value fits a field's annotation (bool is not a number; an int is a float).

    Enum-valued fields also take their names as strings (`SchedulerType | str`); whether a name is known is checked
    by the arguments class itself, when its caller builds it from each setting."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, option) for option in typing.get_args(hint))
    if origin is typing.Literal:
        return value in typing.get_args(hint)
    if origin is not None:  # list[str], dict[str, Any]: the container's type
        return isinstance(value, origin)
    if hint is type(None):
        return value is None
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return not isinstance(hint, type) or isinstance(value, hint)


def _type_name(hint: Any) -> str:
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")


def _example(field: dataclasses.Field) -> str:
    """The field's default, as an example of a value it takes."""
    if field.default is dataclasses.MISSING or field.default is None:
        return ""
    return f" (default {field.default.value if isinstance(field.default, enum.Enum) else field.default!r})"


__all__ = ["parse_hyperparameter_space"]
