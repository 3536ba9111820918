"""Human output of a memory estimate: a table of terms with a bar each, then the totals."""
from __future__ import annotations

from rich.console import Console
from rich.table import Table

from ..breakdown import GIB, MemoryEstimate

GB = 1000**3
BAR_WIDTH = 24


def _bar(share: float) -> str:
    full = share * BAR_WIDTH
    n = int(full)
    return "█" * n + ("▌" if full - n >= 0.5 else "")


def fmt_bytes(n: int) -> str:
    """'12.34 GiB (13.25 GB)': binary and decimal, both labelled."""
    return f"{n / GIB:,.2f} GiB ({n / GB:,.2f} GB)"


def render_estimate(console: Console, est: MemoryEstimate) -> None:
    job, spec = est.job, est.model
    ckpt = "on" if job.gradient_checkpointing else "off"
    head = (f"{spec.name} · {job.mode} · {job.precision} · seq {job.seq_len:,} × batch {job.batch_size}"
            + (f" · checkpointing {ckpt}" if job.is_training else ""))
    console.print(head)
    trainable = (f" · trainable {est.trainable_params:,} ({est.trainable_params / est.params.total:.2%})"
                 if job.is_training else "")
    console.print(f"params {est.params.total:,}"
                  + (f" ({est.params.active:,} active per token)" if est.params.active != est.params.total else "")
                  + trainable)
    table = Table(title=f"Peak GPU memory, at the {est.phase}", title_justify="left", show_edge=False)
    table.add_column("term")
    table.add_column("GiB", justify="right")
    table.add_column("GB", justify="right")
    table.add_column("share")
    peak = max(est.peak_allocated_bytes, 1)
    for t in est.terms:
        table.add_row(t.name, f"{t.bytes / GIB:,.2f}", f"{t.bytes / GB:,.2f}", _bar(t.bytes / peak))
    table.add_section()
    table.add_row("peak allocated", f"{est.peak_allocated_bytes / GIB:,.2f}", f"{est.peak_allocated_bytes / GB:,.2f}", "")
    rows = [(f"+ cached by the {est.allocator} allocator", est.allocator_slack_bytes),
            ("= reserved (max_memory_reserved)", est.reserved_bytes),
            ("+ kernels and libraries", est.out_of_pool_bytes), ("+ model tolerance", est.tolerance_bytes),
            ("= device memory the run adds", est.total_bytes), ("+ CUDA context", est.cuda_context_bytes),
            ("GPU memory needed", est.total_bytes + est.cuda_context_bytes)]
    for label, n in rows:
        table.add_row(label, f"{n / GIB:,.2f}", f"{n / GB:,.2f}", "")
    console.print(table)
    seed = est.seed_rule
    ratio = seed.bytes / (est.total_bytes + est.cuda_context_bytes)
    console.print(f"rule of thumb: {fmt_bytes(seed.bytes)} = {seed.formula}; "
                  f"{ratio:.2f}× the estimate above")
    for note in est.notes:
        console.print(f"note: {note}")
