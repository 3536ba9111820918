"""``plan models``: list the shipped model registry."""
from __future__ import annotations

import json

import typer

from . import app
from .output import console
from ..params import count_params
from ..registry import shipped_models


@app.command("models")
def models(as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table.")) -> None:
    """List the shipped models with their aliases and parameter counts."""
    rows = []
    for spec in shipped_models():
        counts = count_params(spec)
        rows.append({"alias": spec.aliases[0] if spec.aliases else spec.name, "hf_id": spec.hf_id,
                     "model_type": spec.model_type, "params": counts.total, "active_params": counts.active,
                     "config_confidence": spec.confidence, "notes": list(spec.notes)})
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    from rich.table import Table
    table = Table(title="Shipped models", title_justify="left")
    for col in ("alias", "Hugging Face id", "architecture", "params", "config"):
        table.add_column(col, justify="right" if col == "params" else "left")
    for r in rows:
        params = f"{r['params'] / 1e9:.2f}B"
        if r["active_params"] != r["params"]:
            params += f" ({r['active_params'] / 1e9:.2f}B active)"
        # where the shipped config.json values came from: an exact copy, or second-hand/partial (see --json notes)
        trust = r["config_confidence"] or ""
        table.add_row(r["alias"], r["hf_id"], r["model_type"], params, "" if trust == "exact copy" else trust)
    console().print(table)
