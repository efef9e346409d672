"""DVC stage entry points: one module per stage, each a thin call to the matching `alap` verb."""

import sys


def run(verb: str) -> None:
    """Run ``alap <verb> <stage args>`` and exit with its status, so DVC sees failures."""
    from alap.cli import main

    sys.exit(main([verb, *sys.argv[1:]]))
