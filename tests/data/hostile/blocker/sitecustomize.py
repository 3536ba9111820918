"""The light install, for real: put this folder first on PYTHONPATH and the modules named in
PLAN_BLOCK_MODULES (comma list) cannot be imported, as if `pip install .` had left them out.

A meta-path finder answers find_spec with ModuleNotFoundError's cause (None: not found), so
importlib.util.find_spec returns None and `import torch` raises ModuleNotFoundError.
"""
import os
import sys

BLOCKED = {m for m in os.environ.get("PLAN_BLOCK_MODULES", "").split(",") if m}


class _Blocker:
    @staticmethod
    def find_spec(name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named '{name}'", name=name)
        return None


if BLOCKED:
    sys.meta_path.insert(0, _Blocker())
