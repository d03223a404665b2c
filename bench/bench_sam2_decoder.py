"""SAM2 prompt encoder + mask decoder: jaxseg (jax.jit) vs sam2 1.1.0 torch, [SEG] injection path.

Same weights (ours loaded from the torch modules' state dict), same features and [SEG] tokens,
same process. Per call: the no-prompt sparse tokens + one injected token, no-mask dense
embedding, single-mask output (Sa2VA's `inject_language_embd` decode). `forward` times
inference (torch under no_grad); `train` times forward + backward of a BCE loss w.r.t. the
decoder weights and the [SEG] token (jax.grad under jit vs torch autograd). JAX compile time
is reported separately; figures are medians of `--repeats` interleaved calls after a warm-up.

    python bench/bench_sam2_decoder.py                      # released size (C=256), 1024 px, B=4
    python bench/bench_sam2_decoder.py --preset tiny --batch 8
    python bench/bench_sam2_decoder.py --image-size 512 --threads 1

On a shared CPU the figures move with the other processes' load; calls are interleaved so both
sides see the same load, and `--threads 1` is the least load-sensitive setting.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import numpy as np


def timed_interleaved(fns: dict, repeats: int) -> dict[str, float]:
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(t) for name, t in times.items()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--preset", default="hiera_large", choices=["tiny", "hiera_tiny", "hiera_large"]
    )
    ap.add_argument("--image-size", type=int, default=1024, help="hiera presets only")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (XLA: all cores)")
    args = ap.parse_args()

    import jax
    import jax.numpy as jnp
    import torch
    from flax import nnx

    from jaxseg.models.sam2 import from_torch_weights, preset
    from jaxseg.models.sam2.torch_reference import build_torch_heads, torch_state_dict

    if args.threads:
        torch.set_num_threads(args.threads)
    kw = {} if args.preset == "tiny" else {"image_size": args.image_size}
    cfg = preset(args.preset, **kw)
    pe, md = build_torch_heads(cfg)
    ours = from_torch_weights(cfg, torch_state_dict(pe, md))

    b, c, h = args.batch, cfg.transformer_dim, cfg.image_embedding_size
    g = np.random.default_rng(0)
    embed = g.normal(size=(b, c, h, h)).astype(np.float32)
    hr = [g.normal(size=(b, *s)).astype(np.float32) for s in cfg.high_res_shapes]
    seg = g.normal(size=(b, 1, c)).astype(np.float32)
    target = (g.random((b, 1, 4 * h, 4 * h)) > 0.5).astype(np.float32)

    t_embed, t_hr, t_target = (
        torch.from_numpy(embed),
        [torch.from_numpy(x) for x in hr],
        torch.from_numpy(target),
    )
    t_seg = torch.from_numpy(seg).requires_grad_(True)
    no_pt = (torch.zeros(b, 1, 2), -torch.ones(b, 1, dtype=torch.int32))

    def torch_masks(seg_t):
        sparse, dense = pe(points=no_pt, boxes=None, masks=None)
        sparse = torch.cat([sparse, seg_t], 1)
        return md(t_embed, pe.get_dense_pe(), sparse, dense, False, False, t_hr)[0]

    def torch_forward():
        with torch.no_grad():
            return torch_masks(t_seg)

    def torch_train():
        pe.zero_grad()
        md.zero_grad()
        t_seg.grad = None
        loss = torch.nn.functional.binary_cross_entropy_with_logits(torch_masks(t_seg), t_target)
        loss.backward()
        return loss

    j_embed, j_hr, j_seg, j_target = (
        jnp.asarray(embed),
        [jnp.asarray(x) for x in hr],
        jnp.asarray(seg),
        jnp.asarray(target),
    )
    graphdef, state = nnx.split(ours)

    @jax.jit
    def jax_forward(state, seg):
        module = nnx.merge(graphdef, state)
        return module(j_embed, j_hr, extra_tokens=seg, stability_selection=False)[0]

    def loss_fn(state, seg):
        module = nnx.merge(graphdef, state)
        logits = module(j_embed, j_hr, extra_tokens=seg, stability_selection=False)[0]
        return jnp.mean(jnp.logaddexp(0.0, logits) - j_target * logits)

    jax_train = jax.jit(jax.value_and_grad(loss_fn, argnums=(0, 1)))

    md.train()  # stability selection off, as in training (the decoder has no dropout)
    t0 = time.perf_counter()
    first = np.asarray(jax_forward(state, j_seg))
    compile_fwd = time.perf_counter() - t0
    diff = float(np.abs(first - torch_forward().numpy()).max())
    t0 = time.perf_counter()
    jax.block_until_ready(jax_train(state, j_seg))
    compile_train = time.perf_counter() - t0
    torch_train()

    fwd = timed_interleaved(
        {
            "jax": lambda: jax.block_until_ready(jax_forward(state, j_seg)),
            "torch": torch_forward,
        },
        args.repeats,
    )
    train = timed_interleaved(
        {
            "jax": lambda: jax.block_until_ready(jax_train(state, j_seg)),
            "torch": torch_train,
        },
        args.repeats,
    )
    print(
        f"preset {args.preset} C={c} embed {h}x{h} batch {b}; torch threads {torch.get_num_threads()}; "
        f"max |jax - torch| mask logits {diff:.2e}"
    )
    print(
        f"jax first call (compile + run): forward {compile_fwd:.2f} s, train {compile_train:.2f} s"
    )
    for name, res in (("forward", fwd), ("train", train)):
        ratio = res["torch"] / res["jax"]
        print(
            f"{name:<8} jax {res['jax'] * 1e3:8.1f} ms   torch {res['torch'] * 1e3:8.1f} ms   "
            f"torch/jax {ratio:5.2f}x"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
