"""Which parts of a protocol's trace has a fine-tuned policy learnt? Teacher-forced, per region.

A run's checkpoint (SFT by default) reads the protocol's oracle traces for held-out samples
(`Experiment.sft_examples`, split `data.eval_split`) with every earlier token given; each answer
token is scored by whether the LM's argmax is that token, grouped by where it sits:

* ``query``: inside the restatement of the query (the quoted query the trace repeats);
* ``query words``: the same, the query's content words only (words the trace has nowhere
  outside the restatement: what a policy must copy, not guess from the template);
* ``digits``: digits after the answer's first ``[`` (box coordinates);
* ``rest``: everything else (template words, frame lists, tags).

A policy that restates a query it was not asked writes the template right and the query's
content words wrong; then everything after it is conditioned on another query.

    python bench/probe_trace.py --run runs/demo
    python bench/probe_trace.py --run runs/demo --stage grpo --samples 48 --show 3
    python bench/probe_trace.py --run runs/demo --stage base   # the base, before SFT
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def _words(text: str) -> list[str]:
    return [w.strip('.,?!:;"()').lower() for w in text.split()]


def regions(text_pieces: list[str], query: str) -> list[str]:
    """The region of each answer token (`query`, `query words`, `digits`, `rest`), given the
    trace's decoded tokens in order and the query it restates."""
    full = "".join(text_pieces)
    quoted = json.dumps(query)
    at = full.find(quoted)
    span = (at + 1, at + len(quoted) - 1) if at >= 0 else (-1, -1)
    template_words = set(_words(full.replace(quoted, " ") if at >= 0 else full))
    bracket = full.find("[")
    out, pos = [], 0
    for piece in text_pieces:
        start, pos = pos, pos + len(piece)
        if span[0] <= start < span[1]:
            words = _words(piece)
            content = bool(words) and any(w and w not in template_words for w in words)
            out.append("query words" if content else "query")
        elif piece.strip().isdigit() and 0 <= bracket < start:
            out.append("digits")
        else:
            out.append("rest")
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--run", required=True, help="a demo/train workdir (its config.json)")
    ap.add_argument(
        "--stage",
        default="sft",
        help="whose checkpoint: sft | grpo | base (the run's starting weights, before fine-tuning)",
    )
    ap.add_argument("--samples", type=int, default=24, help="held-out samples (oracle traces)")
    ap.add_argument("--show", type=int, default=2, help="traces printed, misses as [want|got]")
    args = ap.parse_args()

    from jaxseg.train.rollouts import sft_example
    from jaxseg.train.steps import forward_logits
    from jaxseg.train.trainer import Experiment

    run = Path(args.run)
    if not (run / "config.json").is_file():
        raise SystemExit(f"{run}: not a jaxseg run directory (no config.json)")
    exp = Experiment.from_workdir(run, progress=False)
    step = "-" if args.stage == "base" else exp.load_stage(args.stage)
    if step is None:
        raise SystemExit(f"{run}: no {args.stage} checkpoint")
    tok = exp.processor.tokenizer
    split = str(exp.config.data.eval_split)
    pairs = list(exp.cold_start_episodes(split, args.samples))
    examples = [sft_example(episode, exp.encoder) for _, episode in pairs]
    print(f"{run}: {args.stage} step {step}; {len(examples)} held-out oracle traces ({split})")
    hits: dict[str, list[bool]] = {}
    shown = 0
    for start, batch in zip(range(0, len(examples), 8), exp.batches(examples, 8), strict=True):
        logits = np.asarray(forward_logits(exp.model, batch))
        ids, mask = np.asarray(batch.input_ids), np.asarray(batch.loss_mask)
        for i in range(len(ids)):
            sample = pairs[start + i][0]
            pos = np.flatnonzero(mask[i] > 0)
            want = [tok.decode([int(ids[i, p + 1])]) for p in pos]
            got = [tok.decode([int(logits[i, p].argmax())]) for p in pos]
            where = regions(want, sample.query)
            for w, g, r in zip(want, got, where, strict=True):
                hits.setdefault(r, []).append(w == g)
            if shown < args.show:
                print("".join(w if w == g else f"[{w}|{g}]" for w, g in zip(want, got)))
                print("---")
                shown += 1
    for name in ("query", "query words", "digits", "rest"):
        h = hits.get(name, [])
        if h:
            print(f"{name:12s} {np.mean(h):.3f} of {len(h)} tokens")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
