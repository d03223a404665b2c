"""The base recipe end to end in miniature: `synthetic_base:quick` builds its policy with
transformers' initial draw and a sine-cosine position table, trains its curriculum's first
steps, and evaluates every task plus the current phase's scenes."""

from __future__ import annotations

import json

import numpy as np
import pytest


@pytest.fixture(scope="module")
def quick_base(tmp_path_factory):
    from jaxseg.config import load_config
    from jaxseg.train.trainer import Experiment

    workdir = tmp_path_factory.mktemp("base")
    exp = Experiment(load_config("synthetic_base:quick"), workdir, progress=False)
    return exp, workdir


def test_policy_starts_from_the_recipes_init(quick_base):
    from jaxseg.models.qwen3_vl.vision import sincos_position_table

    exp, _ = quick_base
    assert exp.config.model.initializer == "transformers"
    vision = exp.model.config.vision
    side = int(round(vision.num_position_embeddings**0.5))
    table = np.asarray(exp.model.visual.pos_embed[...])
    assert np.allclose(table, sincos_position_table(side, vision.hidden_size))


def test_pretrain_runs_the_curriculum_and_reports_the_phase_scenes(quick_base):
    exp, workdir = quick_base
    exp.pretrain()
    rows = [json.loads(line) for line in (workdir / "pretrain" / "metrics.jsonl").open()]
    losses = [r["loss"] for r in rows if r["kind"] == "train"]
    assert len(losses) == exp.config.pretrain.steps and np.isfinite(losses).all()
    record = exp.periodic_eval("pretrain", 0)  # step 0: single-object scenes
    for task in exp.config.pretrain.base.eval_tasks:
        assert any(k.startswith(f"{task}/") for k in record), task
    assert "cell@scenes/accuracy" in record
    late = exp.base_eval(count=4, step=10**6)  # full scenes: nothing extra to report
    assert "cell@scenes" not in late
    # but `frames` items still show fewer frames than the protocols: scored as trained too
    assert exp._base_curriculum().frames_shown_at(10**6) != (4, 8) and "frames@shown" in late
    # the attention-supervised head's mass on the named object, next to an even spread over
    # the visible objects; the stage's capture is gone after it, the eval's own too
    assert exp.config.pretrain.base.attend > 0
    assert 0.0 <= late["box"]["attend_named"] <= 1.0
    assert 0.0 < late["box"]["attend_named_uniform"] <= 1.0
    assert 0.0 <= late["frames"]["attend_frame"] <= 1.0  # and whether it finds the asked frame
    assert "attend" in rows[0] and "attend_mass" in rows[0]
    # what the visual tokens name of their objects (L_desc), per attribute, held-out
    assert exp.config.pretrain.base.describe > 0 and "describe" in rows[0]
    for attribute in ("colour", "shape", "size"):
        assert 0.0 <= late["box"][f"describe_{attribute}"] <= 1.0
    # where the head looks from a restatement's positions: at the prompt token each copies
    assert exp.config.pretrain.base.copy > 0
    for task in ("restate", "quote"):
        assert 0.0 < late[task]["copy_mass"] < 1.0
    assert exp.model.language_model.layers[-1].self_attn.capture_head is None


def test_objectness_head_trains_with_the_stage_and_stays_out_of_its_params(quick_base):
    from flax import nnx

    from jaxseg.train.checkpoint import Checkpointer
    from jaxseg.train.learner import ITEMS
    from jaxseg.train.objectness import (
        HEAD,
        LOCATE_HEAD,
        LOCATE_HIDDEN_HEAD,
        LocateHead,
        ObjectnessHead,
        attached_head,
    )
    from jaxseg.train.steps import OptimizerConfig, make_optimizer

    exp, workdir = quick_base
    if not (workdir / "pretrain" / "ckpt").is_dir():
        exp.pretrain()
    assert exp.config.pretrain.base.objectness > 0
    rows = [json.loads(line) for line in (workdir / "pretrain" / "metrics.jsonl").open()]
    assert all(np.isfinite(r["objectness"]) for r in rows if r["kind"] == "train")
    assert not hasattr(exp.model, HEAD)  # the policy after the stage is the plain model
    ckpt_dir = workdir / "pretrain" / "ckpt"
    last = max(int(p.name) for p in ckpt_dir.iterdir() if p.name.isdigit())
    assert (ckpt_dir / str(last) / "aux").is_dir()
    with Checkpointer(ckpt_dir, item_names=ITEMS, read_only=True) as ckpt:
        width, dh = exp.model.config.text.hidden_size, exp.model.config.text.head_dim
        target = {
            "aux": {
                HEAD: {"w": np.zeros(width, np.float32)},
                LOCATE_HEAD: {"w": np.zeros((dh, 4), np.float32), "b": np.zeros(4, np.float32)},
                LOCATE_HIDDEN_HEAD: {
                    "w": np.zeros((width, 4), np.float32),
                    "b": np.zeros(4, np.float32),
                },
            }
        }
        _, saved, _, _ = ckpt.restore_intact(target)
    trained = np.asarray(saved["aux"][HEAD]["w"])
    assert np.abs(trained).sum() > 0  # the head moved off its zero init
    assert exp.load_stage("pretrain") == last  # `params` is the plain model's tree

    # a resume restores the heads with the policy and its optimizer state
    head, boxes, written = ObjectnessHead(width), LocateHead(dh), LocateHead(width)
    with (
        attached_head(exp.model, head),
        attached_head(exp.model, boxes, LOCATE_HEAD),
        attached_head(exp.model, written, LOCATE_HIDDEN_HEAD),
    ):
        c = exp.config.pretrain  # the stage's own optimizer (its state's structure)
        tx = make_optimizer(
            OptimizerConfig(
                learning_rate=c.learning_rate,
                warmup_steps=c.warmup_steps,
                schedule=c.schedule,
                decay_timescale=c.decay_timescale,
            )
        )
        optimizer = nnx.Optimizer(exp.model, tx, wrt=nnx.Param)
        with Checkpointer(ckpt_dir, item_names=ITEMS, read_only=True) as ckpt:
            next_step, _ = exp.learner.restore(ckpt, exp.model, optimizer)
        assert next_step == exp.config.pretrain.steps
        np.testing.assert_array_equal(np.asarray(head.w[...]), trained)
        assert np.abs(np.asarray(boxes.w[...])).sum() > 0
        assert np.abs(np.asarray(written.w[...])).sum() > 0

    # a head switched on after the checkpoint was written starts fresh; the rest resumes
    head, late = ObjectnessHead(width), LocateHead(dh)
    with (
        attached_head(exp.model, head),
        attached_head(exp.model, LocateHead(dh), LOCATE_HEAD),
        attached_head(exp.model, LocateHead(width), LOCATE_HIDDEN_HEAD),
        attached_head(exp.model, late, "late_head"),
    ):
        optimizer = nnx.Optimizer(exp.model, tx, wrt=nnx.Param)
        with Checkpointer(ckpt_dir, item_names=ITEMS, read_only=True) as ckpt:
            next_step, _ = exp.learner.restore(ckpt, exp.model, optimizer)
        assert next_step == exp.config.pretrain.steps
        np.testing.assert_array_equal(np.asarray(head.w[...]), trained)
        np.testing.assert_array_equal(np.asarray(late.w[...]), 0.0)
        moments = nnx.to_pure_dict(nnx.state(optimizer, nnx.optimizer.OptState))
        assert "late_head" in str(moments)  # its optimizer state exists, from scratch

    # a head the checkpoint holds but this run has not (retired) is left unread
    head = ObjectnessHead(width)
    with attached_head(exp.model, head):
        optimizer = nnx.Optimizer(exp.model, tx, wrt=nnx.Param)
        with Checkpointer(ckpt_dir, item_names=ITEMS, read_only=True) as ckpt:
            next_step, _ = exp.learner.restore(ckpt, exp.model, optimizer)
        assert next_step == exp.config.pretrain.steps
        np.testing.assert_array_equal(np.asarray(head.w[...]), trained)
    # a difference outside the auxiliary heads is still refused, naming the arrays
    with attached_head(exp.model, ObjectnessHead(width)):
        exp.model.extra = nnx.Linear(2, 2, rngs=nnx.Rngs(0))  # a policy parameter it lacks
        optimizer = nnx.Optimizer(exp.model, tx, wrt=nnx.Param)
        with Checkpointer(ckpt_dir, item_names=ITEMS, read_only=True) as ckpt:
            with pytest.raises(ValueError, match="trainable parameters"):
                exp.learner.restore(ckpt, exp.model, optimizer)
        del exp.model.extra


def test_stream_examples_carry_what_their_visual_tokens_must_name(quick_base):
    """Past the squares, every single-image example of the base stream (a `frames` item's
    targets are blank: `test_frames_examples_...`) carries `describe [L, 3]`: the
    class of each attribute at the visual tokens holding an object's centre (-1 elsewhere,
    never off the image tokens), and the words it indexes are the tokenizer's own; and
    `locate [L, 4]`: those tokens' normalised boxes, and the answer positions' where the
    question names one object."""
    from jaxseg.train.base_tasks import ATTRIBUTES
    from jaxseg.train.objectness import ObjectnessLoss

    exp, _ = quick_base
    words = exp._attribute_words()
    assert [name for name, _ in words] == [name for name, _ in ATTRIBUTES]
    tok = exp.processor.tokenizer
    for (_, ids), (_, values) in zip(words, ATTRIBUTES, strict=True):
        assert [tok.decode([i]).strip() for i in ids] == list(values)
    digits = [tok.decode([i]).strip() for i in exp._digit_ids]  # where box content starts
    assert set("0123456789") <= set(digits) and all(d.isdigit() and d.isascii() for d in digits)
    loss = ObjectnessLoss.for_model(
        exp.model.config, 1.0, 1.0, describe=1.0, words=words, locate=1.0
    )
    stream = exp._base_stream(loss)
    examples = [e for step in (10**6, 10**6 + 1) for e in stream(step, list(range(4)))]
    image = exp.model.config.image_token_id
    answered = 0
    single = [e for e in examples if len(e["image_grid_thw"]) == 1]
    assert len(single) >= len(examples) // 2
    for e in single:
        described = e["describe"][:, 0] >= 0
        assert e["describe"].shape == (e["input_ids"].size, 3)
        assert described.any() and (e["input_ids"][described] == image).all()
        # `locate`: the same tokens' boxes, plus the answer positions of one-object items
        located = ~np.isnan(e["locate"][:, 0])
        on_image = e["input_ids"] == image
        assert (located[on_image] == described[on_image]).all()
        answer = located & ~on_image
        assert (e["policy_mask"][1:][answer[:-1]] > 0).all()
        assert ((e["locate"][located] >= 0) & (e["locate"][located] <= 1)).all()
        answered += answer.any()
    assert answered > 0


def test_restate_and_quote_examples_point_their_answer_at_the_query_they_copy(quick_base):
    """With `copy`, each `restate` example of the stream (its prompt asks for the query
    word for word) and each `quote` example (its answer opens a trace: 'The query asks for
    "..."') points the positions predicting its answer's tokens at prompt positions holding
    the same tokens, all of the query's words among them; every other example copies
    nothing (all -1)."""
    from jaxseg.train.objectness import ObjectnessLoss

    exp, _ = quick_base
    loss = ObjectnessLoss.for_model(exp.model.config, 0.0, 1.0, copy=1.0)
    stream = exp._base_stream(loss)
    tok = exp.processor.tokenizer
    seen = {"word for word": 0, "restating it": 0}
    for e in (e for step in range(10**6, 10**6 + 6) for e in stream(step, list(range(4)))):
        ids, source = e["input_ids"], e["copy"]
        t = np.flatnonzero(source >= 0)
        start = int(np.flatnonzero(e["policy_mask"])[0])
        prompt = tok.decode(ids[:start])
        asked = [k for k in seen if k in prompt]
        if not asked:
            assert t.size == 0
            continue
        seen[asked[0]] += 1
        assert (e["policy_mask"][t + 1] > 0).all() and (source[t] < start).all()
        assert (ids[source[t]] == ids[t + 1]).all()
        query = prompt.split('Query: "', 1)[1].rsplit('"', 1)[0]
        if asked[0] == "restating it":  # the fitted span sits after the trace's opening
            assert t[0] > start
        # the fitted tokens spell the query (all but a trailing "?" differs at most)
        assert query.rstrip("?") in tok.decode(ids[t + 1])
    assert min(seen.values()) > 0, seen


def test_frames_examples_show_indexed_frames_and_fit_every_frames_objects(quick_base):
    """A `frames` item is encoded with its frames (as many as the curriculum shows at that
    step; one image grid each, each after 'Frame <index>: '). Its heads' targets cover every
    frame: objectness one distribution over all frames' object tokens, each frame's tokens
    named and located from its own objects; binding and the answer's box from the asked
    frame only. One frame: exactly the single-image targets."""
    from jaxseg.train.base_tasks import BaseStream

    exp, _ = quick_base
    b = exp.config.pretrain.base
    loss = exp._base_loss(1.0, 1.0, 1.0, 1.0, 1.0, 1.0, copy=1.0, frame_label=1.0, route=1.0)
    stream = exp._base_stream(loss)
    tokenizer = exp.processor.tokenizer
    visual_id = exp.model.config.image_token_id
    seen = multi = 0
    for step in range(10**6, 10**6 + 8):
        curriculum = exp._base_curriculum()
        lo, hi = curriculum.frames_shown_at(step)
        items = BaseStream(int(b.seed), b.train_split, curriculum).batch(step, 4)
        for item, e in zip(items, stream(step, list(range(4))), strict=True):
            if item.task != "frames":
                continue
            seen += 1
            assert lo <= len(e["image_grid_thw"]) == len(item.frames) <= hi
            assert len(item.frame_objects) == len(item.frames)
            text = tokenizer.decode(e["input_ids"])
            for i, _ in item.frames:
                assert f"Frame {i}: " in text
            size = item.image.shape[0]
            visual = np.flatnonzero(e["input_ids"] == visual_id)
            per_image = visual.size // len(item.frames)
            frame_tokens = [
                visual[j * per_image : (j + 1) * per_image] for j in range(len(item.frames))
            ]
            asked = frame_tokens[item.frame_position]
            for (i, _), own in zip(item.frames, frame_tokens, strict=True):
                # every token of a frame names its label's digits, as the prompt writes them
                digits = tokenizer.encode(str(i), add_special_tokens=False)
                want = digits + [-1] * (2 - len(digits))
                assert (e["frame"][own] == want).all()
            assert (e["frame"][~np.isin(np.arange(len(e["frame"])), visual)] == -1).all()
            # the route head's target: the question's frame number, after the last image
            routed = np.flatnonzero(e["route"] > 0)
            assert routed.size and routed.min() > visual.max()
            label = item.frames[item.frame_position][0]
            assert tokenizer.decode(e["input_ids"][routed]) == str(label)
            if len(item.frames) == 1:  # a single image under its label: the single-image targets
                want = loss.example_target(e, item.salient_boxes, size)
                assert want.any() and np.array_equal(e["objectness"], want)
                assert np.array_equal(e["referent"], loss.example_target(e, item.referent, size))
                words = loss.example_words(e, item.objects, item.object_attributes, size)
                assert np.array_equal(e["describe"], words)
                located = loss.example_boxes(e, item.objects, item.referent, size)
                assert np.array_equal(e["locate"], located, equal_nan=True)
                continue
            multi += 1
            assert np.isclose(e["objectness"].sum(), 1.0)  # one distribution over all frames
            for j, (boxes, _) in enumerate(item.frame_objects):
                own = frame_tokens[j]
                assert (e["objectness"][own] > 0).any() == (len(boxes) > 0)
                assert ((e["describe"][own] >= 0).any()) == (len(boxes) > 0)
                assert not np.isnan(e["locate"][own]).all() or len(boxes) == 0
            marked = np.flatnonzero(e["referent"] > 0)  # binding: the asked frame's object
            assert marked.size > 0 and np.isin(marked, asked).all()
            answer = np.flatnonzero(~np.isnan(e["locate"][:, 0]))
            answer = answer[~np.isin(answer, visual)]  # the answer positions' box: the asked one
            assert answer.size > 0
            assert np.allclose(e["locate"][answer], item.referent[0] / size)
            assert (e["copy"] < 0).all()
    assert seen > multi > 0


def test_held_out_locate_iou_reads_the_head_at_the_last_fitted_answer_position(quick_base):
    """`locate_iou` (the stage's evaluations, head attached): a head that says the named
    object's own normalised box everywhere scores 1; one that says another box scores its
    IoU with it; without the head there is no such metric."""
    from jaxseg.eval.metrics import box_iou
    from jaxseg.train.base_tasks import eval_items
    from jaxseg.train.objectness import (
        LOCATE_HEAD,
        LOCATE_HIDDEN_HEAD,
        LocateHead,
        attached_head,
    )

    exp, _ = quick_base
    item = eval_items(7, "base_heldout", 1, "box")[0]
    size = item.image.shape[0]
    head = LocateHead(exp.model.config.text.head_dim)
    assert "locate_iou" not in exp._named_attention([item])
    with attached_head(exp.model, head, LOCATE_HEAD):
        head.b.set_value(np.asarray(item.referent[0] / size, np.float32))
        assert exp._named_attention([item])["locate_iou"] == pytest.approx(1.0, abs=1e-5)
        other = np.array([0, 0, size / 2, size / 2], np.float32)
        head.b.set_value(other / size)
        expected = float(box_iou(other[None], item.referent[:1])[0, 0])
        got = exp._named_attention([item])["locate_iou"]
        assert got == pytest.approx(expected, abs=1e-5) and got < 1.0
        assert "locate_hidden_iou" not in exp._named_attention([item])
        # the final-hidden head, scored the same way beside it
        written = LocateHead(exp.model.config.text.hidden_size)
        with attached_head(exp.model, written, LOCATE_HIDDEN_HEAD):
            written.b.set_value(np.asarray(item.referent[0] / size, np.float32))
            both = exp._named_attention([item])
            assert both["locate_hidden_iou"] == pytest.approx(1.0, abs=1e-5)
            assert both["locate_iou"] == pytest.approx(expected, abs=1e-5)


def test_held_out_frames_items_report_the_heads_mass_on_the_asked_frame(quick_base):
    """On `frames` items the supervised head is scored against the asked frame: its mass on
    the named object there (within its mass on that frame's tokens) next to an even spread
    over every frame's objects, its mass on the frame next to 1/frames, and the box head's
    target is the asked frame's object (a head saying that box scores IoU 1)."""
    from jaxseg.train.base_tasks import eval_items
    from jaxseg.train.objectness import LOCATE_HEAD, LocateHead, attached_head

    exp, _ = quick_base
    items = eval_items(7, "base_heldout", 3, "frames", shown_frames=(2, 4))
    assert all(len(it.frames) >= 2 for it in items)
    out = exp._named_attention(items)
    assert 0.0 <= out["attend_named"] <= out["attend_frame"] + 1e-6 <= 1.0 + 1e-6
    spread = np.mean([1.0 / len(it.frames) for it in items])
    assert out["attend_frame_uniform"] == pytest.approx(spread)
    assert 0.0 < out["attend_named_uniform"] < 1.0
    assert exp.config.pretrain.base.frame_label > 0 and 0.0 <= out["frame_named"] <= 1.0
    assert exp.config.pretrain.base.route > 0 and 0.0 < out["route_mass"] < 1.0
    item = items[0]
    head = LocateHead(exp.model.config.text.head_dim)
    with attached_head(exp.model, head, LOCATE_HEAD):
        head.b.set_value(np.asarray(item.referent[0] / item.image.shape[0], np.float32))
        assert exp._named_attention([item])["locate_iou"] == pytest.approx(1.0, abs=1e-5)
    assert "attend_frame" not in exp._named_attention(eval_items(7, "base_heldout", 1, "box"))


def test_a_run_resumes_into_a_grown_vision_tower_computing_the_same(quick_base):
    """`model.vision` overrides the preset's tower; a checkpoint written before the tower grew
    (blocks appended, MLPs widened) resumes into it with the same logits (new blocks are the
    identity, new MLP units write zero), the new parts from their initial values and zero
    optimizer moments; a change that is not growth (a width) is still refused."""
    from flax import nnx

    from jaxseg.config import load_config
    from jaxseg.protocols.policy import without_meta
    from jaxseg.train.base_tasks import eval_items
    from jaxseg.train.checkpoint import Checkpointer
    from jaxseg.train.learner import ITEMS, _restore_grown
    from jaxseg.train.steps import forward_logits
    from jaxseg.train.trainer import Experiment

    exp, workdir = quick_base
    ckpt_dir = workdir / "pretrain" / "ckpt"
    if not ckpt_dir.is_dir():
        exp.pretrain()
    old = exp.model.config.vision
    items = eval_items(7, "base_heldout", 2, "box")
    rows = [
        exp.encoder.encode(without_meta(it.conversation(with_answer=True))).as_example()
        for it in items
    ]

    def logits(e):
        return np.asarray(forward_logits(e.model, e.batches(rows, 2)[0]))

    wider = old.intermediate_size * 4
    grown, opt, step = resumed(exp, workdir, {"depth": old.depth + 1, "intermediate_size": wider})
    v = grown.model.config.vision
    assert (v.depth, v.intermediate_size) == (old.depth + 1, wider)
    assert step == exp.config.pretrain.steps
    np.testing.assert_allclose(logits(grown), logits(exp), atol=1e-5, rtol=1e-5)
    new = grown.model.visual.blocks[old.depth]
    assert np.all(np.asarray(new.attn.proj.kernel[...]) == 0)
    assert np.all(np.asarray(new.mlp.linear_fc2.kernel[...]) == 0)
    assert np.abs(np.asarray(new.attn.qkv.kernel[...])).sum() > 0  # its initial draw
    first = grown.model.visual.blocks[0].mlp
    trained = exp.model.visual.blocks[0].mlp
    n = old.intermediate_size
    np.testing.assert_array_equal(
        np.asarray(first.linear_fc1.kernel[...])[:, :n], np.asarray(trained.linear_fc1.kernel[...])
    )
    assert np.abs(np.asarray(first.linear_fc1.kernel[...])[:, n:]).sum() > 0
    assert np.all(np.asarray(first.linear_fc2.kernel[...])[n:] == 0)
    moments = nnx.to_pure_dict(nnx.state(opt, nnx.optimizer.OptState))["opt_state"]
    mu = subtrees_named(moments, "mu")
    assert mu, "no first moments found"
    for tree in mu:
        kernel = np.asarray(tree["visual"]["blocks"][0]["mlp"]["linear_fc1"]["kernel"])
        assert np.all(kernel[:, n:] == 0) and np.abs(kernel[:, :n]).sum() > 0

    # a width is not growth: refused with the mismatch named
    config = load_config("synthetic_base:quick")
    config.model.vision = {"hidden_size": old.hidden_size * 2, "num_heads": old.num_heads * 2}
    wide = Experiment(config, workdir.parent / "wide", progress=False)
    with Checkpointer(ckpt_dir, item_names=ITEMS, read_only=True) as ckpt:
        target = {"params": nnx.to_pure_dict(nnx.state(wide.model, nnx.Param))}
        assert _restore_grown(ckpt, target) is None


def resumed(exp, workdir, vision):
    """(Experiment, optimizer, step): `synthetic_base:quick` with `vision` over its tower's
    overrides,
    its policy and optimizer restored from the quick run's pretrain checkpoint."""
    from flax import nnx

    from jaxseg.config import load_config
    from jaxseg.train.checkpoint import Checkpointer
    from jaxseg.train.learner import ITEMS
    from jaxseg.train.objectness import (
        LOCATE_HEAD,
        LOCATE_HIDDEN_HEAD,
        LocateHead,
        ObjectnessHead,
        attached_head,
    )
    from jaxseg.train.steps import OptimizerConfig, make_optimizer
    from jaxseg.train.trainer import Experiment

    config = load_config("synthetic_base:quick")
    config.model.vision = {**dict(config.model.get("vision") or {}), **vision}
    name = "_".join(f"{k}{v}" for k, v in sorted(vision.items()))
    grown = Experiment(config, workdir.parent / f"resumed_{name}", progress=False)
    exp.learner.load("pretrain", exp.model, workdir=workdir)  # the trained policy
    text = grown.model.config.text
    with (  # the stage's auxiliary heads, as its checkpoint holds them
        attached_head(grown.model, ObjectnessHead(text.hidden_size)),
        attached_head(grown.model, LocateHead(text.head_dim), LOCATE_HEAD),
        attached_head(grown.model, LocateHead(text.hidden_size), LOCATE_HIDDEN_HEAD),
    ):
        opt = nnx.Optimizer(
            grown.model, make_optimizer(OptimizerConfig(learning_rate=1e-3)), wrt=nnx.Param
        )
        ckpt_dir = workdir / "pretrain" / "ckpt"
        with Checkpointer(ckpt_dir, item_names=ITEMS, read_only=True) as ckpt:
            step, _ = grown.learner.restore(ckpt, grown.model, opt)
    return grown, opt, step


def test_a_run_resumes_into_a_tower_with_smaller_patches_and_a_larger_merge(tmp_path):
    """Patch 16 / merge 2 -> patch 8 / merge 4 (a merged token covers the same 32 px): the
    processor follows the tower (the same placeholders per frame), the language model and
    the tower's blocks carry over, a patch tiled 2x2 embeds as the old patch did, the
    mergers map hidden states repeated over each old patch's 2x2 new patches to what they
    did, the re-patched arrays' optimizer moments are zero, and the policy runs."""
    from flax import nnx

    from jaxseg.config import load_config
    from jaxseg.protocols.policy import without_meta
    from jaxseg.train.base_tasks import eval_items
    from jaxseg.train.steps import forward_logits
    from jaxseg.train.trainer import Experiment

    config = load_config("synthetic_base:quick")
    config.model.vision.update(patch_size=16, spatial_merge_size=2)
    workdir = tmp_path / "patch16"
    exp = Experiment(config, workdir, progress=False)
    exp.pretrain()
    old = exp.model.config.vision
    assert (old.patch_size, old.spatial_merge_size) == (16, 2)
    grown, opt, step = resumed(exp, workdir, {"patch_size": 8, "spatial_merge_size": 4})
    new = grown.model.config.vision
    assert (new.patch_size, new.spatial_merge_size) == (8, 4)
    assert step == exp.config.pretrain.steps
    improc = grown.processor.image_processor
    assert (improc.patch_size, improc.merge_size) == (8, 4)

    item = eval_items(7, "base_heldout", 1, "box")[0]
    conversation = without_meta(item.conversation(with_answer=True))
    before, after = exp.encoder.encode(conversation), grown.encoder.encode(conversation)
    image = exp.ids["image_token_id"]
    assert np.sum(before.input_ids == image) == np.sum(after.input_ids == image) > 0
    logits = np.asarray(forward_logits(grown.model, grown.batches([after.as_example()], 1)[0]))
    assert np.isfinite(logits).all()

    np.testing.assert_array_equal(
        np.asarray(grown.model.language_model.layers[0].mlp.up_proj.kernel[...]),
        np.asarray(exp.model.language_model.layers[0].mlp.up_proj.kernel[...]),
    )
    np.testing.assert_array_equal(
        np.asarray(grown.model.visual.blocks[0].attn.qkv.kernel[...]),
        np.asarray(exp.model.visual.blocks[0].attn.qkv.kernel[...]),
    )

    rng = np.random.default_rng(0)
    c_t = old.in_channels * old.temporal_patch_size
    small = rng.standard_normal((c_t, 8, 8)).astype(np.float32)
    tiled = np.tile(small, (1, 2, 2))  # [C*T, 16, 16]
    k_old = np.asarray(exp.model.visual.patch_embed.kernel[...])
    k_new = np.asarray(grown.model.visual.patch_embed.kernel[...])
    np.testing.assert_allclose(
        small.reshape(-1) @ k_new, tiled.reshape(-1) @ k_old, rtol=1e-4, atol=1e-4
    )

    width = old.hidden_size
    hidden = rng.standard_normal((3, 2, 2, width)).astype(np.float32)  # 3 windows of 2x2
    repeated = np.repeat(np.repeat(hidden, 2, axis=1), 2, axis=2)  # each -> its 4x4 window
    pairs = [(grown.model.visual.merger, exp.model.visual.merger)] + list(
        zip(grown.model.visual.deepstack_merger_list, exp.model.visual.deepstack_merger_list)
    )
    for merger_new, merger_old in pairs:
        np.testing.assert_allclose(
            np.asarray(merger_new(repeated.reshape(-1, width))),
            np.asarray(merger_old(hidden.reshape(-1, width))),
            rtol=1e-4,
            atol=1e-4,
        )
    moments = nnx.to_pure_dict(nnx.state(opt, nnx.optimizer.OptState))["opt_state"]
    mu = subtrees_named(moments, "mu")
    assert mu, "no first moments found"
    for tree in mu:
        assert np.all(np.asarray(tree["visual"]["patch_embed"]["kernel"]) == 0)
        assert np.abs(np.asarray(tree["visual"]["blocks"][0]["attn"]["qkv"]["kernel"])).sum() > 0


def subtrees_named(tree, name):
    """The sub-trees stored under key `name` anywhere in a nested dict."""
    if not isinstance(tree, dict):
        return []
    found = [tree[name]] if name in tree else []
    for value in tree.values():
        found += subtrees_named(value, name)
    return found


@pytest.mark.slow  # two ships of the quick base, each evaluating every task twice (~1-2 min)
def test_ship_writes_a_base_then_replaces_it_only_when_it_grounds_better(
    quick_base, tmp_path, capsys
):
    """`jaxseg base --steps 0`: an empty `--out` gets the checkpoint; shipping the same
    checkpoint again evaluates the shipped files (float16, the public loader) on the same
    items, finds no gain, and leaves them alone unless `--force`."""
    import argparse

    from jaxseg.commands import base

    exp, workdir = quick_base
    if exp.load_stage("pretrain") is None:
        exp.pretrain()
    parser = argparse.ArgumentParser()
    base.add_arguments(parser)
    out = tmp_path / "shipped"
    argv = ["--config", "synthetic_base:quick", "--workdir", str(workdir), "--steps", "0"]
    argv += ["--out", str(out), "--eval-items", "4", "--no-progress"]
    assert base.run(parser.parse_args(argv)) == 0
    assert "shipping: nothing shipped yet" in capsys.readouterr().out
    written = (out / "model.safetensors").stat().st_mtime_ns
    assert base.run(parser.parse_args(argv)) == 0
    said = capsys.readouterr().out
    assert "not shipped: mean IoU" in said and "frames" in said, said[-500:]
    assert (out / "model.safetensors").stat().st_mtime_ns == written
