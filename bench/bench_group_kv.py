"""Group rollouts of a long prompt: the prompt's KV held once per group vs once per row.

One prompt of `--prompt` tokens (text; 8192 by default), G rollouts of N tokens each, the
`small` Qwen2.5-VL preset at random weights. Two decode loops from the same prefill:

* **per row** (the layout before the shared prefix): the prompt's filled cache repeated to G
  rows, each row with `bucket(prompt + N)` slots, every decode step reading G copies;
* **shared** (`jaxseg.sampling.loop.share_prompt`, what `Sampler.generate(group_size=G)` does):
  the prompt's keys/values `[1, KV, S_p, Dh]` once, each row owning `bucket(N)` slots, attention
  in two parts combined by log-sum-exp.

Reported: KV bytes of each layout, decode time (median, the two interleaved), and the largest
difference of the sampled tokens' log-probs (tokens must be equal). The prompt is prefilled in
chunks (the cache-free attention over 8k tokens would hold an `[H, 8k, 8k]` score matrix).

    python bench/bench_group_kv.py                        # 8192-token prompt, G=8, 64 tokens
    python bench/bench_group_kv.py --prompt 2048 --group 16
"""

from __future__ import annotations

import argparse
import os
import statistics
import time


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--prompt", type=int, default=8192, help="prompt tokens")
    ap.add_argument("--group", type=int, default=8, help="samples per prompt (G)")
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--chunk", type=int, default=1024, help="prefill chunk (tokens)")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()

    import jax
    import jax.numpy as jnp
    import numpy as np
    from flax import nnx

    from jaxseg.models.family import get_family
    from jaxseg.models.inputs import bucket
    from jaxseg.sampling import Sampler, SamplingParams
    from jaxseg.sampling import loop as L

    jax.config.update("jax_default_matmul_precision", "highest")
    family = get_family("qwen2_5_vl")
    cfg = family.preset(
        "small",
        vocab_size=1024,
        image_token_id=1000,
        video_token_id=1001,
        vision_start_token_id=1002,
        vision_end_token_id=1003,
    )
    model = family.build(cfg, rngs=nnx.Rngs(0))
    graphdef, weights = nnx.split(model)
    G, T, P = args.group, args.new_tokens, args.prompt
    ids = np.random.default_rng(0).integers(0, 1000, (1, P)).astype(np.int32)
    params = SamplingParams(temperature=1.0, top_k=50)
    stop = Sampler(model, pad_token_id=0).stop_table

    @jax.jit
    def chunk_forward(weights, ids, start, cache):
        m = nnx.merge(graphdef, weights)
        length = ids.shape[1]
        pos = jnp.broadcast_to(start + jnp.arange(length), (3, 1, length))
        logits, cache = m.forward(ids, jnp.ones_like(ids), pos, kv_cache=cache)
        return logits[:, -1].astype(jnp.float32), cache

    def prefill(slots):
        cache = model.init_cache(1, slots)
        for s in range(0, P, args.chunk):
            logits, cache = chunk_forward(
                weights, jnp.asarray(ids[:, s : s + args.chunk]), s, cache
            )
        return logits, cache

    def kv_bytes(cache):
        arrays = [
            *cache.keys,
            *cache.values,
            *(cache.prefix_keys or ()),
            *(cache.prefix_values or ()),
        ]
        return sum(a.nbytes for a in arrays)

    next_pos = jnp.full((1,), P, jnp.int32)
    prefix_logits, prefix_cache = prefill(P)
    per_row_logits, per_row_cache = prefill(bucket(P + T))
    jax.block_until_ready((prefix_cache, per_row_cache))

    def per_row_state():
        rep = lambda x: jnp.repeat(x, G, axis=0) if x.ndim else jnp.copy(x)  # noqa: E731
        cache = jax.tree.map(rep, per_row_cache)
        return L.start_turn(
            cache,
            rep(per_row_logits),
            rep(next_pos),
            jnp.arange(G),
            jax.random.key(0),
            0,
            T,
            stop.window,
            0,
        )

    def shared_state():
        cache = jax.tree.map(jnp.copy, prefix_cache)  # share_prompt donates its input
        cache, logits, pos = L.share_prompt(cache, prefix_logits, next_pos, G, bucket(T))
        return L.start_turn(
            cache, logits, pos, jnp.arange(G), jax.random.key(0), 0, T, stop.window, 0
        )

    def decode(make_state):
        state = make_state()
        jax.block_until_ready(state)
        t0 = time.perf_counter()
        state = L.decode_loop(graphdef, weights, state, stop, jnp.int32(0), params)
        tokens = np.asarray(state.tokens)
        return time.perf_counter() - t0, tokens, np.asarray(state.logprobs), state.cache

    results = {"per row": decode(per_row_state), "shared": decode(shared_state)}  # compiles
    times = {name: [] for name in results}
    load_before = os.getloadavg()[0]
    for _ in range(args.repeats):
        for name, make in (("per row", per_row_state), ("shared", shared_state)):
            times[name].append(decode(make)[0])
    med = {name: statistics.median(t) for name, t in times.items()}
    (_, tok_a, lp_a, cache_a), (_, tok_b, lp_b, cache_b) = results.values()

    print(
        f"small preset (text {cfg.text.num_hidden_layers} layers x {cfg.text.hidden_size}, "
        f"{cfg.text.num_key_value_heads} kv heads x {cfg.text.head_dim}), fp32; prompt {P} "
        f"tokens, G={G} x {T} new tokens, top-k 50; medians of {args.repeats}"
    )
    print(f"load average (1 min) before/after timing: {load_before:.2f} / {os.getloadavg()[0]:.2f}")
    print(
        f"tokens equal: {bool((tok_a == tok_b).all())}; max |log-prob per row - shared| = "
        f"{float(np.abs(lp_a - lp_b).max()):.2e}"
    )
    for name, cache in (("per row", cache_a), ("shared", cache_b)):
        print(
            f"{name:8s}: KV {kv_bytes(cache) / 2**20:8.1f} MiB | decode {med[name]:.3f} s "
            f"({1e3 * med[name] / T:.2f} ms/step)"
        )
    print(
        f"shared vs per row: KV {kv_bytes(cache_a) / kv_bytes(cache_b):.1f}x smaller, decode "
        f"{med['per row'] / med['shared']:.2f}x faster"
    )
    return 0 if (tok_a == tok_b).all() else 1


if __name__ == "__main__":
    raise SystemExit(main())
