"""Argument helpers shared by several subcommands."""

from __future__ import annotations

import argparse
import re

EPILOG = (
    "Overrides are dotted config keys with YAML values, e.g. model.bits=64 train.epochs=20; "
    "they are accepted anywhere on the line (also as --set KEY=VALUE)."
)

_OVERRIDE = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)((?:\.[A-Za-z0-9_]+)*)=")


def add_overrides(parser: argparse.ArgumentParser) -> None:
    """Declare that the command takes config overrides (``args.overrides``, a list of
    ``KEY=VALUE``). ``fgmd.cli.main`` collects them from anywhere on the command line with
    :func:`extract_overrides`, so argparse itself only shows them in the help."""
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="config override, e.g. model.bits=64 or data.root=/data/x; repeatable, and "
        "accepted without --set anywhere on the line",
    )


def is_override(token: str, sections: set[str]) -> bool:
    """Whether ``token`` is a ``KEY=VALUE`` override: a dotted key (``data.root=...``) or a
    top-level config key (``seed=1``, ``out_dir=runs/x``)."""
    match = _OVERRIDE.match(token)
    if match is None:
        return False
    return bool(match.group(2)) or match.group(1) in sections


def extract_overrides(argv: list[str], sections: set[str]) -> tuple[list[str], list[str]]:
    """``(argv without overrides, the overrides in order)``: every ``KEY=VALUE`` token
    (see :func:`is_override`) and every ``--set KEY=VALUE`` / ``--set=KEY=VALUE``, wherever
    they are; tokens after ``--`` are left alone."""
    rest: list[str] = []
    found: list[str] = []
    tokens = iter(argv)
    for token in tokens:
        if token == "--":
            rest.append(token)
            rest.extend(tokens)
            break
        if token == "--set":
            value = next(tokens, None)
            if value is None:
                rest.append(token)  # argparse reports the missing value
                break
            found.append(value)
        elif token.startswith("--set="):
            found.append(token[len("--set=") :])
        elif is_override(token, sections):
            found.append(token)
        else:
            rest.append(token)
    return rest, found


def at_least(minimum: int):
    """An argparse ``type`` for integers ``>= minimum`` (a smaller value is a usage error, exit 2)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        return value

    parse.__name__ = f"integer >= {minimum}"
    return parse


def add_quiet(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


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
