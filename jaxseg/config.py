"""ml_collections configs: loading, `:arg` knobs, dotted overrides and sweeps.

Conventions (after big_vision's `configs/*.py` + `config_flags`, and scenic/vmoe's sweeps):

- A config is a Python file defining ``get_config(arg: str | None) -> ConfigDict``.
  ``arg`` carries only the sweep-relevant knobs that change several fields at once, parsed
  with :func:`parse_arg` (``file.py:size=tiny,protocol=o3``).
- Single fields are overridden with dotted ``key=value`` strings (``rl.group_size=8``);
  values are parsed as Python literals when they look like one, and ConfigDict's type
  safety rejects a value of the wrong type, naming the field.
- A file may define ``get_sweep(hyper) -> list[dict]``; :class:`Hyper` offers
  ``product``/``sweep``/``zip``/``chain`` to build the list of override dicts.

A spec is either a path to a ``.py`` file or the name of a built-in config
(``synthetic_tiny`` -> ``configs/synthetic_tiny.py``); ``demo`` is the name the README uses
for the demo's config, ``synthetic_tiny``. The built-in configs are package data, found with
``importlib.resources`` (``jaxseg/configs``, a link to the repository's ``configs/`` in a
checkout, real files in a wheel), so the names resolve from an installed wheel too.
"""

from __future__ import annotations

import ast
import difflib
import importlib.util
import itertools
from collections.abc import Iterable, Sequence
from importlib import resources
from pathlib import Path
from types import ModuleType
from typing import Any

from ml_collections import ConfigDict

CONFIGS_DIR = Path(str(resources.files("jaxseg") / "configs"))
ALIASES = {"demo": "synthetic_tiny"}


class ConfigError(ValueError):
    """A config file, `:arg` knob or override that cannot be applied."""


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """``" (did you mean 'x'?)"`` for the closest of ``choices`` (difflib), else ``""``."""
    close = difflib.get_close_matches(word, [str(c) for c in choices], n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _field_hint(key: str, config: ConfigDict) -> str:
    """ "did you mean" for a dotted key: a field with the same last name elsewhere
    (``train.remat`` -> ``model.remat``), else the closest whole path."""
    fields = _fields(config)
    leaf = key.rsplit(".", 1)[-1]
    same = [f for f in fields if f.rsplit(".", 1)[-1] == leaf and f != key]
    return f" (did you mean {same[0]!r}?)" if len(same) == 1 else did_you_mean(key, fields)


def _fields(node: Any, prefix: str = "") -> list[str]:
    """Every dotted field of a ConfigDict (leaves and sub-dicts)."""
    out = []
    for key in node:
        name = f"{prefix}{key}"
        out.append(name)
        if isinstance(node[key], ConfigDict):
            out += _fields(node[key], name + ".")
    return out


def parse_value(text: str) -> Any:
    """`'3' -> 3`, `'1e-4' -> 1e-4`, `'(2,4)' -> (2, 4)`, `'True'` or `'true' -> True`
    (`false` alike, as YAML and JSON spell them), else the string."""
    if text.strip() in ("true", "false"):
        return text.strip() == "true"
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def parse_arg(arg: str | None, **defaults: Any) -> ConfigDict:
    """Parses ``"a=1,b=x"`` against ``defaults``; unknown keys are an error.

    A value's type follows its default (``batch=8`` default int -> int). A bare key is
    ``True`` (``"lora"`` == ``"lora=True"``).
    """
    out = ConfigDict(dict(defaults))
    if not arg:
        return out
    for item in arg.split(","):
        if not item.strip():
            continue
        key, sep, raw = item.partition("=")
        key = key.strip()
        if key not in defaults:
            raise ConfigError(
                f"unknown config arg {key!r}{did_you_mean(key, defaults)}; known: {sorted(defaults)}"
            )
        value = parse_value(raw.strip()) if sep else True
        default = defaults[key]
        if isinstance(default, bool) or default is None:
            out[key] = value
        elif isinstance(default, int | float | str):
            try:
                out[key] = type(default)(value)
            except (TypeError, ValueError) as err:
                raise ConfigError(
                    f"config arg {key}={raw!r}: expected {type(default).__name__}"
                ) from err
        else:
            out[key] = value
    return out


def resolve_spec(spec: str) -> tuple[Path, str | None]:
    """``'path.py:arg'`` or ``'name:arg'`` -> (file, arg)."""
    path_part, _, arg = spec.partition(":")
    path = Path(path_part)
    if path.suffix != ".py":
        path = CONFIGS_DIR / f"{ALIASES.get(path_part, path_part)}.py"
    if not path.is_file():
        known = sorted(p.stem for p in CONFIGS_DIR.glob("*.py")) if CONFIGS_DIR.is_dir() else []
        hint = "" if path_part.endswith(".py") else did_you_mean(path_part, [*known, *ALIASES])
        raise ConfigError(f"config file not found: {path}{hint} (built-in names: {known})")
    return path, (arg or None)


def _import_file(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"jaxseg_config_{path.stem}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def apply_overrides(config: ConfigDict, overrides: Iterable[str | tuple[str, Any]]) -> ConfigDict:
    """Applies ``"a.b=v"`` strings (or ``(key, value)`` pairs) in order; returns ``config``."""
    for item in overrides:
        if isinstance(item, str):
            key, sep, raw = item.partition("=")
            if not sep:
                raise ConfigError(f"override {item!r} is not of the form key=value")
            key, value = key.strip(), parse_value(raw.strip())
        else:
            key, value = item
        *parents, leaf = key.split(".")
        node = config
        for i, part in enumerate(parents):
            if not isinstance(node, ConfigDict) or part not in node:
                missing = ".".join(parents[: i + 1])
                raise ConfigError(
                    f"override {key!r}: no field {missing!r}{_field_hint(key, config)}"
                )
            node = node[part]
        if not isinstance(node, ConfigDict) or leaf not in node:
            raise ConfigError(
                f"override {key!r}: no field {key!r} in the config{_field_hint(key, config)}"
            )
        try:
            node[leaf] = value
        except TypeError as err:
            raise ConfigError(f"override {key}={value!r}: {err}") from err
    return config


def load_config(spec: str, overrides: Sequence[str] = ()) -> ConfigDict:
    """Loads ``spec`` (``file.py[:arg]`` or a built-in name) and applies ``overrides``."""
    path, arg = resolve_spec(spec)
    module = _import_file(path)
    if not hasattr(module, "get_config"):
        raise ConfigError(f"{path} defines no get_config(arg)")
    config = module.get_config(arg)
    if not isinstance(config, ConfigDict):
        raise ConfigError(f"{path}: get_config must return an ml_collections.ConfigDict")
    return apply_overrides(config, overrides)


class Hyper:
    """Sweep builders: each returns a list of override dicts."""

    @staticmethod
    def sweep(key: str, values: Iterable[Any]) -> list[dict[str, Any]]:
        return [{key: v} for v in values]

    @staticmethod
    def product(sweeps: Sequence[list[dict[str, Any]]]) -> list[dict[str, Any]]:
        return [{k: v for d in combo for k, v in d.items()} for combo in itertools.product(*sweeps)]

    @staticmethod
    def zip(sweeps: Sequence[list[dict[str, Any]]]) -> list[dict[str, Any]]:
        lengths = {len(s) for s in sweeps}
        if len(lengths) > 1:
            raise ConfigError(f"Hyper.zip needs sweeps of equal length, got {sorted(lengths)}")
        return [{k: v for d in combo for k, v in d.items()} for combo in zip(*sweeps)]

    @staticmethod
    def chain(sweeps: Sequence[list[dict[str, Any]]]) -> list[dict[str, Any]]:
        return [d for s in sweeps for d in s]


def load_sweep(spec: str) -> list[dict[str, Any]]:
    """The override dicts of the file's ``get_sweep(hyper)``; each is checked on the config."""
    path, arg = resolve_spec(spec)
    module = _import_file(path)
    if not hasattr(module, "get_sweep"):
        raise ConfigError(f"{path} defines no get_sweep(hyper)")
    runs = list(module.get_sweep(Hyper))
    for run in runs:  # fail now, not in the middle of the sweep
        apply_overrides(module.get_config(arg), run.items())
    return runs


def format_overrides(run: dict[str, Any]) -> list[str]:
    return [f"{k}={v!r}" if isinstance(v, str) else f"{k}={v}" for k, v in run.items()]
