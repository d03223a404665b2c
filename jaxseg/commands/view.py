"""`jaxseg view`: the HTML trace viewer, one self-contained page per run.

    jaxseg view runs/demo                      # -> runs/demo/view.html
    jaxseg view runs/demo --stage grpo --out traces.html --max-episodes 50

Per episode of each evaluated stage: every turn's text, the frames the policy was shown, its
boxes/points/keyframe, the masks (ground truth | prediction) and each reward term
(jaxseg.viz.viewer). Pictures are inlined, so the page opens offline and can be sent on.
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", metavar="RUN", help="run directory (jaxseg train / demo)")
    parser.add_argument("--out", default=None, help="page to write (default RUN/view.html)")
    parser.add_argument(
        "--stage",
        action="append",
        default=None,
        help="evaluated stage to show (init, sft, grpo; repeatable; default: every one)",
    )
    parser.add_argument(
        "--data", default=None, help="the run's benchmark root (default: data.root of the run)"
    )
    parser.add_argument("--max-episodes", type=int, default=20, help="per stage (default 20)")
    parser.add_argument(
        "--max-frames", type=int, default=16, help="frames in each mask GIF (default 16)"
    )


def run(args: argparse.Namespace) -> int:
    from jaxseg.viz.viewer import write_page

    try:
        path = write_page(
            args.run,
            args.out,
            stages=args.stage,
            data_root=args.data,
            max_episodes=args.max_episodes,
            max_frames=args.max_frames,
        )
    except FileNotFoundError as err:
        raise SystemExit(f"jaxseg view: {err}") from None
    print(path)
    return 0
