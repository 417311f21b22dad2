"""``fgmd config``: print the resolved config, write a commented template, list every key."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from fgmd.cli.common import add_overrides

NAME = "config"
HELP = "show the resolved config (show), write a commented template of every key (template), list the keys (keys)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "action",
        choices=("show", "template", "keys"),
        help="show: the config after defaults and overrides; template: every key with its "
        "default and meaning; keys: the markdown table of docs/CONFIG.md",
    )
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--config", help="show: a YAML config file (default: the built-in defaults)")
    source.add_argument("--checkpoint", help="show: the config stored in a checkpoint (best.pt / last.pt)")
    parser.add_argument(
        "--format",
        default="folder",
        choices=("folder", "csv", "mrssid", "vais"),
        help="template: the data format whose options to include (default folder)",
    )
    parser.add_argument("--out", help="template: write to this file (it must not exist) instead of stdout")
    add_overrides(parser)


def run(args: argparse.Namespace) -> int:
    import yaml

    from fgmd.cli.config_keys import keys_markdown, template
    from fgmd.config import Config, load_config

    if args.action == "keys":
        sys.stdout.write(keys_markdown())
        return 0
    if args.action == "template":
        text = template(args.format)
        if args.out:
            from fgmd.runtime.files import write_atomic

            out = Path(args.out)
            if out.exists():
                raise FileExistsError(f"{out} exists; choose another file name")
            write_atomic(out, text)
            print(f"wrote {out}: edit data.root and what else you need, then fgmd train --config {out}")
        else:
            sys.stdout.write(text)
        return 0
    if args.checkpoint:
        from fgmd.runtime.checkpoint import load_checkpoint

        config = Config.from_run(load_checkpoint(args.checkpoint)["config"]).with_overrides(list(args.overrides))
    else:
        config = load_config(args.config, args.overrides)
    sys.stdout.write(yaml.safe_dump(config.to_dict(), sort_keys=False))
    return 0
