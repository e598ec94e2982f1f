"""``python -m sweepspec``."""

from .main import entry

entry()
