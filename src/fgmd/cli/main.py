"""``fgmd`` command line: a thin layer over the Python API; one module per subcommand."""

from __future__ import annotations

import argparse
import sys

from fgmd.cli.commands import (
    ablate,
    check_data,
    demo,
    eval,
    export,
    generate_demo_data,
    index,
    info,
    prepare,
    report,
    search,
    sweep,
    train,
)

COMMANDS = [demo, train, eval, report, index, search, export, sweep, ablate, info, check_data, prepare, generate_demo_data]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fgmd", description="FG-MD cross-modal hashing retrieval.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.add_arguments(sub.add_parser(command.NAME, help=command.HELP, description=command.HELP))
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from fgmd.allocator import tune_cpu_allocator
    from fgmd.errors import USER_ERRORS

    tune_cpu_allocator()  # large CPU tensors: reuse freed heap blocks instead of re-mapping them

    command = next(c for c in COMMANDS if c.NAME == args.command)
    try:
        return command.run(args)
    except USER_ERRORS as error:
        print(f"fgmd {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
