"""Forward-pass benchmark: jaxseg Qwen2.5-VL / Qwen3-VL (jax.jit) vs transformers (torch
eager / sdpa).

Same random weights (the HF model is saved and loaded by `from_pretrained`), same inputs
(an N-frame video + text prompt), same process. JAX compile time is reported separately; the
steady-state figure is the median of `--repeats` timed calls after one warm-up call.

    python bench/bench_qwen_forward.py                  # 8 frames of 224x224, small config
    python bench/bench_qwen_forward.py --frames 16 --size 280 --repeats 5
    python bench/bench_qwen_forward.py --threads 1      # both libraries single-threaded
    python bench/bench_qwen_forward.py --family qwen3_vl   # the same widths as Qwen3-VL

On a shared CPU the figures move with the other processes' load: torch's default OpenMP pool
degrades badly when cores are oversubscribed, XLA's much less. Calls are interleaved
round-robin so both sides see the same load; `--threads 1` is the least load-sensitive setting.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np

IMAGE, VIDEO, V_START, V_END = 1000, 1001, 1002, 1003


def small_qwen3_config(attn: str):
    """The small widths of `small_config` as Qwen3-VL: vision depth 8 with DeepStack after
    blocks 1, 3, 5, text 4 layers (head_dim 64, interleaved M-RoPE)."""
    from transformers import Qwen3VLConfig

    return Qwen3VLConfig(
        text_config=dict(
            vocab_size=1024,
            hidden_size=256,
            intermediate_size=704,
            num_hidden_layers=4,
            num_attention_heads=4,
            num_key_value_heads=2,
            head_dim=64,
            max_position_embeddings=8192,
            rope_parameters={
                "rope_type": "default",
                "mrope_section": [12, 10, 10],
                "mrope_interleaved": True,
                "rope_theta": 5e6,
            },
            rms_norm_eps=1e-6,
        ),
        vision_config=dict(
            depth=8,
            hidden_size=128,
            intermediate_size=342,
            num_heads=4,
            out_hidden_size=256,
            patch_size=16,
            num_position_embeddings=256,
            deepstack_visual_indexes=[1, 3, 5],
        ),
        image_token_id=IMAGE,
        video_token_id=VIDEO,
        vision_start_token_id=V_START,
        vision_end_token_id=V_END,
        attn_implementation=attn,
    )


def small_config(attn: str):
    """Vision depth 8 (full attention at 3 and 7), text 4 layers: a scaled-down Qwen2.5-VL."""
    from transformers import Qwen2_5_VLConfig

    return Qwen2_5_VLConfig(
        text_config=dict(
            vocab_size=1024,
            hidden_size=256,
            intermediate_size=704,
            num_hidden_layers=4,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=8192,
            rope_parameters={
                "rope_type": "default",
                "mrope_section": [8, 12, 12],
                "rope_theta": 1e6,
            },
            rms_norm_eps=1e-6,
            bos_token_id=None,
            eos_token_id=None,
        ),
        vision_config=dict(
            depth=8,
            hidden_size=128,
            intermediate_size=342,
            num_heads=4,
            out_hidden_size=256,
            fullatt_block_indexes=[3, 7],
            window_size=112,
            tokens_per_second=2,
        ),
        image_token_id=IMAGE,
        video_token_id=VIDEO,
        vision_start_token_id=V_START,
        vision_end_token_id=V_END,
        attn_implementation=attn,
    )


def timed_interleaved(fns: dict, repeats: int) -> dict[str, float]:
    """Median seconds per function, calls interleaved round-robin so that load changes on a
    shared machine hit every contender alike."""
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(t) for name, t in times.items()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--family", default="qwen2_5_vl", choices=("qwen2_5_vl", "qwen3_vl"))
    ap.add_argument("--frames", type=int, default=8)
    ap.add_argument("--size", type=int, default=224, help="frame side in pixels (multiple of 28)")
    ap.add_argument("--text", type=int, default=48, help="text tokens around the video")
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument(
        "--threads",
        type=int,
        default=None,
        help="intra-op threads for both torch (set_num_threads) and XLA CPU (Eigen pool); "
        "default: each library's own choice (the core count)",
    )
    args = ap.parse_args()
    if args.threads:
        flags = os.environ.get("XLA_FLAGS", "")
        os.environ["XLA_FLAGS"] = (
            f"{flags} --xla_cpu_multi_thread_eigen={'true' if args.threads > 1 else 'false'} "
            f"intra_op_parallelism_threads={args.threads}"
        )
    global jax, jnp, torch
    import jax
    import jax.numpy as jnp
    import torch
    import transformers

    from jaxseg.models.family import get_family

    family = get_family(args.family)
    make_config = small_qwen3_config if args.family == "qwen3_vl" else small_config
    hf_class = getattr(transformers, family.architecture)

    if args.threads:
        torch.set_num_threads(args.threads)
    jax.config.update("jax_default_matmul_precision", "highest")  # fp32 like torch

    torch.manual_seed(0)
    hf_eager = hf_class(make_config("eager")).eval()
    tmp = tempfile.mkdtemp()
    hf_eager.save_pretrained(tmp)
    hf_sdpa = hf_class.from_pretrained(tmp, attn_implementation="sdpa").eval()
    model = family.from_pretrained(tmp)
    cfg = model.config
    patch = cfg.vision.patch_size

    grid = np.array([[args.frames // 2, args.size // patch, args.size // patch]])
    n_patches = int(grid.prod())
    rng = np.random.default_rng(0)
    pixels = rng.standard_normal((n_patches, cfg.vision.patch_dim)).astype(np.float32)
    half = args.text // 2
    # Qwen2.5-VL: one placeholder run; Qwen3-VL: one per temporal patch behind a timestamp
    runs = family.video_runs_per_grid(grid[0])
    per_run = n_patches // 4 // runs
    video = []
    for _ in range(runs):
        video += ([7, 8, 9] if runs > 1 else []) + [V_START] + [VIDEO] * per_run + [V_END]
    ids = np.asarray(
        [list(rng.integers(0, 900, half)) + video + list(rng.integers(0, 900, args.text - half))]
    )
    seconds = np.asarray([1.0], np.float32)

    # Host-side preparation (done once per example in a data pipeline).
    t0 = time.perf_counter()
    layout = family.vision_layout(grid, cfg.vision)
    positions, _ = family.get_rope_index(ids, None, grid, seconds, config=cfg)
    host_ms = 1e3 * (time.perf_counter() - t0)

    @jax.jit
    def forward(model, ids, pixels, positions, layout):
        return model.forward(ids, None, positions, pixel_values_videos=pixels, video_layout=layout)[
            0
        ]

    j_args = (model, jnp.asarray(ids), jnp.asarray(pixels), jnp.asarray(positions), layout)
    t0 = time.perf_counter()
    compiled = forward.lower(*j_args).compile()
    compile_s = time.perf_counter() - t0
    run_jax = lambda: compiled(*j_args).block_until_ready()
    run_jax()

    t_ids = torch.tensor(ids)
    hf_inputs = dict(
        input_ids=t_ids,
        pixel_values_videos=torch.tensor(pixels),
        video_grid_thw=torch.tensor(grid),
        mm_token_type_ids=(t_ids == VIDEO).long() * 2,
    )
    if args.family == "qwen2_5_vl":
        hf_inputs["second_per_grid_ts"] = torch.tensor(seconds)

    def run_hf(m):
        with torch.no_grad():
            return m(**hf_inputs).logits

    ref = run_hf(hf_eager).numpy()
    diff = float(np.abs(np.asarray(run_jax_out := compiled(*j_args)) - ref).max())
    del run_jax_out
    run_hf(hf_sdpa)

    load_before = os.getloadavg()[0]
    med = timed_interleaved(
        {"jax": run_jax, "eager": lambda: run_hf(hf_eager), "sdpa": lambda: run_hf(hf_sdpa)},
        args.repeats,
    )
    t_jax, t_eager, t_sdpa = med["jax"], med["eager"], med["sdpa"]

    print(
        f"input: {args.frames} frames {args.size}x{args.size} -> video_grid_thw {grid[0].tolist()}, "
        f"{n_patches} patches, sequence length {ids.shape[1]}"
    )
    print(
        f"config: {args.family}, vision depth 8 hidden 128 "
        + ("(DeepStack 1, 3, 5)" if args.family == "qwen3_vl" else "(full attn at 3, 7)")
        + ", text 4 layers hidden 256"
    )
    print(
        f"threads: torch.get_num_threads()={torch.get_num_threads()}, os.cpu_count()={os.cpu_count()}, "
        f"jax devices={jax.devices()}"
    )
    print(
        f"load average (1 min) before/after timing: {load_before:.2f} / {os.getloadavg()[0]:.2f} "
        "(shared machine: ratios drift with load, see module docstring)"
    )
    print(f"max |logits jax - transformers eager| = {diff:.3g}")
    print(f"host prep (layout + rope index): {host_ms:.2f} ms")
    print(f"jax compile: {compile_s:.2f} s")
    print(f"jax jit forward      : {1e3 * t_jax:8.2f} ms (median of {args.repeats})")
    print(f"transformers eager   : {1e3 * t_eager:8.2f} ms   ratio {t_eager / t_jax:.2f}x")
    print(f"transformers sdpa    : {1e3 * t_sdpa:8.2f} ms   ratio {t_sdpa / t_jax:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
