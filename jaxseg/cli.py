"""The `jaxseg` command line.

Each subcommand lives in its own module, imported only when that subcommand runs, so
`jaxseg --help` is instant and a broken optional dependency (torch, sam2, tfds) only
affects the commands that need it. A command module defines:

    def add_arguments(parser: argparse.ArgumentParser) -> None: ...
    def run(args: argparse.Namespace) -> int | None: ...

and is registered in `COMMANDS` below (name -> (module, one-line help)).

Errors a user can fix (a bad config key, an unknown protocol, a malformed dataset file, a
missing run directory) end as one line ``jaxseg: error: ...`` on stderr with exit code 2,
like argparse's own; ``JAXSEG_TRACEBACK=1`` re-raises them with the traceback instead.
"""

from __future__ import annotations

import argparse
import importlib
import os
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
    "base": (
        "jaxseg.commands.base",
        "train (resumable) and ship the grounded tiny Qwen3-VL base (make base)",
    ),
    "sweep": ("jaxseg.commands.sweep", "expand a config's sweep into runs; print or run them"),
    "ladder": (
        "jaxseg.commands.ladder",
        "untrained < SFT < SFT+GRPO for several protocols and seeds, held-out and hard",
    ),
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


class _HelpFormatter(argparse.HelpFormatter):
    """Shows an option's default when it says something (not None/False/[], not required,
    not already in the help text)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if (
            "default" in text
            or action.required
            or default is None
            or default is False
            or (isinstance(default, list) and not default)
            or default is argparse.SUPPRESS
        ):
            return text
        return f"{text} (default: %(default)s)"


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


def _user_errors() -> tuple[type[BaseException], ...]:
    """Exception types that mean "the command line or its inputs are wrong", not a bug."""
    from jaxseg.config import ConfigError
    from jaxseg.data.readers.errors import DataFormatError

    errors: list[type[BaseException]] = [
        ConfigError,
        DataFormatError,
        FileNotFoundError,
        FileExistsError,
        NotADirectoryError,
    ]
    for module, name in (
        ("jaxseg.parallel.planner", "PlanError"),
        ("jaxseg.parallel.topology", "TopologyError"),
        ("jaxseg.parallel.mesh", "MeshError"),
        ("jaxseg.train.checkpoint", "CheckpointMismatch"),
    ):
        try:
            errors.append(getattr(importlib.import_module(module), name))
        except (ImportError, AttributeError):  # pragma: no cover - optional pieces
            pass
    return tuple(errors)


def _unknown_protocol(err: BaseException) -> str | None:
    """make_protocol's errors for a name or field it does not know (a KeyError, a TypeError),
    with a "did you mean"; None for any other KeyError/TypeError (a bug: re-raised)."""
    import dataclasses

    from jaxseg.config import did_you_mean
    from jaxseg.protocols.registry import PROTOCOLS

    text = str(err.args[0]) if err.args else ""
    if isinstance(err, KeyError) and text.startswith("unknown protocol"):
        name = text.split("'")[1] if "'" in text else ""
        return f"{text}{did_you_mean(name, PROTOCOLS)}"
    if isinstance(err, TypeError) and text.startswith("protocol ") and "unknown config" in text:
        name = text.split("'")[1]
        fields = [f.name for f in dataclasses.fields(PROTOCOLS[name][1])]
        bad = text.split("[", 1)[1].split("]", 1)[0].replace("'", "").split(", ")
        hints = "".join(did_you_mean(b, fields) for b in bad)
        return f"protocol {name!r}: unknown config field(s) {bad}{hints}; valid: {sorted(fields)}"
    return None


def error(message: str) -> int:
    """Prints ``jaxseg: error: message`` on stderr; returns the exit code 2."""
    print(f"jaxseg: error: {message}", file=sys.stderr)
    return 2


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    top = _top_parser()
    if argv and argv[0] not in COMMANDS and not argv[0].startswith("-"):
        from jaxseg.config import did_you_mean

        top.print_usage(sys.stderr)
        hint = did_you_mean(argv[0], COMMANDS)
        return error(f"unknown command {argv[0]!r}{hint}; choose from {', '.join(COMMANDS)}")
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
    parser = argparse.ArgumentParser(
        prog=f"jaxseg {name}",
        description=help_,
        formatter_class=_HelpFormatter,
    )
    module.add_arguments(parser)
    for action in parser._actions:  # options without help still show their default
        default = action.default
        shown = default is not None and default is not False and default != []
        if action.help is None and action.option_strings and shown:
            action.help = "default: %(default)s"
    args = parser.parse_args(rest)
    from jaxseg.train.progress import setup_logging

    setup_logging()  # level + timestamp lines; processes other than 0: warnings only
    if os.environ.get("JAXSEG_TRACEBACK"):
        return int(module.run(args) or 0)
    try:
        return int(module.run(args) or 0)
    except (KeyError, TypeError) as err:
        message = _unknown_protocol(err)
        if message is None:
            raise
        return error(message)
    except _user_errors() as err:
        return error(str(err))


if __name__ == "__main__":
    sys.exit(main())
