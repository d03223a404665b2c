"""Protocols by config name: `make_protocol("o3", max_turns=2)`; the evaluation variant of a
training config: `make_eval_protocol("veason", train_config, eval_config)`."""

from __future__ import annotations

import dataclasses
from typing import Any

from jaxseg.protocols.episode import Protocol
from jaxseg.protocols.o3 import O3Config, O3Protocol
from jaxseg.protocols.rcot import RCoTConfig, RCoTProtocol
from jaxseg.protocols.revseg import RevsegConfig, RevsegProtocol
from jaxseg.protocols.veason import VeasonConfig, VeasonProtocol

PROTOCOLS: dict[str, tuple[type[Protocol], type]] = {
    "veason": (VeasonProtocol, VeasonConfig),
    "rcot": (RCoTProtocol, RCoTConfig),
    "o3": (O3Protocol, O3Config),
    "revseg": (RevsegProtocol, RevsegConfig),
}


def make_protocol(name: str, **config: Any) -> Protocol:
    """Build protocol `name` with config fields overridden by `config`; unknown names or
    fields are errors that list the valid ones."""
    if name not in PROTOCOLS:
        raise KeyError(f"unknown protocol {name!r}; choose one of {sorted(PROTOCOLS)}")
    cls, cfg_cls = PROTOCOLS[name]
    fields = {f.name for f in dataclasses.fields(cfg_cls)}
    unknown = set(config) - fields
    if unknown:
        raise TypeError(
            f"protocol {name!r}: unknown config field(s) {sorted(unknown)}; valid: {sorted(fields)}"
        )
    return cls(cfg_cls(**config))


# What evaluation always overrides in a training config: the seeds evaluate on inputs a user
# has (Veason-R1: 8 uniform frames, arXiv 2508.11538, inference; RCoT-Seg: the full VDG -> KFG -> AKS -> KTG
# pipeline, arXiv 2605.07334, inference). `protocol.eval_config` in a run config adds to / changes these.
EVAL_DEFAULTS: dict[str, dict[str, Any]] = {
    "veason": {"sampling": "uniform", "num_frames": 8},
    "rcot": {"task": "pipeline"},
    "o3": {},
    "revseg": {},
}


def eval_config_of(
    name: str, config: dict[str, Any] | None = None, eval_config: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The protocol config evaluation runs with: training `config`, then `EVAL_DEFAULTS`, then
    the run's explicit `eval_config`."""
    return {**dict(config or {}), **EVAL_DEFAULTS.get(name, {}), **dict(eval_config or {})}


def make_eval_protocol(
    name: str, config: dict[str, Any] | None = None, eval_config: dict[str, Any] | None = None
) -> Protocol:
    """The protocol every evaluation path uses (final and periodic evals, `jaxseg segment`,
    the [SEG] trainer's eval). Refuses a configuration whose observations would depend on
    ground truth (`Protocol.ground_truth_inputs`)."""
    protocol = make_protocol(name, **eval_config_of(name, config, eval_config))
    leaks = protocol.ground_truth_inputs()
    if leaks:
        raise ValueError(
            f"protocol {name!r} evaluation config lets ground truth into the policy's inputs: "
            + "; ".join(leaks)
        )
    return protocol
