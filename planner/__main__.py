"""``python -m planner`` = the ``plan`` command."""
from .cli import run

run()
