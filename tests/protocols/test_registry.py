"""Protocols by config name."""

import pytest

from jaxseg.protocols import PROTOCOLS, make_protocol


def test_every_protocol_builds_with_defaults_and_overrides():
    assert sorted(PROTOCOLS) == ["o3", "rcot", "revseg", "veason"]
    for name in PROTOCOLS:
        p = make_protocol(name)
        assert p.name == name and p.max_turns >= 1 and p.stop_strings
    assert make_protocol("o3", max_turns=5).max_turns == 5
    assert make_protocol("rcot", max_reselect=2).max_turns == 1 + 2 + 2 + 1  # vdg kfg aks ktg


def test_errors_name_the_valid_choices():
    with pytest.raises(KeyError, match="choose one of"):
        make_protocol("nope")
    with pytest.raises(TypeError, match="unknown config field"):
        make_protocol("veason", max_turns=2)
    with pytest.raises(ValueError, match="sampling"):
        make_protocol("veason", sampling="random")
    with pytest.raises(ValueError, match="temporal_mode"):
        make_protocol("o3", temporal_mode="precision")
