"""Subcommands of the `jaxseg` CLI, one module each (see `jaxseg.cli`)."""
