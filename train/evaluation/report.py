"""Write an evaluation: report.json (schema in docs/evaluation.md), a self-contained
report.html (inline CSS, PNGs embedded as base64) and rows for the terminal summary."""

from __future__ import annotations

import base64
import html
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

JSON_NAME = "report.json"
HTML_NAME = "report.html"


def clean(value: Any) -> Any:
    """JSON-safe copy: numpy scalars to Python, NaN (undefined) and inf (never reached) to
    null, tuples to lists."""
    if isinstance(value, dict):
        return {str(k): clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [clean(v) for v in value]
    if isinstance(value, np.ndarray):
        return clean(value.tolist())
    if isinstance(value, np.bool_ | bool):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        return float(value) if math.isfinite(value) else None
    return value


def write_json(doc: dict[str, Any], out_dir: Path) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / JSON_NAME
    path.write_text(json.dumps(clean(doc), indent=1, allow_nan=False) + "\n", encoding="utf-8")
    return path


# ---------------------------------------------------------------- terminal


def _f(x: Any, pct: bool = False) -> str:
    if x is None:
        return "-"
    return f"{x:.1%}" if pct else f"{x:.4g}"


def summary_rows(doc: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """One row per policy on the evaluated rows: router at its default threshold, heuristic,
    oracle, each always-tier, and random mixing at the router's cost."""
    doc = clean(doc)
    top = doc["axis"]["top_cost"] or 1.0
    d, b = doc["default"], doc["baselines"]
    header = ["policy", "quality", "cost USD", "cost / top", "traffic " + "/".join(doc["tiers"])]

    def share(xs: Sequence[float]) -> str:
        return " / ".join(f"{x:.0%}" for x in xs)

    rows = [
        [
            f"router @ {d.get('label', 'default')}",
            _f(d["quality"]),
            _f(d["cost_usd"]),
            _f(d["cost_usd"] / top, True),
            share(list(d["traffic_share"].values())),
        ],
        [
            "random mixing, same cost",
            _f(d["random_quality_at_same_cost"]),
            _f(d["cost_usd"]),
            _f(d["cost_usd"] / top, True),
            "-",
        ],
        [
            "rule-based heuristic",
            _f(b["heuristic"]["quality"]),
            _f(b["heuristic"]["cost"]),
            _f(b["heuristic"]["cost"] / top, True),
            share(b["heuristic"]["traffic_share"]),
        ],
        [
            "oracle",
            _f(b["oracle"]["quality"]),
            _f(b["oracle"]["cost"]),
            _f(b["oracle"]["cost"] / top, True),
            share(b["oracle"]["traffic_share"]),
        ],
    ]
    rows += [
        [f"always {a['tier']}", _f(a["quality"]), _f(a["cost"]), _f(a["cost"] / top, True), "-"]
        for a in doc["always"]
    ]
    return header, rows


POLICIES = ("router", "router_clamps", "random", "heuristic", "oracle")


def headline_rows(doc: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """AUC, cost to reach 90/95/100% of top quality and (two tiers) APGR / CPT per curve."""
    doc = clean(doc)
    auc, top = doc["auc"], doc["axis"]["top_cost"] or 1.0
    header = ["metric", "router", "router+clamps", "random", "heuristic", "oracle"]
    rows = [["normalised AUC", *(_f(auc[k]) for k in POLICIES)]]
    for t in doc["targets"]:
        c = t["cost"]
        rows.append(
            [
                f"cost / top for {t['share_of_top_quality']:.0%} of top quality",
                *(_f(c[k] / top if c[k] is not None else None, True) for k in POLICIES),
            ]
        )
    tt = doc.get("two_tier") or {}
    if "router" in tt:
        for key, name in (("apgr", "APGR"), ("cpt_50", "CPT(50%)"), ("cpt_80", "CPT(80%)")):
            rows.append([name, *(_f(tt[k][key]) if k in tt else "-" for k in POLICIES)])
    return header, rows


def compare_rows(summaries: list[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    header = [
        "model",
        "rows",
        "quality",
        "cost USD",
        "AUC",
        "gap closed",
        "cost@90%",
        "cost@95%",
        "cost@100%",
        "mean ECE",
    ]
    rows = [
        [
            s["model"],
            str(s["rows"]),
            _f(s["quality"]),
            _f(s["cost_usd"]),
            _f(s["auc"]),
            _f(s["gap_closed"], True),
            _f(s["cost_to_90"]),
            _f(s["cost_to_95"]),
            _f(s["cost_to_100"]),
            _f(s["mean_ece"]),
        ]
        for s in clean(summaries)
    ]
    return header, rows


# ---------------------------------------------------------------- HTML

CSS = """body{font-family:system-ui,sans-serif;max-width:1000px;margin:2em auto;padding:0 1em;
color:#222}table{border-collapse:collapse;margin:.6em 0 1.4em}td,th{border:1px solid #ccc;
padding:.25em .6em;text-align:right}td:first-child,th:first-child{text-align:left}
th{background:#f3f3f3}.verdict{border-left:6px solid #2a7;background:#f3fbf6;padding:.6em 1em}
.verdict.no{border-color:#c44;background:#fdf3f3}.verdict.mixed{border-color:#d90;
background:#fdf9ee}img{max-width:100%}code{background:#f3f3f3;padding:0 .2em}
.small{color:#666;font-size:.9em}"""


def _table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>" for r in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def _img(png: bytes, alt: str) -> str:
    return (
        f'<img alt="{html.escape(alt)}" src="data:image/png;base64,'
        f'{base64.b64encode(png).decode()}">'
    )


def _groups(items: list[dict[str, Any]], title: str, tiers: list[str]) -> str:
    if not items:
        return ""
    header = [
        "name",
        "rows",
        "router quality",
        "router cost",
        "random @ router cost",
        "heuristic quality",
        "heuristic cost",
        "oracle quality",
        "top quality",
        "top cost",
        "accuracy",
        "traffic " + "/".join(tiers),
    ]
    rows = [
        [
            g["name"],
            str(g["rows"]),
            _f(g["router_quality"]),
            _f(g["router_cost"]),
            _f(g["random_quality_at_router_cost"]),
            _f(g["heuristic_quality"]),
            _f(g["heuristic_cost"]),
            _f(g["oracle_quality"]),
            _f(g["top_quality"]),
            _f(g["top_cost"]),
            _f(g["accuracy"], True),
            " / ".join(f"{x:.0%}" for x in g["traffic_share"]),
        ]
        for g in items
    ]
    return f"<h3>Per {html.escape(title)}</h3>" + _table(header, rows)


def _body(doc: dict[str, Any], with_curve: bool = True) -> str:
    from train.evaluation import plots

    v, d, c = doc["verdict"], doc["data"], doc["classification"]
    tone = (
        ""
        if v["beats_random_at_default"] and v["beats_heuristic_at_its_cost"]
        else (" mixed" if v["beats_random_at_default"] else " no")
    )
    parts = [
        f'<div class="verdict{tone}"><b>{html.escape(v["summary"])}</b><ul>'
        + "".join(f"<li>{html.escape(x)}</li>" for x in v["details"])
        + "</ul></div>"
    ]
    parts.append(
        f'<p class="small">Model <code>{html.escape(doc["model"]["label"])}</code> '
        f"({html.escape(doc['model']['version'])}); {d['rows']} rows, split "
        f"<code>{d['split']}</code> ({html.escape(d['split_rule'])}); "
        f"{d['bad_rows']} bad rows skipped; costs: {html.escape(d['cost']['rule'])}.</p>"
    )
    if with_curve:
        parts.append(_img(plots.cost_quality_plot([doc]), "quality against cost"))
    parts += [
        "<h3>Policies on these rows</h3>",
        _table(*summary_rows(doc)),
        "<h3>Curves and targets</h3>",
        _table(*headline_rows(doc)),
        f"<p>Gap closed (router AUC between random and oracle): "
        f"{_f(doc['gap_closed'], True)}; with min/max tier clamps "
        f"{_f(doc['gap_closed_clamps'], True)}. <i>router</i> sweeps the bundle's rule "
        "(the threshold, or lambda through the quality knob); "
        "<i>router+clamps</i> also the min_tier / max_tier clamps a gateway may set. "
        "Costs to reach a target: '-' means never reached.</p>",
    ]
    at = [
        [
            a["tier"],
            _f(a["cost"]),
            _f(a["tier_quality"]),
            _f(a["router_quality"]),
            _f(a["heuristic_quality"]),
            _f(a["oracle_quality"]),
        ]
        for a in doc["at_tier_cost"]
    ]
    parts.append(
        _table(
            ["at the cost of always", "cost USD", "tier quality", "router", "heuristic", "oracle"],
            at,
        )
    )
    parts.append(
        f"<h3>Classification against labels (default threshold)</h3><p>accuracy "
        f"{_f(c['accuracy'], True)}, macro-F1 {_f(c['macro_f1'])}, under-routing "
        f"{_f(c['under_routing'], True)} (quality lost), over-routing "
        f"{_f(c['over_routing'], True)} (money wasted)</p>"
    )
    parts.append(
        _img(plots.confusion_plot(doc), "confusion matrix")
        + " "
        + _img(plots.reliability_plot(doc), "reliability diagram")
    )
    ece = [[t, _f(x["ece"]), str(x["rows"])] for t, x in doc["calibration"].items()]
    parts.append(_table(["tier", "ECE of p_sufficient", "rows with known outcome"], ece))
    parts.append(_groups(doc["breakdowns"]["group"], "group", doc["tiers"]))
    parts.append(_groups(doc["breakdowns"]["source"], "source file", doc["tiers"]))
    return "\n".join(parts)


def _page(title: str, body: str) -> str:
    return (
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}"
        f"</title><style>{CSS}</style></head><body><h1>{html.escape(title)}</h1>{body}"
        "<p class='small'>Generated by rung eval; figures in report.json "
        "(schema in docs/evaluation.md).</p></body></html>\n"
    )


def render_html(doc: dict[str, Any]) -> str:
    doc = clean(doc)
    if doc.get("schema", "").startswith("rung-eval-compare"):
        from train.evaluation import plots

        reports = doc["reports"]
        body = [
            _table(*compare_rows(doc["models"])),
            _img(plots.cost_quality_plot(reports, "models on the same rows"), "comparison"),
        ]
        for rep in reports:
            body.append(f"<h2>{html.escape(rep['model']['label'])}</h2>" + _body(rep, False))
        return _page("rung eval: model comparison", "\n".join(body))
    return _page(f"rung eval: {doc['model']['label']}", _body(doc))


def write_html(doc: dict[str, Any], out_dir: Path) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / HTML_NAME
    path.write_text(render_html(doc), encoding="utf-8")
    return path


def write_report(doc: dict[str, Any], out_dir: Path) -> list[Path]:
    """report.json and report.html in `out_dir` (created)."""
    return [write_json(doc, out_dir), write_html(doc, out_dir)]
