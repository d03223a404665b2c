"""Queries from a scene-graph grammar: programs, their evaluation, their wording, sampling.

A query is a small *program* over the scene graph (`scene_graph.py`) plus the sentence it
is worded as. `evaluate(program, graph)` returns the target object ids (empty: no target),
or None when the program's presupposition fails ("the collision" when there are two). A
query is kept only if evaluating it gives exactly the intended targets, so every sentence
is resolvable from the graph; the sidecar stores the program so tests can re-derive it.

Attribute words are matched conservatively: an object "is red" if it is red in any frame
where it is in view, so "the red circle" is rejected when another circle turns red later.
A description used to *name* an object only uses attributes that object never changes.

Families (ReVOS type ids, VISA tools/eval_revos.py: 0 referring, 1 reasoning, 2 no target):
  select                      "the small red circle", "both triangles"            type 0
  event enter/exit/stop/start/colour_change/grow/shrink, optionally first/last,
        optionally filtered   "the triangle that enters last", "the shape that turns blue"
  stop_after_collision        "the object that stops after the collision" (exactly one
                              collision), or with any=True "... after colliding with another shape"
  collide_with / colliders    "the shape that collides with the red star", "the two shapes that collide"
  hidden_by / occluder_of     "the one hidden when the square passes" (passes: the occluder
                              moves over it; else "the shape hidden behind the square")  type 1
  null: a select or event program with no target                                    type 2
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from typing import Any

import numpy as np

from jaxseg.data.synth.world import (
    COLOUR_NAMES,
    SHAPES,
    SIZE_NAMES,
    TYPE_NULL,
    TYPE_REASONING,
    TYPE_REFERRING,
    SynthConfig,
)

EVENTS = ("enter", "exit", "stop", "start", "colour_change", "grow", "shrink")
ORDER_MIN_GAP = 2  # frames between the first and the runner-up for "first"/"last"
_ATTRS = ("size", "colour", "shape")

Program = dict[str, Any]
Graph = dict[str, Any]


# ----------------------------------------------------------------------------- evaluation
def _seen(obj: dict, key: str) -> set[str]:
    """Values an attribute takes while the object is in view."""
    if key == "shape":
        return {obj["shape"]} if any(obj["in_frame"]) else set()
    return {v for v, inf in zip(obj[key], obj["in_frame"], strict=True) if inf}


def matches(obj: dict, flt: dict[str, str]) -> bool:
    return all(flt[k] in _seen(obj, k) for k in flt)


def is_constant(obj: dict, keys: Iterable[str]) -> bool:
    return all(len(_seen(obj, k)) == 1 for k in keys)


def select(graph: Graph, flt: dict[str, str]) -> list[int]:
    return [o["obj_id"] for o in graph["objects"] if matches(o, flt)]


def _event_frames(graph: Graph, event: str, to: str | None) -> dict[int, int]:
    """First frame of `event` per object that has it."""
    out: dict[int, int] = {}
    for e in graph["events"]:
        kind = e["type"]
        if event in ("grow", "shrink"):
            if kind != "size_change":
                continue
            bigger = SIZE_NAMES.index(e["to"]) > SIZE_NAMES.index(e["from"])
            if bigger != (event == "grow"):
                continue
        elif kind != event:
            continue
        if to is not None and e.get("to") != to:
            continue
        out.setdefault(e["objects"][0], e["frame"])
    return out


def _unique(graph: Graph, flt: dict[str, str]) -> int | None:
    ref = select(graph, flt)
    return ref[0] if len(ref) == 1 else None


def evaluate(program: Program, graph: Graph) -> list[int] | None:
    """Target object ids (sorted), [] for no target, None if the program is ill-posed."""
    op = program["op"]
    if op == "select":
        return sorted(select(graph, program["filter"]))
    if op == "event":
        frames = _event_frames(graph, program["event"], program.get("to"))
        allowed = set(select(graph, program.get("filter", {})))
        cand = {k: t for k, t in frames.items() if k in allowed}
        order = program.get("order")
        if order is None or not cand:
            return sorted(cand)
        best = min(cand.values()) if order == "first" else max(cand.values())
        return sorted(k for k, t in cand.items() if abs(t - best) < ORDER_MIN_GAP)
    collisions = [e for e in graph["events"] if e["type"] == "collide"]
    hides = [e for e in graph["events"] if e["type"] == "hide"]
    if op == "stop_after_collision":
        stops = _event_frames(graph, "stop", None)
        if program.get("any"):  # "... after colliding": each object's own first collision
            first: dict[int, int] = {}
            for e in collisions:
                for k in e["objects"]:
                    first.setdefault(k, e["frame"])
            return sorted(k for k, t_c in first.items() if k in stops and stops[k] > t_c)
        if len(collisions) != 1:  # "the collision" presupposes exactly one
            return None
        t_c, parts = collisions[0]["frame"], collisions[0]["objects"]
        return sorted(k for k in parts if k in stops and stops[k] > t_c)
    if op == "colliders":
        return sorted({k for e in collisions for k in e["objects"]})
    if op in ("collide_with", "hidden_by", "occluder_of"):
        ref = _unique(graph, program["ref"])
        if ref is None:
            return None
        if op == "collide_with":
            return sorted(
                {k for e in collisions if ref in e["objects"] for k in e["objects"]} - {ref}
            )
        if program.get("passes"):  # only occluders that move over the object
            hides = [e for e in hides if e.get("occluder_moving")]
        if op == "hidden_by":
            return sorted({e["objects"][0] for e in hides if e["objects"][1] == ref})
        return sorted({e["objects"][1] for e in hides if e["objects"][0] == ref})
    raise ValueError(f"unknown query op {op!r} in program {program}")


# ----------------------------------------------------------------------------- wording
def _plural(word: str) -> str:
    return word + "es" if word.endswith(("s", "x", "ch", "sh")) else word + "s"


def noun_phrase(flt: dict[str, str], plural: bool = False, head: str = "shape") -> str:
    words = [flt[k] for k in ("size", "colour") if k in flt]
    noun = flt.get("shape", head)
    words.append(_plural(noun) if plural else noun)
    return " ".join(words)


_COUNT_WORDS = {2: "two", 3: "three", 4: "four"}

_EVENT_TEXT = {
    "enter": ("enters the scene", "comes into view", "appears from outside the frame"),
    "exit": ("leaves the scene", "moves out of the frame", "exits the frame"),
    "stop": ("stops moving", "comes to a stop"),
    "start": ("starts moving", "is still at first and then starts moving"),
    "grow": ("grows", "gets bigger"),
    "shrink": ("shrinks", "gets smaller"),
    "colour_change": ("changes colour", "changes its colour"),
}
_EVENT_PLURAL = {
    "enter": "enter the scene",
    "exit": "leave the scene",
    "stop": "stop moving",
    "start": "start moving",
    "grow": "grow",
    "shrink": "shrink",
    "colour_change": "change colour",
}
_ORDER_TEXT = {
    "enter": {"first": "to enter the scene", "last": "to enter the scene"},
    "exit": {"first": "to leave the scene", "last": "to leave the scene"},
    "stop": {"first": "to stop", "last": "to stop"},
    "start": {"first": "to start moving", "last": "to start moving"},
    "colour_change": {"first": "to change colour", "last": "to change colour"},
    "grow": {"first": "to grow", "last": "to grow"},
    "shrink": {"first": "to shrink", "last": "to shrink"},
}


def wording(program: Program, rng: np.random.Generator, count: int = 1) -> str:
    """One sentence for `program` (paraphrase chosen by `rng`); `count` targets for plurals."""
    op = program["op"]
    pick = lambda options: options[int(rng.integers(len(options)))]  # noqa: E731
    if op == "select":
        flt = program["filter"]
        if count == 1:
            return "the " + noun_phrase(flt, head=pick(("shape", "object")))
        n = _COUNT_WORDS.get(count, str(count))
        np_ = noun_phrase(flt, plural=True)
        if count == 2:
            return pick((f"both {np_}", f"the two {np_}"))
        return pick((f"all {n} {np_}", f"the {n} {np_}"))
    if op == "event":
        event, order, flt = program["event"], program.get("order"), program.get("filter", {})
        head = pick(("shape", "object")) if "shape" not in flt else "shape"
        np_ = noun_phrase(flt, head=head)
        if event == "colour_change" and program.get("to"):
            verb = pick((f"turns {program['to']}", f"changes colour to {program['to']}"))
            plural_verb = f"turn {program['to']}"
        else:
            verb = pick(_EVENT_TEXT[event])
            plural_verb = _EVENT_PLURAL[event]
        if order is not None:
            if event == "colour_change" and program.get("to"):
                tail = f"to turn {program['to']}"
            else:
                tail = _ORDER_TEXT[event][order]
            return pick(
                (
                    f"the {order} {np_} {tail}",
                    f"the {np_} that {verb} {order}",
                    f"which {np_} is the {order} {tail}?",
                )
            )
        if count == 1:
            return pick((f"the {np_} that {verb}", f"which {np_} {verb}?"))
        n = _COUNT_WORDS.get(count, str(count))
        return f"the {n} {noun_phrase(flt, plural=True)} that {plural_verb}"
    if op == "stop_after_collision" and program.get("any"):
        return pick(
            (
                "the shape that stops after colliding with another shape",
                "the object that comes to a stop after it bumps into something",
            )
        )
    if op == "stop_after_collision":
        return pick(
            (
                "the object that stops after the collision",
                "the shape that comes to a stop after the collision",
                "which shape stops moving after the two shapes collide?",
            )
        )
    if op == "colliders":
        n = _COUNT_WORDS.get(count, str(count))
        return pick((f"the {n} shapes that collide", f"the {n} shapes that bump into each other"))
    if op == "collide_with":
        ref = noun_phrase(program["ref"])
        return pick(
            (
                f"the shape that collides with the {ref}",
                f"the shape that the {ref} collides with",
                f"which object does the {ref} collide with?",
            )
        )
    if op == "hidden_by":
        ref = noun_phrase(program["ref"])
        if program.get("passes"):
            return pick(
                (
                    f"the one hidden when the {ref} passes",
                    f"the shape that is hidden when the {ref} passes in front of it",
                    f"which shape disappears as the {ref} passes over it?",
                )
            )
        return pick(
            (
                f"the shape that is hidden behind the {ref}",
                f"which shape disappears behind the {ref}?",
            )
        )
    if op == "occluder_of":
        ref = noun_phrase(program["ref"])
        if program.get("passes"):
            return pick(
                (
                    f"the shape that passes in front of the {ref}",
                    f"which shape covers the {ref} as it passes?",
                )
            )
        return pick((f"the shape that hides the {ref}", f"which shape does the {ref} go behind?"))
    raise ValueError(f"unknown query op {op!r}")


# ----------------------------------------------------------------------------- candidates
def _filters_of(obj: dict, keys_sets: Iterable[tuple[str, ...]]) -> list[dict[str, str]]:
    out = []
    for keys in keys_sets:
        if is_constant(obj, keys):
            out.append({k: next(iter(_seen(obj, k))) for k in keys})
    return out


_DESCRIBE_KEYS = [ks for n in (1, 2, 3) for ks in itertools.combinations(_ATTRS, n)]


def descriptions(graph: Graph, obj_id: int) -> list[dict[str, str]]:
    """All filters that name `obj_id` uniquely with attributes it never changes."""
    obj = graph["objects"][obj_id]
    return [f for f in _filters_of(obj, _DESCRIBE_KEYS) if select(graph, f) == [obj_id]]


def _shortest(rng: np.random.Generator, options: list[dict[str, str]]) -> dict[str, str] | None:
    if not options:
        return None
    n = min(len(f) for f in options)
    short = [f for f in options if len(f) == n]
    return short[int(rng.integers(len(short)))]


def _partial(graph: Graph, targets: list[int]) -> bool:
    """True if some frame shows none of the targets (so the keyframe matters)."""
    if not targets:
        return False
    vis = np.array([graph["objects"][k]["visible_area"] for k in targets]).sum(axis=0)
    return bool((vis == 0).any())


def candidates(graph: Graph, rng: np.random.Generator, cfg: SynthConfig) -> list[dict[str, Any]]:
    """Every query this graph supports, each verified by evaluating its program."""
    out: list[dict[str, Any]] = []
    objs = graph["objects"]

    def add(kind: str, program: Program, targets: list[int], weight: float = 1.0) -> None:
        if weight <= 0:  # a family switched off by the config
            return
        got = evaluate(program, graph)
        if got is None or got != sorted(targets):
            return
        if kind == "null":
            type_id = TYPE_NULL
        elif program["op"] == "select":
            type_id = TYPE_REFERRING
        else:
            type_id = TYPE_REASONING
        if _partial(graph, got):
            weight *= cfg.partial_target_weight
        out.append(
            {
                "kind": kind,
                "type_id": type_id,
                "program": program,
                "targets": got,
                "exp": wording(program, rng, count=max(1, len(got))),
                "weight": weight,
            }
        )

    # referring: one object by its constant attributes
    for o in objs:
        for flt in descriptions(graph, o["obj_id"]):
            add("referring", {"op": "select", "filter": flt}, [o["obj_id"]], 1.0 / len(flt))
    # multi referring: a description shared by exactly 2 or 3 objects, all constant in it
    seen: set[tuple] = set()
    for o in objs:
        for flt in _filters_of(
            o, [("shape",), ("colour",), ("colour", "shape"), ("size", "shape")]
        ):
            key = tuple(sorted(flt.items()))
            if key in seen:
                continue
            seen.add(key)
            group = select(graph, flt)
            if 2 <= len(group) <= 3 and all(is_constant(objs[k], flt) for k in group):
                add("multi", {"op": "select", "filter": flt}, group)

    # temporal events, optionally ordered and/or filtered
    p_comp = cfg.compositional_prob
    for event in EVENTS:
        tos: list[str | None] = [None]
        if event == "colour_change":
            tos += sorted({e["to"] for e in graph["events"] if e["type"] == "colour_change"})
        for to in tos:
            frames = _event_frames(graph, event, to)
            base = {"op": "event", "event": event} | ({"to": to} if to else {})
            if len(frames) == 1:
                add("reasoning", base, list(frames), 1.0 - p_comp)
            elif len(frames) in (2, 3) and to is None:
                add("multi", base, list(frames), 0.5)
            if len(frames) >= 2:
                for order in ("first", "last"):
                    got = evaluate(base | {"order": order}, graph) or []
                    if len(got) == 1:
                        add("reasoning", base | {"order": order}, got, 1.0 - p_comp)
            # compositional: the same with an attribute filter of the target
            for k in frames:
                for flt in _filters_of(objs[k], [("shape",), ("colour",)]):
                    prog = base | {"filter": flt}
                    if evaluate(prog, graph) == [k]:
                        add("reasoning", prog, [k], p_comp)
                    for order in ("first", "last"):
                        if len([j for j in frames if matches(objs[j], flt)]) >= 2:
                            if evaluate(prog | {"order": order}, graph) == [k]:
                                add("reasoning", prog | {"order": order}, [k], p_comp)

    # relations
    for sac in ({"op": "stop_after_collision"}, {"op": "stop_after_collision", "any": True}):
        got = evaluate(sac, graph)
        if got and len(got) == 1:
            add("reasoning", sac, got, 2.0)
    colliders = evaluate({"op": "colliders"}, graph) or []
    if len(colliders) == 2:
        add("multi", {"op": "colliders"}, colliders)
    for e in graph["events"]:
        if e["type"] == "collide":
            for a, b in (e["objects"], e["objects"][::-1]):
                ref = _shortest(rng, descriptions(graph, a))
                if ref is not None:
                    add("reasoning", {"op": "collide_with", "ref": ref}, [b], 1.5)
        if e["type"] == "hide":
            hidden, occluder = e["objects"]
            passes = {"passes": True} if e.get("occluder_moving") else {}
            ref = _shortest(rng, descriptions(graph, occluder))
            if ref is not None:
                add("reasoning", {"op": "hidden_by", "ref": ref} | passes, [hidden], 2.0)
            ref = _shortest(rng, descriptions(graph, hidden))
            if ref is not None:
                add("reasoning", {"op": "occluder_of", "ref": ref} | passes, [occluder], 2.0)

    # null: plausible descriptions / events with no target
    present = {k: sorted({v for o in objs for v in _seen(o, k)}) for k in _ATTRS}
    vocab = {"shape": list(SHAPES), "colour": list(COLOUR_NAMES), "size": list(SIZE_NAMES)}
    for _ in range(12):
        keys = [("colour", "shape"), ("size", "shape"), ("size", "colour", "shape")][
            int(rng.integers(3))
        ]
        # mostly values that do occur in the video, so only the combination is absent
        flt = {k: str(rng.choice(present[k] if rng.random() < 0.7 else vocab[k])) for k in keys}
        add("null", {"op": "select", "filter": flt}, [])
    for event in EVENTS:
        flt = {"shape": str(rng.choice(present["shape"]))}
        add("null", {"op": "event", "event": event, "filter": flt}, [])
    for colour in rng.permutation(COLOUR_NAMES)[:3]:
        add("null", {"op": "event", "event": "colour_change", "to": str(colour)}, [])

    # one candidate per sentence
    unique: dict[str, dict[str, Any]] = {}
    for c in out:
        unique.setdefault(c["exp"], c)
    return list(unique.values())


def sample_queries(
    graph: Graph, rng: np.random.Generator, cfg: SynthConfig
) -> list[dict[str, Any]]:
    """Up to `cfg.queries_per_video` distinct queries, kinds drawn by `cfg.query_mix`."""
    pool = candidates(graph, rng, cfg)
    mix = dict(cfg.query_mix)
    chosen: list[dict[str, Any]] = []
    family_uses: dict[str, int] = {}
    target_uses: dict[tuple[int, ...], int] = {}
    for _ in range(cfg.queries_per_video):
        pool = [c for c in pool if c["weight"] > 0]
        kinds = [k for k in mix if mix[k] > 0 and any(c["kind"] == k for c in pool)]
        if not kinds:
            break
        w = np.array([mix[k] for k in kinds], float)
        kind = kinds[int(rng.choice(len(kinds), p=w / w.sum()))]
        group = [c for c in pool if c["kind"] == kind]
        # spread the questions over families and over target objects
        cw = np.array(
            [
                c["weight"]
                * 0.35 ** family_uses.get(_family(c["program"]), 0)
                * 0.25 ** target_uses.get(tuple(c["targets"]), 0)
                for c in group
            ]
        )
        pick = group[int(rng.choice(len(group), p=cw / cw.sum()))]
        chosen.append(pick)
        family_uses[_family(pick["program"])] = family_uses.get(_family(pick["program"]), 0) + 1
        if pick["targets"]:
            key = tuple(pick["targets"])
            target_uses[key] = target_uses.get(key, 0) + 1
        # never ask the same thing twice: drop same-sentence and same-program candidates
        pool = [c for c in pool if c is not pick and c["program"] != pick["program"]]
    return chosen


def _family(program: Program) -> str:
    return program["op"] + (":" + program["event"] if program["op"] == "event" else "")
