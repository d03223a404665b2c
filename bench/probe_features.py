"""What do a checkpoint's visual tokens know of the objects in them? A linear (ridge) probe.

For held-out synthetic-world frames shown at 128 px (4x4 merged visual tokens), the vision
tower's output at each token holding exactly one object's centre is fitted by ridge regression
onto one-hot colour / shape / size classes (frames of split `base_train`), then scored on
frames of `base_heldout`; next to it the same probe on the token's raw pixels and on a fresh
transformers draw of the same architecture, and the majority class. Perception the phrase
could bind to shows here before it shows in any answer. Position too: every visual token's
own row and column (4 classes each) from the same features, where a box answer must read it.

    python bench/probe_features.py                       # the shipped base
    python bench/probe_features.py --checkpoint DIR --plain
    python bench/probe_features.py --run runs/base       # a base run's newest checkpoint
"""

from __future__ import annotations

import argparse
import dataclasses

import numpy as np
from probe_locate import patches


def frames(split: str, n: int, synth):
    """`n` frames [n, 128, 128, 3] of `split` and labels [K, 5]: (frame, cell, colour, shape,
    size) of each cell holding exactly one visible object's centre."""
    from jaxseg.data.synth.generate import generate_video
    from jaxseg.train.base_tasks import ATTRIBUTES, CELLS, _frame_objects, cell_of

    rng = np.random.default_rng(0)
    images, labels, v = [], [], 0
    while len(images) < n:
        video = generate_video(7, split, v, synth)
        v += 1
        t = int(rng.integers(video.frames.shape[0]))
        cells: dict[int, list] = {}
        for o in _frame_objects(video, t):
            cells.setdefault(CELLS.index(cell_of(o["box"], 128)), []).append(o)
        for c, objs in cells.items():
            if len(objs) == 1:
                labels.append([len(images), c, *(vs.index(objs[0][a]) for a, vs in ATTRIBUTES)])
        images.append(video.frames[t])
    return np.stack(images), np.array(labels)


def tower_features(model, images: np.ndarray) -> np.ndarray:
    """The vision tower's merged output [n, 16, D] for images [n, 128, 128, 3]."""
    import jax.numpy as jnp

    from jaxseg.models.family import family_of

    family, out = family_of(model), []
    for i in range(0, len(images), 64):
        pixels, grid = patches(images[i : i + 64])
        layout = family.vision_layout(grid, model.config.vision)
        feats, _ = model.visual(jnp.asarray(pixels), layout)
        out.append(np.asarray(feats).reshape(len(images[i : i + 64]), 16, -1))
    return np.concatenate(out)


def pixel_features(images: np.ndarray) -> np.ndarray:
    """Each token's 32 x 32 x 3 pixels [n, 16, 3072]."""
    x = images.astype(np.float32) / 255
    n = len(x)
    return x.reshape(n, 4, 32, 4, 32, 3).transpose(0, 1, 3, 2, 4, 5).reshape(n, 16, -1)


def ridge_accuracy(x_train, y_train, x_test, y_test, classes: int, lam: float) -> float:
    """Held-out accuracy of ridge regression onto one-hot targets (standardised inputs)."""
    mu, sd = x_train.mean(0), x_train.std(0) + 1e-6
    a = np.c_[(x_train - mu) / sd, np.ones(len(x_train))]
    b = np.c_[(x_test - mu) / sd, np.ones(len(x_test))]
    w = np.linalg.solve(a.T @ a + lam * len(a) * np.eye(a.shape[1]), a.T @ np.eye(classes)[y_train])
    return float(((b @ w).argmax(1) == y_test).mean())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", default=None, help="HF checkpoint dir (default: shipped base)")
    ap.add_argument("--run", default=None, help="a base run's workdir: its newest pretrain step")
    ap.add_argument("--plain", action="store_true", help="2-3 objects on plain backgrounds")
    ap.add_argument("--train", type=int, default=1500, help="training frames")
    ap.add_argument("--test", type=int, default=400, help="held-out frames")
    args = ap.parse_args()

    import jax.numpy as jnp

    from jaxseg.data.synth.world import SynthConfig
    from jaxseg.models.family import load_pretrained, redraw_with_transformers, shipped_base
    from jaxseg.train.base_tasks import ATTRIBUTES

    synth = SynthConfig()
    if args.plain:
        synth = dataclasses.replace(synth, objects=(2, 3), textured_prob=0.0)
    directory = args.checkpoint or shipped_base()
    if args.run:  # the recipe's policy (synthetic_base's tower), the run's newest weights
        import tempfile
        from pathlib import Path

        from jaxseg.config import load_config
        from jaxseg.train.trainer import Experiment

        exp = Experiment(load_config("synthetic_base"), Path(tempfile.mkdtemp()), progress=False)
        step = exp.learner.load("pretrain", exp.model, workdir=Path(args.run))
        if step is None:
            raise SystemExit(f"{args.run}: no pretrain checkpoint")
        directory = f"{args.run} (pretrain step {step})"
        model = exp.model
        fresh = redraw_with_transformers(
            Experiment(
                load_config("synthetic_base"), Path(tempfile.mkdtemp()), progress=False
            ).model,
            0,
        )
    else:
        load = lambda: load_pretrained(directory, dtype=jnp.float32, param_dtype=jnp.float32)  # noqa: E731
        model, fresh = load(), redraw_with_transformers(load(), 0)
    train_images, train_labels = frames("base_train", args.train, synth)
    test_images, test_labels = frames("base_heldout", args.test, synth)
    print(
        f"checkpoint {directory}  scenes {'plain 2-3' if args.plain else 'full'}  "
        f"tokens: {len(train_labels)} train, {len(test_labels)} held-out"
    )
    sources = (
        ("token pixels (32x32x3)", pixel_features),
        ("checkpoint's tower", lambda x: tower_features(model, x)),
        ("fresh draw's tower", lambda x: tower_features(fresh, x)),
    )
    for name, features in sources:
        f_train, f_test = features(train_images), features(test_images)
        x_train = f_train[train_labels[:, 0], train_labels[:, 1]]
        x_test = f_test[test_labels[:, 0], test_labels[:, 1]]
        lam = 1e-2 if x_train.shape[1] < 1000 else 1.0
        row = []
        cells = np.arange(f_train.shape[1])  # every token: its own row and column
        for axis, of in (("row", cells // 4), ("col", cells % 4)):
            x_all, y_all = f_train.reshape(-1, f_train.shape[-1]), np.tile(of, len(f_train))
            t_all, z_all = f_test.reshape(-1, f_test.shape[-1]), np.tile(of, len(f_test))
            row.append(f"{axis} {ridge_accuracy(x_all, y_all, t_all, z_all, 4, lam):.3f}")
        for j, (attribute, values) in enumerate(ATTRIBUTES):
            y_train, y_test = train_labels[:, 2 + j], test_labels[:, 2 + j]
            acc = ridge_accuracy(x_train, y_train, x_test, y_test, len(values), lam)
            majority = np.bincount(y_test, minlength=len(values)).max() / len(y_test)
            row.append(f"{attribute} {acc:.3f} (majority {majority:.3f})")
        print(f"{name:24s} " + " | ".join(row), flush=True)
    print("own row / col of every token: chance 0.250")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
