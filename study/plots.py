"""Pictures of a participant's record: a calendar heatmap of logged applications per day for the
study so far (weeks across, weekdays down; days outside the study left blank), with itch and pain
scores as lines under it. matplotlib with the Agg backend (no display), PNG bytes out."""

from __future__ import annotations

import io
from datetime import date, timedelta

import matplotlib

matplotlib.use("Agg")
import numpy as np
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

LABELS = ("title", "weekdays", "itch", "pain", "day", "no_scores")


def adherence_png(applied: dict[date, int], scores: list[tuple[date, int | None, int | None]], *,
                  first: date | None, today: date, per_day: int, labels: dict[str, str]) -> bytes:
    """Works with gaps (days with nothing recorded show as 0) and with no data at all (an empty
    calendar of the current week). `labels` are the words drawn (the `plot_labels` template)."""
    first = first or today
    if first > today:
        first = today
    start = first - timedelta(days=first.weekday())  # the Monday of the first week
    weeks = (today - start).days // 7 + 1
    grid = np.full((7, weeks), np.nan)
    day = first
    while day <= today:
        offset = (day - start).days
        grid[offset % 7, offset // 7] = min(applied.get(day, 0), per_day)
        day += timedelta(days=1)
    fig = Figure(figsize=(max(4.0, 1.2 + 0.45 * weeks), 5.2))
    top, bottom = fig.subplots(2, 1, gridspec_kw={"height_ratios": [3, 2]})
    palette = ["#f2d7d5", "#f5b041", "#1e8449"] if per_day == 2 else ["#f2d7d5", "#1e8449"] if per_day == 1 else None
    cmap = ListedColormap(palette) if palette else matplotlib.colormaps["Greens"].copy()
    cmap = cmap.with_extremes(bad="#ffffff")
    top.imshow(np.ma.masked_invalid(grid), cmap=cmap, vmin=0, vmax=per_day, aspect="equal")
    top.set_yticks(range(7), (labels["weekdays"].split() + [""] * 7)[:7], fontsize=7)
    top.set_xticks(range(weeks), [(start + timedelta(weeks=w)).strftime("%d %b") for w in range(weeks)],
                   fontsize=7, rotation=90)
    top.set_title(labels["title"], fontsize=9)
    days = [d for d, _, _ in scores]
    if days:
        top_x = [(d - first).days + 1 for d in days]  # study day 1 is the first day
        bottom.plot(top_x, [i if i is not None else np.nan for _, i, _ in scores], marker="o", label=labels["itch"])
        bottom.plot(top_x, [p if p is not None else np.nan for _, _, p in scores], marker="s", label=labels["pain"])
        bottom.legend(fontsize=7, loc="upper right")
    else:
        bottom.text(0.5, 0.5, labels["no_scores"], ha="center", va="center", transform=bottom.transAxes, fontsize=8)
    bottom.set_ylim(-0.5, 10.5)
    bottom.set_xlim(0.5, max((today - first).days + 1, 2) + 0.5)
    bottom.xaxis.set_major_locator(MaxNLocator(integer=True))  # whole study days, never "0.25"
    bottom.set_xlabel(labels["day"], fontsize=7)
    bottom.set_ylabel("0-10", fontsize=7)
    bottom.tick_params(labelsize=7)
    fig.tight_layout()
    out = io.BytesIO()
    fig.savefig(out, format="png", dpi=110)
    return out.getvalue()
