"""``fgmd sweep``: train and evaluate one run per code length; write a table."""

from __future__ import annotations

import argparse

from fgmd.cli.common import EPILOG, add_experiment_options, print_run, print_tables

NAME = "sweep"
HELP = "train + evaluate one run per bit length (out_dir/bits_<K>) and write sweep.md / sweep.csv"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = EPILOG
    parser.add_argument("--config", help="YAML config file (defaults apply to missing keys)")
    parser.add_argument("--bits", nargs="+", default=None, metavar="K", help="code lengths (default 16 24 32 48 64)")
    add_experiment_options(parser)


def run(args: argparse.Namespace) -> int:
    from fgmd.config import ConfigError, load_config
    from fgmd.experiments.sweep import DEFAULT_BITS, run_sweep

    values = args.bits
    config = load_config(args.config, args.overrides)
    try:
        bits = [int(v) for v in values] if values else list(DEFAULT_BITS)
    except ValueError:
        raise ConfigError(f"--bits takes integers, got {' '.join(values or [])}") from None

    result = run_sweep(
        config,
        bits,
        progress=not args.quiet,
        report=not args.no_report,
        on_run=lambda k, summary: print_run(f"bits {k}", summary),
    )
    print_tables(result)
    return 0
