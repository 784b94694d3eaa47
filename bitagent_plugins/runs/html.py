"""The report as one HTML document: inline CSS, inline SVG charts, a few lines of inline JavaScript for the
failed-sample filter. Nothing is fetched: it opens offline, from a mail attachment or a CI artifact."""

from __future__ import annotations

import datetime as dt
import json
import math
from html import escape

from bitagent_core import SampleRecord
from bitagent_plugins.runs.view import Run, call_diff, comparison, last_prompt as _last_prompt
from bitagent_plugins.runs import svg

MAX_SAMPLES = 5000  # samples listed per report; more are counted, not shown (the file stays openable)

CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:24px auto;max-width:1100px;color:#222;padding:0 16px}
h1{font-size:22px}h2{font-size:18px;margin-top:32px;border-bottom:1px solid #ddd}
table{border-collapse:collapse;width:100%}th,td{padding:4px 8px;border-bottom:1px solid #eee;text-align:left}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
.legend{margin:6px 0}.key{margin-right:16px;white-space:nowrap}
.swatch{display:inline-block;width:12px;height:12px;margin-right:4px;vertical-align:-1px}
.filters{display:flex;gap:8px;flex-wrap:wrap;margin:8px 0}.filters input{flex:1;min-width:200px}
.samples details{margin:0}.samples summary{cursor:pointer}
pre{white-space:pre-wrap;word-break:break-word;background:#f7f7f7;padding:6px;margin:4px 0;font-size:12px}
.diff .del{color:#b00020;background:#fde8ea}.diff .add{color:#05650a;background:#e6f6e6}.diff .same{color:#666}
.muted{color:#666}.note{background:#fff8e1;padding:6px 10px;border-left:3px solid #e6a700}
.warning{background:#fde8ea;padding:8px 12px;border-left:4px solid #b00020;font-weight:600}
"""

SCRIPT = """
(function(){
  var q=document.getElementById('q'),run=document.getElementById('f-run'),cat=document.getElementById('f-cat'),
      err=document.getElementById('f-err'),verdict=document.getElementById('f-verdict'),
      rows=document.querySelectorAll('#samples tbody tr.sample'),shown=document.getElementById('shown');
  function apply(){
    var text=q.value.toLowerCase(),n=0;
    rows.forEach(function(r){
      var ok=(!text||r.textContent.toLowerCase().indexOf(text)>=0)&&(!run.value||r.dataset.run===run.value)&&
             (!cat.value||r.dataset.category===cat.value)&&(!err.value||r.dataset.error===err.value)&&
             (!verdict.value||(verdict.value==='not-passed'?r.dataset.verdict!=='passed':
                               r.dataset.verdict===verdict.value));
      r.hidden=!ok;if(ok)n++;
    });
    shown.textContent=n;
  }
  [q,run,cat,err,verdict].forEach(function(e){e.addEventListener('input',apply);e.addEventListener('change',apply);});
  // a link may carry a filter: report.html#q=text&run=...&category=...&error=...&verdict=passed|not-passed
  var given=new URLSearchParams(location.hash.slice(1));
  q.value=given.get('q')||'';run.value=given.get('run')||'';cat.value=given.get('category')||'';
  err.value=given.get('error')||'';verdict.value=given.get('verdict')||'';
  apply();
})();
"""


def _bins(values: list[list[float]], n: int = 20) -> list[float]:
    top = max([v for row in values for v in row] + [0.001])
    step = 10 ** math.floor(math.log10(top / n)) if top > 0 else 0.1
    for factor in (1, 2, 2.5, 5, 10):
        if top / (step * factor) <= n:
            step *= factor
            break
    return [round(step * i, 6) for i in range(int(math.ceil(top / step)) + 2)]


def _count(values: list[float], edges: list[float]) -> list[int]:
    counts = [0] * (len(edges) - 1)
    for v in values:
        for i in range(len(edges) - 1):
            if v < edges[i + 1] or i == len(edges) - 2:
                counts[i] += 1
                break
    return counts


def _options(values: list[str]) -> str:
    return "".join(f'<option value="{escape(v)}">{escape(v)}</option>' for v in values)


def _error_of(sample: SampleRecord) -> str:
    if sample.ok and sample.passed:
        return "none"
    return sample.error_type or ("failed" if not sample.ok else "wrong")


def render(runs: list[Run], title: str = "bitagent report") -> str:
    data = comparison(runs)
    labels = [r["label"] for r in data["runs"]]
    out = [f"<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{escape(title)}</title>",
           f'<meta name="viewport" content="width=device-width,initial-scale=1"><style>{CSS}</style></head><body>',
           f"<h1>{escape(title)}</h1>",
           f'<p class="muted">{len(runs)} run(s), generated {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M UTC} by '
           f"bitagent. Scores are means over each run's samples (a failed request scores 0); intervals are 95 %."
           "</p>"]

    # leaderboard, best first: only when every run answered the same tasks and was scored the same way
    comparable = data["comparable"]
    out.append("<h2>Leaderboard</h2>")
    if not comparable:
        out.append('<p class="warning" id="not-comparable">Not ranked: these runs are not comparable. '
                   + " ".join(escape(w) + "." for w in data["warnings"]) + "</p>")
    out.append('<table id="leaderboard"><thead><tr><th>#</th><th>model [tool format, seed] (run)</th><th>tasks'
               '</th><th>scorer</th><th>task set</th><th class="num">samples</th><th class="num">mean score</th>'
               '<th class="num">95% CI</th><th class="num">passed</th><th class="num">failed</th>'
               '<th class="num">mean latency</th></tr></thead><tbody>')
    all_row = data["categories"][-1]["runs"]
    order = sorted(range(len(runs)), key=lambda i: -(all_row[i]["mean"] or 0.0)) if comparable else range(len(runs))
    for rank, i in enumerate(order, 1):
        run = runs[i]
        traits = run.traits
        samples = list(run.samples.values())
        run_latencies = [s.completion.latency_s for s in samples if s.ok]
        cell = all_row[i]
        scorer = f"{traits['scorer']} {traits['scorer_version'] or ''}".strip()
        task_set = (f"seed {traits['seed']}, limit {'all' if traits['limit'] is None else traits['limit']}, "
                    f"digest {str(traits['task_digest'])[:10]}")
        out.append(f"<tr><td>{rank if comparable else '-'}</td><td>{escape(labels[i])}</td>"
                   f"<td>{escape(str(run.results.config.get('tasks')))}</td><td>{escape(scorer)}</td>"
                   f"<td>{escape(task_set)}</td><td class=\"num\">{cell['n']}</td>"
                   f"<td class=\"num\"><b>{(cell['mean'] or 0):.3f}</b></td><td class=\"num\">{cell['ci_low']:.3f}-"
                   f"{cell['ci_high']:.3f}</td><td class=\"num\">{sum(s.ok and s.passed for s in samples)}</td>"
                   f"<td class=\"num\">{sum(not s.ok for s in samples)}</td><td class=\"num\">"
                   f"{(sum(run_latencies) / len(run_latencies)) if run_latencies else 0:.2f} s</td></tr>")
    out.append("</tbody></table>")
    out.append('<h2>Errors per run</h2><table id="errors"><thead><tr><th>run</th><th>error type</th>'
               '<th class="num">samples</th></tr></thead><tbody>')
    for label, run_data in zip(labels, data["runs"]):
        counts = run_data["error_counts"] or {"(none)": 0}
        for error, count in counts.items():
            out.append(f'<tr><td>{escape(label)}</td><td>{escape(error)}</td><td class="num">{count}</td></tr>')
    out.append("</tbody></table>")
    for pair in data["paired"]:
        if pair["n"]:
            verdict = "a real difference" if pair["p_value"] < 0.05 else "no significant difference"
            out.append(f'<p class="note">{escape(pair["b"])} vs {escape(pair["a"])} on {pair["n"]} shared tasks: '
                       f"difference {pair['diff']:+.3f} (95 % CI {pair['ci_low']:+.3f} to {pair['ci_high']:+.3f}), "
                       f"paired permutation test p = {pair['p_value']:.4f}: {verdict}.</p>")

    # per-category bars with error bars
    categories = [row["category"] for row in data["categories"]]
    values = [[(c["mean"], c["ci_low"], c["ci_high"]) if c["mean"] is not None else None for c in row["runs"]]
              for row in data["categories"]]
    out.append("<h2>Score per category</h2>" + svg.legend(labels))
    out.append(svg.grouped_bars(categories, labels, values, "mean score per category, 95 % intervals"))

    # distributions
    scores = [[s.score if s.ok else 0.0 for s in run.samples.values()] for run in runs]
    edges = [i / 10 for i in range(11)]
    out.append("<h2>Score distribution</h2>" + svg.legend(labels))
    out.append(svg.histograms(edges, labels, [_count(v, edges) for v in scores], "score distribution", "score",
                              "score-histogram"))
    latencies = [[s.completion.latency_s for s in run.samples.values() if s.ok] for run in runs]
    lat_edges = _bins(latencies)
    out.append("<h2>Latency distribution</h2>" + svg.legend(labels))
    out.append(svg.histograms(lat_edges, labels, [_count(v, lat_edges) for v in latencies],
                              "latency per request (scored samples)", "seconds", "latency-histogram"))

    # every sample, the ones that passed too, filterable
    every = [(label, s) for label, run in zip(labels, runs) for s in run.samples.values()]
    shown = every[:MAX_SAMPLES]
    categories_f = sorted({s.category or "all" for _, s in every})
    errors_f = sorted({_error_of(s) for _, s in every})
    n_not_passed = sum(not (s.ok and s.passed) for _, s in every)
    out.append(f"<h2>Samples ({len(every)}, {n_not_passed} did not pass)</h2>")
    if len(every) > len(shown):
        out.append(f'<p class="note">showing the first {len(shown)} of {len(every)}</p>')
    out.append('<div class="filters"><input id="q" type="search" placeholder="filter: task id, text, error...">'
               f'<select id="f-run"><option value="">all runs</option>{_options(labels)}</select>'
               f'<select id="f-cat"><option value="">all categories</option>{_options(categories_f)}</select>'
               f'<select id="f-err"><option value="">all errors</option>{_options(errors_f)}</select>'
               '<select id="f-verdict"><option value="">passed or not</option><option value="passed">passed'
               '</option><option value="not-passed">did not pass</option><option value="wrong">wrong answer'
               '</option><option value="failed">failed request</option></select>'
               '<span class="muted"><span id="shown">0</span> shown</span></div>')
    out.append('<table id="samples" class="samples"><thead><tr><th>run</th><th>task</th><th>category</th>'
               '<th>error</th><th class="num">score</th></tr></thead><tbody>')
    for label, s in shown:
        question = _last_prompt(s)
        answer = s.completion.error or s.completion.text or json.dumps(
            [c.to_json() for c in s.completion.tool_calls], ensure_ascii=False)
        diff = "".join(f'<span class="{ {"-": "del", "+": "add"}.get(mark, "same") }">{escape(mark)} '
                       f"{escape(text)}</span>\n" for mark, text in call_diff(s.expected_calls, s.decoded_calls))
        error = _error_of(s)
        verdict = "passed" if s.ok and s.passed else ("wrong" if s.ok else "failed")
        out.append(f'<tr class="sample" data-run="{escape(label)}" data-category="{escape(s.category or "all")}" '
                   f'data-error="{escape(error)}" data-verdict="{verdict}"><td>{escape(label)}</td><td><details><summary>'
                   f"{escape(s.task_id)}</summary><div><b>prompt</b><pre>{escape(question)}</pre><b>raw answer</b>"
                   f"<pre>{escape(answer)}</pre><b>expected (-) vs called (+)</b><pre class=\"diff\">{diff}</pre>"
                   f"{f'<b>detail</b><pre>{escape(s.detail)}</pre>' if s.detail else ''}</div></details></td>"
                   f"<td>{escape(s.category)}</td><td>{escape(error)}</td><td class=\"num\">{s.score:.2f}</td></tr>")
    out.append("</tbody></table>")
    out.append(f"<script>{SCRIPT}</script></body></html>")
    return "\n".join(out)
