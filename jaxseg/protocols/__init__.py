"""The four seeds' reasoning protocols as episode programs, chosen by config name.

  protocol = make_protocol("o3", max_turns=3)
  traces = run_episodes(protocol, policy, samples, backend=make_backend("classical"),
                        group_size=8)
  rewards = [t.total for t in traces]              # sample-major, G per sample

policy        the `Policy` interface (batched multi-turn chat over HF-style messages)
sample        `EpisodeSample`: frames + per-object GT masks (from readers or synth)
episode       runner, `Episode` / `Protocol` bases, `EpisodeTrace`
parsing       never-raising parsers of every protocol's output, with fallbacks
observation   frames as images after their absolute indices
annotations   GT boxes / points / coordinate maps
veason        Veason-R1: N frames -> keyframe + boxes (one turn)
rcot          RCoT-Seg: description -> keyframe -> A/B self-check loop -> boxes + points
o3            VideoSEG-O3: <select> turns fetching frames -> VTG + boxes (text route)
revseg        ReVSeg: keyframe + explicit description -> box on the keyframe
scripted      OraclePolicy (GT-derived answers), RandomPolicy
registry      name -> protocol
"""

from jaxseg.protocols.episode import EpisodeTrace, run_episodes
from jaxseg.protocols.policy import Policy, PolicyState
from jaxseg.protocols.registry import PROTOCOLS, make_protocol
from jaxseg.protocols.sample import EpisodeSample, from_record, from_synth
from jaxseg.protocols.scripted import OraclePolicy, RandomPolicy

__all__ = [
    "PROTOCOLS",
    "EpisodeSample",
    "EpisodeTrace",
    "OraclePolicy",
    "Policy",
    "PolicyState",
    "RandomPolicy",
    "from_record",
    "from_synth",
    "make_protocol",
    "run_episodes",
]
