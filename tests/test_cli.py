"""The console entry point lists its commands and each command's help works."""

import subprocess
import sys

from jaxseg import cli


def test_help_lists_every_command(capsys):
    assert cli.main([]) == 0
    out = capsys.readouterr().out
    for name in cli.COMMANDS:
        assert name in out


def test_each_command_builds_its_parser():
    for name in cli.COMMANDS:
        proc = subprocess.run(
            [sys.executable, "-m", "jaxseg.cli", name, "--help"], capture_output=True, text=True
        )
        assert proc.returncode == 0, proc.stderr
        assert f"jaxseg {name}" in proc.stdout


def test_unknown_command_fails():
    proc = subprocess.run(
        [sys.executable, "-m", "jaxseg.cli", "no-such-command"], capture_output=True, text=True
    )
    assert proc.returncode != 0
