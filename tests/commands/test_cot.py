"""`jaxseg data cot` and jaxseg.train.cot: oracle traces of the synthetic world, the teacher
pipeline's hints and filter (a random teacher is rejected, an oracle stand-in accepted)."""

import json
import shutil

import numpy as np
import pytest

from jaxseg import cli
from jaxseg.protocols import annotations as ann
from jaxseg.protocols.policy import message_text
from jaxseg.protocols.registry import make_protocol
from jaxseg.protocols.scripted import OraclePolicy, RandomPolicy
from jaxseg.segmenter import make_backend
from jaxseg.train import cot
from jaxseg.train.samples import SampleSource

PROTOCOLS = ("veason", "rcot", "o3", "revseg")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("cot") / "synth"
    args = ["data", "synth", "--out", str(root), "--videos", "3", "--valid-videos", "1"]
    args += ["--frames", "10", "--size", "64", "--seed", "7", "--quiet"]
    assert cli.main(args) == 0
    return root


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_oracle_traces_name_the_frames_they_show(data, tmp_path, protocol, capsys):
    out = tmp_path / "cot.jsonl"
    args = ["data", "cot", "--data", str(data), "--split", "train", "--protocol", protocol]
    assert cli.main(args + ["--out", str(out), "--limit", "5", "--quiet"]) == 0
    stats = json.loads(capsys.readouterr().out)
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert stats["episodes"] == stats["written"] == len(lines) == 5

    # the same episodes in memory: each recorded image index names the frame whose pixels it holds
    source = SampleSource(data, "train")
    samples = [source[i] for i in range(5)]
    episodes = cot.oracle_episodes(
        make_protocol(protocol), samples, backend=make_backend("oracle"), seed=0
    )
    for sample, episode, line in zip(samples, episodes, lines):
        assert line["sample_key"] == sample.key
        assert line["J"] == pytest.approx(episode.trace.metrics["J"])
        assert line["assistant"] == [t.response for t in episode.trace.turns]
        assert [m["role"] for m in line["messages"]] == [m["role"] for m in episode.conversation]
        for rec, msg in zip(line["messages"], episode.conversation):
            images = [p["image"] for p in msg["content"] if p.get("type") == "image"]
            refs = [p for p in rec["content"] if p["type"] == "image"]
            assert len(images) == len(refs)
            for image, ref in zip(images, refs):
                frame = sample.frames[sample.position_of(ref["frame"])]
                assert ref["size"] == list(image.shape[:2])
                np.testing.assert_array_equal(image, ann.resize_image(frame, image.shape[0]))
            text = "".join(p["text"] for p in rec["content"] if p["type"] == "text")
            assert text == message_text(msg)


def test_real_dataset_without_teacher_is_refused(data, tmp_path):
    real = tmp_path / "real"
    shutil.copytree(data, real)
    (real / "synth_scene_graph_train_.json").unlink()
    with pytest.raises(SystemExit, match="--teacher"):
        cli.main(["data", "cot", "--data", str(real), "--out", str(tmp_path / "x.jsonl")])


def test_missing_teacher_dir_is_named(data, tmp_path):
    with pytest.raises(SystemExit, match="no config.json"):
        cli.main(
            ["data", "cot", "--data", str(data), "--out", str(tmp_path / "x.jsonl")]
            + ["--teacher", str(tmp_path / "nowhere")]
        )


class SpyPolicy(OraclePolicy):
    """The oracle as a teacher stand-in that keeps every conversation it was asked about."""

    seen: list

    def _generate(self, state, indices, stop):
        self.seen = getattr(self, "seen", []) + [state.conversations[i] for i in indices]
        return super()._generate(state, indices, stop)


@pytest.mark.parametrize("protocol", ("veason", "o3"))
def test_teacher_sees_gt_outlines_and_correct_answers_are_kept(data, protocol):
    source = SampleSource(data, "train")
    samples = [source[i] for i in range(len(source))][:8]
    proto = make_protocol(protocol)
    spy = SpyPolicy(proto, samples)
    episodes = cot.teacher_episodes(proto, spy, samples, backend=make_backend("oracle"))
    assert all(cot.accept(ep, s) for s, ep in zip(samples, episodes))
    # the teacher's images carry green GT outlines exactly when the target is in the frame
    by_key = {s.key: s for s in samples}
    checked = 0
    for conv in spy.seen:
        user = conv[1]
        sample = by_key[user["meta"]["sample_key"]]
        assert message_text(user).endswith(cot.HINT)
        ids = cot.image_frame_ids(user)
        images = [p["image"] for p in user["content"] if p["type"] == "image"]
        for k, image in zip(ids, images):
            green = (image == cot.HINT_COLOR).all(-1).any()
            visible = sample.target_masks[sample.position_of(k)].sum() >= 4
            if visible or not sample.target_masks[sample.position_of(k)].any():
                assert green == visible
                checked += 1
    assert checked > 0
    # ... and the written trace has neither the hint nor pixels
    for ep in episodes:
        record = cot.trace_record(ep)
        assert cot.HINT not in json.dumps(record)


def test_random_answers_are_rejected(data):
    source = SampleSource(data, "train")
    samples = [source[i] for i in range(len(source))][:12]
    proto = make_protocol("veason")
    episodes = cot.teacher_episodes(
        proto, RandomPolicy(proto, seed=3), samples, backend=make_backend("oracle")
    )
    kept = [cot.accept(ep, s) for s, ep in zip(samples, episodes)]
    assert sum(kept) <= len(kept) // 4
    for s, ep, k in zip(samples, episodes, kept):  # what is kept is really right
        if k:
            assert ep.trace.final.no_target if s.is_null else ep.trace.metrics["J"] >= 0.5


def test_fallback_on_a_null_sample_is_not_an_abstention(data):
    """A malformed answer's fallback gives empty masks, which a null sample scores J = 1;
    accept must still reject it."""
    source = SampleSource(data, "train")
    null = next(source[i] for i in range(len(source)) if source[i].is_null)
    proto = make_protocol("veason")

    class Junk(RandomPolicy):
        def _generate(self, state, indices, stop):
            return ["I am not sure"] * len(indices)

    (ep,) = cot.teacher_episodes(proto, Junk(proto), [null], backend=make_backend("oracle"))
    assert ep.trace.final.fallback and ep.trace.metrics["J"] == 1.0
    assert not cot.accept(ep, null)


@pytest.fixture(scope="module")
def random_teacher(tmp_path_factory):
    """A nano Qwen2.5-VL with random weights, saved as an HF dir with the synthetic processor."""
    from flax import nnx

    from jaxseg.data.tokenizer import (
        build_processor,
        build_tokenizer,
        save_processor,
        special_token_ids,
    )
    from jaxseg.models.qwen2_5_vl import Qwen2_5_VLForConditionalGeneration, save_pretrained
    from jaxseg.models.qwen2_5_vl.presets import preset_config

    root = tmp_path_factory.mktemp("teacher")
    processor = build_processor(build_tokenizer())
    save_processor(processor, root / "processor")
    ids = special_token_ids(processor.tokenizer)
    cfg = preset_config(
        "nano",
        vocab_size=len(processor.tokenizer),
        **{k: ids[k] for k in ("image_token_id", "video_token_id")},
        vision_start_token_id=ids["vision_start_token_id"],
        vision_end_token_id=ids["vision_end_token_id"],
        eos_token_id=ids["eos_token_id"],
        pad_token_id=ids["pad_token_id"],
        bos_token_id=ids["bos_token_id"],
    )
    model = Qwen2_5_VLForConditionalGeneration(cfg, rngs=nnx.Rngs(0))
    save_pretrained(model, root / "hf", reference_dir=root / "processor")
    return root / "hf"


def test_random_teacher_traces_are_filtered_out(data, random_teacher, tmp_path, capsys):
    out = tmp_path / "teacher.jsonl"
    args = ["data", "cot", "--data", str(data), "--protocol", "veason", "--out", str(out)]
    args += ["--teacher", str(random_teacher), "--limit", "4", "--max-new-tokens", "12"]
    assert cli.main(args + ["--quiet"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["source"] == "teacher" and stats["episodes"] == 4
    assert stats["written"] == len(out.read_text().splitlines()) <= 1


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_written_trace_trains_like_the_in_memory_one(data, protocol):
    """JSONL record -> conversation (frames from the benchmark) encodes to exactly the SFT
    example Experiment.sft_examples builds from the episode."""
    from jaxseg.data.chat import ChatEncoder
    from jaxseg.data.tokenizer import build_processor, build_tokenizer
    from jaxseg.train.rollouts import sft_example, stored_example

    encoder = ChatEncoder(build_processor(build_tokenizer()))
    source = SampleSource(data, "train")
    samples = [source[i] for i in range(3)]
    episodes = cot.oracle_episodes(make_protocol(protocol), samples, backend=make_backend("oracle"))
    for sample, ep in zip(samples, episodes):
        record = json.loads(json.dumps(cot.trace_record(ep)))
        rebuilt = stored_example(
            encoder.encode(cot.conversation_from_record(record, sample)).as_example()
        )
        expected = sft_example(ep, encoder)
        assert rebuilt.keys() == expected.keys()
        for k in expected:
            np.testing.assert_array_equal(rebuilt[k], expected[k])
    with pytest.raises(ValueError, match="given sample"):
        cot.conversation_from_record(cot.trace_record(episodes[0]), samples[1])


# ----------------------------------------------------------------------------- teacher traces
def test_sft_reads_a_teacher_jsonl(data, tmp_path):
    """Teacher pipeline (the oracle as the teacher stand-in, shown GT outlines + O3's ranked
    candidates) -> filtered JSONL -> `sft.traces=<jsonl>` -> the SFT stage trains on exactly
    those conversations."""
    from jaxseg.config import load_config
    from jaxseg.train.trainer import Experiment

    source = SampleSource(data, "train")
    samples = [source[i] for i in range(len(source))][:6]
    proto = make_protocol("o3", max_turns=3)
    spy = SpyPolicy(proto, samples)
    episodes = cot.teacher_episodes(
        proto,
        spy,
        samples,
        backend=make_backend("oracle"),
        extra_hint=cot.o3_candidates_hint,
    )
    assert any("Candidate segments in rank order" in message_text(c[1]) for c in spy.seen)
    kept = [
        ep
        for s, ep in zip(samples, episodes)
        if cot.accept(ep, s)
        and cot.reward_ok(ep, s, proto, 0.5)
        and (s.is_null or cot.o3_verified(ep))
    ]
    assert 0 < len(kept) < len(episodes)  # the oracle answers some samples without a select
    path = tmp_path / "teacher.jsonl"
    cot.write_jsonl([cot.trace_record(ep) for ep in kept], path)

    config = load_config(
        "demo:protocol=o3,quick",
        [
            f"data.root={data}",
            "sft.steps=1",
            "sft.batch_size=2",
            "sft.micro_batch=2",
            f"sft.num_examples={len(kept)}",
        ],
    )
    config.sft.traces = str(path)
    exp = Experiment(config, tmp_path / "run", progress=False)
    examples = exp.sft_examples("train", len(kept))
    from jaxseg.train.rollouts import sft_example

    # the same turns without the teacher's hints (the oracle ignores them): what a student sees
    by_key = {s.key: s for s in samples}
    plain = cot.oracle_episodes(
        proto, [by_key[ep.trace.sample_key] for ep in kept], backend=make_backend("oracle")
    )
    want = [sft_example(ep, exp.encoder) for ep in plain]
    assert len(examples) == len(want)
    for got, ref in zip(examples, want):
        np.testing.assert_array_equal(got["input_ids"], ref["input_ids"])
    out = exp.sft()
    assert out["step"] == 1
    line = json.loads((tmp_path / "run" / "sft" / "metrics.jsonl").read_text().splitlines()[0])
    assert np.isfinite(line["loss"])
    with pytest.raises(ValueError, match="not 'veason'"):
        cot.sft_examples_from_jsonl(path, source, exp.encoder, 2, "veason")


def test_stratified_positions_round_robin_the_strata(data):
    source = SampleSource(data, "train")
    pos = cot.stratified_positions(source, len(source), seed=0)
    assert sorted(pos) == list(range(len(source)))  # all, once

    def stratum(i):
        r = source.record(i)
        return "null" if r.is_null else (r.type_id, len(r.target_ids) > 1)

    strata = {stratum(i) for i in range(len(source))}
    head = [stratum(i) for i in pos[: len(strata)]]
    assert set(head) == strata  # the first round visits every stratum once
