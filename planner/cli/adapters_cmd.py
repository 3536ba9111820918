"""``plan adapters list|show|delete``: the trained adapters kept in the adapter store (backend/store.py).

Each subcommand is a function on ``adapters_app``; add one (e.g. ``merge``) with
``@adapters_app.command("merge")`` in this module.
"""
from __future__ import annotations

import json
from typing import Optional

import typer

from . import app
from .output import console

adapters_app = typer.Typer(help="Trained LoRA / prompt-tuning adapters, kept per base model.",
                           no_args_is_help=True, rich_markup_mode=None)
app.add_typer(adapters_app, name="adapters")


def store():
    """The adapter store ($PLAN_HOME/adapters or the user data folder). Light: no torch."""
    from backend.store import AdapterStore
    return AdapterStore()


def _fmt_loss(value) -> str:
    return f"{value:.4f}" if isinstance(value, (int, float)) else "-"


@adapters_app.command("list")
def list_adapters(base: Optional[str] = typer.Option(None, "--base", help="Only adapters of this base model."),
                  as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table.")) -> None:
    """List stored adapters (oldest first)."""
    from .validate import plain_value
    plain_value("--base", base)  # an empty --base would list nothing and say so (issue 19)
    records = store().list(base_model=base)
    if as_json:
        typer.echo(json.dumps([r.to_dict() for r in records], indent=2, default=str))
        return
    if not records:
        console(stderr=True).print("no adapters" + (f" for base model {base}" if base else "")
                                   + "; train one with `plan MODEL --mode qlora --dataset FILE --execute`")
        return
    from .tables import dropped_note, fitted_table
    names = ("name", "base model", "mode", "peft", "data set", "steps", "train loss", "eval loss", "created")
    cols: dict[str, list[str]] = {n: [] for n in names}
    for r in records:
        m = r.metadata
        peft = m.get("peft") or {}
        peft_s = (f"r={peft['lora_r']}" if "lora_r" in peft else
                  f"{peft['num_virtual_tokens']} tokens" if "num_virtual_tokens" in peft else "-")
        data = (m.get("dataset") or {}).get("source") or "-"
        metrics = m.get("metrics") or {}
        row = (r.name, r.base_model, m.get("mode", "-"), peft_s, data.rsplit("/", 1)[-1],
               str(metrics.get("global_step", "-")), _fmt_loss(metrics.get("train_loss")),
               _fmt_loss(metrics.get("eval_loss")), r.created[:10])
        for n, cell in zip(names, row):
            cols[n].append(cell)
    out = console()
    table, dropped = fitted_table("Adapters", cols, out.width, keep={"name", "base model"},
                                  drop=("data set", "peft", "created", "train loss", "steps", "mode", "eval loss"),
                                  right={"steps", "train loss", "eval loss"})
    out.print(table)
    if (note := dropped_note(dropped, "`plan adapters show NAME` or `--json` shows them")) is not None:
        out.print(note)


@adapters_app.command("show")
def show(name: str = typer.Argument(..., help="Adapter name (see `plan adapters list`)."),
         as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Everything recorded about one adapter."""
    record = store().get(name)
    if as_json:
        typer.echo(json.dumps(record.to_dict(), indent=2, default=str))
        return
    from rich.table import Table
    table = Table(title=f"Adapter {record.name}", title_justify="left", show_header=False)
    table.add_column("field")
    table.add_column("value")
    table.add_row("base model", record.base_model)
    table.add_row("path", str(record.path))
    table.add_row("created", record.created)
    for key, value in _flat(record.metadata):
        table.add_row(key, value)
    console().print(table)


def _flat(d: dict, prefix: str = "") -> list[tuple[str, str]]:
    rows: list[tuple[str, str]] = []
    for k, v in d.items():
        if isinstance(v, dict):
            rows += _flat(v, f"{prefix}{k}.")
        else:
            rows.append((f"{prefix}{k}", "-" if v is None else str(v)))
    return rows


@adapters_app.command("delete")
def delete(name: str = typer.Argument(..., help="Adapter to delete."),
           yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation.")) -> None:
    """Delete an adapter from the store (its files too, when the store holds a copy)."""
    s = store()
    record = s.get(name)
    if not yes:
        import sys
        from ..errors import PlannerError
        if not sys.stdin.isatty():
            raise PlannerError(f"deleting '{name}' needs confirmation; pass --yes")
        typer.confirm(f"Delete adapter '{name}' ({record.base_model})?", abort=True, err=True)
    s.delete(name)
    console(stderr=True).print(f"deleted adapter '{name}'")
