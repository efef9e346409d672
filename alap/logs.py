"""Logging set-up shared by the CLI, the DVC stages and the flows: readable, timestamped, one format."""

from __future__ import annotations

import logging
import os


def setup_logging(level: str | None = None) -> None:
    """Log to stderr through rich (stdout stays for results, e.g. ``alap compress``'s table);
    ``ALAP_LOG_LEVEL`` (default INFO) picks the level."""
    from rich.console import Console
    from rich.logging import RichHandler

    logging.basicConfig(
        level=(level or os.environ.get("ALAP_LOG_LEVEL", "INFO")).upper(),
        format="%(name)s: %(message)s",
        datefmt="[%X]",
        handlers=[RichHandler(console=Console(stderr=True), show_path=False, rich_tracebacks=False)],
        force=True,
    )
