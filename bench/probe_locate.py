"""How long does a from-scratch Qwen3-VL sit on the location plateau? A fast diagnostic.

The locate probe's task (one bright square on a dark background; which cell of a 4x4 grid holds
its centre) on jaxseg's Qwen3-VL, with the probe's bare token sequence
`[Q, <vision_start>, <image> x 16, <vision_end>, Q]` and the loss on the 16 answer logits only
(no chat template, no processor): ~0.08 s/step on 2 CPU cores, ~8x faster than the same task
through the learner (`bench/probe_vision.py --task grid-cell`), so initial draws and
architectures can be compared in minutes. Held-out accuracy is printed every `--eval-every`
steps next to the most frequent cell's share; the last line says where the run left the
plateau (held-out accuracy >= 0.25), if it did.

    python bench/probe_locate.py                                  # tiny preset, our init, seed 0
    python bench/probe_locate.py --arch probe --init transformers --seed 1
    python bench/probe_locate.py --position-init sincos2d --steps 2000
    python bench/probe_locate.py --objectness 1.0 --prefix 42 --suffix 4   # the base's layout
    python bench/probe_locate.py --scene world --objects 2,6 --textured 0.5 --objectness 1.0 \
        --attend 1.0 --attributes 1.0 --lr 7.5e-4 --init transformers --position-init sincos2d

`--arch probe` is the reference probe's text model (2 layers, untied embeddings, MLP 2x width);
`tiny` is the preset the grounded base trains. `--init transformers` draws the weights with
transformers' own initialiser under torch seed `--seed` (needs torch).
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import time

import numpy as np

IMAGE, VIDEO, VISION_START, VISION_END, QUERY = 500, 501, 502, 503, 504
FIRST_ANSWER = 10  # answer tokens 10..25 stand for cells A..P
VOCAB = 512
PATCH, MERGE, TEMPORAL = 16, 2, 2


def squares(rng, n: int, side: int) -> tuple[np.ndarray, np.ndarray]:
    """`n` images [n, side, side, 3] uint8, each a square of side `side // 8` in a bright random
    colour on a dark plain background, and the 4x4 cell [n] of each square's centre."""
    images = np.zeros((n, side, side, 3), np.uint8)
    cells = np.zeros(n, np.int64)
    s = side // 8
    for i in range(n):
        images[i] = rng.integers(0, 80, 3)
        cx, cy = rng.integers(s // 2, side - s // 2, 2)
        images[i, cy - s // 2 : cy - s // 2 + s, cx - s // 2 : cx - s // 2 + s] = rng.integers(
            120, 256, 3
        )
        cells[i] = (cy * 4 // side) * 4 + cx * 4 // side
    return images, cells


PALETTE = np.array(
    [[230, 40, 40], [40, 200, 40], [50, 80, 240], [230, 220, 40], [200, 50, 220], [40, 210, 220]]
)
FIRST_COLOUR = 40  # query tokens 40..45 name the palette's colours


def coloured_squares(rng, n: int, side: int):
    """`n` images with 3 squares of distinct palette colours (side `side // 8`, centres in
    distinct cells) on a dark background; the colour asked for [n], the cell of that square's
    centre [n], and every square's cell [n, 3]."""
    images = np.zeros((n, side, side, 3), np.uint8)
    asked, cells, every = np.zeros(n, np.int64), np.zeros(n, np.int64), np.zeros((n, 3), np.int64)
    s = side // 8
    for i in range(n):
        images[i] = rng.integers(0, 60, 3)
        colours = rng.choice(len(PALETTE), 3, replace=False)
        spots = rng.choice(16, 3, replace=False)  # distinct cells, a uniform spot in each
        for j, (c, cell) in enumerate(zip(colours, spots, strict=True)):
            row, col = divmod(int(cell), 4)
            q = side // 4
            cx = col * q + int(rng.integers(s // 2, q - s // 2))
            cy = row * q + int(rng.integers(s // 2, q - s // 2))
            images[i, cy - s // 2 : cy - s // 2 + s, cx - s // 2 : cx - s // 2 + s] = PALETTE[c]
            every[i, j] = cell
        k = int(rng.integers(3))
        asked[i], cells[i] = colours[k], spots[k]
    return images, asked, cells, every


WORDS = ("the", "shape", *("small", "medium", "large"))  # + colour and shape names, below
FIRST_WORD = 50  # phrase tokens: one id per word of the world's vocabulary
PHRASE_LEN = 3  # the longest shortest-unique phrase ("small red circle"); shorter ones are
# left-filled with "the"


def world_words() -> tuple[str, ...]:
    from jaxseg.data.synth.world import COLOUR_NAMES, SHAPES

    return WORDS + tuple(COLOUR_NAMES) + tuple(SHAPES)


def world_cells(rng, n: int, split: str, objects: tuple[int, int], textured: float):
    """`n` cell items on frames of the synthetic world (`jaxseg.train.base_tasks`' ``cell``
    task, shown at 128 px: 4x4 visual tokens, one per cell): images [n, 128, 128, 3], the
    phrase as word ids [n, PHRASE_LEN], the cell of the named object's centre [n], the
    objectness target [n, 16] (an even spread over every visible object's cell) and each
    cell's attribute words [n, 16, 3] (ids of the colour, shape and size of the largest
    object centred in it; -1 where none is)."""
    import dataclasses as dc

    from jaxseg.data.synth.generate import generate_video
    from jaxseg.data.synth.world import SynthConfig
    from jaxseg.train.base_tasks import CELLS, _frame_objects, make_item

    synth = dc.replace(SynthConfig(), objects=objects, textured_prob=textured)
    vocab = {w: FIRST_WORD + i for i, w in enumerate(world_words())}
    images = np.zeros((n, 128, 128, 3), np.uint8)
    phrase = np.zeros((n, PHRASE_LEN), np.int64)
    cells, target = np.zeros(n, np.int64), np.zeros((n, 16), np.float32)
    attrs = np.full((n, 16, 3), -1, np.int64)
    i = 0
    while i < n:
        video = generate_video(7, split, int(rng.integers(1 << 30)), synth)
        t = int(rng.integers(video.frames.shape[0]))
        item = make_item(rng, video, t, "cell", 128, "")
        if item is None:
            continue
        words = re.search(r"centre of the (.*)\?$", item.prompt).group(1).split()
        words = ["the"] * (PHRASE_LEN - len(words)) + words
        phrase[i] = [vocab[w] for w in words]
        images[i] = item.image
        cells[i] = CELLS.index(item.answer)
        for box in item.objects:
            target[i, _cell(box)] = 1.0
        target[i] /= target[i].sum()
        objs = sorted(
            _frame_objects(video, t),
            key=lambda o: -int(video.graph["objects"][o["id"]]["visible_area"][t]),
        )
        for o in objs[::-1]:  # the largest written last
            attrs[i, _cell(o["box"])] = [vocab[o[k]] for k in ("colour", "shape", "size")]
        i += 1
    return images, phrase, cells, target, attrs


def _cell(box) -> int:
    """The 4x4 cell index (row-major) of `box`'s centre in a 128 px frame."""
    from jaxseg.train.base_tasks import CELLS, cell_of

    return CELLS.index(cell_of(box, 128))


def patches(
    images: np.ndarray, patch: int = PATCH, merge: int = MERGE
) -> tuple[np.ndarray, np.ndarray]:
    """Images [n, S, S, 3] -> pixel values [n * (S/patch)^2, 3*2*patch*patch] in the Qwen3-VL
    processor's order (merge x merge blocks, each patch channels x time x rows x cols; mean =
    std = 0.5) and grid_thw [n, 3]."""
    x = (images.astype(np.float32) / 255.0 - 0.5) / 0.5
    n, h, w, c = x.shape
    gh, gw = h // patch, w // patch
    x = np.repeat(x.transpose(0, 3, 1, 2)[:, None], TEMPORAL, axis=1)  # n, T, C, H, W
    x = x.reshape(n, TEMPORAL, c, gh // merge, merge, patch, gw // merge, merge, patch)
    x = x.transpose(0, 3, 6, 4, 7, 2, 1, 5, 8).reshape(n * gh * gw, c * TEMPORAL * patch * patch)
    return np.ascontiguousarray(x), np.array([[1, gh, gw]] * n)


def build(arch: str, init: str, seed: int, position_init: str, vision: str = ""):
    from flax import nnx

    from jaxseg.models.family import get_family, redraw_with_transformers

    family = get_family("qwen3_vl")
    cfg = family.preset(
        "tiny",
        vocab_size=VOCAB,
        image_token_id=IMAGE,
        video_token_id=VIDEO,
        vision_start_token_id=VISION_START,
        vision_end_token_id=VISION_END,
    )
    if vision:  # "depth,width": another vision tower under the tiny text model
        depth, width = (int(v) for v in vision.split(","))
        cfg = dataclasses.replace(
            cfg,
            vision=dataclasses.replace(
                cfg.vision,
                depth=depth,
                hidden_size=width,
                intermediate_size=2 * width,
                num_heads=max(width // 32, 1),
                deepstack_visual_indexes=(depth // 2 - 1,) if depth > 2 else (0,),
            ),
        )
    if arch == "probe":
        text = dataclasses.replace(
            cfg.text, num_hidden_layers=2, intermediate_size=2 * cfg.text.hidden_size
        )
        cfg = dataclasses.replace(cfg, text=text, tie_word_embeddings=False)
    model = family.build(cfg, rngs=nnx.Rngs(seed))
    if init == "transformers":
        model = redraw_with_transformers(model, seed)
    family.init_position_table(model, position_init)
    return family, model


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", choices=("tiny", "probe"), default="tiny")
    ap.add_argument("--init", choices=("jaxseg", "transformers"), default="jaxseg")
    ap.add_argument("--position-init", choices=("normal", "sincos2d"), default="normal")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--eval-every", type=int, default=250)
    ap.add_argument(
        "--scene",
        choices=("square", "colours", "world"),
        default="square",
        help="square: one square, 'which cell holds it'; colours: three squares of distinct "
        "colours, a colour token after the image, 'which cell holds that one' (binding); "
        "world: the base's cell task on synthetic-world frames, the phrase (1-3 words, one "
        "token each) after the image",
    )
    ap.add_argument(
        "--vision",
        default="",
        help="'depth,width' of the vision tower (default: the tiny preset's 2,64)",
    )
    ap.add_argument("--objects", default="2,3", help="world scene: objects per video (lo,hi)")
    ap.add_argument("--textured", type=float, default=0.0, help="world scene: P(textured bg)")
    ap.add_argument(
        "--objectness",
        type=float,
        default=0.0,
        help="weight of a dense auxiliary loss: a linear scorer on the final hidden state of "
        "each of the 16 visual tokens (one per cell), softmax over them, the square's token as "
        "the target (salience made a first-order signal); 0: off",
    )
    ap.add_argument(
        "--attributes",
        type=float,
        default=0.0,
        help="world scene: weight of dense attribute supervision: each visual token holding "
        "an object's centre predicts, through the policy's own LM head, the words for that "
        "object's colour, shape and size (what a pretrained vision tower brings, in the "
        "phrase's word space); 0: off",
    )
    ap.add_argument(
        "--pointer",
        type=float,
        default=0.0,
        help="weight of a query-conditioned auxiliary loss: a bilinear score between the answer "
        "position's final hidden state and each visual token's, softmax over the 16, the asked "
        "square's token as the target (binding made a first-order signal); 0: off",
    )
    ap.add_argument(
        "--attend",
        type=float,
        default=0.0,
        help="weight of attention supervision: -log of the attention one head (head 0) of the "
        "last text layer pays, from the answer position, to the asked square's visual token "
        "(the binding circuit trained directly); 0: off",
    )
    ap.add_argument(
        "--gap",
        type=int,
        default=0,
        help="colours scene: fixed text tokens between the colour token and the answer "
        "position (how far back the answer must fetch the query: the base's prompts put the "
        "phrase ~20 tokens before it)",
    )
    ap.add_argument(
        "--prefix",
        type=int,
        default=0,
        help="fixed text tokens before <vision_start> (the chat template's system turn and "
        "question: 42 in the grounded base's square items)",
    )
    ap.add_argument(
        "--suffix",
        type=int,
        default=0,
        help="fixed text tokens between <vision_end> and the answer position (the template's "
        "turn change: 4 in the base's question-first items)",
    )
    args = ap.parse_args()

    import jax
    import jax.numpy as jnp
    import optax
    from flax import nnx

    family, model = build(args.arch, args.init, args.seed, args.position_init, args.vision)
    attention_probs: list = []  # [B, H, Lq, Lk] of each text layer, while tracing one forward
    if args.attend:
        from jaxseg.models import kv_cache, layers

        def recorded(q, k, v, mask, scale):
            qh, kh = (jnp.swapaxes(t, 1, 2) for t in (q, k))
            scores = jnp.einsum("bhqd,bhkd->bhqk", qh, kh) * jnp.asarray(scale, q.dtype)
            scores = jnp.where(mask, scores, jnp.finfo(scores.dtype).min)
            attention_probs.append(jax.nn.softmax(scores.astype(jnp.float32), axis=-1))
            return layers.masked_softmax_attention(q, k, v, mask, scale)

        kv_cache.masked_softmax_attention = recorded  # the text layers' teacher-forced path
    side = PATCH * 8
    gap = list(range(200, 200 + args.gap))  # fixed filler between the colour and the answer
    query = {"colours": [FIRST_COLOUR], "world": [FIRST_WORD] * PHRASE_LEN}.get(args.scene, [])
    tail = [VISION_END, *query, *(gap if query else []), QUERY]
    filler = lambda n, first: list(range(first, first + n))  # noqa: E731  fixed "text"
    prefix, suffix = filler(args.prefix, 100), filler(args.suffix, 300)
    tail = tail[:1] + suffix + tail[1:]
    ids = np.array([prefix + [QUERY, VISION_START] + [IMAGE] * 16 + tail])
    first_visual = len(prefix) + 2
    grid = np.array([[1, 8, 8]])
    pos_one, _ = family.get_rope_index(ids, grid, config=model.config)

    def inputs(images, asked=None):
        pixels, grids = patches(images)
        n = len(images)
        layout = family.vision_layout(grids, model.config.vision)
        tokens = np.repeat(ids, n, 0)
        if asked is not None and args.scene == "world":  # the phrase names the object
            at = len(ids[0]) - 1 - args.gap - PHRASE_LEN
            tokens[:, at : at + PHRASE_LEN] = asked
        elif asked is not None:  # the colour token names the square asked for
            tokens[:, -2 - args.gap] = FIRST_COLOUR + asked
        return jnp.asarray(tokens), jnp.asarray(pixels), layout, n

    def draw(rng, n):
        """(images, asked colour or None, answer cell, objectness target [n, 16])."""
        if args.scene == "world":
            lo, hi = (int(v) for v in args.objects.split(","))
            split = "base_heldout" if rng is eval_rng else "base_train"
            return world_cells(rng, n, split, (lo, hi), args.textured)
        if args.scene == "colours":
            images, asked, cells, every = coloured_squares(rng, n, side)
            target = np.zeros((n, 16), np.float32)
            np.put_along_axis(target, every, 1.0 / every.shape[1], axis=1)
            return images, asked, cells, target, None
        images, cells = squares(rng, n, side)
        return images, None, cells, np.eye(16, dtype=np.float32)[cells], None

    def hidden(model, tokens, pixels, layout, positions):
        out, _ = model.forward(
            tokens,
            jnp.ones_like(tokens),
            positions,
            pixel_values=pixels,
            image_layout=layout,
            return_hidden=True,
        )
        return out  # [B, L, D]

    def cell_logits(model, tokens, pixels, layout, positions):
        h = hidden(model, tokens, pixels, layout, positions)
        return model.compute_logits(h[:, -1])[:, FIRST_ANSWER : FIRST_ANSWER + 16]

    class Scorer(nnx.Module):  # the auxiliary heads (not part of the policy)
        def __init__(self, width: int, rank: int = 64):
            self.w = nnx.Param(jnp.zeros((width,)))
            # pointer: zero query map (every token alike at first), random key map
            self.wq = nnx.Param(jnp.zeros((width, rank)))
            key = np.random.default_rng(0).normal(0.0, width**-0.5, (width, rank))
            self.wk = nnx.Param(jnp.asarray(key, jnp.float32))

    scorer = Scorer(model.config.text.hidden_size)

    warmup = lambda s: args.lr * jnp.minimum(1.0, (s + 1) / 100)  # noqa: E731
    tx = optax.chain(optax.clip_by_global_norm(1.0), optax.adamw(warmup, weight_decay=0.0))
    both = nnx.List([model, scorer])
    optimizer = nnx.Optimizer(both, tx, wrt=nnx.Param)
    weight, pointer = float(args.objectness), float(args.pointer)

    @nnx.jit
    def step(both, optimizer, tokens, pixels, layout, positions, cells, target, attrs):
        def loss_fn(pair):
            m, sc = pair
            attention_probs.clear()
            h = hidden(m, tokens, pixels, layout, positions)
            lg = m.compute_logits(h[:, -1])[:, FIRST_ANSWER : FIRST_ANSWER + 16]
            loss = optax.softmax_cross_entropy_with_integer_labels(lg, cells).mean()
            if weight:  # the 16 visual tokens follow <vision_start>, one per cell, row-major;
                # the target spreads over every object's token (they precede the query, so
                # they cannot know which one is asked for)
                scores = h[:, first_visual : first_visual + 16] @ sc.w[...]
                aux = optax.softmax_cross_entropy(scores, target).mean()
                loss = loss + weight * aux
            if args.attributes:  # words of the object centred in each visual token
                logp = jax.nn.log_softmax(
                    m.compute_logits(h[:, first_visual : first_visual + 16]), -1
                )  # [B, 16, V]
                held = attrs[..., 0] >= 0  # [B, 16] tokens holding an object's centre
                words = jnp.take_along_axis(logp, jnp.maximum(attrs, 0), axis=-1).mean(-1)
                loss = loss - args.attributes * jnp.sum(words * held) / jnp.maximum(held.sum(), 1)
            if args.attend:  # head 0 of the last text layer, from the answer position
                probs = attention_probs[-1][:, 0, -1, first_visual : first_visual + 16]
                on_target = jnp.take_along_axis(probs, cells[:, None], axis=1)[:, 0]
                loss = loss + args.attend * -jnp.log(on_target + 1e-6).mean()
            if pointer:  # the answer position's state scores the visual tokens; target: the
                # asked square's token (the answer position has read the query)
                q = h[:, -1] @ sc.wq[...]  # [B, r]
                k = h[:, first_visual : first_visual + 16] @ sc.wk[...]  # [B, 16, r]
                scores = jnp.einsum("br,bnr->bn", q, k) / np.sqrt(q.shape[-1])
                loss = (
                    loss
                    + pointer
                    * optax.softmax_cross_entropy_with_integer_labels(scores, cells).mean()
                )
            return loss

        loss, grads = nnx.value_and_grad(loss_fn)(both)
        optimizer.update(both, grads)
        return loss

    predict = nnx.jit(cell_logits)

    @nnx.jit
    def visual_logits(model, tokens, pixels, layout, positions):
        h = hidden(model, tokens, pixels, layout, positions)
        return model.compute_logits(h[:, first_visual : first_visual + 16])  # [B, 16, V]

    def describe_hits(logits, attrs) -> str:
        """Held-out: share of object-holding visual tokens whose colour / shape / size word
        the LM head ranks first among that attribute's words."""
        from jaxseg.data.synth.world import COLOUR_NAMES, SHAPES, SIZE_NAMES

        vocab = {w: FIRST_WORD + i for i, w in enumerate(world_words())}
        held = attrs[..., 0] >= 0
        out = []
        for j, names in enumerate((COLOUR_NAMES, SHAPES, SIZE_NAMES)):
            ids = np.array([vocab[w] for w in names])
            best = ids[np.argmax(logits[..., ids], -1)]
            out.append(f"{float((best == attrs[..., j])[held].mean()):.2f}")
        return "describe c/s/z " + "/".join(out)

    train_rng, eval_rng = np.random.default_rng(1), np.random.default_rng(99)
    held_images, held_asked, held_cells, held_target, held_attrs = draw(eval_rng, 256)
    prior = np.bincount(held_cells, minlength=16).max() / len(held_cells)
    # a policy that finds the objects but not the named one: a visible object's cell at random
    any_object = float(np.take_along_axis(held_target, held_cells[:, None], 1).mean())
    print(
        f"arch {args.arch}  vision {args.vision or '2,64'}  init {args.init}  position table {args.position_init}  seed "
        f"{args.seed}  scene {args.scene}  batch {args.batch}  lr {args.lr}  "
        f"objectness {args.objectness}  attributes {args.attributes}  pointer {args.pointer}  attend {args.attend}  gap {args.gap}  prefix {args.prefix}  suffix {args.suffix}  "
        f"prior (most frequent cell) {prior:.3f}  a random object's cell {any_object:.3f}"
    )
    t0, left_at = time.time(), None
    for s in range(1, args.steps + 1):
        images, asked, cells, target, attrs = draw(train_rng, args.batch)
        attrs = np.full((len(cells), 16, 3), -1, np.int64) if attrs is None else attrs
        tokens, pixels, layout, n = inputs(images, asked)
        positions = jnp.asarray(np.repeat(pos_one, n, 1))
        loss = step(
            both, optimizer, tokens, pixels, layout, positions, jnp.asarray(cells), target, attrs
        )
        if s % args.eval_every == 0 or s == args.steps:
            right, described, extra = 0, [], ""
            for i in range(0, len(held_cells), 64):
                part = None if held_asked is None else held_asked[i : i + 64]
                tokens, pixels, layout, n = inputs(held_images[i : i + 64], part)
                positions = jnp.asarray(np.repeat(pos_one, n, 1))
                guess = np.asarray(predict(model, tokens, pixels, layout, positions)).argmax(-1)
                right += int((guess == held_cells[i : i + 64]).sum())
                if args.attributes:
                    described.append(
                        np.asarray(visual_logits(model, tokens, pixels, layout, positions))
                    )
            acc = right / len(held_cells)
            if args.attributes:
                extra = "  " + describe_hits(np.concatenate(described), held_attrs)
            if left_at is None and acc >= 0.25:
                left_at = s
            print(
                f"step {s:5d}  loss {float(loss):.3f}  held-out {acc:.3f}{extra}  "
                f"{time.time() - t0:.0f}s"
            )
    where = f"left the plateau at step {left_at}" if left_at else "still on the plateau"
    print(f"{where}; held-out accuracy at the end {acc:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
