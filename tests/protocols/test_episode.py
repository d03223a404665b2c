"""The episode runner: group layout, batching of mask requests, bounded episodes, traces,
and every protocol's environment fuzzed with adversarial turns."""

import json
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jaxseg.protocols import PROTOCOLS, make_protocol, run_episodes
from jaxseg.protocols.episode import Episode, Opening, Protocol, register_sample
from jaxseg.protocols.policy import message, text_part
from jaxseg.protocols.scripted import RandomPolicy
from jaxseg.segmenter import make_backend
from jaxseg.segmenter.interface import MaskRequest, ObjectPrompt

from .helpers import ReplayPolicy, square_sample
from .test_parsing import adversarial


class CountingBackend:
    def __init__(self, inner):
        self.inner, self.calls = inner, 0

    def register_video(self, frames, video_id=None):
        return self.inner.register_video(frames, video_id)

    def segment(self, requests):
        self.calls += 1
        return self.inner.segment(requests)

    def close(self):
        self.inner.close()


def test_groups_are_sample_major_and_share_their_opening(synth_samples):
    protocol = make_protocol("veason")
    samples = synth_samples[:3]
    backend = CountingBackend(make_backend("classical"))
    traces = run_episodes(
        protocol, RandomPolicy(protocol, 1), samples, backend=backend, group_size=4
    )
    assert [t.sample_index for t in traces] == [0] * 4 + [1] * 4 + [2] * 4
    assert [t.sample_key for t in traces] == [s.key for s in samples for _ in range(4)]
    for g in range(3):
        group = traces[4 * g : 4 * g + 4]
        assert len({t.turns[0].observation for t in group}) == 1
    assert backend.calls <= 1  # every mask request of the batch in one call
    json.dumps([t.to_json() for t in traces])  # traces are JSON-able


def test_oracle_backend_keeps_each_query_targets_apart(synth_samples):
    """Two queries about one video name different targets; the oracle must not mix them."""
    by_video = {}
    for s in synth_samples:
        by_video.setdefault(s.key.split("/")[0], []).append(s)
    a, b = next(v for v in by_video.values() if len(v) >= 2 and not v[0].is_null)[:2]
    backend = make_backend("oracle")
    handles = [register_sample(backend, s) for s in (a, b)]
    assert handles[0].video_id != handles[1].video_id
    k = int(np.argmax(a.areas))
    box = tuple(float(v) for v in a.boxes_at(k)[0])
    res = backend.segment([MaskRequest(handles[0], k, (ObjectPrompt(0, box),))])[0]
    assert (res.union <= a.target_masks).all() and res.union[k].any()


class _Endless(Episode):
    def _step(self, text, info=None):
        return message("user", [text_part("again")])

    def final_action(self):
        raise AssertionError("not reached")

    def score(self, masks):
        raise AssertionError("not reached")


class _EndlessProtocol(Protocol):
    name = "endless"
    max_turns = 3

    def opening(self, sample, rng):
        return Opening([message("user", [text_part("go")])], [])

    def episode(self, sample, opening):
        return _Endless(self, sample, opening)

    oracle_turn = random_turn = max_reward = None


def test_runner_refuses_episodes_that_never_end():
    with pytest.raises(RuntimeError, match="still running after max_turns=3"):
        run_episodes(
            _EndlessProtocol(None), ReplayPolicy(["x"] * 9), [square_sample()],
            backend=make_backend("oracle"),
        )  # fmt: skip


def test_bad_group_size():
    with pytest.raises(ValueError, match="group_size"):
        run_episodes(
            make_protocol("veason"), ReplayPolicy([]), [square_sample()],
            backend=make_backend("oracle"), group_size=0,
        )  # fmt: skip


FUZZ_SAMPLES = [square_sample(stride=5), square_sample(present=(), key="null")]
_VTG = '<VTG>{"start": %d, "end": %d, "keyframe": %d}</VTG><box>[[20, 24, 36, 40]]</box>'
VALID_TURNS = {
    "veason": [
        '<think>t</think><answer>{"keyframe_timestamp": 25, "bbox_2d_list": [[9, 9, 60, 60]]}'
        "</answer>",
        "<think>t</think><answer>no target</answer>",
    ],
    "rcot": [
        "<think>t</think><answer>a video</answer>",
        '<think>t</think><answer>{"keyframe": 25}</answer>',
        '<think>t</think><answer>{"keyframe": 0}</answer>',
        "<think>t</think><answer>A</answer>",
        "<think>t</think><answer>B</answer>",
        '<think>t</think><answer>[{"bbox_2d": [9, 9, 60, 60], "point_2d": [30, 30]}]</answer>',
    ],
    "o3": [
        f"<think>Step 1</think><select>{_VTG % (10, 40, 25)}</select>",
        f"<think>Step 1</think><select>{_VTG % (-9, 900, 900)}</select>",
        f"<think>Step 1</think><select>{_VTG % (40, 10, 25)}</select>",
        f"<think>Step 1</think><answer>{_VTG % (15, 45, 25)}</answer>",
        "<think>Step 1</think><answer>no target</answer>",
    ],
    "revseg": [
        "<think>t</think><answer>frame id: 25 ; object description: the square</answer>",
        "<think>t</think><answer>frame id: 0 ; object description: no target</answer>",
        "<think>t</think><answer>[20, 24, 36, 40]</answer>",
    ],
}


@pytest.mark.parametrize("name", sorted(PROTOCOLS))
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), null=st.booleans())
def test_environment_survives_any_turns(name, data, null):
    turn = st.one_of(adversarial, st.sampled_from(VALID_TURNS[name]))
    script = data.draw(st.lists(turn, min_size=1, max_size=14))
    protocol = make_protocol(name, max_reselect=2) if name == "rcot" else make_protocol(name)
    sample = FUZZ_SAMPLES[int(null)]
    tr = run_episodes(protocol, ReplayPolicy(script), [sample], backend=make_backend("oracle"))[0]
    assert 1 <= len(tr.turns) <= protocol.max_turns
    assert all(math.isfinite(v) for v in tr.reward.values())
    ceiling = getattr(protocol, "sandbag_ceiling", protocol.max_reward)(sample)
    assert tr.total <= ceiling + 1e-9


FORMAT_TERMS = {  # the format-type reward terms of each protocol, at their minimum
    "veason": {"format": 0.0},
    "rcot": {"ktg_format": 0.0},
    "o3": {"strict_format": -1.0, "step_format": 0.0},
    "revseg": {"format": 0.0},
}


@pytest.mark.parametrize("name", sorted(PROTOCOLS))
@settings(max_examples=20, deadline=None)
@given(script=st.lists(adversarial.filter(lambda t: "<think>" not in t), min_size=1, max_size=14))
def test_unstructured_output_gets_minimum_format_reward_and_a_fallback(name, script):
    protocol = make_protocol(name, max_reselect=1) if name == "rcot" else make_protocol(name)
    tr = run_episodes(protocol, ReplayPolicy(script), FUZZ_SAMPLES, backend=make_backend("oracle"))
    target, null = tr
    for key, low in FORMAT_TERMS[name].items():
        assert target.reward[key] == low, (key, target.reward)
    assert null.reward["structure"] == 0.0
    assert target.final.fallback or target.final.no_target
