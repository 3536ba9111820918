"""Help that a newcomer can find (issue 18): ``plan --help`` names the main planning flags, grouped,
with examples; ``plan MODEL --help`` lists every flag under the same groups and is titled
``plan MODEL`` (the internal default-command name ``estimate`` is never shown); ``--version``.

typer groups options into panels only in its rich markup mode, which this app turns off (plain
click output, stable for golden tests and docs/cli.md), so the grouping is done here with
click's own help formatter. A flag can name its group with ``rich_help_panel=`` where it is
declared; otherwise ``GROUPS`` places it; anything else is listed under "Other options".
"""
from __future__ import annotations

from typer.core import TyperCommand

GROUPS: dict[str, tuple[str, ...]] = {
    "Model and job": ("mode", "precision", "seq_len", "batch_size", "gradient_checkpointing", "tokens",
                      "dataset", "epochs", "lora_r", "lora_alpha", "lora_dropout", "lora_targets",
                      "num_virtual_tokens", "optimizer", "attention", "allocator"),
    "Pricing and hardware": ("gpu", "platform", "region", "spot", "objective", "max_hours", "max_gpus",
                             "max_cost", "currency", "usd_rate", "no_pricing"),
    "Serving": ("adapters", "max_lora_rank"),
    "Execution": ("execute", "backend", "yes", "force", "dry_run", "wait", "output_dir", "max_steps",
                  "learning_rate", "save_steps", "restart", "experiment", "role", "bucket", "emit_config"),
    "Output": ("as_json", "html", "help"),
}
OTHER = "Other options"
# The few flags `plan --help` shows per group (every flag: `plan MODEL --help`).
MAIN = ("mode", "precision", "seq_len", "tokens", "dataset", "gpu", "platform", "region", "spot",
        "currency", "adapters", "max_lora_rank", "execute", "backend", "dry_run", "as_json", "html")
EXAMPLES = (
    ("plan llama3-70b --mode qlora --tokens 50M", "memory, cheapest AWS machine, job time and cost"),
    ("plan llama3-8b --mode inference --gpu 'RTX 4090'", "does it fit my own GPU?"),
    ("plan llama3-8b --mode lora --dataset data.jsonl --execute", "plan it, then run it"),
)


def _group_of(param) -> str:
    panel = getattr(param, "rich_help_panel", None)
    if panel:
        return panel
    return next((g for g, names in GROUPS.items() if param.name in names), OTHER)


def grouped_records(cmd, ctx, only: tuple[str, ...] | None = None) -> dict[str, list[tuple[str, str]]]:
    """{group: [(flags, help)]} for the command's options, in GROUPS order then declaration order."""
    out: dict[str, list[tuple[str, str]]] = {g: [] for g in (*GROUPS, OTHER)}
    for param in cmd.get_params(ctx):
        if param.param_type_name != "option" or (only is not None and param.name not in only):
            continue
        record = param.get_help_record(ctx)
        if record is not None:
            out.setdefault(_group_of(param), []).append(record)  # a panel named at declaration goes last
    return {g: rows for g, rows in out.items() if rows}


class PlanCommand(TyperCommand):
    """The default command: usage ``plan MODEL [OPTIONS]`` and its options in groups."""

    def format_usage(self, ctx, formatter) -> None:
        prog = ctx.find_root().info_name or "plan"
        formatter.write_usage(f"{prog} MODEL", "[OPTIONS]")

    def format_options(self, ctx, formatter) -> None:
        args = [(p.human_readable_name.upper(), p.help or "") for p in self.get_params(ctx)
                if p.param_type_name == "argument"]
        if args:
            with formatter.section("Arguments"):
                formatter.write_dl(args)
        for group, rows in grouped_records(self, ctx).items():
            with formatter.section(group):
                formatter.write_dl(rows)

    def format_epilog(self, ctx, formatter) -> None:
        write_examples(formatter)


def write_examples(formatter) -> None:
    with formatter.section("Examples"):
        pad = " " * formatter.current_indent
        for command, what in EXAMPLES:  # verbatim: a command must not be re-wrapped
            formatter.write(f"{pad}# {what}\n{pad}{command}\n")


def write_main_flags(group_cmd, ctx, formatter, default_name: str) -> None:
    """The root help's middle part: the main flags of ``plan MODEL``, grouped, and examples."""
    cmd = group_cmd.commands.get(default_name)
    if cmd is None:
        return
    sub = cmd.make_context(default_name, ["x"], parent=ctx, resilient_parsing=True)
    for group, rows in grouped_records(cmd, sub, only=MAIN).items():
        with formatter.section(f"{group} (plan MODEL ...)"):
            formatter.write_dl(rows)
    formatter.write_paragraph()
    formatter.write_text("Every flag: plan MODEL --help.")
    write_examples(formatter)
