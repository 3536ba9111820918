"""Rich rendering of a PlanCosts: the recommendation, then the next-best alternatives.

The console passed in decides width and colour (fixed width, no colour when not a terminal).
Instance names are never truncated: when the table is too wide, the least useful columns are
dropped first (``DROP_ORDER``) and the rest may wrap; columns with nothing in them are dropped.
"""
from __future__ import annotations

from rich.text import Text

from pricing.choose import OBJECTIVE_LABELS
from pricing.fit import GIB, needs_text
from pricing.timecost import HOURS_PER_MONTH

from .money_format import group_amount

DROP_ORDER = ("GiB/GPU", "$/h", "platform", "job h")  # first dropped first; never instance/region/strategy
FIT, NO_FIT = "green", "red"
USAGE_LABELS = {("ec2", "on-demand"): "EC2 on-demand", ("ec2", "spot"): "EC2 spot",
                ("sagemaker", "training"): "SageMaker training", ("sagemaker", "spot"): "SageMaker managed spot",
                ("sagemaker", "hosting"): "SageMaker hosting"}


def _usd(x: float | None, digits: int = 2) -> str:
    return "unknown" if x is None else f"${x:,.{digits}f}"


def _gib(x: int | None) -> str:
    return "?" if x is None else f"{x / GIB:.1f}"


def _gib2(x: int) -> str:
    return f"{x / GIB:.2f}"


def _size(gib: float) -> str:
    return f"{gib:.2f}".rstrip("0").rstrip(".")


def _money(costs, usd: float | None) -> str:
    if costs.money is None or usd is None:
        return ""
    return f" ({costs.money.code} {group_amount(costs.money.convert(usd), costs.money.code)})"


def _gpus(c) -> str:
    """GPUs used of those paid for: '1 x L40S', '4 of 8 x H100', '16 x H100 on 2 machines'."""
    if c.machines > 1:
        return f"{c.gpu_count} x {c.gpu_model} on {c.machines} machines"
    if 0 < c.gpu_count < c.gpus_per_machine:
        return f"{c.gpu_count} of {c.gpus_per_machine} x {c.gpu_model}"
    return f"{c.gpus_per_machine} x {c.gpu_model}"


def _hours(h: float | None) -> str:
    """Always hours in the "job h" column (issue 18: '49 min' beside '1.2' read as 49 hours)."""
    if h is None:
        return "-"
    return f"{h:,.2f}" if h < 10 else f"{h:,.1f}"


def _duration(c) -> str:
    """Job time with its start-up, in minutes when short."""
    start = "" if c.overhead_hours is None else f", {c.overhead_hours * 60:,.1f} min of it start-up"
    total = f"{c.job_hours * 60:,.1f} min" if c.job_hours < 1 else f"{c.job_hours:,.1f} h"
    return total + start


def usage_label(c) -> str:
    return USAGE_LABELS.get((c.platform, c.usage), c.usage) + (", estimated" if c.price_estimated else "")


def render_costs(console, costs) -> None:
    """Print the recommendation (or why nothing fits) and a table of alternatives."""
    rec = costs.recommendation
    if costs.platform == "local":
        _render_local(console, costs)
        return
    objective = OBJECTIVE_LABELS.get(costs.objective, costs.objective)
    how = "--objective" if costs.extra.get("objective_from") == "--objective" else "the default; --objective changes it"
    console.print()
    if rec is None:
        console.print(Text("Nothing to recommend: ", style=NO_FIT) + Text(costs.verdict))
    else:
        mem = rec.gpu_memory_gib
        hw = f" ({rec.gpus_per_machine} x {rec.gpu_model}, {_size(mem)} GiB per GPU)" if mem else ""
        lines = [
            ("instance", f"{rec.instance_type} on {rec.platform}, {rec.region}{hw}"),
            ("strategy", f"{rec.strategy}: {_gpus(rec)}"),
            ("memory per GPU", needs_text(rec.per_gpu_bytes, rec.usable_bytes_per_gpu)),
            ("price", f"{_usd(rec.usd_per_hour, 4)}/h{_money(costs, rec.usd_per_hour)}, "
                      f"{_usd(rec.usd_per_month)}/month of {HOURS_PER_MONTH} h{_money(costs, rec.usd_per_month)}"
                      f" ({usage_label(rec)})"),
        ]
        if rec.job_hours is not None:
            tokens = f"{costs.tokens:,} tokens x {costs.epochs:g} epoch(s)"
            lines.append(("job", f"{_duration(rec)}; {_usd(rec.job_usd)}{_money(costs, rec.job_usd)} for {tokens}"))
        est = " (estimated)" if rec.price_estimated else ""
        lines.append(("price source", f"{rec.price_source}, as of {rec.price_as_of}{est}"))
        if rec.usage == "spot" and rec.price_note:
            lines.append(("price basis", rec.price_note))
        console.print(Text("Cheapest machine that fits", style=FIT) + Text(f" (ranked by {objective}, {how}):"))
        for label, text in lines:
            console.print(f"  {label:<15} {text}", markup=False)
    alts = costs.alternatives()
    if alts:
        from .tables import dropped_note
        table, dropped = _table(console, costs, alts)
        console.print(table)
        if (note := dropped_note(dropped)) is not None:
            console.print(note)
    _render_suggestions(console, costs)
    console.print(f"{costs.fit_summary()} (`--json` lists each with its reason).", markup=False)
    for note in costs.notes:
        console.print(f"note: {note}", markup=False)


def _columns(costs, alts) -> dict[str, list[str]]:
    cols: dict[str, list[str]] = {"instance": [c.instance_type for c in alts]}
    if len({c.region for c in alts}) > 1 or costs.region == "any":
        cols["region"] = [c.region for c in alts]
    cols["platform"] = [c.platform for c in alts]
    cols["GPUs"] = [_gpus(c) for c in alts]
    cols["strategy"] = [c.strategy or "-" for c in alts]
    cols["GiB/GPU"] = [f"{_gib(c.per_gpu_bytes)}/{_gib(c.usable_bytes_per_gpu)}" for c in alts]
    cols["$/h"] = [_usd(c.usd_per_hour) for c in alts]
    m = costs.money
    if m is not None:
        cols[f"{m.code}/h"] = ["-" if c.usd_per_hour is None else group_amount(m.convert(c.usd_per_hour), m.code) for c in alts]
    cols["job h"] = [_hours(c.job_hours) for c in alts]
    cols["job $"] = [_usd(c.job_usd) if c.job_usd is not None else "-" for c in alts]
    if m is not None:
        cols[f"job {m.code}"] = ["-" if c.job_usd is None else group_amount(m.convert(c.job_usd), m.code) for c in alts]
    return {k: v for k, v in cols.items() if any(x not in ("-", "") for x in v)}  # empty columns dropped


def _table(console, costs, alts):
    from .tables import fitted_table
    title = f"Next-best alternatives (by {OBJECTIVE_LABELS.get(costs.objective, costs.objective)})"
    cols = _columns(costs, alts)
    left = {"instance", "region", "platform", "GPUs", "strategy"}
    return fitted_table(title, cols, console.width, keep={"instance", "region", "strategy"}, drop=DROP_ORDER,
                        right=set(cols) - left)


def _render_local(console, costs) -> None:
    c = costs.candidates[0]
    local = costs.local or {}
    console.print()
    console.print(Text("Fits: ", style=FIT) if c.fits else Text("Does not fit: ", style=NO_FIT),
                  Text(costs.verdict), sep="")
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
        console.print(f"  {'job':<15} {_duration(c)} for {costs.tokens:,} tokens x {costs.epochs:g} epoch(s)")
    for note in costs.notes:
        console.print(f"note: {note}", markup=False)



def _render_suggestions(console, costs) -> None:
    """What would make it fit (planner/suggest.py): the flags to append, each checked by re-estimating."""
    if not costs.suggestions:
        return
    console.print("What would make it fit (append to the same command):")
    for sg in costs.suggestions:
        flags = " ".join(f'"{f}"' if " " in f else f for f in sg.flags)
        console.print(f"  {flags:<40} {sg.per_gpu_bytes / GIB:.2f} GiB per GPU: {sg.why}", soft_wrap=True)
