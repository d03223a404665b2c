"""The `jaxseg` command line.

Each subcommand lives in its own module, imported only when that subcommand runs, so
`jaxseg --help` is instant and a broken optional dependency (torch, sam2, tfds) only
affects the commands that need it. A command module defines:

    def add_arguments(parser: argparse.ArgumentParser) -> None: ...
    def run(args: argparse.Namespace) -> int | None: ...

and is registered in `COMMANDS` below (name -> (module, one-line help)).
"""

from __future__ import annotations

import argparse
import importlib
import sys

COMMANDS: dict[str, tuple[str, str]] = {
    "info": ("jaxseg.commands.info", "versions, devices and optional components"),
    "demo": ("jaxseg.commands.demo", "end-to-end demo on the embedded default"),
    "bench": ("jaxseg.commands.bench", "list and run benchmarks (jaxseg vs reference, same run)"),
    "train": (
        "jaxseg.commands.train",
        "SFT + GRPO training and evaluation for a config (resumable)",
    ),
    "export": ("jaxseg.commands.export", "export a trained policy as an HF checkpoint"),
    "sweep": ("jaxseg.commands.sweep", "expand a config's sweep into runs; print or run them"),
    "eval": ("jaxseg.commands.eval", "score predicted masks on a benchmark (J, F, J&F, R)"),
    "data": (
        "jaxseg.commands.data",
        "dataset tools: synth (generate), show (example page), cot (traces), tokenizer",
    ),
    "episodes": ("jaxseg.commands.episodes", "run a protocol with a scripted policy; rewards"),
    "segment": ("jaxseg.commands.segment", "segment one video for a query with a trained run"),
    "view": ("jaxseg.commands.view", "HTML trace viewer: one self-contained page per run"),
    "seg": ("jaxseg.commands.seg", "o3 [SEG] route: cold start, GRPO calibration on vs off"),
    "plan": (
        "jaxseg.commands.plan",
        "per-device memory and step time on a TPU slice / GPU cluster",
    ),
}


def _top_parser() -> argparse.ArgumentParser:
    lines = [f"  {name:<10} {help_}" for name, (_, help_) in COMMANDS.items()]
    parser = argparse.ArgumentParser(
        prog="jaxseg",
        description="Reasoning video object segmentation with RL-trained VLMs, in JAX.",
        epilog="commands:\n"
        + "\n".join(lines)
        + "\n\nRun `jaxseg COMMAND --help` for its options.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("command", nargs="?", choices=sorted(COMMANDS), metavar="COMMAND")
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    top = _top_parser()
    if not argv or argv[0] not in COMMANDS:
        args = top.parse_args(argv)
        if args.version:
            from jaxseg import __version__

            print(__version__)
            return 0
        top.print_help()
        return 0 if not argv else 2
    name, rest = argv[0], argv[1:]
    module_name, help_ = COMMANDS[name]
    module = importlib.import_module(module_name)
    parser = argparse.ArgumentParser(prog=f"jaxseg {name}", description=help_)
    module.add_arguments(parser)
    args = parser.parse_args(rest)
    return int(module.run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
