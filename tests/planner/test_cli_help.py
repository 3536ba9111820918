"""Issue 18: help a newcomer can find, and the version, without the hidden `estimate` name."""
import re
from importlib.metadata import PackageNotFoundError, version

import typer.main

import planner
from planner.cli import DEFAULT_COMMAND, app
from planner.cli.help import GROUPS, grouped_records
from tests.planner.test_cli import run_cli


def _installed() -> str:
    try:
        return version("llm-finetune-planner")
    except PackageNotFoundError:
        return "0+unknown"


def test_version_flags_and_attribute():
    for flag in ("--version", "-V"):
        res = run_cli(flag)
        assert res.returncode == 0 and res.stdout == f"plan {_installed()}\n" and res.stderr == ""
    assert planner.__version__ == _installed()


def test_root_help_names_the_main_flags_grouped_with_an_example():
    res = run_cli("--help", env={"COLUMNS": "80"})
    assert res.returncode == 0, res.stderr
    for flag in ("--mode", "--gpu", "--tokens", "--execute", "--version"):
        assert re.search(rf"^\s+(-\w, )?{flag}\b", res.stdout, re.M), flag
    for group in ("Model and job", "Pricing and hardware", "Serving", "Execution"):
        assert f"\n{group} (plan MODEL ...):\n" in res.stdout
    assert "\nExamples:\n" in res.stdout and "\n  plan llama3-70b --mode qlora --tokens 50M\n" in res.stdout
    assert not re.search(r"plan estimate|\bestimate \[", res.stdout)


def test_model_help_is_titled_plan_model_and_lists_every_flag_once():
    res = run_cli("llama3-8b", "--help")
    assert res.returncode == 0 and res.stdout.startswith("Usage: plan MODEL [OPTIONS]\n")
    assert not re.search(r"plan estimate|\bestimate \[", res.stdout)
    cmd = typer.main.get_command(app).commands[DEFAULT_COMMAND]
    ctx = cmd.make_context("MODEL", ["x"], resilient_parsing=True)
    options = [p for p in cmd.get_params(ctx) if p.param_type_name == "option"]
    shown = [row for rows in grouped_records(cmd, ctx).values() for row in rows]
    assert len(shown) == len(options)  # no flag lost to the grouping
    names = {p.name for p in options}
    assert not {n for group in GROUPS.values() for n in group} - names - {"html"}, "GROUPS names a removed flag"
    for row in shown:
        assert row[0].split(",")[0].split()[0] in res.stdout


def test_a_bad_flag_names_plan_model_not_estimate():
    res = run_cli("llama3-8b", "--bogus")
    assert res.returncode == 2 and not re.search(r"plan estimate|\bestimate \[", res.stderr)
