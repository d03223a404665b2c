"""`jaxseg data cot`: cold-start chain-of-thought traces as JSONL (jaxseg.train.cot).

    jaxseg data cot --data runs/data/synth --split train --protocol veason --out cot.jsonl
    jaxseg data cot --data data/revos --split train --protocol o3 --out cot.jsonl \\
                    --teacher hf/Qwen2.5-VL-72B-Instruct --limit 2000

Without --teacher the protocol's scripted oracle writes the traces from the synthetic scene
graph (the benchmark's `synth_scene_graph_<split>_.json` must exist); this is the same code
path `Experiment.sft_examples` takes. With --teacher (a local HF directory: weights, config,
tokenizer, processor) the teacher VLM plays each episode on GT-annotated frames and only the
traces whose answer matches the GT are written: every turn parsed and J >= --min-j, the
reward at least --min-reward of the protocol's maximum, and the seed's own filters: Veason-R1
draws its samples stratified over referring/reasoning x single/multi-target (--stratify,
default for a veason teacher); VideoSEG-O3's teacher gets three ranked candidate intervals to verify
and a trace must verify at least one with a select before answering. Training reads the
file with `--set sft.traces=cot.jsonl`.
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
import time
from pathlib import Path


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", required=True, help="benchmark root")
    p.add_argument("--format", default="revos", help="jaxseg.data.readers format (revos)")
    p.add_argument("--split", default="train")
    p.add_argument("--protocol", default="veason", help="veason | rcot | o3 | revseg")
    p.add_argument("--out", required=True, help="JSONL file to write")
    p.add_argument("--limit", type=int, default=None, help="at most N episodes (samples)")
    p.add_argument("--seed", type=int, default=0, help="frame sampling of the openings")
    p.add_argument("--teacher", default=None, help="local HF model dir (real datasets)")
    p.add_argument("--min-j", type=float, default=0.5, help="teacher traces: J to accept")
    p.add_argument(
        "--min-reward",
        type=float,
        default=0.5,
        help="teacher traces: reward to accept, as a fraction of the protocol's maximum",
    )
    p.add_argument(
        "--stratify",
        choices=("auto", "on", "off"),
        default="auto",
        help="stratified samples (referring/reasoning x single/multi); auto: veason teacher",
    )
    p.add_argument("--temperature", type=float, default=0.7, help="teacher sampling")
    p.add_argument("--max-new-tokens", type=int, default=256, help="teacher, per turn")
    p.add_argument("--chunk", type=int, default=8, help="episodes run together")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from jaxseg.protocols.registry import make_protocol
    from jaxseg.segmenter import make_backend
    from jaxseg.train import cot
    from jaxseg.train.samples import SampleSource

    try:
        source = SampleSource(args.data, args.split, format=args.format)
        protocol = make_protocol(args.protocol)
    except (FileNotFoundError, ValueError, KeyError) as err:
        raise SystemExit(f"jaxseg data cot: {err}") from None
    count = len(source) if args.limit is None else min(args.limit, len(source))
    samples = cot.CycledSamples(source, count)
    auto = args.protocol == "veason" and args.teacher is not None
    if args.stratify == "on" or (args.stratify == "auto" and auto):
        samples = cot.PositionSamples(source, cot.stratified_positions(source, count, args.seed))
    oracle_backend = make_backend("oracle")
    t0 = time.perf_counter()
    if args.teacher is None:
        if not (Path(args.data) / f"synth_scene_graph_{args.split}_.json").is_file():
            raise SystemExit(
                f"jaxseg data cot: {args.data} split {args.split!r} has no synthetic scene graph "
                f"(synth_scene_graph_{args.split}_.json); for a real dataset pass --teacher DIR"
            )
        make = functools.partial(
            cot.oracle_episodes, protocol, backend=oracle_backend, seed=args.seed
        )
        keep = None
    else:
        teacher = _load_teacher(args)
        o3 = args.protocol == "o3"
        make = functools.partial(
            cot.teacher_episodes,
            protocol,
            teacher,
            backend=oracle_backend,
            seed=args.seed,
            extra_hint=cot.o3_candidates_hint if o3 else None,
        )

        def keep(episode, sample):
            return (
                cot.accept(episode, sample, min_j=args.min_j)
                and cot.reward_ok(episode, sample, protocol, args.min_reward)
                and (not o3 or sample.is_null or cot.o3_verified(episode))
            )

    pairs = cot.iter_episodes(make, samples, chunk=args.chunk, progress=not args.quiet)
    stats = {"episodes": 0, "written": 0}

    def records():
        for sample, episode in pairs:
            stats["episodes"] += 1
            if keep is None or keep(episode, sample):
                stats["written"] += 1
                yield cot.trace_record(episode)

    cot.write_jsonl(records(), args.out)
    stats.update(
        out=str(Path(args.out)),
        source="teacher" if args.teacher else "oracle",
        acceptance=round(stats["written"] / max(stats["episodes"], 1), 4),
        seconds=round(time.perf_counter() - t0, 1),
    )
    print(json.dumps(stats, indent=1))
    return 0


def _load_teacher(args: argparse.Namespace):
    from jaxseg.data.tokenizer import load_processor
    from jaxseg.models.family import load_pretrained
    from jaxseg.train.cot import teacher_policy

    path = Path(args.teacher)
    if not (path / "config.json").is_file():
        raise SystemExit(f"jaxseg data cot: --teacher {path}: no config.json (not an HF model dir)")
    print(f"loading the teacher from {path} ...", file=sys.stderr)
    try:
        processor = load_processor(path)
    except FileNotFoundError as err:
        raise SystemExit(f"jaxseg data cot: --teacher: {err}") from None
    model = load_pretrained(path)
    return teacher_policy(
        model,
        processor,
        temperature=args.temperature,
        max_new_tokens=args.max_new_tokens,
        seed=args.seed,
    )
