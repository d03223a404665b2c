"""Rollout benchmark: jaxseg `Sampler` vs transformers `generate`, same weights, same process.

G samples of N new tokens from one N-frame video prompt: jaxseg with one shared prefill whose
KV the group holds once (`group_size=G`), jaxseg with G independent prefills (the prompt
repeated G times, what the shared prefill saves), and transformers `generate(num_return_sequences=G,
do_sample=True)` (which expands the prompt to G rows before its prefill). Both sample at
temperature 1 with top-k 50 (transformers' default), no EOS, so every row generates N tokens.

Reported: steady-state medians (calls interleaved round-robin, so load changes on a shared
machine hit every contender alike), split into host prep / prefill / decode for jaxseg (each
piece blocked on), compile time separately (first call minus the steady state), and the public
`Sampler.generate` end to end. transformers' prefill is timed as `generate(max_new_tokens=1)`,
its decode as the rest of a full `generate`; each phase is its own median, so the phases need
not add up to the total exactly.

    python bench/bench_sampler.py                       # 8 frames 224x224, G=8, 64 tokens
    python bench/bench_sampler.py --frames 16 --group 16 --new-tokens 128 --repeats 3
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402
from bench_qwen_forward import (  # noqa: E402, F401
    IMAGE,
    V_END,
    V_START,
    VIDEO,
    small_config,
    small_qwen3_config,
)


def median_times(fns: dict, repeats: int) -> dict[str, dict[str, float]]:
    """Each fn returns a dict of phase -> seconds; median per phase, calls interleaved."""
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            runs[name].append(fn())
    return {
        name: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for name, rs in runs.items()
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--family", default="qwen2_5_vl", choices=("qwen2_5_vl", "qwen3_vl"))
    ap.add_argument("--frames", type=int, default=8)
    ap.add_argument("--size", type=int, default=224, help="frame side in pixels (multiple of 28)")
    ap.add_argument("--text", type=int, default=48, help="text tokens around the video")
    ap.add_argument("--group", type=int, default=8, help="samples per prompt (G)")
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument(
        "--breakdown",
        action="store_true",
        help="also time the decode loop per sampling filter (ms per step): greedy = the "
        "decoder step alone, the others add their filter's cost",
    )
    args = ap.parse_args()

    import jax
    import jax.numpy as jnp
    import torch
    import transformers
    from flax import nnx

    from jaxseg.models.family import get_family
    from jaxseg.sampling import (
        History,
        Prompt,
        Sampler,
        SamplingParams,
        assemble_segment,
        bucket,
    )
    from jaxseg.sampling import loop as L

    jax.config.update("jax_default_matmul_precision", "highest")  # fp32 like torch
    torch.manual_seed(0)
    family = get_family(args.family)
    make_config = small_qwen3_config if args.family == "qwen3_vl" else small_config
    hf = getattr(transformers, family.architecture)(make_config("sdpa")).eval()
    tmp = tempfile.mkdtemp()
    hf.save_pretrained(tmp)
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
    video = []
    for _ in range(runs):
        video += ([7, 8, 9] if runs > 1 else []) + [V_START] + [VIDEO] * (n_patches // 4 // runs)
        video += [V_END]
    ids = list(rng.integers(0, 900, half)) + video + list(rng.integers(0, 900, args.text - half))
    prompt = Prompt(ids, pixel_values_videos=pixels, video_grid_thw=grid, second_per_grid_ts=[1.0])
    G, T = args.group, args.new_tokens
    params = SamplingParams(temperature=1.0, top_k=50)
    sampler = Sampler(model, pad_token_id=0)

    def jax_rollout(prompts, group):
        """Sampler.generate's steps, each blocked on, for the phase split."""
        t0 = time.perf_counter()
        batch, next_pos, _ = assemble_segment([History() for _ in prompts], prompts, cfg)
        graphdef, weights = nnx.split(model)
        length = batch.input_ids.shape[1]  # a group holds the prompt's KV once (share_prompt)
        cache = sampler._new_cache(len(prompts), length if group > 1 else bucket(length + T))
        batch = sampler._place_batch(batch)
        t1 = time.perf_counter()
        logits, cache = L.prefill(graphdef, weights, batch, cache)
        if group > 1:
            cache, logits, next_pos = L.share_prompt(
                cache, logits, jnp.asarray(next_pos), group, bucket(T)
            )
        logits.block_until_ready()
        t2 = time.perf_counter()
        rows = len(prompts) * group
        state = L.start_turn(
            cache, logits, next_pos, jnp.arange(rows), jax.random.key(0), 0, T, 1, 0
        )
        state = L.decode_loop(graphdef, weights, state, sampler.stop_table, jnp.int32(0), params)
        tokens = np.asarray(state.tokens)
        t3 = time.perf_counter()
        assert tokens.shape == (rows, T) and (np.asarray(state.lengths) == T).all()
        return {"host": t1 - t0, "prefill": t2 - t1, "decode": t3 - t2, "total": t3 - t0}

    t_ids = torch.tensor([ids])
    hf_inputs = dict(
        input_ids=t_ids,
        attention_mask=torch.ones_like(t_ids),
        pixel_values_videos=torch.tensor(pixels),
        video_grid_thw=torch.tensor(grid),
        mm_token_type_ids=(t_ids == VIDEO).long() * 2,
    )
    if args.family == "qwen2_5_vl":
        hf_inputs["second_per_grid_ts"] = torch.tensor([1.0])

    def hf_generate(new_tokens):
        with torch.no_grad():
            return hf.generate(
                **hf_inputs,
                do_sample=True,
                temperature=1.0,
                top_k=50,
                num_return_sequences=G,
                max_new_tokens=new_tokens,
                min_new_tokens=new_tokens,
                eos_token_id=None,
                pad_token_id=0,
            )

    def hf_rollout():
        t0 = time.perf_counter()
        hf_generate(1)
        t1 = time.perf_counter()
        out = hf_generate(T)
        t2 = time.perf_counter()
        assert out.shape == (G, len(ids) + T)
        full = t2 - t1
        return {"prefill": t1 - t0, "decode": full - (t1 - t0), "total": full}

    def api_rollout():
        """The public API end to end (what a trainer calls)."""
        t0 = time.perf_counter()
        out = sampler.generate([prompt], max_new_tokens=T, sampling=params, group_size=G)
        assert out.tokens.shape == (G, T)
        return {"total": time.perf_counter() - t0}

    shared = lambda: jax_rollout([prompt], G)  # noqa: E731
    independent = lambda: jax_rollout([prompt] * G, 1)  # noqa: E731
    first = {"shared": shared(), "independent": independent()}  # compiles
    api_rollout()
    hf_rollout()  # warm-up
    load_before = os.getloadavg()[0]
    med = median_times(
        {
            "shared": shared,
            "independent": independent,
            "api": api_rollout,
            "transformers": hf_rollout,
        },
        args.repeats,
    )
    api_s = med["api"]["total"]

    n_tok = G * T
    print(
        f"input: {args.frames} frames {args.size}x{args.size} -> video_grid_thw {grid[0].tolist()}, "
        f"{n_patches} patches, prompt {len(ids)} tokens; G={G} samples x {T} new tokens"
    )
    blocks = "DeepStack 1, 3, 5" if args.family == "qwen3_vl" else "full attn at 3, 7"
    print(f"config: {args.family}, vision depth 8 hidden 128 ({blocks}), text 4 layers 256, fp32")
    print(
        f"threads: torch {torch.get_num_threads()}, os.cpu_count()={os.cpu_count()}, "
        f"jax {jax.devices()}; sampling temperature 1, top-k 50; medians of {args.repeats}"
    )
    print(
        f"load average (1 min) before/after timing: {load_before:.2f} / {os.getloadavg()[0]:.2f} "
        "(shared machine: ratios drift with load)"
    )
    for name in ("shared", "independent"):
        m, f = med[name], first[name]
        print(
            f"jaxseg {name:12s}: total {m['total']:7.3f} s = host {m['host']:.3f} + prefill "
            f"{m['prefill']:.3f} + decode {m['decode']:.3f} | {n_tok / m['total']:8.1f} tok/s | "
            f"compile ~ prefill {f['prefill'] - m['prefill']:.1f} s, decode "
            f"{f['decode'] - m['decode']:.1f} s"
        )
    h = med["transformers"]
    print(
        f"transformers generate: total {h['total']:7.3f} s = prefill {h['prefill']:.3f} + decode "
        f"{h['decode']:.3f} | {n_tok / h['total']:8.1f} tok/s"
    )
    s, i = med["shared"], med["independent"]
    print(f"jaxseg Sampler.generate (public API): {api_s:.3f} s | {n_tok / api_s:.1f} tok/s")
    print(
        f"shared prefill saves {i['prefill'] - s['prefill']:.3f} s of prefill "
        f"({i['prefill'] / s['prefill']:.1f}x less) and {i['total'] - s['total']:.3f} s overall"
    )
    print(
        f"speed-up vs transformers: {h['total'] / s['total']:.1f}x overall (shared prefill), "
        f"{h['total'] / api_s:.1f}x through the public API; prefill "
        f"{h['prefill'] / s['prefill']:.1f}x, decode {h['decode'] / s['decode']:.1f}x"
    )
    if args.breakdown:
        filters = {
            "greedy (decoder step alone)": SamplingParams(temperature=0.0),
            "temperature 1": SamplingParams(temperature=1.0),
            "top-k 50": params,
            "top-p 0.9 (sorts the vocabulary)": SamplingParams(temperature=1.0, top_p=0.9),
        }
        for name, p in filters.items():
            params = p
            jax_rollout([prompt], G)  # compiles this filter's loop
            per_step = statistics.median(jax_rollout([prompt], G)["decode"] for _ in range(3)) / T
            print(f"decode per step, {name:34s}: {1e3 * per_step:6.2f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
