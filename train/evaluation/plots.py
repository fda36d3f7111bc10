"""Report figures as PNG bytes, drawn from report.json dicts (matplotlib, Agg backend)."""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

import matplotlib
import numpy as np

matplotlib.use("Agg")  # no display; must precede pyplot
import matplotlib.pyplot as plt  # noqa: E402

DPI = 100
COLORS = ["tab:blue", "tab:purple", "tab:brown", "tab:pink", "tab:cyan"]


def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def _xy(points: Sequence[Sequence[float | None]], scale: float) -> tuple[list, list]:
    pts = [p for p in points if p[0] is not None and p[1] is not None]
    return [p[0] / scale for p in pts], [p[1] for p in pts]


def _curve(
    points: Sequence[Sequence[float | None]], scale: float, x_end: float
) -> tuple[np.ndarray, np.ndarray]:
    """An envelope densified along its straight (linear-cost) segments, so it draws true on a
    log axis, and held flat to `x_end` (spending more never lowers quality)."""
    x, y = _xy(points, scale)
    if x and x[-1] < x_end:
        x, y = [*x, x_end], [*y, y[-1]]
    if len(x) < 2:
        return np.array(x), np.array(y)
    t = np.linspace(0.0, 1.0, 32)[:-1]
    x0, x1, y0, y1 = (np.array(a) for a in (x[:-1], x[1:], y[:-1], y[1:]))
    fx = (x0[:, None] + t * (x1 - x0)[:, None]).ravel()
    fy = (y0[:, None] + t * (y1 - y0)[:, None]).ravel()
    return np.append(fx, x[-1]), np.append(fy, y[-1])


def _top_cost(report: dict[str, Any]) -> float:
    return report["axis"]["top_cost"] or 1.0


def _baselines(ax: Any, report: dict[str, Any], scale: float, x_end: float) -> None:
    env = report["envelopes"]
    ax.plot(
        *_curve(env["random"], scale, x_end), "--", color="gray", label="random mixing of tiers"
    )
    ax.plot(*_curve(env["oracle"], scale, x_end), ":", color="tab:green", label="oracle")
    h = report["baselines"]["heuristic"]
    ax.plot(*_curve(env["heuristic"], scale, x_end), "-.", color="tab:orange", lw=1)
    ax.plot(
        [h["cost"] / scale], [h["quality"]], "D", color="tab:orange", label="rule-based heuristic"
    )
    for a in report["always"]:
        ax.plot([a["cost"] / scale], [a["quality"]], "s", color="black", ms=5)
        ax.annotate(
            f"always {a['tier']}",
            (a["cost"] / scale, a["quality"]),
            textcoords="offset points",
            xytext=(4, -10),
            fontsize=8,
        )


def cost_quality_plot(reports: Sequence[dict[str, Any]], title: str = "") -> bytes:
    """Router envelope(s) with every baseline; cost as a share of always-top-tier cost."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    scale = _top_cost(reports[0])
    x_end = reports[0]["axis"]["c_max"] / scale
    _baselines(ax, reports[0], scale, x_end)
    for i, rep in enumerate(reports):
        color = COLORS[i % len(COLORS)]
        name = rep["model"]["label"] if len(reports) > 1 else "router"
        sweep = [
            s
            for s in rep["router_sweep"]
            if s["quality"] is not None
            and s["min_tier"] == 0
            and s["max_tier"] == len(rep["tiers"]) - 1
        ]
        ax.plot(
            [s["cost"] / scale for s in sweep],
            [s["quality"] for s in sweep],
            ".",
            color=color,
            alpha=0.15,
            ms=3,
        )
        if len(reports) == 1 and len(rep["tiers"]) > 2:  # two tiers: no clamp to add
            ax.plot(
                *_curve(rep["envelopes"]["router_clamps"], scale, x_end),
                "-",
                color=color,
                lw=0.8,
                alpha=0.6,
                label="router + min/max tier clamps",
            )
        ax.plot(
            *_curve(rep["envelopes"]["router"], scale, x_end),
            "-",
            color=color,
            lw=2,
            label=f"{name} ({rep['default'].get('rule', 'threshold')} sweep envelope)",
        )
        d = rep["default"]
        ax.plot(
            [d["cost_usd"] / scale],
            [d["quality"]],
            "*",
            color=color,
            ms=14,
            mec="black",
            label=f"{name} default: {d.get('label', 'default')}",
        )
    if reports[0]["axis"]["c_min"] > 0:
        ax.set_xscale("log")
    ax.set_xlabel("total cost, share of always-top-tier cost (log scale)")
    ax.set_ylabel("mean quality")
    ax.set_title(title or "quality against cost")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    return _png(fig)


def confusion_plot(report: dict[str, Any]) -> bytes:
    cm = report["classification"]["confusion"]
    names = report["tiers"]
    fig, ax = plt.subplots(figsize=(3.6, 3.2))
    ax.imshow(cm, cmap="Blues")
    peak = max(max(r) for r in cm) or 1
    for i, row in enumerate(cm):
        for j, v in enumerate(row):
            ax.text(
                j, i, str(v), ha="center", va="center", color="white" if v > peak / 2 else "black"
            )
    ax.set_xticks(range(len(names)), names)
    ax.set_yticks(range(len(names)), names)
    ax.set_xlabel("routed tier (default threshold)")
    ax.set_ylabel("cheapest sufficient tier")
    return _png(fig)


def reliability_plot(report: dict[str, Any]) -> bytes:
    fig, ax = plt.subplots(figsize=(4.2, 3.6))
    ax.plot([0, 1], [0, 1], ":", color="gray", label="perfect calibration")
    for i, (tier, cal) in enumerate(report["calibration"].items()):
        b = cal["bins"]
        pts = [
            (p, f)
            for p, f, n in zip(b["mean_pred"], b["frac_pos"], b["count"], strict=True)
            if n and p is not None and f is not None
        ]
        if pts:
            ax.plot(
                *zip(*pts, strict=True),
                "o-",
                color=COLORS[i % len(COLORS)],
                label=f"{tier} (ECE {cal['ece']:.3f})" if cal["ece"] is not None else tier,
            )
    ax.set_xlabel("predicted P(tier sufficient)")
    ax.set_ylabel("observed share sufficient")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _png(fig)
