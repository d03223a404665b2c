"""`jaxseg plan`: per-device memory and step time of a config on a TPU slice or GPU cluster.

    jaxseg plan --config qwen2_5_vl_3b_grpo --topology v5p-32
    jaxseg plan --config qwen2_5_vl_3b_grpo:remat=full --topology 8xH100 --set grpo.micro_batch=8
    jaxseg plan --config qwen2_5_vl_3b_grpo --topology v5p-32 --measure   # XLA's own numbers

Prints every quantity with the arithmetic behind it (jaxseg/parallel/planner.py), then the
same plan under each remat policy in one line each, and exits 1 when the config (with its own
`model.remat`) does not fit, so a launch script can refuse it; a bad request (unknown
topology, config or field) is `jaxseg: error: ...` with exit 2.
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, help="config file or name[:arg knobs]")
    parser.add_argument(
        "--topology",
        required=True,
        help="slice or cluster: v5p-32, v5litepod-16, v6e-8, v4-16, 8xH100, 16xH200, 8xA100",
    )
    parser.add_argument(
        "--measure",
        action="store_true",
        help="decoder activations from XLA's buffer assignment of the real model on this "
        "machine's backend (run on the TPU/GPU host for its numbers; CPU: remat none only)",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config field (repeatable), e.g. --set grpo.group_size=4",
    )


def run(args: argparse.Namespace) -> int:
    from jaxseg.config import ConfigError, load_config
    from jaxseg.parallel.planner import format_plan, format_remat_options, plan, remat_options
    from jaxseg.parallel.topology import parse_topology

    config = load_config(args.config, args.set)
    topology = parse_topology(args.topology)
    try:
        result = plan(config, topology, measure=args.measure)
        options = remat_options(config, topology)
    except KeyError as err:  # a config without a block the planner needs
        raise ConfigError(f"{args.config}: the planner needs config field {err}") from err
    print(format_plan(result))
    print()
    print(format_remat_options(options))
    return 0 if result.fits else 1
