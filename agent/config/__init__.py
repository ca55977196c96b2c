"""Settings: typed dataclasses (`types`) built and validated by `load`."""

from agent.config.types import *  # noqa: F403
