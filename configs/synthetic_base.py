"""The grounded base: a tiny Qwen3-VL pretrained from scratch on the synthetic world's base
skills (referring boxes, plurals, "no target", counting, colours; jaxseg.train.base_tasks),
on fresh frames from its own generator seed and split, never the benchmark's videos.

    make base                     # = jaxseg base: train (resumable), evaluate, ship
    jaxseg train --config synthetic_base --workdir runs/base --stages pretrain   # training only

Resumable: re-running continues from the last checkpoint (every 250 steps); the stream of
batches is a pure function of (seed, step), so a resumed run sees what an unbroken one would.
`:arg` knobs: size (tiny), steps, quick (a few steps, CI).
"""

from ml_collections import ConfigDict

from jaxseg.config import load_config, parse_arg


def get_config(arg=None):
    a = parse_arg(arg, size="tiny", steps=60000, quick=False, seed=0)
    c = load_config(
        f"demo:family=qwen3_vl,base=random,size={a.size},seed={a.seed}"
        + (",quick" if a.quick else "")
    )
    c.model.size = a.size
    p = c.pretrain
    p.curriculum = "base"
    p.steps = 3 if a.quick else a.steps
    p.batch_size = 4 if a.quick else 32
    p.micro_batch = p.batch_size
    p.learning_rate = 2e-3  # the probes' 3e-3 with AdamW and batch 32, a little lower for 4 layers
    p.warmup_steps = 0 if a.quick else 200
    p.schedule = "constant"  # a multi-session run of open length; anneal in a later run
    p.weight_decay = 0.0
    p.checkpoint_every = 2 if a.quick else 250
    p.eval_every = 0 if a.quick else 1000
    p.eval_items = 8 if a.quick else 128
    p.keep = 3
    p.base = ConfigDict(
        dict(
            seed=7,  # the base's own generator seed; the benchmark uses data.synth.seed
            train_split="base_train",
            eval_split="base_heldout",
            image_sizes=(112, 140),  # what the protocols show (Veason 112, O3 keyframes 140)
            max_objects_early=3,
            full_scene_step=1500,
            # (first step, task weights). The committed run trained boxes of one named object,
            # then the mix, and sat at the box prior through step 3750; from there it adds
            # `cell` (the named object's 4x4 grid cell, one token), the densest location signal,
            # to cross the location plateau (jaxseg.train.base_tasks). A fresh run could start
            # with `cell` (CurriculumConfig's default); this is the recipe the shipped base ran.
            phases=(
                (0, {"box": 1.0}),
                (1500, {"box": 0.55, "boxes": 0.1, "absent": 0.1, "count": 0.15, "colour": 0.1}),
                (
                    3750,
                    {
                        "cell": 0.4,
                        "box": 0.3,
                        "boxes": 0.05,
                        "absent": 0.1,
                        "count": 0.1,
                        "colour": 0.05,
                    },
                ),
            ),
            eval_tasks=("cell", "box", "boxes", "absent", "count", "colour"),
        )
    )
    return c
