"""Hypothesis runs derandomized by default, so the examples CI tries are the ones tried here: a gate
that passes on one machine and fails on a fresh clone (a sampled search found `--tokens=1,5` only in
CI) is no gate. ``HYPOTHESIS_PROFILE=explore`` searches with fresh randomness and the example
database, for hunting new failures locally."""
import os

from hypothesis import settings

settings.register_profile("ci", derandomize=True, database=None, print_blob=True)
settings.register_profile("explore", derandomize=False, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
