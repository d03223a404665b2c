"""RCoT-Seg as an episode program (RCoT-Seg paper §3; arXiv 2605.07334 (inference)). The repo is a
placeholder and the prompt templates (paper Figs. 5-9) were not readable, so the wording is
ours; the step structure, sizes and loop follow the paper.

Tasks (`RCoTConfig.task`). The paper trains AKS and KTG as two separate GRPO runs (500 and
1000 steps) whose prompts hold only the keyframe, the video description and the query (max
prompt 3000 tokens): `task="aks"` and `task="ktg"` are those one-turn tasks, with the paper's
labels (AKS: A = the largest-area frame, B = a frame with no target, drawn 1:1 by
`aks_b_fraction`; KTG: the largest-area frame). The description in a stage prompt is the
video's factual summary (`video_summary`; the paper's came from its 3B model's VDG). Both
stage tasks choose their frame from ground truth, so they are training-only
(`ground_truth_inputs`); evaluation and inference always run `task="pipeline"`, which is also
the joint-training variant (one conversation, AKS and KTG rewards summed in one trajectory).

Pipeline: one conversation, steps (each a user turn, then one assistant turn):
  vdg  all frames (or `video_frames` uniform ones) at S_v, each after its absolute index:
       "describe the video" -> `<think>…</think><answer>description</answer>`
  kfg  (text only: the video is in context) the query -> `<answer>{"keyframe": k}</answer>`
  aks  frame k at S_k (the paper's 840x840), the description and the query: is k a valid
       keyframe? -> `<answer>A</answer>` (valid) or `<answer>B</answer>`
       B: kfg again, listing the rejected frames, until A or `max_reselect` (lambda, default
       5) aks turns; lambda = 0 runs no aks turn (the frame kfg gives goes to ktg). The
       re-selection turn shows the whole video again (the paper re-runs KFG on the full
       video) or, with `light_reselect`, only `light_frames` (16) uniform frames.
  ktg  (text only when frame k is in context from aks; with lambda = 0 frame k is shown
       here) -> `<answer>[{"bbox_2d": [x1,y1,x2,y2],
       "point_2d": [x, y]}, …]</answer>` in S_k coordinates, one entry per target.
  Each (box, point) prompts the mask backend on k; masks propagate both ways; union.
Fallbacks: kfg unparseable (or no such frame) -> the first frame not yet rejected (the
paper's no-KFG ablation uses the first frame); aks unparseable -> accepted (loop ends, the
turn earns no accuracy); ktg unparseable -> no masks. `<answer>no target</answer>` at ktg
abstains.

Reward (jaxseg.rewards.rcot): task "aks": lambda_f R_f + lambda_a R_a (max 3); task "ktg":
KTG R_f + R_a (max 6, coordinates rescaled to the paper's 840 px so its thresholds keep
their meaning; L1 point distance, Eq. 10) + the zero-target term; task "pipeline" (joint
variant, not the paper's): the mean over the aks turns of the AKS reward + the KTG reward +
the zero-target term (the mean, not the sum, keeps a policy from farming AKS rewards by
proposing bad frames to reject). In the pipeline the proposed frame can be anything, so its
AKS ground truth needs a rule for frames between the paper's two extremes: A iff the target
area at k is at least `aks_valid_fraction` of its largest area. Null sample: structure
(every turn think/answer) + null term.
"""

from __future__ import annotations

import dataclasses
import json
import zlib
from collections.abc import Sequence

import numpy as np

from jaxseg.data.sampling import uniform_positions
from jaxseg.protocols import annotations as ann
from jaxseg.protocols import parsing
from jaxseg.protocols.episode import Episode, FinalAction, Opening, Protocol
from jaxseg.protocols.observation import frame_parts, id_list, user_message
from jaxseg.protocols.policy import Message, image_part, last_user_meta, text_part
from jaxseg.protocols.sample import EpisodeSample
from jaxseg.protocols.scripted_text import fmt_box, fmt_point, random_junk, which_is
from jaxseg.protocols.veason import sorted_box
from jaxseg.rewards import format as rfmt
from jaxseg.rewards import null as rnull
from jaxseg.rewards import rcot as rrcot

TASKS = ("pipeline", "aks", "ktg")


@dataclasses.dataclass(frozen=True)
class RCoTConfig:
    """video_frames: frames shown at vdg (None: all, as the paper); video_size: their side
    (448 in the paper); keyframe_size: the aks/ktg keyframe side (840 in the paper);
    max_reselect: lambda, the most aks turns (0: none); light_reselect / light_frames: the
    light re-evaluation variant; aks_valid_fraction: the pipeline's AKS ground-truth
    threshold; reward_scale: the KTG reward's pixel scale (840: the paper's thresholds are
    in 840 px); task: "pipeline" | "aks" | "ktg" (the paper's GRPO stage tasks);
    aks_b_fraction: the share of B (zero-area) frames in task "aks" (the paper's 1:1);
    point_metric: KTG point distance, "l1" (the paper) or "euclidean"."""

    video_frames: int | None = None
    video_size: int = 112
    keyframe_size: int = 140
    max_reselect: int = 5
    light_reselect: bool = False
    light_frames: int = 16
    aks_valid_fraction: float = 0.5
    reward_scale: int = 840
    null_reward: bool = True
    task: str = "pipeline"
    aks_b_fraction: float = 0.5
    point_metric: str = "l1"

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ValueError(f"rcot.task must be one of {TASKS}: {self.task!r}")
        if not 0.0 <= self.aks_b_fraction <= 1.0:
            raise ValueError(f"rcot.aks_b_fraction must be in [0, 1]: {self}")
        if self.point_metric not in ("l1", "euclidean"):
            raise ValueError(f"rcot.point_metric must be 'l1' or 'euclidean': {self}")
        if self.max_reselect < 0 or self.light_frames < 1:
            raise ValueError(f"rcot: max_reselect >= 0 and light_frames >= 1 needed: {self}")
        if not 0.0 < self.aks_valid_fraction <= 1.0:
            raise ValueError(f"rcot.aks_valid_fraction must be in (0, 1]: {self}")
        if self.video_frames is not None and self.video_frames < 1:
            raise ValueError(f"rcot.video_frames must be >= 1 or None: {self}")


VDG = (
    "The video has {T} frames; {N} of them are shown above, each after its frame index. "
    "Describe what happens in the video. Think inside <think></think>, then give the "
    "description inside <answer></answer>."
)
KFG = (
    'Query: "{query}". Which frame shows the target of the query best? Think inside '
    '<think></think>, then answer inside <answer></answer> as {{"keyframe": k}}.'
)
KFG_AGAIN = (
    "Frames {rejected} were rejected as keyframes. {shown}"
    'Query: "{query}". Pick another frame that shows the target best. Think inside '
    '<think></think>, then answer inside <answer></answer> as {{"keyframe": k}}.'
)
AKS = (
    'Video description: "{desc}". Query: "{query}". Is frame {k}, shown above, a good '
    "keyframe: is the target of the query clearly visible in it? Options: A. yes; B. no. "
    "Think inside <think></think>, then answer inside <answer></answer> with A or B."
)
KTG_STAGE = (
    'Video description: "{desc}". Query: "{query}". Ground every target of the query in '
    "frame {k}, shown above. Think inside <think></think>, then answer inside "
    '<answer></answer> as [{{"bbox_2d": [x1, y1, x2, y2], "point_2d": [x, y]}}, …], one '
    "entry per target, in the {S}x{S} coordinates of frame {k}. If nothing in the video "
    "matches, answer <answer>no target</answer>."
)
KTG = (
    'Ground every target of the query "{query}" in frame {k}. Think inside <think></think>, '
    'then answer inside <answer></answer> as [{{"bbox_2d": [x1, y1, x2, y2], "point_2d": '
    "[x, y]}}, …], one entry per target, in the {S}x{S} coordinates of frame {k}. If nothing "
    "in the video matches, answer <answer>no target</answer>."
)


def aks_truth(sample: EpisodeSample, position: int, valid_fraction: float) -> str:
    """ "A" if the target at `position` covers >= valid_fraction of its max area, else "B"."""
    areas = sample.areas
    top = areas.max(initial=0)
    return "A" if top > 0 and areas[position] >= valid_fraction * top else "B"


def ktg_objects(sample: EpisodeSample, position: int, size: int) -> list[rrcot.RCoTObject]:
    """GT (box, inscribed-circle centre) per visible target at `position`, in size x size."""
    hw = (sample.height, sample.width)
    out = []
    for m in sample.object_masks[:, position]:
        box, point = ann.box_of(m), ann.inscribed_point(m)
        if box is None:
            continue
        out.append(
            rrcot.RCoTObject(
                ann.scale_boxes(box, hw, (size, size))[0].tolist(),
                ann.scale_points(point, hw, (size, size))[0].tolist(),
            )
        )
    return out


NO_POINT = (-1e6, -1e6)  # outside every box: S_pt = 0


def stage_keyframe(
    sample: EpisodeSample, task: str, rng: np.random.Generator, b_fraction: float = 0.5
) -> tuple[int, str]:
    """(position, AKS truth) of a stage task's frame, the paper's labels: KTG and AKS option A
    use the largest-area frame; AKS option B (drawn with probability b_fraction, when the
    video has frames without the target) a random zero-area frame."""
    areas = sample.areas
    best = int(np.argmax(areas))
    zero = np.flatnonzero(areas == 0)
    if task == "aks" and len(zero) and (areas[best] == 0 or rng.random() < b_fraction):
        return int(rng.choice(zero)), "B"
    return best, "A" if areas[best] > 0 else "B"


def _coin(key: str, salt: str) -> bool:
    """A fair, reproducible coin per sample (the oracle's trace variety)."""
    return zlib.crc32(f"{salt}:{key}".encode()) % 2 == 1


class RCoTEpisode(Episode):
    def __init__(self, protocol, sample, opening):
        super().__init__(protocol, sample, opening)
        self.texts: list[str] = []
        self.description = ""
        self.candidate: int | None = None  # position under check / chosen
        self.rejected: list[int] = []  # positions answered B
        self.aks_rewards: list[float] = []
        self.ktg_text = ""
        self.ktg = parsing.GroundedObjects("no_turn")
        self.phase = "vdg"
        self.task = protocol.cfg.task
        if self.task != "pipeline":  # the stage tasks open on their frame
            self.phase = self.task
            self.candidate = opening.context["position"]

    # ---------------------------------------------------------------- environment
    def _step(self, text: str, info=None) -> Message | None:
        self.texts.append(text)
        handler = {"vdg": self._vdg, "kfg": self._kfg, "aks": self._aks, "ktg": self._ktg}
        return handler[self.phase](text, info)

    def _vdg(self, text, info):
        parsed = parsing.parse_description(text)
        self.description = parsed.text
        self._record(text, "vdg", parsed.status, {"description": parsed.text}, info=info)
        self.phase = "kfg"
        q = KFG.format(query=self.sample.query)
        return user_message([text_part(q)], step="kfg", sample=self.sample)

    def _kfg(self, text, info):
        s = self.sample
        parsed = parsing.parse_keyframe(text)
        position = None if parsed.keyframe is None else s.position_of(parsed.keyframe)
        status = parsed.status if parsed.keyframe is None or position is not None else "bad_frame"
        fallback = position is None
        if fallback:
            left = [p for p in range(s.num_frames) if p not in self.rejected]
            position = left[0] if left else 0
        self.candidate = position
        action = {"keyframe": s.frame_ids[position], "fallback": fallback}
        self._record(text, "kfg", status, action, info=info)
        if self.cfg.max_reselect == 0:  # lambda = 0: no self-check
            return self._ktg_message(show_frame=True)
        self.phase = "aks"
        size = self.cfg.keyframe_size
        parts = [
            text_part(f"Frame {s.frame_ids[position]}: "),
            image_part(ann.resize_image(s.frames[position], size)),
            text_part(AKS.format(desc=self.description, query=s.query, k=s.frame_ids[position])),
        ]
        return user_message(
            parts, step="aks", sample=s, shown=[position], keyframe=position, image_size=size
        )

    def _aks(self, text, info):
        s, cfg = self.sample, self.cfg
        parsed = parsing.parse_choice(text)
        if self.task == "aks":
            truth = self.opening.context["truth"]
        else:
            truth = aks_truth(s, self.candidate, cfg.aks_valid_fraction)
        reward = rrcot.aks_reward(text, parsed.choice, truth)
        self.aks_rewards.append(reward)
        action = {"choice": parsed.choice, "truth": truth, "keyframe": s.frame_ids[self.candidate]}
        self._record(text, "aks", parsed.status, action, {"aks": reward}, info=info)
        if self.task == "aks":
            self.phase = "done"
            return None
        if parsed.choice == "B" and len(self.aks_rewards) < cfg.max_reselect:
            self.rejected.append(self.candidate)
            self.phase = "kfg"
            n = s.num_frames if cfg.video_frames is None else cfg.video_frames
            if cfg.light_reselect:
                n = min(n, cfg.light_frames)
            positions = [int(p) for p in uniform_positions(s.num_frames, n)]
            shown = f"{len(positions)} frames of the video are shown again above. "
            q = KFG_AGAIN.format(rejected=id_list(s, self.rejected), shown=shown, query=s.query)
            parts = frame_parts(s, positions, cfg.video_size) + [text_part(q)]
            return user_message(
                parts,
                step="kfg",
                sample=s,
                shown=positions,
                image_size=cfg.video_size,
                rejected=[s.frame_ids[p] for p in self.rejected],
            )
        return self._ktg_message(show_frame=False)

    def _ktg_message(self, *, show_frame: bool) -> Message:
        s, cfg = self.sample, self.cfg
        self.phase = "ktg"
        k = s.frame_ids[self.candidate]
        parts = [text_part(KTG.format(query=s.query, k=k, S=cfg.keyframe_size))]
        shown: list[int] = []
        if show_frame:
            image = image_part(ann.resize_image(s.frames[self.candidate], cfg.keyframe_size))
            parts = [text_part(f"Frame {k}: "), image] + parts
            shown = [self.candidate]
        return user_message(
            parts,
            step="ktg",
            sample=s,
            shown=shown,
            keyframe=self.candidate if show_frame else None,
            image_size=cfg.keyframe_size,
            target_frame=k,
        )

    def _ktg(self, text, info):
        self.ktg_text = text
        self.ktg = parsing.parse_ktg(text)
        action = {
            "boxes": [list(b) for b in self.ktg.boxes],
            "points": [None if p is None else list(p) for p in self.ktg.points],
        }
        self._record(text, "ktg", self.ktg.status, action, info=info)
        self.phase = "done"
        return None

    # ---------------------------------------------------------------- outcome
    def final_action(self) -> FinalAction:
        s, size = self.sample, self.cfg.keyframe_size
        k = None if self.candidate is None else s.frame_ids[self.candidate]
        if self.ktg.no_target:
            return FinalAction(None, None, np.zeros((0, 4)), no_target=True)
        if not self.ktg.ok:
            return FinalAction(k, self.candidate, np.zeros((0, 4)), fallback=True)
        hw = (s.height, s.width)
        boxes = ann.scale_boxes(self.ktg.boxes, (size, size), hw)
        pts = np.array([[np.nan, np.nan] if p is None else p for p in self.ktg.points])
        points = ann.scale_points(pts, (size, size), hw)
        return FinalAction(k, self.candidate, boxes, points)

    def score(self, masks) -> dict[str, float]:
        s, cfg = self.sample, self.cfg
        null_term = rnull.null_reward(
            has_target=not s.is_null,
            said_no_target=self.ktg.no_target,
            num_pred_boxes=len(self.ktg.boxes),
        )
        if s.is_null and self.task != "aks":
            structure = float(
                len(self.texts) > 0
                and all(rfmt.think_answer_format_reward(t) for t in self.texts)
                and self.phase == "done"
            )
            return {"structure": structure, "null": null_term, "total": structure + null_term}
        if self.task == "aks":
            aks = self.aks_rewards[0] if self.aks_rewards else 0.0
            return {"aks": aks, "total": aks}
        aks = float(np.mean(self.aks_rewards)) if self.aks_rewards else 0.0
        scale = cfg.reward_scale / cfg.keyframe_size
        pred = None
        if self.ktg.ok:
            # an object without a valid point keeps its box; its point term scores 0
            pred = [
                rrcot.RCoTObject(
                    [v * scale for v in b], NO_POINT if p is None else [v * scale for v in p]
                )
                for b, p in zip(self.ktg.boxes, self.ktg.points)
            ]
        gt = [] if self.candidate is None else ktg_objects(s, self.candidate, cfg.reward_scale)
        ktg_format = rrcot.ktg_format_reward(self.ktg_text)
        ktg_acc = 0.0
        if pred is not None and gt:
            ktg_acc = rrcot.ktg_accuracy_reward(pred, gt, point_metric=cfg.point_metric)
        out = {"ktg_format": ktg_format, "ktg_accuracy": ktg_acc}
        if self.task == "pipeline":
            out = {"aks": aks, **out}
        if cfg.null_reward:
            out["null"] = null_term
        out["total"] = float(sum(out.values()))
        return out


class RCoTProtocol(Protocol):
    name = "rcot"
    stop_strings = ("</answer>",)

    def __init__(self, cfg: RCoTConfig | None = None):
        super().__init__(cfg or RCoTConfig())

    @property
    def max_turns(self) -> int:
        if self.cfg.task != "pipeline":
            return 1
        lam = self.cfg.max_reselect  # vdg + kfg per check (at least one) + aks + ktg
        return 1 + max(lam, 1) + lam + 1

    def ground_truth_inputs(self) -> list[str]:
        if self.cfg.task != "pipeline":
            return [f"rcot.task={self.cfg.task!r} shows a frame chosen from GT mask areas"]
        return []

    def opening(self, sample: EpisodeSample, rng: np.random.Generator) -> Opening:
        cfg = self.cfg
        if cfg.task != "pipeline":
            return self._stage_opening(sample, rng)
        n = sample.num_frames if cfg.video_frames is None else cfg.video_frames
        positions = [int(p) for p in uniform_positions(sample.num_frames, n)]
        text = VDG.format(T=sample.num_frames, N=len(positions))
        parts = frame_parts(sample, positions, cfg.video_size) + [text_part(text)]
        user = user_message(
            parts, step="vdg", sample=sample, shown=positions, image_size=cfg.video_size
        )
        return Opening(
            [self.system_message(), user],
            [sample.frame_ids[p] for p in positions],
            {"positions": positions},
        )

    def _stage_opening(self, sample: EpisodeSample, rng: np.random.Generator) -> Opening:
        """The paper's stage prompt: the keyframe at S_k, the description and the query."""
        cfg = self.cfg
        position, truth = stage_keyframe(sample, cfg.task, rng, cfg.aks_b_fraction)
        k = sample.frame_ids[position]
        desc = video_summary(sample)
        if cfg.task == "aks":
            text = AKS.format(desc=desc, query=sample.query, k=k)
        else:
            text = KTG_STAGE.format(desc=desc, query=sample.query, k=k, S=cfg.keyframe_size)
        parts = frame_parts(sample, [position], cfg.keyframe_size) + [text_part(text)]
        user = user_message(
            parts,
            step=cfg.task,
            sample=sample,
            shown=[position],
            keyframe=position,
            image_size=cfg.keyframe_size,
            target_frame=k,
        )
        return Opening([self.system_message(), user], [k], {"position": position, "truth": truth})

    def episode(self, sample: EpisodeSample, opening: Opening) -> RCoTEpisode:
        return RCoTEpisode(self, sample, opening)

    def max_reward(self, sample: EpisodeSample) -> float:
        if self.cfg.task == "aks":
            return rrcot.AKS_MAX
        if sample.is_null:
            return 2.0  # structure 1 + null term 1
        if self.cfg.task == "ktg":
            return rrcot.KTG_MAX
        return rrcot.AKS_MAX + rrcot.KTG_MAX

    # ------------------------------------------------------------------ scripted turns
    def oracle_turn(self, sample: EpisodeSample, conversation: Sequence[Message]) -> str:
        meta = last_user_meta(conversation)
        step = meta["step"]
        areas = sample.areas
        if step == "vdg":
            summary = video_summary(sample)
            return f"<think>I list the objects and events.</think><answer>{summary}</answer>"
        if step == "kfg":
            rejected = {sample.position_of(i) for i in meta.get("rejected", [])}
            seen = _frames_in_context(sample, conversation)
            options = [p for p in seen if p not in rejected] or seen
            key = ann.best_position(areas, options)
            weak = [
                p for p in options if areas[p] < self.cfg.aks_valid_fraction * areas.max(initial=0)
            ]
            if (  # half the traces first check a frame where the target is missing or small,
                not rejected  # which AKS rejects (B), then re-select
                and weak
                and areas[key] > 0
                and self.cfg.max_reselect > 1
                and _coin(sample.key, "rcot-kfg")
            ):
                empty = [p for p in weak if areas[p] == 0]
                first = (empty or weak)[len(empty or weak) // 2]
                think = (
                    f"The query asks for {json.dumps(sample.query)}{which_is(sample)}. I first "
                    f"check frame {sample.frame_ids[first]}."
                )
                answer = json.dumps({"keyframe": sample.frame_ids[first]})
                return f"<think>{think}</think><answer>{answer}</answer>"
            if areas[key] > 0:
                think = (
                    f"The query asks for {json.dumps(sample.query)}{which_is(sample)}. Among the "
                    f"frames I can choose from, the target area is largest in frame "
                    f"{sample.frame_ids[key]}."
                )
            else:
                think = (
                    f"The query asks for {json.dumps(sample.query)}. No frame I can choose from "
                    f"shows it; I propose frame {sample.frame_ids[key]}."
                )
            answer = json.dumps({"keyframe": sample.frame_ids[key]})
            return f"<think>{think}</think><answer>{answer}</answer>"
        if step == "aks":
            k = sample.position_of(meta["keyframe"])
            truth = aks_truth(sample, k, self.cfg.aks_valid_fraction)
            top = areas.max(initial=0)
            if top == 0:
                why = "Nothing in the video matches the query, so no frame is a valid keyframe."
            else:
                frac = areas[k] / top
                why = (
                    f"In frame {meta['keyframe']} the target covers {frac:.0%} of the largest "
                    f"area it has in the video."
                )
            return f"<think>{why}</think><answer>{truth}</answer>"
        # ktg
        k = sample.position_of(meta["target_frame"])
        size = int(meta["image_size"])
        objects = ktg_objects(sample, k, size)
        if not objects:
            return (
                f"<think>Frame {meta['target_frame']} shows nothing that matches "
                f"{json.dumps(sample.query)}.</think><answer>no target</answer>"
            )
        answer = [{"bbox_2d": fmt_box(o.box), "point_2d": fmt_point(o.point)} for o in objects]
        n = len(objects)
        think = (
            f"In frame {meta['target_frame']} the query {json.dumps(sample.query)} refers to "
            f"{n} object{'s' if n > 1 else ''}; I give a box and an interior point for each."
        )
        return f"<think>{think}</think><answer>{json.dumps(answer)}</answer>"

    def random_turn(self, conversation: Sequence[Message], rng: np.random.Generator) -> str:
        meta = last_user_meta(conversation)
        step = meta.get("step")
        kind = int(rng.integers(4))
        if kind == 0:
            return random_junk(rng)
        if step == "vdg":
            return "<think>Look.</think><answer>Some shapes move.</answer>"
        if step == "kfg":
            seen = [i for m in conversation for i in (m.get("meta") or {}).get("shown", [])]
            k = int(rng.choice(seen)) if seen else int(rng.integers(0, 30))
            return f'<think>Guess.</think><answer>{{"keyframe": {k}}}</answer>'
        if step == "aks":
            return f"<think>Guess.</think><answer>{'AB'[int(rng.integers(2))]}</answer>"
        size = int(meta.get("image_size", 140))
        items = []
        for _ in range(int(rng.integers(1, 3))):
            b = sorted_box(rng, size)
            items.append({"bbox_2d": fmt_box(b), "point_2d": fmt_point(rng.uniform(0, size, 2))})
        text = f"<think>Guess.</think><answer>{json.dumps(items)}</answer>"
        return "<think>?</think><answer>no target</answer>" if kind == 1 else text


def _frames_in_context(sample: EpisodeSample, conversation: Sequence[Message]) -> list[int]:
    """Positions of every frame shown so far in the conversation (absolute ids in meta)."""
    seen: list[int] = []
    for msg in conversation:
        for i in (msg.get("meta") or {}).get("shown", []):
            p = sample.position_of(i)
            if p is not None and p not in seen:
                seen.append(p)
    return sorted(seen)


def video_summary(sample: EpisodeSample) -> str:
    """A factual description from the synthetic scene graph (objects, then events); only
    the frame count when the sample has no graph."""
    graph = sample.extras.get("graph")
    text = f"The video has {sample.num_frames} frames."
    if not graph:
        return text
    names = []
    for obj in graph["objects"]:
        t = next((i for i, v in enumerate(obj["in_frame"]) if v), None)
        if t is not None:
            names.append(f"a {obj['size'][t]} {obj['colour'][t]} {obj['shape']}")
    text += f" It shows {len(names)} shapes: {', '.join(names)}."
    events = []
    for e in graph["events"][:8]:
        t = min(e["frame"], sample.num_frames - 1)
        objs = [
            f"{graph['objects'][i]['colour'][t]} {graph['objects'][i]['shape']}"
            for i in e["objects"]
        ]
        kind = e["type"].replace("_", " ")
        events.append(f"{kind} of the {' and the '.join(objs)} at frame {e['frame']}")
    if events:
        text += " Events: " + "; ".join(events) + "."
    return text
