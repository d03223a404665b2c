"""A run's config cannot drift: ``<workdir>/config.json`` is written once, and a re-run on
the same workdir with another config is refused, naming the keys that differ.

    jaxseg train --config demo --workdir runs/x                      # writes config.json
    jaxseg train --config demo --workdir runs/x --set grpo.kl_coef=0.5
    jaxseg: error: runs/x was started with another config; differing keys:
      grpo.kl_coef: 0.0 -> 0.5
    ...
    jaxseg train ... --allow-config-change    # accepted; the old config goes to history

With ``allow_change`` the previous config and the change list are kept in
``<workdir>/config_history/NNN.json`` before config.json is replaced.

String fields may say ``{workdir}`` (the demo's ``data.root = "{workdir}/data/synth"``):
:func:`resolve_workdir` fills it in, so a run's data lives with the run (a bucket too).
"""

from __future__ import annotations

import json
import time
from typing import Any

from ml_collections import ConfigDict

from jaxseg.config import ConfigError
from jaxseg.paths import as_path

HISTORY = "config_history"


class ConfigDriftError(ConfigError):
    """A re-run on a workdir whose saved config differs from the new one."""


def resolve_workdir(config: ConfigDict, workdir) -> ConfigDict:
    """Replaces ``{workdir}`` in every string field of ``config`` (in place) by ``workdir``."""
    root = str(workdir).rstrip("/")

    def visit(node: ConfigDict) -> None:
        for key in list(node):
            value = node[key]
            if isinstance(value, ConfigDict):
                visit(value)
            elif isinstance(value, str) and "{workdir}" in value:
                node[key] = value.replace("{workdir}", root)

    with config.unlocked():
        visit(config)
    return config


def _flat(node: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(node, dict):
        out: dict[str, Any] = {}
        for key, value in node.items():
            out.update(_flat(value, f"{prefix}{key}."))
        return out if out or not prefix else {prefix[:-1]: {}}
    return {prefix[:-1]: node}


_MISSING = object()

# Where a run executes, not what it trains: a run resumes on another mesh or host count
# (checkpoints are resharded on restore), so these never count as drift; config.json keeps the
# newest values.
PLACEMENT_KEYS = ("mesh", "distributed")


def _is_placement(key: str) -> bool:
    return key.split(".", 1)[0] in PLACEMENT_KEYS


def config_diff(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """``"a.b: old -> new"`` for each dotted field that differs (``(absent)`` for a field
    one side lacks), sorted by field."""
    a, b = _flat(old), _flat(new)
    lines = []
    for key in sorted(set(a) | set(b)):
        x, y = a.get(key, _MISSING), b.get(key, _MISSING)
        if x != y:
            show = lambda v: "(absent)" if v is _MISSING else json.dumps(v)
            lines.append(f"{key}: {show(x)} -> {show(y)}")
    return lines


def as_json(config: ConfigDict) -> dict[str, Any]:
    """The config as config.json holds it (tuples as lists, ...)."""
    return json.loads(config.to_json_best_effort())


def save_run_config(
    workdir, config: ConfigDict, *, allow_change: bool = False, write: bool = True
) -> list[str]:
    """Writes ``<workdir>/config.json`` for a new run; for an existing one, compares: the
    same config is a no-op, another raises :class:`ConfigDriftError` listing the differing
    keys unless ``allow_change`` (then the old one is kept in ``config_history/``). Returns
    the differences. ``write=False`` (processes other than 0) checks only."""
    workdir = as_path(workdir)
    path = workdir / "config.json"
    new = as_json(config)
    text = json.dumps(new, indent=2)
    if not path.exists():
        if write:
            path.write_text(text)
        return []
    old = json.loads(path.read_text())
    changes = config_diff(old, new)
    if changes and all(_is_placement(line.split(":", 1)[0]) for line in changes):
        if write:  # only where it runs changed: record the new placement, nothing to refuse
            path.write_text(text)
        return []
    changes = [line for line in changes if not _is_placement(line.split(":", 1)[0])]
    if not changes:
        return []
    if not allow_change:
        listed = "\n  ".join(changes)
        raise ConfigDriftError(
            f"{workdir} was started with another config; differing keys:\n  {listed}\n"
            "Re-run with the saved config (its config.json), use another --workdir, or pass "
            "--allow-config-change to continue with the new one (the old one is kept in "
            f"{HISTORY}/)."
        )
    if write:
        history = workdir / HISTORY
        history.mkdir(parents=True, exist_ok=True)
        n = sum(1 for p in history.iterdir() if p.name.endswith(".json"))
        entry = {"time": time.time(), "changes": changes, "previous": old}
        (history / f"{n:03d}.json").write_text(json.dumps(entry, indent=2))
        path.write_text(text)
    return changes
