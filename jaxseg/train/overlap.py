"""Scoring rollouts while the policy samples the next ones.

A GRPO step's rollout has two phases: the policy plays the episodes (the sampler, on the JAX
device) and the mask backend turns each episode's prompts into masks over the video, from which
the rewards come (SAM2 in its sidecar process, on the GPU host in real runs). Run one after the
other, the device waits for the sidecar. `run_overlapped` splits the step's prompts into
`chunks` consecutive parts: while a worker thread has part j scored (masks + rewards), the main
thread plays part j + 1.

Nothing is stale: every part is sampled with the same weights (the update of this step starts
after all parts are scored), each part draws the random streams the whole batch would draw
for its rows (the sampler's `first_row`, the episodes' `first_sample`), and a group (the G
rollouts of one prompt) never straddles two parts, so the traces equal `run_episodes` on the
whole batch, in the same sample-major order. What the split costs is batch size: each part's
sampler calls hold `1 / chunks` of the rows.

The worker is one thread, so backend calls stay serial as in `run_episodes` (the sidecar client
blocks on its socket and releases the GIL; an in-process backend overlaps only where numpy
does).
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor

from jaxseg.protocols.episode import EpisodeTrace, Protocol, play_episodes, score_episodes
from jaxseg.protocols.policy import Policy


def chunk_bounds(n: int, chunks: int) -> list[tuple[int, int]]:
    """`chunks` consecutive, non-empty `[lo, hi)` ranges covering `range(n)` (fewer when n is
    smaller), sizes differing by at most one."""
    if chunks < 1:
        raise ValueError(f"chunks must be >= 1, got {chunks}")
    k = min(chunks, n)
    edges = [n * i // k for i in range(k + 1)]
    return [(lo, hi) for lo, hi in zip(edges[:-1], edges[1:], strict=True)]


@contextlib.contextmanager
def _rows_from(policy, offset: int) -> Iterator[None]:
    """While active, a sampler-backed policy (`policy.sampler`, also behind wrappers exposing
    `.inner`) draws the random streams of rows `first_row + offset, ...`."""
    inner = policy
    while not hasattr(inner, "sampler") and hasattr(inner, "inner"):
        inner = inner.inner
    sampler = getattr(inner, "sampler", None)
    if sampler is None:
        yield
        return
    base = sampler.first_row
    sampler.first_row = base + offset
    try:
        yield
    finally:
        sampler.first_row = base


def run_overlapped(
    protocol: Protocol,
    policy: Policy,
    samples: Sequence,
    *,
    backend,
    group_size: int = 1,
    seed: int = 0,
    first_sample: int = 0,
    chunks: int = 2,
) -> list[EpisodeTrace]:
    """`run_episodes` with part j's scoring overlapped with part j + 1's sampling (module
    docstring); same arguments, same traces, same order. `policy.start` is called once per
    part (a recording wrapper sees one state per part, in order)."""
    parts = chunk_bounds(len(samples), chunks)
    futures = []
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="jaxseg-scoring") as pool:
        for lo, hi in parts:
            part = list(samples[lo:hi])
            with _rows_from(policy, lo * group_size):
                episodes, owners = play_episodes(
                    protocol,
                    policy,
                    part,
                    group_size=group_size,
                    seed=seed,
                    first_sample=first_sample + lo,
                )
            futures.append(pool.submit(score_episodes, protocol, episodes, owners, part, backend))
        traces: list[EpisodeTrace] = []
        for (lo, _), future in zip(parts, futures, strict=True):
            traces += [
                dataclasses.replace(t, sample_index=t.sample_index + lo) for t in future.result()
            ]
    return traces
