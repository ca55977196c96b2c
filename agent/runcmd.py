"""`syncwatch run`: the daemon."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import click

from agent.cli import config_option, load_config_or_exit

log = logging.getLogger(__name__)


@click.command("run")
@config_option
def run_command(config_path: Path) -> None:
    """Probe every account on its schedule; serve /metrics and the banner API.

    SIGTERM or Ctrl-C finishes the probes in flight, saves state and exits; SIGHUP (or
    POST /-/reload) reloads the config, keeping the running one if the new one is bad.
    """
    config = load_config_or_exit(config_path)
    from agent.app import serve

    raise SystemExit(asyncio.run(serve(config_path, config=config)))
