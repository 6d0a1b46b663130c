"""``python -m jaxlme``: the jaxlme command line."""

from .cli import run

run()
