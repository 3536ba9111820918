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
    from .tables import dropped_note, fitted_table
    cols: dict[str, list[str]] = {"alias": [], "Hugging Face id": [], "params": [], "architecture": [], "config": []}
    for r in rows:
        params = f"{r['params'] / 1e9:.2f}B"
        if r["active_params"] != r["params"]:
            params += f" ({r['active_params'] / 1e9:.2f}B active)"
        # where the shipped config.json values came from: an exact copy, or second-hand/partial (see --json notes)
        trust = r["config_confidence"] or ""
        cols["alias"].append(r["alias"])
        cols["Hugging Face id"].append(r["hf_id"] or "-")
        cols["params"].append(params)
        cols["architecture"].append(r["model_type"])
        cols["config"].append("" if trust == "exact copy" else trust)
    out = console()
    table, dropped = fitted_table("Shipped models", cols, out.width, keep={"alias", "Hugging Face id"},
                                  drop=("config", "architecture", "params"), right={"params"})
    out.print(table)
    if (note := dropped_note(dropped)) is not None:
        out.print(note)
