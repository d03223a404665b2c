"""`jaxseg episodes`: run a protocol's episodes with a scripted policy and summarise rewards.

    jaxseg episodes --protocol o3 [--policy oracle|random] [--backend oracle|classical|sam2]
                    [--videos 4] [--seed 0] [--difficulty medium] [--group 1]
                    [--set key=value ...] [--out traces.jsonl]

Samples come from the synthetic generator in memory (no files). Prints the mean reward per
component, the protocol's maximum, the mean J of the final masks, and parse statuses; --out
writes one JSON trace per episode (turn texts, absolute frames shown, actions, rewards).
"""

from __future__ import annotations

import argparse
import json
from collections import Counter


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--protocol", required=True, choices=["veason", "rcot", "o3", "revseg"])
    parser.add_argument("--policy", choices=["oracle", "random"], default="oracle")
    parser.add_argument("--backend", choices=["oracle", "classical", "sam2"], default="classical")
    parser.add_argument("--videos", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--difficulty", choices=["easy", "medium", "hard"], default="medium")
    parser.add_argument("--group", type=int, default=1, help="episodes per sample (G)")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a protocol config field (repeatable), e.g. --set max_turns=2",
    )
    parser.add_argument("--out", help="write the traces here (JSON lines)")


def _value(text: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from jaxseg.config import ConfigError
    from jaxseg.data.synth import SynthConfig, generate_video
    from jaxseg.protocols import OraclePolicy, RandomPolicy, make_protocol, run_episodes
    from jaxseg.protocols.sample import from_synth
    from jaxseg.segmenter import make_backend

    overrides = {}
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"--set {item!r} is not of the form KEY=VALUE")
        overrides[key.strip()] = _value(value.strip())
    protocol = make_protocol(args.protocol, **overrides)
    cfg = SynthConfig.preset(args.difficulty)
    samples = []
    for v in range(args.videos):
        video = generate_video(args.seed, "episodes", v, cfg)
        samples += [from_synth(video, q, key=f"v{v}/q{q}") for q in range(len(video.queries))]
    policy = (
        OraclePolicy(protocol, samples)
        if args.policy == "oracle"
        else RandomPolicy(protocol, args.seed)
    )
    backend = make_backend(args.backend)
    try:
        traces = run_episodes(
            protocol, policy, samples, backend=backend, group_size=args.group, seed=args.seed
        )
    finally:
        backend.close()
    maxima = [protocol.max_reward(samples[t.sample_index]) for t in traces]
    print(f"{args.protocol} {args.policy} policy, {args.backend} backend: "
          f"{len(samples)} samples x {args.group}")  # fmt: skip
    keys = sorted({k for t in traces for k in t.reward})
    for key in keys:
        vals = [t.reward[key] for t in traces if key in t.reward]
        print(f"  {key:<18} {np.mean(vals):8.4f}  (n={len(vals)})")
    print(f"  {'max (mean)':<18} {np.mean(maxima):8.4f}")
    print(f"  {'J (mean)':<18} {np.mean([t.metrics['J'] for t in traces]):8.4f}")
    print(f"  {'turns (mean)':<18} {np.mean([len(t.turns) for t in traces]):8.4f}")
    statuses = Counter(turn.parse_status for t in traces for turn in t.turns)
    print("  parse status: " + ", ".join(f"{k} {v}" for k, v in statuses.most_common()))
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            for t in traces:
                f.write(json.dumps(t.to_json()) + "\n")
        print(f"wrote {len(traces)} traces to {args.out}")
    return 0
