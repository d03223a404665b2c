"""What can a from-scratch policy learn from pixels in N steps? A diagnostic, not a benchmark.

The demo's learning claim needs a policy that finds the queried object in a frame. A random-init
tiny Qwen2.5-VL does not (README, "stage-0 grounding"); this script separates the reasons on
single frames, with the demo's model, processor, optimizer and SFT loss (jaxseg.train.steps):

    grid-cell      one square on a dark background; answer which cell of a 4x4 grid holds its
                   centre, one letter A-P (location alone, as ../probes/locate_probe.py asks of
                   transformers' own models)
    frame-colour   the whole frame is one palette colour; answer its name   (a global cue)
    object-colour  one object on a world background; answer its colour      (find a small thing)
    object-box     one object; answer its box [x1, y1, x2, y2]               (find it, say where)
    scene-box      stage 0's task: a benchmark frame, the scene graph's name of one object,
                   its box (jaxseg.train.grounding)

Each evaluation prints the greedy answers' score on held-out items next to the score of always
giving the most frequent training answer (colour) or the mean training box (box), so "learnt"
means "beats the prior".

    python bench/probe_vision.py --task grid-cell --family qwen3_vl --steps 2000 --eval-every 250 \
        --schedule constant --warmup 100 --eval-items 128
    python bench/probe_vision.py --task grid-cell --family qwen2_5_vl ... (the same settings)
    python bench/probe_vision.py --task object-colour --steps 300
    python bench/probe_vision.py --task object-box --radius-scale 3.5 --ramp 16
    python bench/probe_vision.py --task scene-box --steps 6000 --eval-every 500
"""

from __future__ import annotations

import argparse
import collections
import json
import tempfile
import time

import numpy as np

TASKS = ("grid-cell", "frame-colour", "object-colour", "object-box", "scene-box")
CELLS = "ABCDEFGHIJKLMNOP"


def synthetic_items(task: str, count: int, rng, *, size: int, ramp: float, radius_scale: float):
    """`count` (image [S, S, 3] uint8, question, answer) with one object on a plain world
    background (grey level as the generator draws it, plus the optional position ramp)."""
    from jaxseg.data.synth.render import position_ramp
    from jaxseg.data.synth.shapes import footprint
    from jaxseg.data.synth.world import COLOURS, SHAPES
    from jaxseg.protocols.annotations import box_of

    names = list(COLOURS)
    items = []
    for _ in range(count):
        if task == "grid-cell":  # locate_probe.py's task: a square of side S/8, 4x4 cells
            img = np.zeros((size, size, 3), np.uint8) + rng.integers(0, 80, 3).astype(np.uint8)
            s = size // 8
            cx, cy = (int(v) for v in rng.integers(s // 2, size - s // 2, 2))
            img[cy - s // 2 : cy - s // 2 + s, cx - s // 2 : cx - s // 2 + s] = rng.integers(
                120, 256, 3
            )
            cell = CELLS[(cy * 4 // size) * 4 + cx * 4 // size]
            items.append(
                (img, "Which cell of the 4x4 grid holds the square? One letter A-P.", cell)
            )
            continue
        img = np.full((size, size, 3), rng.uniform(45, 120)) + position_ramp(size, ramp)
        colour = names[rng.integers(len(names))]
        r = rng.uniform(0.05, 0.11) * size * radius_scale  # the world's small..large radii
        cx, cy = rng.uniform(r, size - r), rng.uniform(r, size - r)
        mask = footprint(SHAPES[rng.integers(len(SHAPES))], cx, cy, r, size, size)
        img[mask if task != "frame-colour" else np.ones_like(mask)] = COLOURS[colour]
        img = np.clip(img, 0, 255).astype(np.uint8)
        if task == "object-box":
            answer = json.dumps([int(round(v)) for v in box_of(mask)])
            items.append(
                (img, f"Box the shape in the {size}x{size} image as [x1, y1, x2, y2].", answer)
            )
        else:
            items.append((img, "What colour is the shape?", colour))
    return items


def scene_items(exp, count: int, split: str, seed: int, size: int):
    from jaxseg.train import grounding

    out = []
    for x in grounding.grounding_items(exp.source(split), count, image_size=size, seed=seed):
        prompt = grounding.PROMPT.format(query=x.phrase, S=size)
        out.append((x.image, prompt, json.dumps(x.box.tolist())))
    return out


def conversation(item, with_answer: bool):
    from jaxseg.protocols.policy import image_part, message, text_part, without_meta

    msgs = [message("user", [image_part(item[0]), text_part(item[1])])]
    if with_answer:
        msgs.append(message("assistant", [text_part(item[2])]))
    return without_meta(msgs)


def score(task: str, texts, items, train) -> tuple[float, float]:
    """(policy score, prior score): exact-answer accuracy for colours, mean box IoU for boxes."""
    if task.endswith("colour") or task == "grid-cell":
        common = collections.Counter(x[2] for x in train).most_common(1)[0][0]
        acc = np.mean([(t or "").strip() == x[2] for t, x in zip(texts, items)])
        return float(acc), float(np.mean([x[2] == common for x in items]))
    from jaxseg.eval.metrics import box_iou
    from jaxseg.train.grounding import parse_box

    mean_box = np.mean([json.loads(x[2]) for x in train], axis=0)
    gts = [np.asarray(json.loads(x[2]), np.float64) for x in items]
    ious = []
    for t, gt in zip(texts, gts):
        box = parse_box(t)
        ious.append(0.0 if box is None else float(box_iou(box, gt)[0, 0]))
    return float(np.mean(ious)), float(np.mean([box_iou(mean_box, gt)[0, 0] for gt in gts]))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--task", choices=TASKS, default="object-colour")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--warmup", type=int, default=20, help="linear warmup steps")
    ap.add_argument(
        "--schedule",
        default="cosine",
        choices=("cosine", "constant"),
        help="after warmup (locate_probe.py: constant after 100)",
    )
    ap.add_argument("--family", default="qwen3_vl", help="jaxseg.models.family name")
    ap.add_argument("--model-size", default="tiny", help="the family's preset")
    ap.add_argument(
        "--image-size", type=int, default=None, help="default: 8x8 patches (112 / 128 px)"
    )
    ap.add_argument("--ramp", type=float, default=0.0, help="background position ramp amplitude")
    ap.add_argument("--radius-scale", type=float, default=1.0, help="x the world's object radii")
    ap.add_argument(
        "--train-items",
        type=int,
        default=0,
        help="a fixed training set of this many items; 0: fresh items every step (locate_probe.py)",
    )
    ap.add_argument("--eval-items", type=int, default=96)
    ap.add_argument("--eval-every", type=int, default=100)
    ap.add_argument("--data-root", default=None, help="scene-box: benchmark dir (made if absent)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    from flax import nnx

    from jaxseg.commands.train import ensure_data
    from jaxseg.config import load_config
    from jaxseg.models.family import get_family
    from jaxseg.sampling.filters import SamplingParams
    from jaxseg.train.steps import OptimizerConfig, SFTLoss, make_optimizer, train_step
    from jaxseg.train.trainer import Experiment

    if args.image_size is None:
        args.image_size = 8 * get_family(args.family).image_processor["patch_size"]
    tmp = tempfile.mkdtemp(prefix="probe_vision_")
    root = args.data_root or f"{tmp}/data"
    cfg = load_config(
        f"synthetic_tiny:size={args.model_size},family={args.family},seed={args.seed}",
        [f"data.root={root}", f"data.synth.position_ramp={args.ramp}"],
    )
    if args.task == "scene-box":
        ensure_data(cfg, progress=False)
    exp = Experiment(cfg, f"{tmp}/run", progress=False)
    rng = np.random.default_rng(args.seed)
    if args.task == "scene-box":
        train = scene_items(exp, args.train_items, cfg.data.train_split, args.seed, args.image_size)
        held = scene_items(exp, args.eval_items, cfg.data.eval_split, 1, args.image_size)
    else:
        make = lambda n: synthetic_items(  # noqa: E731
            args.task, n, rng, size=args.image_size, ramp=args.ramp, radius_scale=args.radius_scale
        )
        held = make(args.eval_items)
        # a stream draws fresh items every step; its prior comes from a sample of the stream
        train = make(args.train_items or 2000)
    if args.task == "scene-box" and not args.train_items:
        raise SystemExit("scene-box draws from a benchmark: give --train-items")
    examples = (  # a stream encodes its items per step; `train` then only sets the prior
        [exp.encoder.encode(conversation(x, True)).as_example() for x in train]
        if args.train_items
        else []
    )
    opt_cfg = OptimizerConfig(
        learning_rate=args.lr,
        warmup_steps=args.warmup,
        total_steps=args.steps,
        schedule=args.schedule,
    )
    optimizer = nnx.Optimizer(exp.model, make_optimizer(opt_cfg), wrt=nnx.Param)

    def evaluate(step: int, loss: float, seconds: float) -> None:
        policy = exp.policy(sampling=SamplingParams(temperature=0.0), max_new_tokens=24, seed=0)
        texts = policy.respond(policy.start([conversation(x, False) for x in held]))
        got, prior = score(args.task, texts, held, train)
        distinct = len(set(texts))
        print(
            f"step {step:5d}  loss {loss:.3f}  held-out {got:.3f}  prior {prior:.3f}  "
            f"distinct answers {distinct}/{len(held)}  {seconds:.0f}s",
            flush=True,
        )

    print(
        f"task {args.task}  model {args.family} {args.model_size}  image {args.image_size} px  "
        f"ramp {args.ramp}  radius x{args.radius_scale}  batch {args.batch}  lr {args.lr}  "
        f"{'fresh items every step' if not args.train_items else f'{args.train_items} items'}"
    )
    t0 = time.time()
    loss = float("nan")
    for step in range(1, args.steps + 1):
        if args.train_items:
            idx = rng.choice(len(examples), args.batch, replace=False)
            chosen = [examples[j] for j in idx]
        else:
            chosen = [
                exp.encoder.encode(conversation(x, True)).as_example() for x in make(args.batch)
            ]
        batch = exp.batches(chosen, args.batch)  # one micro-batch: the step accumulates a list
        loss = float(train_step(exp.model, optimizer, batch, SFTLoss())["loss"])
        if step % args.eval_every == 0 or step == args.steps:
            evaluate(step, loss, time.time() - t0)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
