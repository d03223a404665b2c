"""How fast does a vision tower learn what a phrase names, supervised directly? A diagnostic.

The vision tower of the `synthetic_base` policy (or another one: `--vision` overrides its
fields, e.g. a patch size) alone, with three linear heads on its merged output at each 4x4
cell of a 128 px world frame holding exactly one object's centre, trained (tower + heads,
Adam, batch 32 frames) to name that object's colour, shape and size; held-out accuracy every
`--eval-every` steps on frames of split `base_heldout`. No language model: this separates what
the tower can learn to see from what the base's joint objective makes it learn.

    python bench/probe_tower.py                                   # a fresh draw of the tower
    python bench/probe_tower.py --run runs/base                   # from a base run's tower
    python bench/probe_tower.py --vision '{"patch_size": 8, "spatial_merge_size": 4}'
    python bench/probe_tower.py --train-frames 12000              # more distinct frames
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
from probe_features import frames
from probe_locate import patches

BATCH, CELLS, MAX_LABELS = 32, 16, 128


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", default=None, help="start from a base run's newest tower")
    ap.add_argument("--vision", default="{}", help="JSON overrides of the tower's fields")
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--train-frames", type=int, default=2000)
    ap.add_argument("--test-frames", type=int, default=300)
    ap.add_argument("--eval-every", type=int, default=100)
    args = ap.parse_args()

    import jax.numpy as jnp
    import optax
    from flax import nnx

    from jaxseg.config import load_config
    from jaxseg.data.synth.world import SynthConfig
    from jaxseg.models.family import family_of
    from jaxseg.train.base_tasks import ATTRIBUTES
    from jaxseg.train.trainer import Experiment

    config = load_config("synthetic_base")
    config.model.vision.update(json.loads(args.vision))
    exp = Experiment(config, Path(tempfile.mkdtemp()), progress=False)
    model = exp.model
    if args.run:
        step = exp.learner.load("pretrain", model, workdir=Path(args.run))
        if step is None:
            raise SystemExit(f"{args.run}: no pretrain checkpoint")
    vision = model.config.vision
    width = model.config.text.hidden_size
    cut = dict(patch=vision.patch_size, merge=vision.spatial_merge_size)

    class Probe(nnx.Module):
        def __init__(self, tower, rngs):
            self.tower = tower
            self.heads = nnx.List([nnx.Linear(width, len(v), rngs=rngs) for _, v in ATTRIBUTES])

    probe = Probe(model.visual, nnx.Rngs(0))
    optimizer = nnx.Optimizer(probe, optax.adam(args.lr), wrt=nnx.Param)
    train_x, train_y = frames("base_train", args.train_frames, SynthConfig())
    test_x, test_y = frames("base_heldout", args.test_frames, SynthConfig())
    _, grid = patches(train_x[:BATCH], **cut)
    layout = family_of(model).vision_layout(grid, vision)

    @nnx.jit
    def step_fn(probe, optimizer, pixels, labels, mask):
        def loss(p):
            feats, _ = p.tower(pixels, layout)
            x = feats.reshape(BATCH, CELLS, -1)[labels[:, 0], labels[:, 1]]
            total = 0.0
            for j, head in enumerate(p.heads):
                ce = optax.softmax_cross_entropy_with_integer_labels(head(x), labels[:, 2 + j])
                total = total + (ce * mask).sum() / mask.sum()
            return total

        value, grads = nnx.value_and_grad(loss)(probe)
        optimizer.update(probe, grads)
        return value

    def evaluate() -> dict[str, float]:
        out = []
        for i in range(0, len(test_x), BATCH):
            pixels, g = patches(test_x[i : i + BATCH], **cut)
            feats, _ = probe.tower(jnp.asarray(pixels), family_of(model).vision_layout(g, vision))
            out.append(np.asarray(feats).reshape(len(g), CELLS, -1))
        x = jnp.asarray(np.concatenate(out)[test_y[:, 0], test_y[:, 1]])
        return {
            name: float((np.asarray(head(x)).argmax(1) == test_y[:, 2 + j]).mean())
            for j, ((name, _), head) in enumerate(zip(ATTRIBUTES, probe.heads, strict=True))
        }

    majority = {
        name: np.bincount(test_y[:, 2 + j]).max() / len(test_y)
        for j, (name, _) in enumerate(ATTRIBUTES)
    }
    print(
        f"tower {vision.depth} blocks x {vision.hidden_size}, MLP {vision.intermediate_size}, "
        f"patch {vision.patch_size}, merge {vision.spatial_merge_size}; "
        f"{'run ' + args.run if args.run else 'fresh draw'}; {len(train_y)} train labels, "
        f"{len(test_y)} held-out; majority "
        + ", ".join(f"{k} {v:.3f}" for k, v in majority.items())
    )
    rng, t0 = np.random.default_rng(0), time.perf_counter()
    for step in range(args.steps + 1):
        if step % args.eval_every == 0 or step == args.steps:
            scores = ", ".join(f"{k} {v:.3f}" for k, v in evaluate().items())
            print(f"step {step:5d} ({time.perf_counter() - t0:5.0f} s): {scores}", flush=True)
        if step == args.steps:
            break
        pick = rng.choice(len(train_x), BATCH, replace=False)
        rows = [[k, *r[1:]] for k, i in enumerate(pick) for r in train_y[train_y[:, 0] == i]]
        labels = np.zeros((MAX_LABELS, 5), np.int64)
        labels[: len(rows)] = np.array(rows[:MAX_LABELS])
        mask = (np.arange(MAX_LABELS) < len(rows)).astype(np.float32)
        pixels, _ = patches(train_x[pick], **cut)
        step_fn(probe, optimizer, jnp.asarray(pixels), jnp.asarray(labels), jnp.asarray(mask))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
