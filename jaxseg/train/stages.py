"""GRPO as one run or as consecutive task runs (RCoT-Seg trains AKS, then KTG: two GRPO runs of
500 and 1000 steps, RCoT-Seg arXiv 2605.07334 (training)).

Config (read by `Experiment.grpo`):

    grpo.stages = "aks,ktg"              # "" (default): one run of protocol.config in grpo/
    grpo.stage.aks = dict(steps=500, protocol=dict(task="aks"), single_multi=(3, 1))
    grpo.stage.ktg = dict(steps=1000, protocol=dict(task="ktg"), single_multi=(3, 1))

Each stage's entries override the `grpo` block (steps, max_new_tokens, ...), `protocol`
overrides `protocol.config`, and `single_multi` draws its prompts single : multi-target at that
ratio (jaxseg.train.mix; absent = the plain shuffled order). Stage i starts from stage i-1's
checkpoint (the first from SFT), the KL reference is the SFT policy in every stage, earlier
stages write grpo_<name>/ and the last writes grpo/ (what eval/export/segment load).
"""

from __future__ import annotations

import dataclasses
import functools
import zlib
from typing import Any

from ml_collections import ConfigDict

from jaxseg.data.pipeline import ShuffledSteps
from jaxseg.protocols.registry import make_protocol

from .mix import MixedSteps

STAGE_KEYS = ("protocol", "single_multi")


def advantage_of(grpo: ConfigDict):
    """The group-advantage function of a grpo block: `advantage` (grpo | drgrpo | rloo) and,
    for grpo, `advantage_eps` in (r - mean) / (std + eps) when set (VideoSEG-O3's TRL uses
    1e-4; the library default is 1e-6)."""
    from jaxseg.rl.registry import ADVANTAGE_ESTIMATORS as fns

    if grpo.advantage not in fns:
        raise ValueError(f"grpo.advantage must be one of {sorted(fns)}: {grpo.advantage!r}")
    fn = fns[grpo.advantage]
    eps = grpo.get("advantage_eps")
    if eps is not None:
        if grpo.advantage != "grpo":
            raise ValueError("grpo.advantage_eps applies to advantage='grpo' only")
        fn = functools.partial(fn, eps=float(eps))
    return fn


@dataclasses.dataclass
class GrpoStage:
    """One GRPO run: its directory, the run it starts from, its grpo block and protocol."""

    name: str
    dir: str
    start_from: str
    config: ConfigDict
    protocol: Any
    single_multi: tuple[float, float] | None = None

    def advantage(self):
        return advantage_of(self.config)

    def order(self, source, size: int, seed: int):
        """This stage's prompt order, step -> positions of `source` (a grain Map for
        jaxseg.data.pipeline.step_feed); stages of one run draw different prompts (RCoT-Seg's
        GRPO-AKS-4k and GRPO-KTG-6k are different sets)."""
        if self.name != "grpo":  # a named stage: its own stream
            seed = int(seed) * 1_000_003 + zlib.crc32(self.name.encode()) % 1_000_003
        if self.single_multi is None:
            return ShuffledSteps(len(source), size, int(seed))
        return MixedSteps.of(source, size, seed, self.single_multi)


def stage_names(grpo: ConfigDict) -> list[str]:
    raw = grpo.get("stages", "") or ""
    names = [n.strip() for n in (raw.split(",") if isinstance(raw, str) else raw) if n.strip()]
    if len(set(names)) != len(names):
        raise ValueError(f"grpo.stages names a stage twice: {raw!r}")
    return names


def grpo_stages(exp) -> list[GrpoStage]:
    """The runs `exp.grpo()` makes, in order."""
    config = exp.config
    names = stage_names(config.grpo)
    if not names:
        return [GrpoStage("grpo", "grpo", "sft", config.grpo, exp.protocol)]
    table = config.grpo.get("stage") or {}
    out: list[GrpoStage] = []
    for i, name in enumerate(names):
        if name not in table:
            raise KeyError(f"grpo.stages names {name!r} but grpo.stage has no such entry")
        spec = dict(table[name])
        grpo = ConfigDict(config.grpo.to_dict())
        for key, value in spec.items():
            if key in STAGE_KEYS:
                continue
            if key not in grpo:
                raise KeyError(f"grpo.stage.{name}.{key}: not a grpo field")
            grpo[key] = value
        protocol = make_protocol(
            config.protocol.name,
            **{**dict(config.protocol.config), **dict(spec.get("protocol") or {})},
        )
        mix = spec.get("single_multi")
        last = i == len(names) - 1
        out.append(
            GrpoStage(
                name=name,
                dir="grpo" if last else f"grpo_{name}",
                start_from=out[-1].dir if out else "sft",
                config=grpo,
                protocol=protocol,
                single_multi=None if mix is None else tuple(float(v) for v in mix),
            )
        )
    return out


def sft_task_protocols(config: ConfigDict, count: int) -> list[tuple[Any, int]]:
    """`sft.tasks` = "task:weight,..." (e.g. RCoT-Seg's SFT-28k, 20k KTG + 8k AKS: "aks:2,ktg:5";
    "pipeline" is the protocol's whole episode) -> (protocol with that task, examples) pairs
    splitting `count` by weight."""
    specs = []
    for item in str(config.sft.tasks).split(","):
        name, _, weight = item.strip().partition(":")
        specs.append((name.strip(), float(weight) if weight else 1.0))
    total = sum(w for _, w in specs)
    if not specs or total <= 0:
        raise ValueError(f"sft.tasks = {config.sft.tasks!r}: want 'task:weight,...'")
    out, given = [], 0
    for i, (task, w) in enumerate(specs):
        n = count - given if i == len(specs) - 1 else int(round(count * w / total))
        given += n
        base = dict(config.protocol.config)
        out.append((make_protocol(config.protocol.name, **{**base, "task": task}), n))
    return out
