"""Does a base box the same object under the protocols' layout? A base run's checkpoint, greedy.

The protocols show several frames, each after 'Frame <index>: ', then the question; the base
learnt boxes on one image followed by the question. This probe asks the same held-out
`frames` items (`base_tasks.eval_items`, split `base_heldout`) under layouts that add one
difference at a time and prints the box IoU of each next to the mean-box prior:

- `box`: the asked frame alone, the `box` prompt (the skill as trained);
- `label+box`: 'Frame <k>: ' before that image, the same `box` prompt;
- `frames/1`: the asked frame alone under its label, the `frames` prompt ('... in frame k of
  the SxS images');
- `frames/2`: the asked frame and the next shown one;
- `frames`: all the item's frames (4-8, the protocols' count).

A base that boxes under `box` and not under `label+box` has learnt a layout, not a skill:
text before the image moves what its visual tokens hold. Next to each IoU, `any object`: the
IoU of the answer's first box with the visible object it overlaps most in any frame the
layout shows (boxing *an* object, perhaps in the wrong frame, vs boxing nothing).

    python bench/probe_layout.py --run runs/base
    python bench/probe_layout.py --run runs/base --items 128
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import numpy as np


def layouts(item, box_prompt: str):
    """(name, conversation) per layout of one `frames` item, each drawn by
    `BaseItem.conversation` (the one place that lays frames out)."""
    asked = item.frames[item.frame_position]
    nxt = item.frames[(item.frame_position + 1) % len(item.frames)]
    two = tuple(sorted([asked, nxt], key=lambda f: f[0]))

    def shown(frames, prompt=item.prompt):
        position = next(j for j, f in enumerate(frames) if f is asked) if frames else 0
        x = dataclasses.replace(item, frames=frames, frame_position=position, prompt=prompt)
        return x.conversation(with_answer=False)

    return [
        ("box", shown((), box_prompt)),
        ("label+box", shown((asked,), box_prompt)),
        ("frames/1", shown((asked,))),
        ("frames/2", shown(two)),
        ("frames", shown(item.frames)),
    ]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", required=True, help="a base run's workdir (its newest pretrain step)")
    ap.add_argument("--items", type=int, default=64, help="held-out frames items")
    args = ap.parse_args()

    from jaxseg.sampling.filters import SamplingParams
    from jaxseg.train import base_tasks
    from jaxseg.train.trainer import Experiment

    exp = Experiment.from_workdir(args.run, progress=False)
    step = exp.load_stage("pretrain")
    if step is None:
        raise SystemExit(f"{args.run}: no pretrain checkpoint")
    b = exp.config.pretrain.base
    items = base_tasks.eval_items(int(b.seed), b.eval_split, args.items, "frames")
    policy = exp.policy(sampling=SamplingParams(temperature=0.0), max_new_tokens=40, seed=0)
    print(f"{args.run} step {step}: {len(items)} held-out frames items, greedy")
    per_item = [layouts(x, _box_prompt(base_tasks, x)) for x in items]
    for j, (name, _) in enumerate(per_item[0]):
        t0 = time.perf_counter()
        convs = [row[j][1] for row in per_item]
        texts = policy.respond(policy.start(convs))
        s = base_tasks.score("frames", texts, items)
        hit = np.mean(
            [any_object_iou(t, x, c) for t, x, c in zip(texts, items, convs, strict=True)]
        )
        print(
            f"{name:10s} IoU {s['iou']:.3f}  IoU>0.5 {s['iou>0.5']:.3f}  any object {hit:.3f}"
            f"  parsed {s['parse_ok']:.2f}  (prior {s['prior_mean_box_iou']:.3f})"
            f"  {time.perf_counter() - t0:.0f} s",
            flush=True,
        )
    return 0


def any_object_iou(text, item, conversation) -> float:
    """The IoU of `text`'s first box with the object it overlaps most among those visible in
    the frames `conversation` shows (0 when it writes no box)."""
    from jaxseg.eval.metrics import box_iou
    from jaxseg.train import base_tasks

    boxes = base_tasks.parse_boxes(text)
    if boxes is None or len(boxes) == 0:
        return 0.0
    shown = [p["image"] for p in conversation[0]["content"] if p["type"] == "image"]
    objects = [
        b
        for (_, image), (b, _) in zip(item.frames, item.frame_objects, strict=True)
        if any(image is s for s in shown)
    ]
    objects = np.concatenate(objects) if objects else np.zeros((0, 4))
    return float(box_iou(boxes[:1], objects).max(initial=0.0))


def _box_prompt(base_tasks, item) -> str:
    """The `box` task's prompt for the phrase a `frames` item asks about."""
    phrase = item.prompt.split('Query: "the ', 1)[1].split('"', 1)[0]
    return base_tasks.BOX_PROMPT.format(phrase=phrase, S=item.image.shape[0])


if __name__ == "__main__":
    raise SystemExit(main())
