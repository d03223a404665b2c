"""GRPO step time with the rewards' masks computed serially vs beside the next part's sampling.

The rollout phase of a GRPO step (`jaxseg.train.rollouts.run_recorded`: the policy plays the
episodes, the mask backend segments, rewards) with `overlap_chunks=1` (serial: sampling, then
the backend) against `overlap_chunks=N` (`jaxseg.train.overlap`: part j is segmented on a
worker thread while part j+1 samples), same policy weights and seeds, calls interleaved; the
episodes must come out equal. The step's update (`train_step` on the resulting examples) is
timed once and added, so the step times are rollout + update.

Policy: the shipped tiny Qwen3-VL base (`jaxseg/assets/qwen3_vl_tiny`), temperature 1 with
top-k 20. Backend: the tiny random SAM2 in its sidecar process (`--backend sam2`, the default)
or the in-process classical tracker (`--backend classical`).

    python bench/bench_reward_overlap.py                       # 4 prompts x G=4, veason
    python bench/bench_reward_overlap.py --backend classical --chunks 2,4
"""

from __future__ import annotations

import argparse
import os
import statistics
import time


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--backend", default="sam2", choices=("sam2", "classical"))
    ap.add_argument("--protocol", default="veason")
    ap.add_argument("--prompts", type=int, default=4)
    ap.add_argument("--group", type=int, default=4)
    ap.add_argument("--chunks", default="2", help="comma-separated part counts to compare")
    ap.add_argument("--new-tokens", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()

    import numpy as np

    from jaxseg.data.synth import SynthConfig, generate_video
    from jaxseg.data.tokenizer import load_processor
    from jaxseg.models.family import load_pretrained, shipped_base
    from jaxseg.protocols import make_protocol
    from jaxseg.protocols.sample import from_synth
    from jaxseg.rl.objective import GRPOLossConfig
    from jaxseg.sampling import SamplingParams
    from jaxseg.sampling.policy import SamplerPolicy
    from jaxseg.segmenter import make_backend
    from jaxseg.train import steps
    from jaxseg.train.batch import make_policy_batch
    from jaxseg.train.rollouts import rollout_example, run_recorded

    path = shipped_base()
    model, processor = load_pretrained(path), load_processor(path)
    protocol = make_protocol(args.protocol)
    cfg = SynthConfig.preset("medium", frames=(16, 20), queries_per_video=4)
    samples = []
    for v in range(args.prompts):
        video = generate_video(0, "bench", v, cfg)
        samples.append(from_synth(video, 0, key=f"v{v}/q0"))
    backend = make_backend(args.backend, {"model": "tiny"} if args.backend == "sam2" else None)
    sampling = SamplingParams(1.0, top_k=20)

    def rollout(chunks: int):
        policy = SamplerPolicy.for_model(
            model, processor, sampling=sampling, max_new_tokens=args.new_tokens, seed=1
        )
        t0 = time.perf_counter()
        episodes = run_recorded(
            protocol,
            policy,
            samples,
            backend=backend,
            group_size=args.group,
            seed=0,
            overlap_chunks=chunks,
        )
        return time.perf_counter() - t0, episodes

    chunk_list = [1] + [int(c) for c in args.chunks.split(",")]
    reference = None
    for c in chunk_list:  # compiles every part shape, starts the sidecar
        _, eps = rollout(c)
        tokens = [[list(t["token_ids"]) for t in e.turn_info] for e in eps]
        rewards = [e.trace.reward for e in eps]
        if reference is None:
            reference = (tokens, rewards)
        elif (tokens, rewards) != reference:
            print(f"episodes differ between serial and {c} parts")
            return 1
    times = {c: [] for c in chunk_list}
    load_before = os.getloadavg()[0]
    for _ in range(args.repeats):
        for c in chunk_list:
            times[c].append(rollout(c)[0])
    med = {c: statistics.median(t) for c, t in times.items()}

    # the update that follows the rollout (the same for every variant)
    examples = [
        rollout_example(e, processor.image_processor, advantage=float(a))
        for e, a in zip(eps, np.random.default_rng(0).standard_normal(len(eps)))
    ]
    batch = make_policy_batch(examples, config=model.config)
    from flax import nnx

    optimizer = nnx.Optimizer(model, steps.make_optimizer(steps.OptimizerConfig()), wrt=nnx.Param)
    loss = GRPOLossConfig()
    steps.train_step(model, optimizer, [batch], loss)  # compile
    t0 = time.perf_counter()
    steps.train_step(model, optimizer, [batch], loss)
    t_update = time.perf_counter() - t0
    backend.close()

    print(
        f"{args.protocol}, {args.prompts} prompts x G={args.group}, up to {args.new_tokens} "
        f"tokens per turn, shipped tiny Qwen3-VL base; backend {args.backend}"
        + (" (tiny random SAM2 in its sidecar process)" if args.backend == "sam2" else "")
        + f"; medians of {args.repeats}, interleaved; episodes equal in every variant"
    )
    print(f"load average (1 min) before/after timing: {load_before:.2f} / {os.getloadavg()[0]:.2f}")
    print(f"update (train_step on the {len(examples)} rollouts): {t_update:.2f} s")
    serial = med[1]
    for c in chunk_list:
        name = "serial" if c == 1 else f"{c} parts overlapped"
        print(
            f"{name:22s}: rollout + rewards {med[c]:6.2f} s | GRPO step {med[c] + t_update:6.2f} s"
            + ("" if c == 1 else f" | {(serial + t_update) / (med[c] + t_update):.2f}x vs serial")
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
