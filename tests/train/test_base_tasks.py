"""The grounded base's curriculum data (jaxseg.train.base_tasks): every item's answer is true
of its frame, the stream is a pure function of (seed, step), held-out videos are not training
videos, and scoring gives perfect answers full marks and the priors what they earn."""

from __future__ import annotations

import json

import numpy as np
import pytest

from jaxseg.data.synth.generate import generate_video
from jaxseg.data.synth.world import SynthConfig
from jaxseg.protocols.annotations import scale_boxes
from jaxseg.train import base_tasks as bt


@pytest.fixture(scope="module")
def video():
    return generate_video(3, "base_test", 0, SynthConfig())


def _objects_in_frame(video, t):
    return bt._frame_objects(video, t)


def test_every_task_answer_is_true_of_its_frame(video):
    rng = np.random.default_rng(0)
    seen = set()
    for t in range(video.frames.shape[0]):
        objs = _objects_in_frame(video, t)
        for task in bt.TASKS:
            item = bt.make_item(rng, video, t, task, 112, f"v@{t}")
            if item is None:
                continue
            seen.add(task)
            assert item.image.shape == (112, 112, 3) and item.image.dtype == np.uint8
            if task == "box":
                (box,) = json.loads(item.answer)
                shown = [
                    np.round(scale_boxes(o["box"][None], video.frames.shape[1:3], (112, 112))[0])
                    for o in objs
                ]
                assert any(np.array_equal(box, s) for s in shown)  # one visible object's box
            elif task == "boxes":
                assert len(json.loads(item.answer)) == len(item.boxes) >= 2
                xs = [b[0] for b in item.boxes]
                assert xs == sorted(xs)  # left to right
            elif task == "absent":
                assert item.answer == bt.NO_TARGET and len(item.boxes) == 0
            elif task == "count":
                assert item.answer.isdigit()
            elif task == "colour":
                assert item.answer in {o["colour"] for o in objs}
            elif task == "restate":  # one of the video's own queries, quoted in the prompt
                assert item.answer in {q["exp"] for q in video.queries}
                assert f'"{item.answer}"' in item.prompt and len(item.referent) == 0
            elif task == "cell":
                (box,) = item.boxes
                cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
                col, row = divmod(bt.CELLS.index(item.answer), 4)[::-1]
                assert col * 28 <= cx <= (col + 1) * 28 and row * 28 <= cy <= (row + 1) * 28
    assert {"cell", "box", "count", "colour", "restate"} <= seen


def test_cell_letters_cover_the_grid_row_major():
    assert bt.cell_of(np.array([0, 0, 10, 10]), 112) == "A"
    assert bt.cell_of(np.array([100, 0, 112, 10]), 112) == "D"
    assert bt.cell_of(np.array([0, 100, 10, 112]), 112) == "M"
    assert bt.cell_of(np.array([100, 100, 112, 112]), 112) == "P"
    assert bt.cell_of(np.array([50, 30, 60, 40]), 112) == "F"  # centre (55, 35): row 1, col 1
    cells = bt.eval_items(11, "base_heldout", 12, "cell")
    row = bt.score("cell", [x.answer.lower() for x in cells], cells)
    assert row["accuracy"] == 1.0 and row["prior_majority"] < 1


def test_box_phrases_name_exactly_one_visible_object(video):
    rng = np.random.default_rng(1)
    checked = 0
    for t in range(video.frames.shape[0]):
        objs = _objects_in_frame(video, t)
        for _ in range(3):
            item = bt.make_item(rng, video, t, "box", 140, "k")
            if item is None:
                continue
            phrase = item.prompt.split('"the ')[1].split('"')[0]
            hits = [
                o
                for o in objs
                if all(
                    w in (o["size"], o["colour"], o["shape"])
                    for w in phrase.split()
                    if w != "shape"
                )
            ]
            assert len(hits) == 1, (phrase, [(o["size"], o["colour"], o["shape"]) for o in objs])
            want = np.round(scale_boxes(hits[0]["box"][None], video.frames.shape[1:3], (140, 140)))
            np.testing.assert_array_equal(item.boxes, want.astype(np.int64))
            checked += 1
    assert checked > 5


def test_absent_phrases_match_nothing_and_counts_are_exact(video):
    rng = np.random.default_rng(2)
    for t in range(0, video.frames.shape[0], 3):
        objs = _objects_in_frame(video, t)
        flt = bt._absent_filter(rng, objs, video)
        assert flt is None or not bt._matching(objs, flt)
        item = bt.make_item(rng, video, t, "count", 112, "k")
        if item is not None:
            words = item.prompt.removeprefix("How many ").split(" are in")[0].split()
            noun = words[-1]
            flt = {"colour": words[0]} if len(words) == 2 else {}
            if noun != "shapes":
                flt["shape"] = noun[:-2] if noun.endswith("xes") else noun[:-1]
            assert int(item.answer) == len(bt._matching(objs, flt))


def test_stream_is_a_pure_function_of_seed_and_step():
    stream = bt.BaseStream(seed=5, split="base_train", curriculum=bt.CurriculumConfig())
    a, b = stream.batch(7, 6), stream.batch(7, 6)
    assert [x.prompt for x in a] == [x.prompt for x in b]
    assert all(np.array_equal(x.image, y.image) for x, y in zip(a, b, strict=True))
    c = stream.batch(8, 6)
    assert any(not np.array_equal(x.image, y.image) for x, y in zip(a, c, strict=True))
    curriculum = bt.CurriculumConfig()
    assert curriculum.weights_at(0) == {"square": 1.0}  # location first
    last = curriculum.phases[-1][0]
    assert set(curriculum.weights_at(last)) == set(bt.TASKS) - {"square"}
    assert {x.task for x in stream.batch(0, 8)} == {"square"}


def test_scene_phases_set_what_the_frames_show():
    curriculum = bt.CurriculumConfig()
    stream = bt.BaseStream(seed=5, split="base_train", curriculum=curriculum)
    # early phases: one object on a plain background, so every cell answer names that object
    step = curriculum.phases[1][0]
    assert curriculum.synth_at(step, SynthConfig()).objects == (1, 1)
    for item in stream.batch(step, 8):
        assert item.boxes.shape == (1, 4)
    last = curriculum.scenes[-1][0]
    assert curriculum.synth_at(last, SynthConfig()) == SynthConfig()
    # a config's lists become the generator's tuples
    listed = bt.CurriculumConfig(scenes=((0, {"objects": [2, 3]}),))
    assert listed.synth_at(0, SynthConfig()).objects == (2, 3)


def test_frames_items_show_as_many_frames_as_asked_the_asked_one_included():
    curriculum = bt.CurriculumConfig()
    first, _ = curriculum.frames_shown[0]
    assert curriculum.frames_shown_at(first) == bt.FRAMES_SHOWN
    assert curriculum.frames_shown_at(10**6) == curriculum.frames_shown[-1][1]
    for shown in ((1, 1), (2, 2), (4, 8)):
        items = bt.eval_items(7, "base_heldout", 6, "frames", shown_frames=shown)
        for item in items:
            assert shown[0] <= len(item.frames) <= shown[1]
            index, image = item.frames[item.frame_position]
            assert image is item.image and f"in frame {index} of" in item.prompt
            ids = [i for i, _ in item.frames]
            assert ids == sorted(set(ids))  # distinct frames in video order
            # every shown frame's objects, the asked one's being the item's own
            assert len(item.frame_objects) == len(ids)
            boxes, attributes = item.frame_objects[item.frame_position]
            assert np.array_equal(boxes, item.objects)
            assert np.array_equal(attributes, item.object_attributes)
            for boxes, attributes in item.frame_objects:
                assert boxes.shape[1:] == (4,) and attributes.shape == (len(boxes), 3)
            parts = item.conversation(with_answer=False)[0]["content"]
            labels = [p["text"] for p in parts[:-1:2]]
            assert labels == [f"Frame {i}: " for i in ids]  # each frame after its label
            assert [p["type"] for p in parts[1:-1:2]] == ["image"] * len(ids)


def test_held_out_videos_are_not_training_videos():
    cfg = SynthConfig()
    train = [generate_video(7, "base_train", i, cfg).frames[0] for i in range(6)]
    held = [generate_video(7, "base_heldout", i, cfg).frames[0] for i in range(6)]
    assert not any(np.array_equal(a, b) for a in train for b in held)


def test_scoring_perfect_answers_and_priors():
    items = bt.eval_items(11, "base_heldout", 12, "box")
    perfect = bt.score("box", [x.answer for x in items], items)
    assert perfect["iou"] == pytest.approx(1.0) and perfect["iou>0.5"] == 1.0
    assert 0 < perfect["prior_mean_box_iou"] < 0.5
    garbage = bt.score("box", ["no idea"] * len(items), items)
    assert garbage["iou"] == 0.0 and garbage["parse_ok"] == 0.0
    absent = bt.eval_items(11, "base_heldout", 6, "absent")
    assert bt.score("absent", ["no target"] * 6, absent)["iou"] == 1.0
    assert bt.score("absent", ["[[1, 2, 3, 4]]"] * 6, absent)["iou"] == 0.0
    counts = bt.eval_items(11, "base_heldout", 10, "count")
    row = bt.score("count", [x.answer for x in counts], counts)
    assert row["accuracy"] == 1.0 and 0 < row["prior_majority"] <= 1


def test_restate_scores_exact_copies_and_words_in_place():
    items = bt.eval_items(11, "base_heldout", 8, "restate")
    assert len({x.answer for x in items}) > 1  # not one query over and over
    perfect = bt.score("restate", [x.answer for x in items], items)
    assert perfect["accuracy"] == 1.0 and perfect["word_accuracy"] == 1.0
    # the first word dropped: no exact copy, and every later word now out of place
    shifted = bt.score("restate", [x.answer.split(" ", 1)[1] for x in items], items)
    assert shifted["accuracy"] == 0.0 and shifted["word_accuracy"] < 0.5
    # the last word wrong: one word of n lost
    one_off = [x.answer.rsplit(" ", 1)[0] + " banana" for x in items]
    got = bt.score("restate", one_off, items)["word_accuracy"]
    want = np.mean([1 - 1 / len(x.answer.split()) for x in items])
    assert got == pytest.approx(want)


def test_restate_joins_the_mix_at_its_phase_only():
    c = bt.CurriculumConfig()
    assert "restate" not in c.weights_at(32999) and c.weights_at(33000)["restate"] > 0
    stream = bt.BaseStream(5, "base_train", c)
    tasks = [x.task for x in stream.batch(33000, 32)]
    assert "restate" in tasks and "box" in tasks
    assert "quote" not in c.weights_at(37999) and c.weights_at(38000)["quote"] > 0


def test_quote_answers_open_a_protocol_trace_with_the_query():
    """A `quote` item's answer is the first sentence of the protocols' traces for its query,
    the same query its prompt quotes; exact and word scores as for `restate`."""
    import json

    items = bt.eval_items(11, "base_heldout", 8, "quote")
    for x in items:
        query = x.prompt.split('Query: "', 1)[1].rsplit('"', 1)[0]
        assert x.answer == f"<think>The query asks for {json.dumps(query)}."
    perfect = bt.score("quote", [x.answer for x in items], items)
    assert perfect["accuracy"] == 1.0 and perfect["word_accuracy"] == 1.0
    opening = bt.score("quote", ['<think>The query asks for "the circle".'] * 8, items)
    assert opening["accuracy"] <= 0.25 and 0.4 < opening["word_accuracy"] < 1.0


def test_phrase_names_says_what_a_box_phrase_names():
    for flt, want in (
        ({"colour": "red"}, "colour"),
        ({"shape": "circle"}, "shape"),
        ({"size": "small", "shape": "star"}, "size+shape"),
        ({"size": "large", "colour": "cyan"}, "size+colour"),
        ({"size": "medium", "colour": "pink", "shape": "cross"}, "size+colour+shape"),
    ):
        assert bt.phrase_names(bt.BOX_PROMPT.format(phrase=bt._phrase(flt), S=112)) == want
    assert bt.phrase_names("How many circles are in the image?") == ""


def test_box_iou_splits_by_what_the_phrase_names():
    items = bt.eval_items(11, "base_heldout", 40, "box")
    named = [bt.phrase_names(x.prompt) for x in items]
    by_colour = ["colour" in n for n in named]
    by_shape = ["shape" in n and "colour" not in n for n in named]
    assert any(by_colour) and any(by_shape)
    # right on the colour-named items only: 1 there, 0 on the shape-named ones
    texts = [x.answer if c else "no target" for x, c in zip(items, by_colour, strict=True)]
    row = bt.score("box", texts, items)
    assert row["iou@colour"] == pytest.approx(1.0) and row["iou@shape"] == 0.0
    assert row["iou"] == pytest.approx(np.mean(by_colour))


def test_parse_boxes():
    assert bt.parse_boxes("[[1, 2, 3, 4], [5, 6, 7, 8]]").shape == (2, 4)
    assert bt.parse_boxes("no target").shape == (0, 4)
    assert bt.parse_boxes("[1, 2, 3, 4]") is None
    assert bt.parse_boxes("[[1, 2, 3]]") is None
    assert bt.parse_boxes(None) is None


def test_square_items_are_the_locate_probes_frames():
    rng = np.random.default_rng(0)
    for _ in range(20):
        item = bt.square_item(rng, 128, "k")
        x0, y0, x1, y1 = item.boxes[0]
        assert x1 - x0 == 16 and 0 <= x0 and x1 <= 128 and 0 <= y0 and y1 <= 128
        patch = item.image[y0:y1, x0:x1].reshape(-1, 3)
        assert (patch == patch[0]).all() and patch[0].max() >= 120  # the bright square
        assert item.answer == bt.CELLS[((y0 + 8) * 4 // 128) * 4 + (x0 + 8) * 4 // 128]
    items = bt.eval_items(3, "base_heldout", 8, "square")
    assert {x.task for x in items} == {"square"}


def test_square_steps_render_no_videos_and_world_items_list_every_object(monkeypatch):
    curriculum = bt.CurriculumConfig()
    stream = bt.BaseStream(seed=5, split="base_train", curriculum=curriculum)
    late = stream.batch(curriculum.phases[-1][0], 8)  # full scenes
    for item in late:
        assert item.objects.ndim == 2 and item.objects.shape[1] == 4
        for box in item.boxes:  # the asked-for boxes are among the frame's objects
            assert any(np.abs(box - o).max() <= 1 for o in item.objects)
    assert max(len(x.objects) for x in late) >= 2

    def no_render(*args, **kwargs):
        raise AssertionError("a square-only step rendered a video")

    monkeypatch.setattr(bt, "generate_video", no_render)
    square = stream.batch(0, 8)
    assert [len(x.objects) for x in square] == [1] * 8
    assert all(np.array_equal(x.objects, x.boxes) for x in square)


def test_question_first_items_put_the_text_before_the_image_and_mark_the_asked_object():
    curriculum = bt.CurriculumConfig()
    assert curriculum.text_first_at(0) == 1.0 and curriculum.text_first_at(6000) == 0.5
    assert curriculum.text_first_at(10**6) == 0.0  # in the end, the protocols' order only
    stream = bt.BaseStream(seed=5, split="base_train", curriculum=curriculum)
    items = stream.batch(6000, 32)
    first = [x for x in items if x.text_first]
    assert 0 < len(first) < len(items)  # half and half from the full mix's first phase
    assert not any(x.text_first for x in stream.batch(11000, 8))
    for item in items:
        kinds = [part["type"] for part in item.conversation(with_answer=False)[0]["content"]]
        assert kinds == (["text", "image"] if item.text_first else ["image", "text"])
        asked = item.text_first and item.task in ("cell", "box", "boxes")
        expected = item.boxes if asked else item.objects
        assert np.array_equal(item.salient_boxes, expected)


def test_referent_is_what_the_question_names(video):
    """`referent` (where attention supervision pulls an answer): the answer's boxes for the
    location tasks, the described object for colour, every counted object for count, nothing
    for absent phrases; always among the frame's visible objects."""
    rng = np.random.default_rng(5)
    seen = set()
    for t in range(video.frames.shape[0]):
        for task in bt.TASKS:
            item = bt.make_item(rng, video, t, task, 112, f"v@{t}")
            if item is None:
                continue
            seen.add(task)
            objects = {tuple(b) for b in item.objects.tolist()}
            assert {tuple(b) for b in item.referent.tolist()} <= objects
            if task in ("square", "cell", "box", "boxes", "absent"):
                assert np.array_equal(item.referent, item.boxes)
            elif task == "colour":
                assert len(item.referent) == 1
            elif task == "count":
                assert len(item.referent) == int(item.answer)
    assert {"cell", "box", "boxes", "count", "colour"} <= seen


def test_object_attributes_are_each_objects_words(video):
    """`object_attributes [M, 3]` (what L_desc teaches each object's visual token to name)
    are the class indices of each of `objects`' colour, shape and size in that frame, in
    `objects`' order; the square task's square is no world object and has none."""
    rng = np.random.default_rng(2)
    for t in range(0, video.frames.shape[0], 3):
        objs = _objects_in_frame(video, t)
        item = bt.make_item(rng, video, t, "count", 112, f"v@{t}")
        if item is None:
            continue
        assert item.object_attributes.shape == (len(item.objects), 3) == (len(objs), 3)
        for row, o in zip(item.object_attributes, objs, strict=True):
            named = [values[i] for (_, values), i in zip(bt.ATTRIBUTES, row, strict=True)]
            assert named == [o["colour"], o["shape"], o["size"]]
    square = bt.square_item(rng, 112, "sq")
    assert square.object_attributes.shape == (0, 3) and len(square.objects) == 1
