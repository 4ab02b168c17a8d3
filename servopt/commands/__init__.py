"""CLI subcommands, one module each, discovered by ``servopt.cli``; shared helpers live in ``_common``."""
