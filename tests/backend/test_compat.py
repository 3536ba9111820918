"""backend/compat.py: the private APIs plan uses exist in the installed versions, and a version
outside the tested range is one line naming the range (pyproject.toml bounds the same)."""
from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

from backend import compat
from planner.errors import PlannerError

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("module,name", [("accelerate.commands.launch", "_validate_launch_command"),
                                         ("lm_eval.tasks._yaml_loader", "load_yaml")])
def test_the_private_functions_exist_in_the_installed_versions(module, name):
    assert callable(getattr(importlib.import_module(module), name))


@pytest.mark.parametrize("package", sorted(compat.TESTED))
def test_installed_versions_are_in_the_tested_range(package):
    compat.check_version(package, "x")


def test_an_untested_version_is_one_line_with_the_range(monkeypatch):
    monkeypatch.setitem(compat.TESTED, "accelerate", ((0, 1), (0, 2)))
    with pytest.raises(PlannerError) as err:
        compat.check_version("accelerate", "checking an accelerate config")
    assert "tested on accelerate>=0.1,<0.2" in str(err.value) and "\n" not in str(err.value)


def test_a_missing_private_attribute_is_a_plain_error():
    with pytest.raises(PlannerError, match="no longer has ModelTrainer._latest_training_job"):
        compat.latest_training_job(object())


def test_pyproject_bounds_match_the_tested_ranges():
    text = (ROOT / "pyproject.toml").read_text()
    for package, (low, high) in compat.TESTED.items():
        bound = f"{package}(\\[\\w+\\])?>={re.escape('.'.join(map(str, low)))},<{re.escape('.'.join(map(str, high)))}"
        assert re.search(bound, text), f"pyproject.toml should bound {package} to {low}..{high}"


def test_no_private_api_of_a_dependency_outside_compat():
    pattern = re.compile(r"_validate_launch_command|_yaml_loader|_latest_training_job|\._fingerprint")
    for path in list((ROOT / "backend").rglob("*.py")) + list((ROOT / "planner").rglob("*.py")):
        if path.name == "compat.py" or "__pycache__" in path.parts:
            continue
        code = "\n".join(line for line in path.read_text().splitlines() if not line.lstrip().startswith("#"))
        hits = [m.group(0) for m in pattern.finditer(code.split('"""', 2)[-1])]
        assert not hits, f"{path.relative_to(ROOT)} uses {hits}: move it into backend/compat.py"
