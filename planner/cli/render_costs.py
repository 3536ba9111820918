"""Rich rendering of a PlanCosts: the recommendation, then the next-best alternatives.

The console passed in decides width and colour (fixed width, no colour when not a terminal)."""
from __future__ import annotations

from rich.table import Table

from pricing.fit import GIB, needs_text
from pricing.timecost import HOURS_PER_MONTH


def _usd(x: float | None, digits: int = 2) -> str:
    return "unknown" if x is None else f"${x:,.{digits}f}"


def _gib(x: int | None) -> str:
    return "?" if x is None else f"{x / GIB:.1f}"


def _gib2(x: int) -> str:
    return f"{x / GIB:.2f}"


def _money(costs, usd: float | None) -> str:
    if costs.money is None or usd is None:
        return ""
    return f" ({costs.money.code} {costs.money.convert(usd):,.2f})"


def _gpus(c) -> str:
    where = f" on {c.machines} machines" if c.machines > 1 else ""
    return f"{c.gpu_count} x {c.gpu_model}{where}"


def render_costs(console, costs) -> None:
    """Print the recommendation (or why nothing fits) and a table of alternatives."""
    rec = costs.recommendation
    if costs.platform == "local":
        _render_local(console, costs)
        return
    objective = "job cost" if costs.objective == "job_usd" else "cost per hour"
    console.print()
    if rec is None:
        console.print(f"Nothing to recommend: {costs.verdict}")
    else:
        mem = rec.gpu_memory_gib
        lines = [
            ("instance", f"{rec.instance_type} on {rec.platform}, {rec.region} ({rec.gpus_per_machine} x {rec.gpu_model} "
                         f"{mem:.2f} GiB per machine)" if mem else rec.instance_type),
            ("strategy", f"{rec.strategy}: {_gpus(rec)}"),
            ("memory per GPU", needs_text(rec.per_gpu_bytes, rec.usable_bytes_per_gpu)),
            ("price", f"{_usd(rec.usd_per_hour, 4)}/h{_money(costs, rec.usd_per_hour)}, "
                      f"{_usd(rec.usd_per_month)}/month of {HOURS_PER_MONTH} h{_money(costs, rec.usd_per_month)}"
                      + (" (spot)" if costs.spot and rec.platform == "ec2" else "")),
        ]
        if rec.job_hours is not None:
            tokens = f"{costs.tokens:,} tokens x {costs.epochs:g} epoch(s)"
            lines.append(("job", f"{rec.job_hours:,.1f} h, {_usd(rec.job_usd)}{_money(costs, rec.job_usd)} "
                                 f"for {tokens}"))
        est = " (estimated)" if rec.price_estimated else ""
        lines.append(("price source", f"{rec.price_source}, as of {rec.price_as_of}{est}"))
        console.print(f"Cheapest machine that fits (by {objective}):")
        for label, text in lines:
            console.print(f"  {label:<15} {text}")
    alts = costs.alternatives()
    if alts:
        table = Table(title="Next-best alternatives", title_justify="left")
        for col in ("instance", "platform", "GPUs", "strategy", "GiB/GPU", "$/h", "job h", "job $"):
            table.add_column(col, justify="left" if col in ("instance", "platform", "strategy", "GPUs") else "right")
        for c in alts:
            table.add_row(c.instance_type, c.platform, _gpus(c), c.strategy or "-",
                          f"{_gib(c.per_gpu_bytes)}/{_gib(c.usable_bytes_per_gpu)}", _usd(c.usd_per_hour),
                          "-" if c.job_hours is None else f"{c.job_hours:,.1f}", _usd(c.job_usd) if c.job_usd else "-")
        console.print(table)
    _render_suggestions(console, costs)
    fitting = sum(1 for c in costs.candidates if c.fits)
    console.print(f"{len(costs.candidates)} candidates considered, {fitting} fit (`--json` lists each with its reason).")
    for note in costs.notes:
        console.print(f"note: {note}")


def _render_local(console, costs) -> None:
    c = costs.candidates[0]
    local = costs.local or {}
    console.print()
    console.print(("Fits: " if c.fits else "Does not fit: ") + costs.verdict)
    context = local.get("memory_bytes", 0) - c.usable_bytes_per_gpu
    console.print(f"  {'memory':<15} {local.get('memory_bytes', 0) / GIB:.2f} GiB per GPU ({local.get('memory_mib')} MiB as "
                  f"nvidia-smi reports it) - {context / GIB:.2f} GiB CUDA context = {_gib2(c.usable_bytes_per_gpu)} "
                  "GiB usable")
    if c.gpus_per_machine > 1:
        console.print(f"  {'strategy':<15} {c.strategy or '-'} over {c.gpu_count} of {c.gpus_per_machine} GPUs")
    batch, seq = local.get("largest_batch_size"), local.get("largest_seq_len")
    console.print(f"  {'largest batch':<15} {batch if batch is not None else 'none'} at --seq-len {local.get('seq_len')}")
    console.print(f"  {'largest seq len':<15} {seq if seq is not None else 'none'} at --batch-size {local.get('batch_size')}"
                  f" (searched up to {local.get('seq_len_searched_up_to'):,}: {local.get('seq_len_cap')})")
    _render_suggestions(console, costs)
    if c.job_hours is not None:
        console.print(f"  {'job':<15} {c.job_hours:,.1f} h for {costs.tokens:,} tokens x {costs.epochs:g} epoch(s)")
    for note in costs.notes:
        console.print(f"note: {note}")



def _render_suggestions(console, costs) -> None:
    """What would make it fit (planner/suggest.py): the flags to append, each checked by re-estimating."""
    if not costs.suggestions:
        return
    console.print("What would make it fit (append to the same command):")
    for sg in costs.suggestions:
        flags = " ".join(f'"{f}"' if " " in f else f for f in sg.flags)
        console.print(f"  {flags:<40} {sg.per_gpu_bytes / GIB:.2f} GiB per GPU: {sg.why}", soft_wrap=True)
