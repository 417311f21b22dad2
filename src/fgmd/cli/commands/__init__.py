"""One module per ``fgmd`` subcommand; each defines ``NAME``, ``HELP``, ``add_arguments(parser)`` and ``run(args) -> int``."""
