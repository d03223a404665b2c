"""Where does a box answer lose the object? A base run's checkpoint, teacher-forced on box items.

For held-out referring-box items (`base_tasks.eval_items`, split `base_heldout`, 112 px) with
their answers written in (`[[x1, y1, x2, y2]]`, one token per digit):

1. **digits**: per coordinate, the LM's argmax accuracy on its first and second digit next to
   always writing that slot's most frequent digit;
2. **readout ceiling**: ridge regression of x1's first digit, at the position that predicts it,
   from what that position has: the attention-supervised head's attended values (what the
   `locate` objective reads) and the final hidden state (what the LM head reads), fitted on items
   of split `base_train`: whether the LM head uses what is there;
3. **locate heads** (a run trained with `pretrain.base.locate`): the value head's box, IoU and
   mean edge error in px, at the named object's centre tokens and at the answer position (how
   much of the object's place the attention brings to the answer), and with
   `pretrain.base.locate_hidden` the final-hidden head's at the answer position; then the
   same at the answer split by what the phrase names (colour, shape, size+shape, ...): a phrase
   the visual tokens cannot match leaves the box at the prior.

    python bench/probe_answer.py --run runs/base
    python bench/probe_answer.py --run runs/base --items 256 --fit 1536
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
from probe_features import ridge_accuracy


def encoded(exp, loss, items, locate: bool) -> list[dict]:
    """The items' training examples with their attention (and locate) targets."""
    from jaxseg.protocols.policy import without_meta

    out = []
    for it in items:
        e = exp.encoder.encode(without_meta(it.conversation(with_answer=True))).as_example()
        size = it.image.shape[0]
        e["referent"] = loss.example_target(e, it.referent, size)
        if locate:
            e["locate"] = loss.example_boxes(e, it.objects, it.referent, size)
        out.append(e)
    return out


def answer_digits(tok, ids: np.ndarray, mask: np.ndarray) -> list[tuple[int, int, int]]:
    """(position predicting it, coordinate index, digit index in its number) for each digit
    of one row's answer; `mask [L-1]` target-aligned."""
    out, k, d = [], 0, 0
    for p in np.flatnonzero(mask > 0):
        if tok.decode([int(ids[p + 1])]).isdigit():
            out.append((int(p), k, d))
            d += 1
        else:
            k, d = k + (d > 0), 0
    return out


def passes(exp, loss, examples, locate: bool):
    """Per batch of 16: (batch, logits, final hidden, head features, locate boxes or None)."""
    from jaxseg.models.family import with_attention
    from jaxseg.train.objectness import LOCATE_HEAD, LOCATE_HIDDEN_HEAD, locate_features
    from jaxseg.train.steps import forward_logits

    for b in exp.batches(examples, 16, collate=loss.collate):
        hidden, probs, values = with_attention(
            lambda m: forward_logits(m, b.policy, return_hidden=True),  # noqa: B023
            exp.model,
            values=True,
        )
        feats = locate_features(probs, values, b.visual)
        boxes = None
        if locate:
            boxes = {"answer position": getattr(exp.model, LOCATE_HEAD)(feats)}
            if hasattr(exp.model, LOCATE_HIDDEN_HEAD):
                boxes["answer's final hidden"] = getattr(exp.model, LOCATE_HIDDEN_HEAD)(hidden)
        logits = exp.model.compute_logits(hidden)
        yield (
            b,
            np.asarray(logits),
            np.asarray(hidden),
            np.asarray(feats),
            None if boxes is None else {k: np.asarray(v) for k, v in boxes.items()},
        )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--run", required=True, help="a base run's workdir (its newest pretrain step)")
    ap.add_argument("--items", type=int, default=256, help="held-out box items")
    ap.add_argument(
        "--fit", type=int, default=1536, help="base_train items the readout is fitted on"
    )
    args = ap.parse_args()

    from flax import nnx

    from jaxseg.config import load_config
    from jaxseg.eval.metrics import box_iou
    from jaxseg.models.family import attention_capture
    from jaxseg.train import base_tasks
    from jaxseg.train.checkpoint import Checkpointer
    from jaxseg.train.learner import ITEMS, abstract_like
    from jaxseg.train.objectness import (
        HEAD,
        LOCATE_HEAD,
        LOCATE_HIDDEN_HEAD,
        AuxParam,
        LocateHead,
        ObjectnessHead,
        attached_head,
    )
    from jaxseg.train.trainer import Experiment

    run = Path(args.run)
    exp = Experiment(load_config("synthetic_base"), Path(tempfile.mkdtemp()), progress=False)
    step = exp.learner.load("pretrain", exp.model, workdir=run)
    if step is None:
        raise SystemExit(f"{run}: no pretrain checkpoint")
    text = exp.model.config.text
    ckpt_dir = run / "pretrain" / "ckpt"
    with Checkpointer(ckpt_dir, item_names=ITEMS, read_only=True) as ckpt:
        heads = {p[0] for p in ckpt.saved_paths(step, "aux")}
    locate = LOCATE_HEAD in heads
    tok = exp.processor.tokenizer
    loss = exp._base_loss(0.0, 1.0, 0.0, 1.0 if locate else 0.0)
    b = exp.config.pretrain.base
    fit_items = base_tasks.eval_items(int(b.seed), b.train_split, args.fit, "box")
    test_items = base_tasks.eval_items(int(b.seed), b.eval_split, args.items, "box")
    objectness = ObjectnessHead(text.hidden_size) if HEAD in heads else None
    with (
        attached_head(exp.model, objectness),
        attached_head(exp.model, LocateHead(text.head_dim) if locate else None, LOCATE_HEAD),
        attached_head(
            exp.model,
            LocateHead(text.hidden_size) if LOCATE_HIDDEN_HEAD in heads else None,
            LOCATE_HIDDEN_HEAD,
        ),
        attention_capture(exp.model),
    ):
        if heads:  # the run's auxiliary heads, read from the same step
            with Checkpointer(ckpt_dir, item_names=ITEMS, read_only=True) as ckpt:
                target = nnx.to_pure_dict(nnx.state(exp.model, AuxParam))
                restored, _ = ckpt.restore({"aux": abstract_like(target)}, step)
            state = nnx.state(exp.model, AuxParam)
            nnx.replace_by_pure_dict(state, restored["aux"])
            nnx.update(exp.model, state)
        print(f"run {run}, pretrain step {step}; {args.items} held-out box items, 112 px")

        def x1_first(items, keep):
            feats, hid, y = [], [], []
            rows = encoded(exp, loss, items, locate)
            for start, (b, logits, hidden, f, boxes) in zip(
                range(0, len(rows), 16), passes(exp, loss, rows, locate), strict=True
            ):
                ids, mask = np.asarray(b.policy.input_ids), np.asarray(b.policy.loss_mask)
                for i in range(len(ids)):
                    digits = answer_digits(tok, ids[i], mask[i])
                    p = digits[0][0]
                    feats.append(f[i, p])
                    hid.append(hidden[i, p])
                    y.append(int(tok.decode([int(ids[i, p + 1])])))
                    if keep is not None:
                        keep(items[start + i], rows[start + i], ids[i], logits[i], boxes, i, digits)
            return np.array(feats), np.array(hid), np.array(y)

        hits: dict[tuple[int, int], list[bool]] = {}
        truth: dict[tuple[int, int], list[int]] = {}
        located: dict[str, list] = {}

        def keep(item, row, ids, logits, boxes, i, digits):
            for p, k, d in digits:
                if d > 1:
                    continue
                want = int(tok.decode([int(ids[p + 1])]))
                got = tok.decode([int(logits[p].argmax())])
                hits.setdefault((k, d), []).append(got == str(want))
                truth.setdefault((k, d), []).append(want)
            if boxes is None or len(item.referent) != 1:
                return
            size = item.image.shape[0]
            fitted = np.flatnonzero(~np.isnan(row["locate"][:, 0]))
            named = item.referent[0].astype(np.float64)
            on = [
                p
                for p in fitted
                if ids[p] == loss.image_token_id
                and np.allclose(row["locate"][p] * size, named, atol=1.0)
            ]
            answer = [p for p in fitted if ids[p] != loss.image_token_id][-1:]
            wheres = [("named object's centre tokens", "answer position", on)]
            wheres += [(name, name, answer) for name in boxes]
            for name, head, where in wheres:
                for p in where:
                    box = boxes[head][i, p] * size
                    located.setdefault(name, [])
                    located[name].append(
                        (box_iou(box[None], named[None])[0, 0], np.abs(box - named))
                    )
                    if where is answer:
                        kind = f"{name}, phrase names {base_tasks.phrase_names(item.prompt)}"
                        located.setdefault(kind, []).append(located[name][-1])

        f_fit, h_fit, y_fit = x1_first(fit_items, None)
        f_test, h_test, y_test = x1_first(test_items, keep)

    print("1. teacher-forced digits (LM argmax vs always the slot's most frequent digit):")
    for (k, d), got in sorted(hits.items()):
        counts = np.bincount(truth[(k, d)], minlength=10)
        print(
            f"   {('x1', 'y1', 'x2', 'y2')[k % 4]} digit {d + 1}: {np.mean(got):.3f} "
            f"(prior {counts.max() / counts.sum():.3f}, n={len(got)})"
        )
    print(
        "2. x1's first digit at the position that predicts it (ridge readout, fitted on "
        f"{len(y_fit)} base_train items):"
    )
    for name, a, b in (("head's attended values", f_fit, f_test), ("final hidden", h_fit, h_test)):
        print(f"   {name:24s} {ridge_accuracy(a, y_fit, b, y_test, 10, 1e-2):.3f}")
    print(f"   {'the LM head':24s} {np.mean(hits[(0, 0)]):.3f}")
    if locate:
        print("3. locate head's box (IoU, IoU>0.5, mean |edge error| px x1 y1 x2 y2):")
        for name, rows in sorted(located.items(), key=lambda kv: ", phrase" in kv[0]):
            iou = np.array([r[0] for r in rows])
            err = np.mean([r[1] for r in rows], axis=0)
            print(
                f"   {name:44s} {iou.mean():.3f}  {np.mean(iou > 0.5):.3f}  "
                + " ".join(f"{e:.1f}" for e in err)
                + f"  (n={len(rows)})"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
