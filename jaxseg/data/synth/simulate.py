"""Sampling a scene and running its 2-D dynamics.

The scene is *planned* (who enters, exits, stops, collides, passes in front of whom) and then
*simulated* frame by frame with simple physics (wall bounces, elastic collisions). The plan
only steers the simulation; what really happened is read back from the simulated states and
the rendered masks by `scene_graph.py`, and queries are checked against that, never against
the plan. A planned event that the physics spoiled simply yields no query.

Speed limit: no object moves more than `cfg.speed[1] * size` px between two frames (steering,
exits and collisions are all clipped to it), so nothing teleports; instead the plan makes its
events reachable: the occlusion frame is late enough, the occludee sits within the occluder's
reach, and an object that will leave starts near a border and sets off in time.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from jaxseg.data.synth.shapes import circumradius
from jaxseg.data.synth.world import COLOUR_NAMES, SHAPES, SIZE_NAMES, SIZES, SynthConfig

# Shapes that cover a smaller object when centred on it (large inscribed radius).
_OCCLUDER_SHAPES = ("circle", "square", "hexagon", "diamond")
# frames an entering object may need before it is fully inside (and can be steered)
_ENTRY_FRAMES = 10


@dataclasses.dataclass
class Scene:
    """Simulated states. Positions are object centres in px, x right and y down.

    pos [T, N, 2] float; radius [T, N] px; colour, size [T, N] indices into
    COLOUR_NAMES / SIZE_NAMES; depth [N] (larger is nearer the camera, all distinct);
    collisions: (frame, i, j) contacts logged by the physics.
    """

    size: int
    shapes: list[str]
    depth: np.ndarray
    pos: np.ndarray
    radius: np.ndarray
    colour: np.ndarray
    size_class: np.ndarray
    collisions: list[tuple[int, int, int]]
    plan: dict

    @property
    def num_frames(self) -> int:
        return int(self.pos.shape[0])

    @property
    def num_objects(self) -> int:
        return len(self.shapes)


@dataclasses.dataclass
class _Obj:
    shape: str
    colour: int
    size_class: int
    static: bool = False
    enter_t: int | None = None
    exit_t: int | None = None
    stop_t: int | None = None
    start_t: int | None = None
    colour_t: int | None = None
    size_t: int | None = None
    # runtime state
    status: str = "inside"  # parked_in | entering | inside | leaving | gone
    anchored: bool = False


def _sample_appearance(rng: np.random.Generator, n: int, cfg: SynthConfig) -> list[_Obj]:
    objs: list[_Obj] = []
    for _ in range(n):
        shape = str(rng.choice(SHAPES))
        colour = int(rng.integers(len(COLOUR_NAMES)))
        if objs and rng.random() < cfg.distractor_prob:
            shape = objs[int(rng.integers(len(objs)))].shape
        if objs and rng.random() < cfg.distractor_prob:
            colour = objs[int(rng.integers(len(objs)))].colour
        objs.append(_Obj(shape=shape, colour=colour, size_class=int(rng.integers(len(SIZE_NAMES)))))
    return objs


def _sample_roles(rng: np.random.Generator, objs: list[_Obj], T: int, cfg: SynthConfig) -> None:
    for o in objs:
        o.static = bool(rng.random() < cfg.p_static)
        if not o.static and rng.random() < cfg.p_enter:
            o.enter_t = int(rng.integers(1, max(2, T // 2)))
        first_in = o.enter_t or 0
        if not o.static and rng.random() < cfg.p_exit:
            lo = max(T // 3, first_in + 4)
            if lo < T - 4:
                o.exit_t = int(rng.integers(lo, T - 4))
        last_in = o.exit_t if o.exit_t is not None else T - 1
        if not o.static and rng.random() < cfg.p_stop and first_in + 3 < last_in - 2:
            o.stop_t = int(rng.integers(first_in + 3, last_in - 2))
            o.exit_t = None  # a stopped object stays
        elif not o.static and o.enter_t is None and rng.random() < cfg.p_start and 2 < last_in - 3:
            o.start_t = int(rng.integers(2, last_in - 3))
        if rng.random() < cfg.p_colour_change and first_in + 2 < last_in - 1:
            o.colour_t = int(rng.integers(first_in + 2, last_in - 1))
        if rng.random() < cfg.p_size_change and first_in + 2 < last_in - 1:
            o.size_t = int(rng.integers(first_in + 2, last_in - 1))


def _is_mover(o: _Obj, t: int) -> bool:
    """Free to be steered into a contact at frame t (inside, moving, not leaving)."""
    return (
        not o.static
        and (o.enter_t is None or o.enter_t < t - _ENTRY_FRAMES)
        and (o.exit_t is None or o.exit_t > t + 2)
        and (o.stop_t is None or o.stop_t > t + 2)
        and (o.start_t is None or o.start_t < t - 4)
    )


def _make_mover(o: _Obj, t: int) -> None:
    """Drop the roles that would keep `o` from moving around frame t."""
    o.static = False
    if o.enter_t is not None and o.enter_t >= t - _ENTRY_FRAMES:
        o.enter_t = None
    if o.exit_t is not None and o.exit_t <= t + 2:
        o.exit_t = None
    if o.stop_t is not None and o.stop_t <= t + 2:
        o.stop_t = None
    if o.start_t is not None and o.start_t >= t - 4:
        o.start_t = None


def _pick_movers(
    rng: np.random.Generator, objs: list[_Obj], t: int, k: int, exclude: set[int]
) -> list[int]:
    """k objects to steer at frame t: natural movers first, others recruited."""
    free = [i for i in range(len(objs)) if i not in exclude]
    if len(free) < k:
        return []
    natural = [i for i in free if _is_mover(objs[i], t)]
    others = [i for i in free if i not in natural]
    order = list(rng.permutation(natural)) + list(rng.permutation(others))
    chosen = [int(i) for i in order[:k]]
    for i in chosen:
        _make_mover(objs[i], t)
    return chosen


def _plan_interactions(
    rng: np.random.Generator, objs: list[_Obj], T: int, cfg: SynthConfig
) -> dict:
    """Pick a colliding pair and an (occluder, occludee) pair; adjust roles to make room."""
    plan: dict = {"collision": None, "occlusion": None, "stop_after_collision": None}
    n = len(objs)
    lo, hi = max(4, T // 4), max(5, (3 * T) // 4)
    if n >= 2 and rng.random() < cfg.p_collision:
        tc = int(rng.integers(lo, hi))
        pair = _pick_movers(rng, objs, tc, 2, set())
        if pair:
            i, j = pair
            plan["collision"] = {"frame": tc, "objects": [i, j]}
            if rng.random() < cfg.p_stop_after_collision and tc + 3 < T - 2:
                k = (i, j)[int(rng.integers(2))]
                objs[k].stop_t = None
                objs[k].exit_t = None
                plan["stop_after_collision"] = {"object": k, "delay": int(rng.integers(2, 4))}
    busy = set(plan["collision"]["objects"]) if plan["collision"] else set()
    if n - len(busy) >= 2 and rng.random() < cfg.p_occlusion:
        to = int(rng.integers(lo, hi))
        # the occludee rests (a predictable position) and is in view from the start
        occludees = [i for i, o in enumerate(objs) if i not in busy and o.enter_t is None]
        if occludees:
            vi = int(rng.choice(occludees))
            picked = _pick_movers(rng, objs, to, 1, busy | {vi})
            if picked:
                (oi,) = picked
                v, o = objs[vi], objs[oi]
                v.static, v.exit_t, v.stop_t, v.start_t = True, None, None, None
                # the occluder is bigger and "fat", so that it covers the occludee
                v.size_class = 0 if v.size_class == 2 else v.size_class
                o.size_class = max(o.size_class, v.size_class + 1)
                if o.shape not in _OCCLUDER_SHAPES:
                    o.shape = str(rng.choice(_OCCLUDER_SHAPES))
                # late enough to get there at < vmax from a start that does not overlap
                to_min = min(_earliest_occlusion(o, v, cfg), T - 3)
                if to < to_min:
                    to = to_min
                    _make_mover(o, to)
                o.size_t = None if o.size_t is not None and o.size_t <= to + 2 else o.size_t
                v.size_t = None if v.size_t is not None and v.size_t <= to + 2 else v.size_t
                # depth: the occluder in front of the occludee, fixed by the caller
                plan["occlusion"] = {"frame": to, "occluder": oi, "occludee": vi}
    return plan


def _earliest_occlusion(occluder: _Obj, occludee: _Obj, cfg: SynthConfig) -> int:
    """First frame the occluder can reach the occludee at 85% of vmax when they start
    1.2x further apart than touching (see `_move_occludee_into_reach`); an entering
    occluder counts from when it is fully in view at the slowest entry speed."""
    S, vmax = cfg.size, cfg.speed[1] * cfg.size
    reach = [_nominal_radius(x.size_class, S) * circumradius(x.shape) for x in (occluder, occludee)]
    t_a = 0
    if occluder.enter_t is not None:
        v_in = 0.5 * (cfg.speed[0] + cfg.speed[1]) * S
        t_a = occluder.enter_t - 1 + math.ceil((2 * reach[0] + 4) / v_in)
    return t_a + 1 + math.ceil(1.2 * (sum(reach) + 2) / (0.85 * vmax))


def _clip_speed(v: np.ndarray, vmax: float) -> np.ndarray:
    """`v` scaled down to at most `vmax` px per frame (direction kept)."""
    speed = float(np.linalg.norm(v))
    return v * (vmax / speed) if speed > vmax else v


def _move_occludee_into_reach(
    rng: np.random.Generator,
    occ: dict,
    objs: list[_Obj],
    p0: np.ndarray,
    vel: np.ndarray,
    reach0: np.ndarray,
    vmax: float,
    S: int,
) -> None:
    """Re-place the (static) occludee where the occluder can get to by the planned frame
    at no more than vmax, so the occlusion needs no teleport.

    The occluder is steerable from the frame it is fully inside (t_a, at q): 0 and its start
    for an object in view, else estimated from its entry. Steering begins once the
    remaining distance / vmax reaches the remaining frames, which (distance changing by at
    most vmax a frame) happens at a feasible speed if |occludee - q| < vmax (to - 1 - t_a).
    p0 [N, 2] start positions, vel [N, 2], reach0 [N] footprint reach at frame 0, in px.
    """
    oi, vi, to = occ["occluder"], occ["occludee"], occ["frame"]
    t_a, q = 0, p0[oi]
    if objs[oi].enter_t is not None:
        speed = float(np.linalg.norm(vel[oi]))
        moves = math.ceil((2 * reach0[oi] + 4) / max(speed, 1e-6))
        t_a = objs[oi].enter_t - 1 + moves
        q = p0[oi] + vel[oi] * moves
    budget = 0.85 * vmax * (to - 1 - t_a)
    # apart when the video starts, unless the video is too short for that
    closest = min(reach0[oi] + reach0[vi] + 2, 0.7 * budget)
    r = reach0[vi]
    if budget <= 0:
        return
    others = [k for k in range(len(objs)) if k not in (oi, vi) and objs[k].enter_t is None]
    for _ in range(60):
        a = rng.uniform(0, 2 * math.pi)
        d = rng.uniform(closest, budget)
        cand = q + d * np.array([math.cos(a), math.sin(a)])
        if not (r + 1 <= cand[0] <= S - r - 1 and r + 1 <= cand[1] <= S - r - 1):
            continue
        if all(np.linalg.norm(cand - p0[k]) > r + reach0[k] + 2 for k in others):
            p0[vi] = cand
            return


def _nominal_radius(size_class: int, side: int) -> float:
    return SIZES[SIZE_NAMES[size_class]] * side


def simulate(rng: np.random.Generator, cfg: SynthConfig) -> Scene:
    """Sample a scene from `rng` and simulate it. Deterministic given the rng state."""
    S = cfg.size
    T = int(rng.integers(cfg.frames[0], cfg.frames[1] + 1))
    N = int(rng.integers(cfg.objects[0], cfg.objects[1] + 1))
    objs = _sample_appearance(rng, N, cfg)
    _sample_roles(rng, objs, T, cfg)
    plan = _plan_interactions(rng, objs, T, cfg)

    depth = rng.permutation(N)
    if plan["occlusion"]:
        oi, vi = plan["occlusion"]["occluder"], plan["occlusion"]["occludee"]
        if depth[oi] < depth[vi]:
            depth[oi], depth[vi] = depth[vi], depth[oi]

    # colour / size schedules
    colour = np.zeros((T, N), np.int64)
    size_class = np.zeros((T, N), np.int64)
    for i, o in enumerate(objs):
        colour[:, i] = o.colour
        size_class[:, i] = o.size_class
        if o.colour_t is not None:
            new = (o.colour + 1 + int(rng.integers(len(COLOUR_NAMES) - 1))) % len(COLOUR_NAMES)
            colour[o.colour_t :, i] = new
        if o.size_t is not None:
            others = [k for k in range(len(SIZE_NAMES)) if k != o.size_class]
            size_class[o.size_t :, i] = int(rng.choice(others))
    radius = np.vectorize(lambda k: _nominal_radius(int(k), S))(size_class).astype(np.float64)
    reach = np.array([circumradius(o.shape) for o in objs])  # contact radius per unit radius

    vmin, vmax = cfg.speed[0] * S, cfg.speed[1] * S

    def random_velocity() -> np.ndarray:
        a = rng.uniform(0, 2 * math.pi)
        return rng.uniform(vmin, vmax) * np.array([math.cos(a), math.sin(a)])

    # initial placement: inside objects spread out, entering objects parked outside
    pos = np.zeros((T, N, 2))
    vel = np.zeros((N, 2))
    p0 = np.zeros((N, 2))
    placed: list[int] = []
    for i, o in enumerate(objs):
        r = radius[0, i] * reach[i]
        if o.enter_t is not None:
            side = int(rng.integers(4))
            along = rng.uniform(0.25 * S, 0.75 * S)
            speed = rng.uniform(0.5 * (vmin + vmax), vmax)
            inward = np.array([[1, 0], [-1, 0], [0, 1], [0, -1]][side], float)
            tang = np.array([inward[1], inward[0]]) * rng.uniform(-0.3, 0.3)
            d = inward + tang
            d /= np.linalg.norm(d)
            edge = [(0.0, along), (S, along), (along, 0.0), (along, S)][side]
            # parked with its footprint clear of the frame (2 px for polygon rasterisation)
            p0[i] = np.array(edge) - inward * (r + 2.0)
            vel[i] = d * speed
            o.status = "parked_in"
            continue
        # an object that will leave starts near enough to a border to get out at <= vmax
        exit_reach = 0.85 * vmax * (T - 3) - r - 2
        for _ in range(60):
            cand = rng.uniform(r + 1, S - r - 1, size=2)
            if o.exit_t is not None and min(cand.min(), (S - cand).min()) > exit_reach:
                off = rng.uniform(r + 1, max(r + 1, exit_reach))
                cand[int(rng.integers(2))] = off if rng.random() < 0.5 else S - off
            if all(np.linalg.norm(cand - p0[k]) > r + radius[0, k] * reach[k] + 2 for k in placed):
                break
        p0[i] = cand
        placed.append(i)
        if o.static or o.start_t is not None:
            o.anchored = True
        else:
            vel[i] = random_velocity()

    if plan["occlusion"]:
        _move_occludee_into_reach(rng, plan["occlusion"], objs, p0, vel, radius[0] * reach, vmax, S)

    no_collide = set()
    if plan["occlusion"]:
        no_collide.add(frozenset((plan["occlusion"]["occluder"], plan["occlusion"]["occludee"])))
    collisions: list[tuple[int, int, int]] = []
    heading = {"collision": False, "occlusion": False}
    pending_stop: dict[int, int] = {}
    locked: set[int] = set()  # steered towards a planned contact: ignore other controls

    def contact_pending(i: int, t: int) -> bool:
        """i still has a planned contact ahead (it keeps its lock until frame + 2)."""
        col, occ = plan["collision"], plan["occlusion"]
        if col and i in col["objects"] and t <= col["frame"] + 1:
            return True
        return bool(occ and i == occ["occluder"] and t <= occ["frame"] + 1)

    def reach_px(t: int, i: int) -> float:
        return radius[t, i] * reach[i]

    def inside(t: int, i: int, p: np.ndarray) -> bool:
        r = reach_px(t, i)
        return bool(r <= p[0] <= S - r and r <= p[1] <= S - r)

    def outside(t: int, i: int, p: np.ndarray) -> bool:
        r = reach_px(t, i)
        return bool(p[0] < -r or p[0] > S + r or p[1] < -r or p[1] > S + r)

    p = p0.copy()
    pos[0] = p
    for t in range(T - 1):
        # -- controls applied at frame t (they shape the move t -> t+1)
        for plan_key, who in (("collision", "objects"), ("occlusion", "occluder")):
            planned = plan[plan_key]
            if planned and t > planned["frame"] + 1:
                members = planned[who]
                locked.difference_update(members if isinstance(members, list) else [members])
        for i, o in enumerate(objs):
            if o.status == "parked_in" and o.enter_t is not None and t >= o.enter_t - 1:
                o.status = "entering"
            if i in locked:
                continue
            if o.stop_t is not None and t == o.stop_t and o.status == "inside":
                vel[i] = 0.0
                o.anchored = True
            if pending_stop.get(i) == t and o.status == "inside":
                vel[i] = 0.0
                o.anchored = True
            if o.start_t is not None and t == o.start_t and o.status == "inside":
                o.anchored = False
                vel[i] = random_velocity()
            # an entering object may turn back once its centre is in view ("comes and goes")
            in_view = o.status == "inside" or (
                o.status == "entering" and bool(((p[i] >= 0) & (p[i] <= S)).all())
            )
            if o.exit_t is not None and in_view:
                # head for the nearest border, at most at vmax, so that it is gone by the
                # second-last frame: leave at exit_t, or earlier if waiting would be too late
                dists = [p[i, 0], S - p[i, 0], p[i, 1], S - p[i, 1]]
                k = int(np.argmin(dists))
                way = dists[k] + reach_px(t, i) + 2
                late = way / vmax > T - 3 - t and not contact_pending(i, t)
                if t >= o.exit_t or late:
                    out = np.array([[-1, 0], [1, 0], [0, -1], [0, 1]][k], float)
                    need = way / max(1, T - 2 - t)
                    speed = max(need, float(np.linalg.norm(vel[i])), vmin)
                    vel[i] = out * min(speed, vmax)
                    o.anchored = False
                    o.status = "leaving"
        col = plan["collision"]
        if col and not heading["collision"]:
            i, j = col["objects"]
            if objs[i].status == "inside" and objs[j].status == "inside":
                gap = np.linalg.norm(p[j] - p[i]) - reach_px(t, i) - reach_px(t, j)
                steps = col["frame"] - t
                if steps >= 1 and gap / (2 * vmax) >= steps - 1:
                    n = (p[j] - p[i]) / max(1e-9, float(np.linalg.norm(p[j] - p[i])))
                    # no faster than the config allows: late steering arrives late
                    v = min(max(gap / (2 * steps), 0.3), vmax)
                    vel[i], vel[j] = n * v, -n * v
                    objs[i].anchored = objs[j].anchored = False
                    heading["collision"] = True
                    locked.update((i, j))
        occ = plan["occlusion"]
        if occ:
            oi, vi = occ["occluder"], occ["occludee"]
            steps = occ["frame"] - t
            if objs[oi].status == "inside" and steps >= 1:
                dist = float(np.linalg.norm(p[vi] - p[oi]))
                # a bump on the way (which unlocks it) would make it miss: it re-aims
                bumped = heading["occlusion"] and oi not in locked
                if bumped or (not heading["occlusion"] and dist / vmax >= steps - 1):
                    vel[oi] = _clip_speed((p[vi] - p[oi]) / steps, vmax)
                    objs[oi].anchored = False
                    heading["occlusion"] = True
                    locked.add(oi)
        # -- move
        before = p.copy()
        for i, o in enumerate(objs):
            if o.status in ("parked_in", "gone") or o.anchored:
                continue
            p[i] = p[i] + vel[i]
        # -- walls (only objects that are fully inside bounce)
        for i, o in enumerate(objs):
            if o.status != "inside" or o.anchored:
                continue
            r = reach_px(t + 1, i)
            for ax in (0, 1):
                # mirror the move at the wall; a shape that grew into the wall (started the
                # move beyond it) just turns round: no jump of more than one move
                if p[i, ax] < r and vel[i, ax] < 0:
                    vel[i, ax] = -vel[i, ax]
                    b = before[i, ax]
                    p[i, ax] = 2 * r - p[i, ax] if b >= r else b + vel[i, ax]
                elif p[i, ax] > S - r and vel[i, ax] > 0:
                    vel[i, ax] = -vel[i, ax]
                    b = before[i, ax]
                    p[i, ax] = 2 * (S - r) - p[i, ax] if b <= S - r else b + vel[i, ax]
        # -- collisions between objects that are fully inside
        for i in range(N):
            for j in range(i + 1, N):
                oi_, oj_ = objs[i], objs[j]
                if oi_.status != "inside" or oj_.status != "inside":
                    continue
                if frozenset((i, j)) in no_collide or (oi_.anchored and oj_.anchored):
                    continue
                d = p[j] - p[i]
                dist = float(np.linalg.norm(d))
                if dist >= reach_px(t + 1, i) + reach_px(t + 1, j) + 0.5 or dist < 1e-9:
                    continue
                n = d / dist
                rel = float(np.dot(vel[j] - vel[i], n))
                if rel >= 0:  # already separating
                    continue
                if oi_.anchored:
                    vel[j] -= 2 * np.dot(vel[j], n) * n
                elif oj_.anchored:
                    vel[i] -= 2 * np.dot(vel[i], n) * n
                else:  # equal masses: exchange the normal components
                    vi_n, vj_n = np.dot(vel[i], n), np.dot(vel[j], n)
                    vel[i] += (vj_n - vi_n) * n
                    vel[j] += (vi_n - vj_n) * n
                    # the exchange can give one up to sqrt(2) vmax: the world's speed limit
                    # holds, so that `speed` bounds every frame-to-frame move
                    vel[i], vel[j] = _clip_speed(vel[i], vmax), _clip_speed(vel[j], vmax)
                collisions.append((t + 1, i, j))
                locked.difference_update((i, j))  # the steering is spent (or spoiled)
                sac = plan["stop_after_collision"]
                if sac and col and {i, j} == set(col["objects"]) and sac["object"] in (i, j):
                    pending_stop.setdefault(sac["object"], t + 1 + sac["delay"])
        # -- status updates
        for i, o in enumerate(objs):
            if o.status == "entering" and inside(t + 1, i, p[i]):
                o.status = "inside"
            elif o.status == "leaving" and outside(t + 1, i, p[i]):
                o.status = "gone"
        pos[t + 1] = p

    plan_json = {
        "objects": [dataclasses.asdict(o) | {"colour": COLOUR_NAMES[o.colour]} for o in objs],
        **plan,
    }
    for entry in plan_json["objects"]:
        for key in ("status", "anchored", "size_class"):
            entry.pop(key, None)
    return Scene(
        size=S,
        shapes=[o.shape for o in objs],
        depth=np.asarray(depth),
        pos=pos,
        radius=radius,
        colour=colour,
        size_class=size_class,
        collisions=collisions,
        plan=plan_json,
    )
