"""Tables that never cut what must be typed (issue 18): names and strategies stay whole.

rich shrinks a table that is too wide by wrapping its wrappable columns down to their longest word
and, if that is not enough, by cutting every column, names included. So the fit is decided here
first: the ``keep`` columns get their full width and never wrap; the others may wrap to their longest
word; while that still does not fit, whole columns are dropped in ``drop`` order (least useful
first). What was dropped is said under the table, so nothing disappears silently.
"""
from __future__ import annotations

from rich import box
from rich.table import Table

# Between two columns: rich's (invisible) vertical line of SIMPLE_HEAD plus one space of right padding.
GAP = 2


def _longest_word(text: str) -> int:
    return max((len(w) for w in text.split()), default=0)


def needed_width(cols: dict[str, list[str]], keep: set[str]) -> int:
    """Narrowest width rich can lay these columns out in without cutting a word (or a kept cell)."""
    widths = []
    for name, cells in cols.items():
        if name in keep:
            widths.append(max(len(name), *(len(c) for c in cells)) if cells else len(name))
        else:
            widths.append(max(_longest_word(name), *(_longest_word(c) for c in cells)) if cells else len(name))
    return sum(widths) + GAP * (len(widths) - 1)


def fitted_table(title: str, cols: dict[str, list[str]], width: int, *, keep: set[str],
                 drop: tuple[str, ...] = (), right: set[str] = frozenset()) -> tuple[Table, list[str]]:
    """A table of ``cols`` that fits ``width``; returns it and the names of the columns dropped."""
    cols = dict(cols)
    dropped = []
    for name in drop:
        if needed_width(cols, keep) <= width:
            break
        if name in cols:
            cols.pop(name)
            dropped.append(name)
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, show_edge=False,
                  pad_edge=False, padding=(0, 1, 0, 0))
    for name, cells in cols.items():
        whole = name in keep
        table.add_column(name, justify="right" if name in right else "left", no_wrap=whole,
                         min_width=max((len(c) for c in cells), default=0) if whole else None, overflow="fold")
    for row in zip(*cols.values()):
        table.add_row(*row)
    return table, dropped


def dropped_note(dropped: list[str], how: str = "`--json` or a wider terminal shows them") -> str | None:
    if not dropped:
        return None
    return f"(not shown for width: {', '.join(dropped)}; {how})"
