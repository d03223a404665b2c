"""Objectness (jaxseg.train.objectness): targets on the merged visual grid, the loss's
values and gradients, and the head's life in a stage: trained with the policy, kept out of
`params`, restored on resume, gone after."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from policy_examples import example
from test_steps import IMG, tiny_config

from jaxseg.models.qwen2_5_vl import Qwen2_5_VLForConditionalGeneration
from jaxseg.train.batch import make_policy_batch
from jaxseg.train.objectness import (
    HEAD,
    LOCATE_HEAD,
    LOCATE_HIDDEN_HEAD,
    AuxParam,
    LocateHead,
    ObjectnessHead,
    ObjectnessLoss,
    attached_head,
    centre_attributes,
    centre_boxes,
    centre_cells,
    locate_features,
    token_target,
)
from jaxseg.train.steps import (
    OptimizerConfig,
    learning_rate_schedule,
    make_optimizer,
    train_step,
)


def test_centre_cells_is_uniform_over_the_cells_of_the_centres():
    one = centre_cells(np.array([[90, 0, 110, 20]]), 112, 4, 4)  # centre (100, 10): row 0, col 3
    assert one[3] == 1.0 and one.sum() == 1.0
    same = centre_cells(np.array([[0, 0, 10, 10], [5, 5, 20, 20]]), 112, 4, 4)
    assert same[0] == 1.0  # two centres in one cell: still a distribution
    two = centre_cells(np.array([[0, 0, 10, 10], [100, 100, 112, 112]]), 112, 4, 4)
    assert two[0] == two[15] == 0.5
    edge = centre_cells(np.array([[112, 112, 112, 112]]), 112, 4, 4)
    assert edge[15] == 1.0  # on the far border: the last cell, not out of range
    assert not centre_cells(np.zeros((0, 4)), 112, 4, 4).any()
    five = centre_cells(np.array([[56, 56, 84, 84]]), 140, 5, 5)  # 140 px: a 5x5 grid
    assert five.shape == (25,) and five[2 * 5 + 2] == 1.0


def test_token_target_lands_on_the_image_tokens_in_order():
    ids = np.array([5, 62, *[IMG] * 16, 63, 7, 8])
    grid = np.array([[1, 8, 8]])  # 8x8 patches, merge 2: 4x4 tokens
    target = token_target(ids, grid, np.array([[90, 0, 110, 20]]), 112, image_token_id=IMG, merge=2)
    assert target.shape == ids.shape and target.sum() == pytest.approx(1.0)
    assert np.flatnonzero(target).tolist() == [2 + 3]  # the 4th image token
    with pytest.raises(ValueError, match="image tokens"):
        token_target(ids[:-5], grid, np.zeros((1, 4)), 112, image_token_id=IMG, merge=2)
    with pytest.raises(ValueError, match="one image"):
        token_target(ids, np.ones((2, 3)), np.zeros((1, 4)), 112, image_token_id=IMG, merge=2)


def test_centre_attributes_names_the_largest_object_of_each_cell():
    boxes = np.array([[0, 0, 10, 10], [0, 0, 24, 24], [100, 100, 112, 112]])
    attrs = np.array([[1, 2, 0], [3, 4, 2], [5, 6, 1]])
    out = centre_attributes(boxes, attrs, 112, 4, 4)
    assert out.shape == (16, 3)
    assert out[0].tolist() == [3, 4, 2]  # two centres in cell A: the larger box's values
    assert out[15].tolist() == [5, 6, 1]
    assert (out[1:15] == -1).all()
    assert (centre_attributes(np.zeros((0, 4)), np.zeros((0, 3)), 112, 4, 4) == -1).all()


def test_centre_boxes_are_the_largest_object_of_each_cell_normalised():
    boxes = np.array([[0, 0, 10, 10], [0, 0, 24, 24], [100, 100, 112, 112]])
    out = centre_boxes(boxes, 112, 4, 4)
    assert out.shape == (16, 4)
    np.testing.assert_allclose(out[0], np.array([0, 0, 24, 24]) / 112)  # the larger one
    np.testing.assert_allclose(out[15], np.array([100, 100, 112, 112]) / 112)
    assert np.isnan(out[1:15]).all()
    assert np.isnan(centre_boxes(np.zeros((0, 4)), 112, 4, 4)).all()


def test_locate_targets_sit_on_object_tokens_and_the_answer_positions(setup):
    """`example_boxes`: each visual token holding a centre gets its object's normalised box;
    with exactly one named object the positions predicting the answer up to its first
    content token (an anchor id) get that box, never one whose input holds the content;
    nothing else is supervised."""
    cfg, examples = setup
    loss = ObjectnessLoss(0.0, IMG, attend=1.0, locate=1.0, anchor_ids=(72, 73))
    mask = np.zeros(examples[0]["input_ids"].size, np.float32)
    mask[-4:] = 1.0  # the answer: the last 4 tokens, "[[" 7 3 "]]" say
    ids = examples[0]["input_ids"].copy()
    ids[-4:] = [70, 73, 72, 71]
    e = dict(examples[0], input_ids=ids, policy_mask=mask)
    objects = np.array([[0, 0, 20, 20], [40, 40, 60, 60]])  # 2x2 tokens at 64 px: cells 0, 3
    out = loss.example_boxes(e, objects, objects[1:], 64)
    image = np.flatnonzero(e["input_ids"] == IMG)
    np.testing.assert_allclose(out[image[0]], objects[0] / 64)
    np.testing.assert_allclose(out[image[3]], objects[1] / 64)
    assert np.isnan(out[image[1:3]]).all()
    answer = np.arange(mask.size - 5, mask.size - 3)  # predicting "[[" and the first digit
    np.testing.assert_allclose(out[answer], np.tile(objects[1] / 64, (len(answer), 1)))
    held = ~np.isnan(out[:, 0])
    assert held.sum() == 2 + len(answer)
    # no content token in the answer: only the position predicting its first token
    plain = ObjectnessLoss(0.0, IMG, attend=1.0, locate=1.0)
    plain = plain.example_boxes(e, objects, objects[1:], 64)
    assert np.flatnonzero(~np.isnan(plain[:, 0]))[-1] == mask.size - 5
    # two named objects (a plural) or none: only the visual tokens
    assert (~np.isnan(loss.example_boxes(e, objects, objects, 64)[:, 0])).sum() == 2
    assert (~np.isnan(loss.example_boxes(e, objects, objects[:0], 64)[:, 0])).sum() == 2
    with pytest.raises(ValueError, match="policy_mask"):
        loss.example_boxes(dict(e, policy_mask=mask[:-1]), objects, objects[1:], 64)


def test_locate_fits_the_box_head_at_objects_and_answers(setup):
    """L_loc (on the attention-supervised head's values) starts at the zero head's error
    (the centred half-frame box), falls when trained, through an auxiliary head that stays
    out of the policy's params; a missing field and a loss without `attend` are named."""
    from jaxseg.models.family import attention_capture

    cfg, examples = setup
    with pytest.raises(ValueError, match="attend"):
        ObjectnessLoss(0.0, IMG, locate=1.0)
    loss = ObjectnessLoss(0.0, IMG, attend=1.0, locate=1.0)
    objects = [np.array([[0, 0, 20, 20]]), np.array([[36, 4, 60, 30]]), np.zeros((0, 4))]
    located = []
    for e, b in zip(examples, objects, strict=True):
        mask = np.zeros(e["input_ids"].size, np.float32)
        mask[-4:] = 1.0  # the answer: the last 4 tokens
        e = dict(e, policy_mask=mask, referent=loss.example_target(e, b, 64))
        located.append(dict(e, locate=loss.example_boxes(e, b, b, 64)))
    with pytest.raises(KeyError, match="locate"):
        unlocated = [dict(e, referent=x["referent"]) for e, x in zip(examples, located)]
        loss.collate(make_policy_batch(unlocated, config=cfg), unlocated)
    batch = loss.collate(make_policy_batch(located, config=cfg), located)
    denoms = loss.weights(batch)
    assert denoms[4] > denoms[5] > 0  # positions located; of them answer positions
    model = Qwen2_5_VLForConditionalGeneration(cfg, rngs=nnx.Rngs(0))
    before = set(nnx.to_pure_dict(nnx.state(model, nnx.Param)))
    head = LocateHead(cfg.text.head_dim)
    with attached_head(model, head, LOCATE_HEAD), attention_capture(model):
        _, aux = loss.objective(model, batch, jnp.asarray(denoms, jnp.float32))
        first = loss.metrics({k: float(v) for k, v in aux.items()}, denoms)
        centred = np.array([0.25, 0.25, 0.75, 0.75])
        held = np.asarray(batch.locate)[~np.isnan(np.asarray(batch.locate)[..., 0])]
        assert first["locate"] == pytest.approx(np.abs(held - centred).sum(-1).mean(), rel=1e-5)
        tx = make_optimizer(OptimizerConfig(learning_rate=1e-2, schedule="constant"))
        optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)
        for _ in range(30):
            last = train_step(model, optimizer, [batch], loss)
        assert last["locate"] < 0.5 * first["locate"], (first, last)
        assert last["locate_answer"] < 0.5 * first["locate_answer"], (first, last)
        assert set(nnx.to_pure_dict(nnx.state(model, AuxParam))) == {LOCATE_HEAD}
    assert not hasattr(model, LOCATE_HEAD)
    assert set(nnx.to_pure_dict(nnx.state(model, nnx.Param))) == before


def test_locate_hidden_fits_the_answer_positions_final_hidden_states(setup):
    """L_loc_h (the same boxes from the final hidden states, answer positions only) starts at
    the zero head's error there and falls when trained; it needs `locate`'s targets."""
    from jaxseg.models.family import attention_capture

    cfg, examples = setup
    with pytest.raises(ValueError, match="locate > 0"):
        ObjectnessLoss(0.0, IMG, attend=1.0, locate_hidden=1.0)
    loss = ObjectnessLoss(0.0, IMG, attend=1.0, locate=1.0, locate_hidden=1.0)
    objects = [np.array([[0, 0, 20, 20]]), np.array([[36, 4, 60, 30]]), np.zeros((0, 4))]
    located = []
    for e, b in zip(examples, objects, strict=True):
        mask = np.zeros(e["input_ids"].size, np.float32)
        mask[-4:] = 1.0
        e = dict(e, policy_mask=mask, referent=loss.example_target(e, b, 64))
        located.append(dict(e, locate=loss.example_boxes(e, b, b, 64)))
    batch = loss.collate(make_policy_batch(located, config=cfg), located)
    denoms = loss.weights(batch)
    model = Qwen2_5_VLForConditionalGeneration(cfg, rngs=nnx.Rngs(0))
    with (
        attached_head(model, LocateHead(cfg.text.head_dim), LOCATE_HEAD),
        attached_head(model, LocateHead(cfg.text.hidden_size), LOCATE_HIDDEN_HEAD),
        attention_capture(model),
    ):
        _, aux = loss.objective(model, batch, jnp.asarray(denoms, jnp.float32))
        first = loss.metrics({k: float(v) for k, v in aux.items()}, denoms)
        targets = np.asarray(batch.locate)
        answer = ~np.isnan(targets[..., 0]) & (np.asarray(batch.visual) == 0)
        centred = np.array([0.25, 0.25, 0.75, 0.75])
        want = np.abs(targets[answer] - centred).sum(-1).mean()
        assert first["locate_hidden"] == pytest.approx(want, rel=1e-5)
        assert first["locate_hidden"] == pytest.approx(first["locate_answer"], rel=1e-5)
        tx = make_optimizer(OptimizerConfig(learning_rate=1e-2, schedule="constant"))
        optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)
        for _ in range(30):
            last = train_step(model, optimizer, [batch], loss)
        assert last["locate_hidden"] < 0.5 * first["locate_hidden"], (first, last)
        heads = set(nnx.to_pure_dict(nnx.state(model, AuxParam)))
        assert heads == {LOCATE_HEAD, LOCATE_HIDDEN_HEAD}


def test_locate_reads_values_at_visual_tokens_and_what_the_head_brings_elsewhere():
    rng = np.random.default_rng(0)
    probs = jax.nn.softmax(jnp.asarray(rng.normal(size=(2, 5, 5))), -1)
    values = jnp.asarray(rng.normal(size=(2, 5, 3)), jnp.float32)
    visual = jnp.asarray([[0, 1, 1, 0, 0], [1, 0, 0, 0, 0]], jnp.float32)
    out = np.asarray(locate_features(probs, values, visual))
    np.testing.assert_allclose(out[0, 1], values[0, 1])  # a visual token: its own value
    brought = np.asarray(probs[0, 3]) @ np.asarray(values[0])
    np.testing.assert_allclose(out[0, 3], brought, rtol=1e-5)  # the answer: the mixture


def _fit_from_scratch(cfg, loss, batch, denoms, steps: int = 20):
    """(metrics of a fresh policy of `cfg` on `batch`, those of its last of `steps` train
    steps at AdamW 1e-2)."""
    model = Qwen2_5_VLForConditionalGeneration(cfg, rngs=nnx.Rngs(0))
    _, aux = loss.objective(model, batch, jnp.asarray(denoms, jnp.float32))
    first = loss.metrics({k: float(v) for k, v in aux.items()}, denoms)
    tx = make_optimizer(OptimizerConfig(learning_rate=1e-2, schedule="constant"))
    optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)
    for _ in range(steps):
        last = train_step(model, optimizer, [batch], loss)
    return first, last


def test_describe_teaches_the_visual_tokens_the_words_of_their_object(setup):
    """`describe`: each visual token holding an object's centre is fitted to put its
    attributes' words first through the policy's own LM head (no auxiliary parameter);
    the loss starts near log V, falls, and the per-attribute hit rates rise to 1; other
    tokens are out of the mean; a missing field and a word-less loss are named."""
    cfg, examples = setup
    words = (("colour", (40, 41, 42)), ("shape", (43, 44)))
    loss = ObjectnessLoss(0.0, IMG, describe=1.0, words=words)
    described = []
    for e, cls in zip(examples, ([2, 1], [0, 0], None), strict=True):
        boxes = np.zeros((0, 4)) if cls is None else np.array([[0, 0, 10, 10]])
        attrs = np.zeros((0, 2)) if cls is None else np.array([cls])
        # the examples' images are 2x2 merged tokens: one 32 px cell per token at size 64
        described.append(dict(e, describe=loss.example_words(e, boxes, attrs, 64)))
    assert (described[0]["describe"] >= 0).all(-1).sum() == 1  # one token, both attributes
    with pytest.raises(ValueError, match="attribute rows"):
        loss.example_words(examples[0], np.zeros((2, 4)), np.zeros((1, 2)), 64)
    with pytest.raises(KeyError, match="describe"):
        loss.collate(make_policy_batch(examples, config=cfg), examples)
    with pytest.raises(ValueError, match="token ids"):
        ObjectnessLoss(0.0, IMG, describe=1.0)
    batch = loss.collate(make_policy_batch(described, config=cfg), described)
    denoms = loss.weights(batch)
    assert denoms[3] == 2  # the third image names nothing
    first, last = _fit_from_scratch(cfg, loss, batch, denoms)
    assert first["describe"] == pytest.approx(np.log(cfg.text.vocab_size), rel=0.2)
    assert last["describe"] < 0.5 * first["describe"], (first, last)
    assert last["describe_colour"] == last["describe_shape"] == 1.0


def test_frame_label_teaches_each_frames_tokens_the_digits_of_its_label(setup):
    """`frame_label`: every visual token of an image shown after 'Frame <n>: ' is fitted to
    name n's digits through the LM head (a bag of them for two digits); an unlabelled image
    adds nothing. The targets sit on the visual tokens only, bad labels are named, and a
    few steps teach every token a digit of its label."""
    cfg, examples = setup
    numerals = tuple(range(50, 60))
    loss = ObjectnessLoss(0.0, IMG, frame_label=1.0, numerals=numerals)
    with pytest.raises(ValueError, match="numerals"):
        ObjectnessLoss(0.0, IMG, frame_label=1.0)
    labelled = [
        dict(e, frame=loss.example_frames(e, labels))
        for e, labels in zip(examples, ((7,), (12,), ()), strict=True)
    ]
    visual = examples[1]["input_ids"] == IMG
    assert (labelled[1]["frame"][visual] == [51, 52]).all()  # "12": the numerals 1 and 2
    assert (labelled[1]["frame"][~visual] == -1).all()
    assert (labelled[0]["frame"][examples[0]["input_ids"] == IMG] == [57, -1]).all()
    assert (labelled[2]["frame"] == -1).all()
    with pytest.raises(ValueError, match="outside 0-99"):
        loss.example_frames(examples[0], (100,))
    with pytest.raises(ValueError, match="2 frame labels for 1 images"):
        loss.example_frames(examples[0], (1, 2))
    batch = loss.collate(make_policy_batch(labelled, config=cfg), labelled)
    denoms = loss.weights(batch)
    assert denoms[7] == int(visual.sum() + (examples[0]["input_ids"] == IMG).sum())
    first, last = _fit_from_scratch(cfg, loss, batch, denoms)
    assert first["frame_label"] == pytest.approx(np.log(cfg.text.vocab_size), rel=0.2)
    assert last["frame_label"] < 0.5 * first["frame_label"], (first, last)
    assert last["frame_label_hit"] == 1.0


def test_example_route_marks_the_questions_frame_number_not_a_label_or_a_size():
    """The route target is the first number after the last image that is the asked label:
    not the same digits in a frame's label before it, nor inside a longer number (the
    frame size) after it; a question that never names the frame is an error."""
    numerals = tuple(range(50, 60))
    loss = ObjectnessLoss(0.0, IMG, attend=1.0, route=1.0, numerals=numerals)
    with pytest.raises(ValueError, match="attend"):
        ObjectnessLoss(0.0, IMG, route=1.0, numerals=numerals)
    one, two = numerals[1], numerals[2]
    # 'Frame 1: <img> Frame 12: <img> ... frame 1 of the 112x112 images'
    ids = np.array([9, one, 8, IMG, IMG, 9, one, two, 8, IMG, IMG, 7, 6, one, 5, one, one, two, 4])
    target = loss.example_route({"input_ids": ids}, 1)
    assert np.flatnonzero(target).tolist() == [13]
    with pytest.raises(ValueError, match="never names frame 12"):  # only inside "112"
        loss.example_route({"input_ids": ids}, 12)
    ids = np.concatenate([ids[:13], [one, two], ids[14:]])  # '... frame 12 of the 112x112'
    assert np.flatnonzero(loss.example_route({"input_ids": ids}, 12)).tolist() == [13, 14]


def test_route_supervision_pulls_the_earlier_layers_head_to_the_frame_number(setup):
    """`route`: head 0 of the layer before the last, at the position where binding is
    supervised, is fitted to look at the marked question tokens; its mass there rises when
    trained, rows without a frame question are out of the mean, and a forward outside
    `route_capture` is named."""
    from jaxseg.models.family import attention_capture, route_capture, with_attention
    from jaxseg.train.steps import forward_logits

    cfg, examples = setup
    numerals = tuple(range(50, 60))
    rows = []
    for i, e in enumerate(examples):
        route = np.zeros(e["input_ids"].size, np.float32)
        if i < 2:  # a prompt token the supervised position sees: the question's number
            route[2] = 1.0
        rows.append(dict(e, referent=e["objectness"], route=route))
    loss = ObjectnessLoss(0.0, IMG, attend=1.0, route=1.0, numerals=numerals)
    batch = loss.collate(make_policy_batch(rows, config=cfg), rows)
    denoms = loss.weights(batch)
    assert denoms[8] == 2
    model = Qwen2_5_VLForConditionalGeneration(cfg, rngs=nnx.Rngs(0))
    forward = lambda m: forward_logits(m, batch.policy, return_hidden=True)  # noqa: E731
    with attention_capture(model), pytest.raises(RuntimeError, match="route records"):
        with_attention(forward, model, route=True)
    tx = make_optimizer(OptimizerConfig(learning_rate=1e-2, schedule="constant"))
    with attention_capture(model), route_capture(model):
        _, aux = loss.objective(model, batch, jnp.asarray(denoms, jnp.float32))
        metrics = loss.metrics({k: float(v) for k, v in aux.items()}, denoms)
        assert 0.0 < metrics["route_mass"] < 1.0
        assert metrics["route"] >= -np.log(metrics["route_mass"])  # Jensen
        optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)
        first = train_step(model, optimizer, [batch], loss)["route_mass"]
        for _ in range(15):
            last = train_step(model, optimizer, [batch], loss)["route_mass"]
    assert last > max(4 * first, 0.4), (first, last)
    assert model.language_model.layers[-2].self_attn.route_head is None


@pytest.fixture(scope="module")
def setup():
    cfg = tiny_config()
    rng = np.random.default_rng(0)
    examples = [example(rng, n, True, cfg) for n in (10, 12, 14)]
    for e, cell in zip(examples, (0, 3, None)):  # 2x2 merged tokens; the third has no object
        t = np.zeros(e["input_ids"].size, np.float32)
        if cell is not None:
            t[np.flatnonzero(e["input_ids"] == IMG)[cell]] = 1.0
        e["objectness"] = t
    return cfg, examples


def test_loss_starts_at_log_n_and_counts_only_images_with_objects(setup):
    cfg, examples = setup
    model = Qwen2_5_VLForConditionalGeneration(cfg, rngs=nnx.Rngs(0))
    loss = ObjectnessLoss(1.0, IMG)
    batch = loss.collate(make_policy_batch(examples, config=cfg), examples)
    denoms = loss.weights(batch)
    assert denoms[1] == 2.0  # the image without an object is not in the mean
    with attached_head(model, ObjectnessHead(cfg.text.hidden_size)):
        _, aux = loss.objective(model, batch, jnp.asarray(denoms, jnp.float32))
        metrics = loss.metrics({k: float(v) for k, v in aux.items()}, denoms)
        # a zero head scores the 4 visual tokens alike: log 4 each
        assert metrics["objectness"] == pytest.approx(np.log(4.0), rel=1e-5)
        with pytest.raises(ValueError, match="examples"):
            loss.collate(make_policy_batch(examples, config=cfg), examples[:2])


def test_training_fits_the_head_and_keeps_it_apart(setup):
    cfg, examples = setup
    model = Qwen2_5_VLForConditionalGeneration(cfg, rngs=nnx.Rngs(0))
    before = nnx.to_pure_dict(nnx.state(model, nnx.Param))
    loss = ObjectnessLoss(1.0, IMG)
    batch = loss.collate(make_policy_batch(examples, config=cfg), examples)
    tx = make_optimizer(OptimizerConfig(learning_rate=3e-2, schedule="constant"))
    with attached_head(model, ObjectnessHead(cfg.text.hidden_size)):
        optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)
        first = train_step(model, optimizer, [batch], loss)["objectness"]
        for _ in range(15):
            last = train_step(model, optimizer, [batch], loss)["objectness"]
        assert last < 0.5 * first  # the head (and the tower under it) learn where objects are
        assert np.abs(np.asarray(getattr(model, HEAD).w[...])).sum() > 0
        assert set(nnx.to_pure_dict(nnx.state(model, AuxParam))) == {HEAD}
    assert not hasattr(model, HEAD)  # gone after the stage
    assert set(nnx.to_pure_dict(nnx.state(model, nnx.Param))) == set(before)


def test_rsqrt_schedule_is_constant_to_tau_then_falls_as_one_over_sqrt():
    cfg = OptimizerConfig(
        learning_rate=3e-3, warmup_steps=100, schedule="rsqrt", decay_timescale=500
    )
    lr = learning_rate_schedule(cfg)
    values = {s: float(lr(s)) for s in (0, 50, 100, 500, 2000, 8000)}
    assert values[0] == 0.0 and values[50] == pytest.approx(1.5e-3)
    assert values[100] == values[500] == pytest.approx(3e-3)
    assert values[2000] == pytest.approx(1.5e-3) and values[8000] == pytest.approx(7.5e-4)
    jax.block_until_ready(lr(jnp.asarray(3)))  # traceable (optax calls it on a jax counter)


def test_attention_supervision_pulls_the_head_to_the_named_object(setup):
    """`attend`: the captured head's mass on the named object's tokens, from the position
    predicting each row's first answer token, averaged over the rows that name one, rises
    when trained (the gradient reaches the
    policy's own attention: there is no auxiliary parameter); rows naming nothing are out of
    the mean; a missing field is named."""
    from jaxseg.models.family import attention_capture

    cfg, examples = setup
    named = [dict(e, referent=e["objectness"]) for e in examples]
    model = Qwen2_5_VLForConditionalGeneration(cfg, rngs=nnx.Rngs(0))
    loss = ObjectnessLoss(0.0, IMG, attend=1.0)
    batch = loss.collate(make_policy_batch(named, config=cfg), named)
    denoms = loss.weights(batch)
    assert denoms[2] == 2  # one supervised position per row that names something
    with pytest.raises(KeyError, match="referent"):
        loss.collate(make_policy_batch(examples, config=cfg), examples)
    tx = make_optimizer(OptimizerConfig(learning_rate=1e-2, schedule="constant"))
    with attention_capture(model):
        _, aux = loss.objective(model, batch, jnp.asarray(denoms, jnp.float32))
        metrics = loss.metrics({k: float(v) for k, v in aux.items()}, denoms)
        assert "objectness" not in metrics and 0.0 < metrics["attend_mass"] < 1.0
        # Jensen: the mean of -log(mass) is at least -log of the mean mass
        assert metrics["attend"] >= -np.log(metrics["attend_mass"])
        optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)
        first = train_step(model, optimizer, [batch], loss)["attend_mass"]
        for _ in range(15):
            last = train_step(model, optimizer, [batch], loss)["attend_mass"]
    assert last > max(4 * first, 0.4), (first, last)
    assert model.language_model.layers[-1].self_attn.capture_head is None


def test_attention_supervision_sits_where_the_answer_content_starts(setup):
    """With `anchor_ids`, each row's supervised position is the one predicting its first
    anchor token (a box's first digit), or its first answer token where it has none: the
    loss's `attend_mass` equals the captured head's mass on the named tokens there, picked
    by hand."""
    from jaxseg.models.family import attention_capture, with_attention
    from jaxseg.train.steps import forward_logits

    cfg, examples = setup
    named = [dict(e, referent=e["objectness"]) for e in examples]
    model = Qwen2_5_VLForConditionalGeneration(cfg, rngs=nnx.Rngs(0))
    p = make_policy_batch(named, config=cfg)
    ids, mask = np.asarray(p.input_ids), np.asarray(p.loss_mask)
    answer0 = np.flatnonzero(mask[0])
    anchor = int(ids[0, answer0[2] + 1])  # row 0's third answer token
    loss = ObjectnessLoss(0.0, IMG, attend=1.0, anchor_ids=(anchor,))
    batch = loss.collate(p, named)
    denoms = loss.weights(batch)
    with attention_capture(model):
        _, aux = loss.objective(model, batch, jnp.asarray(denoms, jnp.float32))
        _, probs = with_attention(lambda m: forward_logits(m, p, return_hidden=True), model)
    mass = np.einsum("bqk,bk->bq", np.asarray(probs), np.asarray(batch.referent) > 0)
    expected, picked = [], []
    for b in range(len(named)):
        if not (np.asarray(batch.referent)[b] > 0).any():
            continue
        answer = np.flatnonzero(mask[b])
        hits = [t for t in answer if ids[b, t + 1] == anchor]
        t = hits[0] if hits else answer[0]
        picked.append(t)
        expected.append(mass[b, t])
    assert picked[0] == answer0[2] != answer0[0]  # row 0: at its anchor, not its first token
    assert float(aux["attend_mass"]) == pytest.approx(float(np.sum(expected)), rel=1e-5)


def test_digits_weight_counts_the_digit_tokens_again_in_the_token_mean(setup):
    """With `digits = w`, the objective is the token-mean NLL plus w x the NLL of the answer
    tokens that are in `digit_ids` over the same answer-token count, and `digits_nll` their
    mean, both equal to per-token log-probabilities picked by hand; without digit ids it
    refuses."""
    from jaxseg.rl.logprobs import next_token_logprobs
    from jaxseg.train.steps import forward_logits

    cfg, examples = setup
    model = Qwen2_5_VLForConditionalGeneration(cfg, rngs=nnx.Rngs(0))
    p = make_policy_batch(examples, config=cfg)
    ids, mask = np.asarray(p.input_ids), np.asarray(p.loss_mask)
    answer0 = np.flatnonzero(mask[0])
    chosen = (int(ids[0, answer0[1] + 1]), int(ids[0, answer0[-1] + 1]))
    plain = ObjectnessLoss(0.0, IMG)
    weighted = ObjectnessLoss(0.0, IMG, digits=2.0, digit_ids=chosen)
    batch = plain.collate(p, examples)
    denoms = jnp.asarray(plain.weights(batch), jnp.float32)
    base, _ = plain.objective(model, batch, denoms)
    value, aux = weighted.objective(model, batch, denoms)
    hidden = forward_logits(model, p, return_hidden=True)
    logp = np.asarray(next_token_logprobs(model.compute_logits(hidden), p.input_ids))
    on = (mask > 0) & np.isin(ids[:, 1:], chosen)
    assert on.sum() >= 2  # the chosen tokens are answer tokens of row 0 at least
    picked = -float(np.sum(logp[on]))
    assert float(aux["digits_nll"]) == pytest.approx(picked, rel=1e-5)
    assert float(value) == pytest.approx(float(base) + 2.0 * picked / float(denoms[0]), rel=1e-5)
    sums = {k: float(v) for k, v in aux.items()}
    metrics = weighted.metrics(sums, np.asarray(denoms))
    assert metrics["digits_nll"] == pytest.approx(picked / on.sum(), rel=1e-5)
    with pytest.raises(ValueError, match="digit"):
        ObjectnessLoss(0.0, IMG, digits=1.0)


def test_attention_capture_nests_and_undoes_itself(setup):
    from jaxseg.models.family import attention_capture

    cfg, _ = setup
    model = Qwen2_5_VLForConditionalGeneration(cfg, rngs=nnx.Rngs(0))
    attn = model.language_model.layers[-1].self_attn
    with attention_capture(model, head=1):
        with attention_capture(model, head=0):  # e.g. an evaluation inside a training stage
            assert attn.capture_head == 0
        assert attn.capture_head == 1
    assert attn.capture_head is None and "capture_head" not in vars(attn)
    with pytest.raises(ValueError, match="head 9"):
        with attention_capture(model, head=9):
            pass


def _copying_example(rng, cfg, words: int = 5):
    """[prompt: 2 text, `words` query tokens, image, 2 text][answer: the query tokens, an end
    token]: an answer that repeats a span of its prompt, as a `restate` item's does."""
    query = rng.integers(1, 50, words)
    image = [cfg.vision_start_token_id, *[cfg.image_token_id] * 4, cfg.vision_end_token_id]
    prompt = np.concatenate([rng.integers(50, 58, 2), query, image, rng.integers(50, 58, 2)])
    ids = np.concatenate([prompt, query, [59]])  # (ids from 60 on are the vision tokens)
    mask = np.zeros(ids.size, np.float32)
    mask[prompt.size :] = 1
    return dict(
        input_ids=ids,
        policy_mask=mask,
        pixel_values=rng.normal(size=(16, cfg.vision.patch_dim)).astype(np.float32),
        image_grid_thw=np.array([[1, 4, 4]]),
    )


def test_example_copy_points_each_answer_position_at_the_prompt_token_it_repeats():
    """The position predicting the answer's k-th token is pointed at the prompt position of
    the span's k-th token; tokens the span does not match (the end token, a changed last
    token) and positions outside the answer are -1; an answer with under `min_tokens`
    tokens in place copies nothing."""
    cfg = tiny_config()
    e = _copying_example(np.random.default_rng(1), cfg)
    out = ObjectnessLoss.example_copy(e)
    ids, start = e["input_ids"], int(np.flatnonzero(e["policy_mask"])[0])
    held = np.flatnonzero(out >= 0)
    assert held.tolist() == list(range(start - 1, start + 4))  # the 5 query tokens
    assert out[held].tolist() == list(range(2, 7))  # the query's span in the prompt
    assert (ids[out[held]] == ids[held + 1]).all()
    changed = dict(e, input_ids=ids.copy())
    changed["input_ids"][start + 4] = 58  # the last query token, written otherwise
    assert (ObjectnessLoss.example_copy(changed) >= 0).sum() == 4
    other = dict(e, input_ids=ids.copy())
    other["input_ids"][start:-1] = 58  # an answer that repeats nothing
    assert (ObjectnessLoss.example_copy(other) < 0).all()


def test_example_copy_finds_the_longest_repeated_span_inside_the_answer():
    """A trace quotes its query mid-answer ('<think>The query asks for "..."'): the span is
    found wherever the answer holds it, and of two repeated runs (the answer's opening
    repeats 2 prompt tokens, the quote 5) only the longest is fitted."""
    cfg = tiny_config()
    e = _copying_example(np.random.default_rng(1), cfg)
    ids, start = e["input_ids"], int(np.flatnonzero(e["policy_mask"])[0])
    query = ids[start : start + 5]
    opening = ids[:2]  # the prompt's first two tokens, repeated before the quote
    answer = np.concatenate([opening, [59, 59], query, [59]])
    quoted = dict(e, input_ids=np.concatenate([ids[:start], answer]))
    quoted["policy_mask"] = np.concatenate([e["policy_mask"][:start], np.ones(answer.size)])
    out = ObjectnessLoss.example_copy(quoted)
    held = np.flatnonzero(out >= 0)
    assert held.tolist() == list(range(start + 3, start + 8))  # predicting the quoted tokens
    assert out[held].tolist() == list(range(2, 7))
    assert (quoted["input_ids"][out[held]] == quoted["input_ids"][held + 1]).all()


def test_copy_supervision_pulls_the_head_to_the_token_it_copies(setup):
    """`copy`: the loss's `copy_mass` is the captured head's attention, summed over the
    positions `example_copy` points, at the pointed prompt token (picked by hand); training
    raises it (the gradient reaches the policy's own attention); rows that copy nothing are
    out of the mean; it needs `attend`."""
    from jaxseg.models.family import attention_capture, with_attention
    from jaxseg.train.steps import forward_logits

    cfg, plain = setup
    rng = np.random.default_rng(2)
    copying = [_copying_example(rng, cfg) for _ in range(2)]
    examples = [dict(e, referent=np.zeros(e["input_ids"].size, np.float32)) for e in copying]
    examples = [dict(e, copy=ObjectnessLoss.example_copy(e)) for e in examples]
    examples.append(  # a row naming nothing and copying nothing
        dict(
            plain[0],
            referent=np.zeros(plain[0]["input_ids"].size, np.float32),
            copy=np.full(plain[0]["input_ids"].size, -1, np.int32),
        )
    )
    with pytest.raises(ValueError, match="attend"):
        ObjectnessLoss(0.0, IMG, copy=1.0)
    loss = ObjectnessLoss(0.0, IMG, attend=1.0, copy=1.0)
    p = make_policy_batch(examples, config=cfg)
    batch = loss.collate(p, examples)
    denoms = loss.weights(batch)
    assert denoms[6] == 10 and denoms[2] == 0  # 5 copied tokens in each of 2 rows
    model = Qwen2_5_VLForConditionalGeneration(cfg, rngs=nnx.Rngs(0))
    with attention_capture(model):
        _, aux = loss.objective(model, batch, jnp.asarray(denoms, jnp.float32))
        _, probs = with_attention(lambda m: forward_logits(m, p, return_hidden=True), model)
        source = np.asarray(batch.copy)
        b, t = np.nonzero(source >= 0)
        picked = np.asarray(probs)[b, t, source[b, t]]
        assert float(aux["copy_mass"]) == pytest.approx(float(picked.sum()), rel=1e-5)
        assert float(aux["copy"]) == pytest.approx(float(-np.log(picked + 1e-6).sum()), rel=1e-5)
        tx = make_optimizer(OptimizerConfig(learning_rate=1e-2, schedule="constant"))
        optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)
        first = train_step(model, optimizer, [batch], loss)["copy_mass"]
        for _ in range(15):
            last = train_step(model, optimizer, [batch], loss)["copy_mass"]
    assert last > max(3 * first, 0.4), (first, last)
