"""Self-contained HTML reports of `cairo-coder eval` (one file: inline CSS and SVG charts, no script, nothing
fetched), readable offline and attachable to a pull request.

Each report has the summary, bar charts (scores per source; per check or per metric), the comparison with an
earlier report when one was given (items that got better or worse), and the per-item results.
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape
from typing import Any

CSS = """
:root { color-scheme: light dark; --fg: #1d232a; --bg: #fff; --muted: #5b6570; --bar: #2f6fb5; --bad: #b3261e;
  --good: #1e7a3c; --line: #d7dce1; }
@media (prefers-color-scheme: dark) { :root { --fg: #e6e9ec; --bg: #15191d; --muted: #9aa4ae; --bar: #6aa6e8;
  --bad: #f08a82; --good: #7fd39a; --line: #2e353c; } }
body { font: 15px/1.5 system-ui, sans-serif; color: var(--fg); background: var(--bg); margin: 2rem auto;
  max-width: 1100px; padding: 0 1rem; }
h1 { font-size: 1.5rem; } h2 { font-size: 1.15rem; margin-top: 2rem; border-bottom: 1px solid var(--line); }
table { border-collapse: collapse; width: 100%; font-size: 0.9rem; }
th, td { text-align: left; padding: 0.3rem 0.5rem; border-bottom: 1px solid var(--line); vertical-align: top; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
.passed { color: var(--good); } .failed { color: var(--bad); } .skipped { color: var(--muted); }
.meta { color: var(--muted); } svg text { fill: var(--fg); font-size: 12px; }
svg .bar { fill: var(--bar); } svg .axis { stroke: var(--line); }
details pre { white-space: pre-wrap; background: color-mix(in srgb, var(--line) 35%, transparent); padding: 0.5rem; }
"""


def bar_chart(title: str, rows: Sequence[tuple[str, float]], maximum: float = 1.0, chart_id: str = "") -> str:
    """A horizontal bar chart as inline SVG: one labelled bar per row, values in [0, maximum]."""
    height = 26 * len(rows) + 30
    label_width, bar_width = 230, 560
    parts = [
        f'<figure class="chart" id="{escape(chart_id)}"><figcaption>{escape(title)}</figcaption>',
        f'<svg role="img" aria-label="{escape(title)}" width="{label_width + bar_width + 70}" height="{height}" '
        f'viewBox="0 0 {label_width + bar_width + 70} {height}">',
        f'<line class="axis" x1="{label_width}" y1="4" x2="{label_width}" y2="{height - 20}"/>',
    ]
    for index, (label, value) in enumerate(rows):
        y = 8 + 26 * index
        width = 0.0 if maximum <= 0 else max(0.0, min(1.0, value / maximum)) * bar_width
        parts.append(
            f'<text x="{label_width - 8}" y="{y + 14}" text-anchor="end">{escape(label[:34])}</text>'
            f'<rect class="bar" x="{label_width}" y="{y}" width="{width:.1f}" height="18" rx="2">'
            f"<title>{escape(label)}: {value:.3f}</title></rect>"
            f'<text x="{label_width + width + 6:.1f}" y="{y + 14}">{value:.3f}</text>'
        )
    parts.append("</svg></figure>")
    return "".join(parts)


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], numeric: Sequence[bool] = ()) -> str:
    def cell(tag: str, value: Any, index: int) -> str:
        css = ' class="num"' if index < len(numeric) and numeric[index] else ""
        text = f"{value:.3f}" if isinstance(value, float) else escape(str(value))
        return f"<{tag}{css}>{text}</{tag}>"

    head = "".join(cell("th", h, i) for i, h in enumerate(headers))
    body = "".join("<tr>" + "".join(cell("td", v, i) for i, v in enumerate(row)) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def page(title: str, meta: dict[str, Any], sections: Sequence[str]) -> str:
    described = " · ".join(f"{escape(str(k))}: {escape(str(v))}" for k, v in meta.items() if v not in (None, ""))
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" '
        f'content="width=device-width, initial-scale=1"><title>{escape(title)}</title><style>{CSS}</style></head>'
        f'<body><h1>{escape(title)}</h1><p class="meta">{described}</p>{"".join(sections)}</body></html>'
    )


def generation_html(report: dict[str, Any], comparison: dict[str, Any] | None = None) -> str:
    """The HTML of a generation report (``GenerationReport.to_json()``) and its optional comparison."""
    summary = report["summary"]
    checks = summary["checks"]
    sections = [
        "<h2>Summary</h2>",
        table(
            ["items", "score", "pipeline errors"],
            [[summary["n"], float(summary["score"]), summary["errors"]]],
            [True, True, True],
        ),
        "<h2>Scores</h2>",
        bar_chart(
            "Mean score per source",
            [(s, float(v["score"])) for s, v in summary["by_source"].items()],
            chart_id="by-source",
        ),
        bar_chart(
            "Mean score per check (where it ran)",
            [(name, float(v["mean"])) for name, v in checks.items()],
            chart_id="by-check",
        ),
        table(
            ["check", "ran", "passed", "skipped", "mean"],
            [
                [name, int(v["ran"]), int(v["passed"]), int(v["skipped"]), float(v["mean"])]
                for name, v in checks.items()
            ],
            [False, True, True, True, True],
        ),
    ]
    if comparison is not None:
        sections += _generation_comparison(comparison)
    sections.append("<h2>Items</h2>")
    for item in report["items"]:
        statuses = " ".join(
            f'<span class="{escape(c["status"])}" title="{escape(c["detail"])}">{escape(c["name"])}</span>'
            for c in item["checks"]
        )
        details = "".join(
            f'<li class="{escape(c["status"])}">{escape(c["name"])}: {escape(c["detail"])}</li>' for c in item["checks"]
        )
        sections.append(
            f"<details><summary><b>{escape(item['id'])}</b> {float(item['score']):.3f} · {statuses} · "
            f"{escape(item['query'][:100])}</summary><ul>{details}</ul><pre>{escape(item['answer'])}</pre></details>"
        )
    return page("cairo-coder answer evaluation", report.get("meta", {}), sections)


def _generation_comparison(comparison: dict[str, Any]) -> list[str]:
    rows = [[c["id"], float(c["before"]), float(c["after"]), "better"] for c in comparison["better"]]
    rows += [[c["id"], float(c["before"]), float(c["after"]), "worse"] for c in comparison["worse"]]
    return [
        "<h2>Against the earlier report</h2>",
        f"<p>{len(comparison['better'])} better, {len(comparison['worse'])} worse, {comparison['unchanged']} "
        f"unchanged; mean score {comparison['score_before']:.3f} → {comparison['score_after']:.3f}; sign test "
        f"p = {comparison['sign_test_p']}</p>",
        bar_chart(
            "Mean score, earlier and now",
            [("earlier", float(comparison["score_before"])), ("now", float(comparison["score_after"]))],
            chart_id="comparison",
        ),
        table(["item", "before", "after", "change"], rows, [False, True, True, False]) if rows else "",
    ]


def retrieval_html(report: dict[str, Any], comparison: dict[str, Any] | None = None) -> str:
    """The HTML of a retrieval report (``EvalReport.to_json()``) and its optional comparison."""
    names = ["recall@1", "recall@3", "recall@5", "recall@10", "MRR@10"]
    metrics = {name: report[name] for name in names if name in report}
    names = list(metrics)
    sections = [
        "<h2>Summary</h2>",
        table(
            ["items", *names], [[len(report["items"]), *(float(metrics[n]) for n in names)]], [True] * (len(names) + 1)
        ),
        "<h2>Scores</h2>",
        bar_chart(
            "Recall@5 per source",
            [(s, float(m["recall@5"])) for s, m in report["by_source"].items()],
            chart_id="by-source",
        ),
        bar_chart(
            "MRR@10 per source",
            [(s, float(m["MRR@10"])) for s, m in report["by_source"].items()],
            chart_id="mrr",
        ),
        bar_chart("Metrics, all items", [(n, float(metrics[n])) for n in names], chart_id="by-check"),
    ]
    if comparison is not None:
        rows = [[c["id"], c["before"] or "-", c["after"] or "-", "better"] for c in comparison.get("wins", [])]
        rows += [[c["id"], c["before"] or "-", c["after"] or "-", "worse"] for c in comparison.get("losses", [])]
        sections += [
            "<h2>Against the earlier report</h2>",
            f"<p>{len(comparison.get('wins', []))} better, {len(comparison.get('losses', []))} worse, "
            f"{comparison.get('unchanged', 0)} unchanged; sign test p = {comparison.get('sign_test_p')}</p>",
            table(["item", "rank before", "rank after", "change"], rows) if rows else "",
        ]
    sections.append("<h2>Items</h2>")
    sections.append(
        table(
            ["item", "rank", "query", "top pages"],
            [
                [
                    i["id"],
                    i.get("rank") or "-",
                    i.get("query", "")[:100],
                    ", ".join(p["path"] for p in i.get("ranked", [])[:3]),
                ]
                for i in report["items"]
            ],
        )
    )
    return page("cairo-coder retrieval evaluation", report.get("meta", {}), sections)
