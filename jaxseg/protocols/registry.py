"""Protocols by config name: `make_protocol("o3", max_turns=2)`."""

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
