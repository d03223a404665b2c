"""One full GRPO update against the machine's matmul peak, measured in the same run.

The update (`jaxseg.train.steps`): the frozen reference's teacher-forced log-probs, then the
policy's forward, GRPO loss (PPO-clip, k3 KL to the reference) and backward, then AdamW. FLOPs
come from XLA's cost analysis of the same compiled pieces (`compiled.cost_analysis()`), the wall
time from the public API (`reference_logprobs` + `train_step`, medians), and the peak from a
large square matmul timed here (fp32 at "highest" precision, the trainer's default, and bf16).
Each piece is also timed alone, so the report says where the time below the peak goes; the
vision tower (window attention) is timed alone too.

    python bench/bench_grpo_step.py                     # tiny and small presets, batch 8
    python bench/bench_grpo_step.py --presets small --rows 16 --images 4
"""

from __future__ import annotations

import argparse
import os
import statistics
import time


def timed(fn, repeats: int) -> float:
    """Median seconds of `fn()` (blocked on) after one warm-up call."""
    import jax

    jax.block_until_ready(fn())
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def flops_of(jitted, *args) -> float:
    cost = jitted.lower(*args).compile().cost_analysis()
    cost = cost[0] if isinstance(cost, list | tuple) else cost
    return float(cost.get("flops", 0.0))


def matmul_peak(dtype, n: int, repeats: int) -> float:
    """FLOP/s of an `[n, n] @ [n, n]` product in `dtype` (best of the median over sizes)."""
    import jax
    import jax.numpy as jnp

    a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32).astype(dtype)
    b = jax.random.normal(jax.random.key(1), (n, n), jnp.float32).astype(dtype)
    f = jax.jit(lambda x, y: jnp.matmul(x, y, precision="highest"))
    return 2 * n**3 / timed(lambda: f(a, b), repeats)


def make_batch(config, rows: int, images: int, text: int, completion: int, seed: int):
    """A group of `rows` rollouts: `images` 112 px frames + `text` prompt tokens + a
    `completion`-token answer (policy mask on the answer), advantages of a GRPO group."""
    import numpy as np

    from jaxseg.train.batch import make_policy_batch

    rng = np.random.default_rng(seed)
    cfg = config
    patch = cfg.vision.patch_size
    side = 112 // patch
    grid = np.asarray([[1, side, side]] * images)
    per_image = side * side // cfg.vision.spatial_merge_size**2
    examples = []
    adv = rng.standard_normal(rows).astype(np.float32)
    adv = (adv - adv.mean()) / (adv.std() + 1e-6)
    for r in range(rows):
        ids = list(rng.integers(10, 900, text // 2))
        for _ in range(images):
            ids += [cfg.vision_start_token_id] + [cfg.image_token_id] * per_image
            ids += [cfg.vision_end_token_id]
        ids += list(rng.integers(10, 900, text - text // 2))
        n_prompt = len(ids)
        ids += list(rng.integers(10, 900, completion))
        mask = np.zeros(len(ids), np.float32)
        mask[n_prompt:] = 1
        examples.append(
            dict(
                input_ids=np.asarray(ids),
                policy_mask=mask,
                pixel_values=rng.standard_normal(
                    (images * side * side, cfg.vision.patch_dim)
                ).astype(np.float32),
                image_grid_thw=grid,
                advantage=float(adv[r]),
                old_logp=-rng.uniform(4, 8, len(ids)).astype(np.float32),
            )
        )
    return make_policy_batch(examples, config=cfg)


def bench_preset(size: str, args, peaks) -> None:
    import jax
    import jax.numpy as jnp
    import optax
    from flax import nnx

    from jaxseg.models.family import get_family
    from jaxseg.rl.objective import GRPOLossConfig
    from jaxseg.train import steps

    family = get_family(args.family)
    cfg = family.preset(
        size,
        vocab_size=args.vocab,
        image_token_id=args.vocab - 4,
        video_token_id=args.vocab - 3,
        vision_start_token_id=args.vocab - 2,
        vision_end_token_id=args.vocab - 1,
    )
    model = family.build(cfg, rngs=nnx.Rngs(0))
    reference = family.build(cfg, rngs=nnx.Rngs(0))
    opt_cfg = steps.OptimizerConfig(learning_rate=1e-5)
    optimizer = nnx.Optimizer(model, steps.make_optimizer(opt_cfg), wrt=nnx.Param)
    loss = GRPOLossConfig(policy_loss="ppo_clip", kl_coef=0.04)
    batch = make_batch(cfg, args.rows, args.images, args.text, args.completion, 0)
    jbatch = jax.tree.map(jnp.asarray, batch)
    step_loss = steps.as_step_loss(loss)
    denoms = jnp.asarray(step_loss.weights(batch), jnp.float32)

    # the update's pieces as pure jitted functions of (weights, batch): what XLA compiles
    graphdef, params = nnx.split(model, nnx.Param)
    ref_fn = jax.jit(lambda p, b: steps.sequence_logprobs(nnx.merge(graphdef, p), b))

    def objective(p, b):
        return step_loss.objective(nnx.merge(graphdef, p), b, denoms)

    grad_fn = jax.jit(jax.value_and_grad(objective, has_aux=True))
    tx = steps.make_optimizer(opt_cfg)
    opt_state = tx.init(params)

    @jax.jit
    def update_fn(p, s, g):
        updates, s = tx.update(g, s, p)
        return optax.apply_updates(p, updates), s

    grads = grad_fn(params, jbatch)[1]

    @jax.jit
    def vision_fn(p, b):
        return nnx.merge(graphdef, p).visual(b.pixel_values, b.image_layout)

    pieces = {
        "reference log-probs (forward)": (ref_fn, (params, jbatch)),
        "policy forward + loss + backward": (grad_fn, (params, jbatch)),
        "AdamW update": (update_fn, (params, opt_state, grads)),
    }
    flops = {name: flops_of(f, *a) for name, (f, a) in pieces.items()}
    times = {name: timed(lambda f=f, a=a: f(*a), args.repeats) for name, (f, a) in pieces.items()}
    t_vision = timed(lambda: vision_fn(params, jbatch), args.repeats)
    f_vision = flops_of(vision_fn, params, jbatch)

    def api_step():
        b = steps.reference_logprobs(reference, batch)
        return steps.train_step(model, optimizer, [b], loss)["loss"]

    t_api = timed(api_step, args.repeats)
    total = sum(flops.values())
    fp32 = peaks["float32"]
    load = os.getloadavg()[0]
    print(
        f"\n== {args.family} {size}: text {cfg.text.num_hidden_layers} x {cfg.text.hidden_size}, "
        f"vision {cfg.vision.depth} x {cfg.vision.hidden_size}, vocab {args.vocab}; batch "
        f"{args.rows} rows x {batch.input_ids.shape[1]} tokens ({args.images} images of 112 px, "
        f"{args.completion}-token answers), fp32; load {load:.2f}"
    )
    for name in pieces:
        rate = flops[name] / times[name]
        print(
            f"  {name:34s} {flops[name] / 1e9:8.2f} GFLOP {1e3 * times[name]:8.1f} ms "
            f"{rate / 1e9:7.1f} GFLOP/s = {100 * rate / fp32:5.1f}% of fp32 peak"
        )
    print(
        f"  {'(vision tower alone, forward)':34s} {f_vision / 1e9:8.2f} GFLOP "
        f"{1e3 * t_vision:8.1f} ms {f_vision / t_vision / 1e9:7.1f} GFLOP/s"
    )
    print(
        f"  GRPO update (public API: reference_logprobs + train_step): {1e3 * t_api:.1f} ms, "
        f"{total / 1e9:.2f} GFLOP -> {total / t_api / 1e9:.1f} GFLOP/s = "
        f"{100 * total / t_api / fp32:.1f}% of the fp32 matmul peak "
        f"(sum of the pieces alone: {1e3 * sum(times.values()):.1f} ms)"
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--family", default="qwen2_5_vl", choices=("qwen2_5_vl", "qwen3_vl"))
    ap.add_argument("--presets", default="tiny,small")
    ap.add_argument("--rows", type=int, default=8, help="rollouts in the update (one group)")
    ap.add_argument("--images", type=int, default=2, help="112 px images per rollout")
    ap.add_argument("--text", type=int, default=96, help="prompt text tokens")
    ap.add_argument("--completion", type=int, default=64, help="answer tokens")
    ap.add_argument("--vocab", type=int, default=2048)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()

    import jax
    import jax.numpy as jnp

    jax.config.update("jax_default_matmul_precision", "highest")
    peaks = {}
    for dtype in (jnp.float32, jnp.bfloat16):
        peaks[jnp.dtype(dtype).name] = max(matmul_peak(dtype, n, args.repeats) for n in (512, 1024))
    print(
        f"matmul peak (this run, [n, n] @ [n, n], best of n = 512, 1024): fp32 "
        f"{peaks['float32'] / 1e9:.1f} GFLOP/s, bf16 {peaks['bfloat16'] / 1e9:.1f} GFLOP/s; "
        f"{os.cpu_count()} cpus, load {os.getloadavg()[0]:.2f}"
    )
    for size in args.presets.split(","):
        bench_preset(size, args, peaks)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
