"""Argument helpers shared by several subcommands."""

from __future__ import annotations

import argparse

EPILOG = "Overrides are dotted config keys with YAML values, e.g. model.bits=64 train.epochs=20."


def add_overrides(parser: argparse.ArgumentParser) -> None:
    """Positional ``KEY=VALUE`` config overrides."""
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides, e.g. model.bits=64")


def add_set_overrides(parser: argparse.ArgumentParser) -> None:
    """Repeatable ``--set KEY=VALUE`` config overrides, for commands whose positionals are files."""
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="config override, e.g. --set data.root=/data/elsewhere (repeatable)",
    )


def add_quiet(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def split_trailing_overrides(values: list[str] | None, overrides: list[str]) -> tuple[list[str] | None, list[str]]:
    """Separate ``KEY=VALUE`` overrides swallowed by a ``nargs="+"`` option.

    ``fgmd sweep --bits 16 32 model.fdfsp=false`` parses ``model.fdfsp=false`` as a bit
    length; every item with ``=`` is moved (in order) to the front of the overrides.
    """
    if values is None:
        return None, overrides
    kept = [v for v in values if "=" not in v]
    moved = [v for v in values if "=" in v]
    return kept, moved + list(overrides)


def add_experiment_options(parser: argparse.ArgumentParser) -> None:
    """The options every multi-run experiment (sweep, ablate) shares, after its own."""
    parser.add_argument("--no-report", action="store_true", help="skip the visual report of each run")
    add_quiet(parser)
    add_overrides(parser)


def print_run(label: str, summary) -> None:
    """One finished run of an experiment: its validation-selected mean mAP, both tie treatments."""
    mean = summary.selected["mean"]
    print(
        f"{label}: mean mAP {mean['map_tie']:.4f} tie-aware, {mean['map']:.4f} ties by index "
        f"(selected on validation) in {summary.run_dir}",
        flush=True,
    )


def print_tables(result) -> None:
    """An experiment's markdown table and where it and the CSV were written."""
    print()
    print(result.markdown.read_text())
    print(f"wrote {result.markdown} and {result.csv}")
