"""Argument helpers shared by several subcommands."""

from __future__ import annotations

import argparse

EPILOG = "Overrides are dotted config keys with YAML values, e.g. model.bits=64 train.epochs=20."


def add_overrides(parser: argparse.ArgumentParser) -> None:
    """Positional ``KEY=VALUE`` config overrides."""
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides, e.g. model.bits=64")


def add_quiet(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
