"""The one exception type the planner raises for problems with what the user asked for.

The CLI turns it into a single line on stderr and a non-zero exit; anything else is a bug
and keeps its traceback.
"""


class PlannerError(ValueError):
    """Bad input: unknown model, malformed config, impossible job. The message is the whole story."""
