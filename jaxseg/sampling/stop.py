"""Stopping on EOS ids and on stop strings (`</answer>`, `</select>`, ...).

A stop string is a property of the *text*, but the decode loop only sees token ids, and a BPE
tokenizer can spell one string several ways (its first token may merge with the text before
it). Two layers, so a stop is never missed and never found where it is not:

1. In the loop (exact, no host round trip): every row keeps a window of its last `W` generated
   tokens and compares it with a table of token-id spellings of each stop string
   (`StopTable`). The spellings are the string's own encoding plus, for a few typical left
   contexts (space, newline, letter, digit, punctuation, `>`), the shortest token suffix of
   `encode(context + string)` whose decoding contains the string. With the project's tokenizer
   the protocol tags are single added tokens, so the table is exact.
2. On host after the loop (`first_stop_in_text`): each row's completion is decoded and, if a
   stop string occurs earlier than where the loop stopped (a spelling the table missed), the row
   is cut right after the token that completes it and its later cache slots are invalidated.

A stop string that never comes is not an error: the row runs to `max_new_tokens` and is flagged
`truncated`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax.numpy as jnp
import numpy as np
from flax import struct

_CONTEXTS = ("", " ", "\n", "a", "1", ".", ">", ")", "\t")
WILDCARD = -1  # table padding: matches anything (the table is right-aligned)
NO_TOKEN = -2  # window padding before a row has generated W tokens: matches nothing


@struct.dataclass
class StopTable:
    """sequences `[S, W]` int32, right-aligned, left-padded with WILDCARD; eos_ids `[E]`."""

    sequences: jnp.ndarray
    eos_ids: jnp.ndarray

    @property
    def window(self) -> int:
        return int(self.sequences.shape[1])


def stop_spellings(encode: Callable[[str], list[int]], decode, stop: str) -> list[tuple[int, ...]]:
    """Token-id sequences that spell `stop` after typical left contexts (see module doc)."""
    if not stop:
        raise ValueError("empty stop string")
    found: set[tuple[int, ...]] = set()
    for context in _CONTEXTS:
        ids = list(encode(context + stop))
        for start in range(len(ids) - 1, -1, -1):
            if stop in decode(ids[start:]):
                found.add(tuple(ids[start:]))
                break
    if not found:
        raise ValueError(f"stop string {stop!r}: no tokenization of it decodes back to it")
    return sorted(found, key=lambda s: (len(s), s))


def build_stop_table(
    eos_ids: Sequence[int],
    stop_strings: Sequence[str] = (),
    tokenizer=None,
) -> StopTable:
    """The device-side table for `eos_ids` and `stop_strings` (needs an HF-style `tokenizer`
    with `encode(text, add_special_tokens=False)` and `decode(ids)` for stop strings)."""
    spellings: list[tuple[int, ...]] = []
    if stop_strings:
        if tokenizer is None:
            raise ValueError("stop_strings given without a tokenizer to spell them in token ids")

        def encode(text):
            return tokenizer.encode(text, add_special_tokens=False)

        for stop in stop_strings:
            spellings.extend(stop_spellings(encode, tokenizer.decode, stop))
    width = max((len(s) for s in spellings), default=1)
    never = np.iinfo(np.int32).min  # equals no token id and no window padding
    table = np.full((max(len(spellings), 1), width), WILDCARD, np.int32)
    if not spellings:
        table[:, -1] = never
    for i, seq in enumerate(spellings):
        table[i, width - len(seq) :] = seq
    eos = np.asarray(sorted({int(e) for e in eos_ids}) or [never], np.int32)
    return StopTable(sequences=jnp.asarray(table), eos_ids=jnp.asarray(eos))


def matches_stop(window: jnp.ndarray, table: StopTable) -> jnp.ndarray:
    """window `[B, W]` (last W generated tokens, newest last) -> `[B]` bool: ends with a stop
    spelling."""
    seqs = table.sequences[None]  # [1, S, W]
    equal = (window[:, None, :] == seqs) | (seqs == WILDCARD)
    return equal.all(-1).any(-1)


def is_eos(tokens: jnp.ndarray, table: StopTable) -> jnp.ndarray:
    """tokens `[B]` -> `[B]` bool."""
    return (tokens[:, None] == table.eos_ids[None, :]).any(-1)


def first_stop_in_text(token_ids: Sequence[int], stop_strings: Sequence[str], decode) -> int | None:
    """Number of tokens up to and including the one that completes the first occurrence of any
    stop string in `decode(token_ids)`, or None. Binary search over prefixes (containment is
    monotone in the prefix length)."""
    ids = list(token_ids)
    if not stop_strings or not any(s in decode(ids) for s in stop_strings):
        return None
    lo, hi = 1, len(ids)
    while lo < hi:
        mid = (lo + hi) // 2
        text = decode(ids[:mid])
        if any(s in text for s in stop_strings):
            hi = mid
        else:
            lo = mid + 1
    return lo
