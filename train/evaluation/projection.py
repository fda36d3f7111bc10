"""Monthly cost at a traffic level: what always-top costs, what the router's operating point
costs, and the saving, from the evaluated rows' mean cost per request (30-day months)."""

from __future__ import annotations

import math
from typing import Any

DAYS_PER_MONTH = 30
DEFAULT_REQUESTS_PER_DAY = 10_000


def monthly_projection(default: dict[str, Any], requests_per_day: int) -> dict[str, Any]:
    """`default` is an evaluation's operating point (`report.json["default"]`)."""
    rows = max(int(default["rows"]), 1)
    per_month = requests_per_day * DAYS_PER_MONTH
    router = default["cost_usd"] / rows * per_month
    top = default["top_tier_cost_usd"] / rows * per_month
    return {
        "requests_per_day": requests_per_day,
        "days_per_month": DAYS_PER_MONTH,
        "always_top_usd_per_month": top,
        "router_usd_per_month": router,
        "saving_usd_per_month": top - router,
        "saving_share": (top - router) / top if top else math.nan,
        "quality_share_of_top": default["quality_share_of_top"],
        "threshold": default["threshold"],
    }


def projection_line(p: dict[str, Any]) -> str:
    q = p["quality_share_of_top"]
    share = p["saving_share"]
    return (
        f"at {p['requests_per_day']:,} requests a day, always-top costs "
        f"${p['always_top_usd_per_month']:,.2f} a month, rung's routing "
        f"${p['router_usd_per_month']:,.2f}, saving ${p['saving_usd_per_month']:,.2f}"
        + ("" if share is None or math.isnan(share) else f" ({share:.0%})")
        + ("" if q is None or math.isnan(q) else f" at {q:.1%} of top quality")
    )
