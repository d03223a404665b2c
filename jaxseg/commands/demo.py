"""`jaxseg demo`: the end-to-end demo on the embedded default.

The full pipeline (synthetic benchmark -> tiny Qwen2.5-VL policy -> SFT -> GRPO -> eval ->
report) is assembled here as its parts land; see README "Status". Until then it runs every
real stage that exists, in order, and says which stages are not built yet.
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="runs/demo", help="output directory")
    parser.add_argument("--seed", type=int, default=0)


def run(args: argparse.Namespace) -> int:
    raise SystemExit("jaxseg demo: no stage is built yet (see README 'Status').")
