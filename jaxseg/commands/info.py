"""`jaxseg info`: what is installed and which devices JAX sees."""

from __future__ import annotations

import argparse
import importlib.metadata as md

_PACKAGES = [
    "jax",
    "jaxlib",
    "flax",
    "optax",
    "orbax-checkpoint",
    "transformers",
    "safetensors",
    "grain",
    "ml-collections",
    "torch",
    "sam2",
    "tensorflow-datasets",
]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--no-devices", action="store_true", help="do not initialise JAX")


def run(args: argparse.Namespace) -> int:
    for name in _PACKAGES:
        try:
            version = md.version(name)
        except md.PackageNotFoundError:
            version = "not installed"
        print(f"{name:<22} {version}")
    if not args.no_devices:
        import jax

        print(f"{'backend':<22} {jax.default_backend()}")
        print(f"{'devices':<22} {jax.devices()}")
    return 0
