"""``report.md`` and a self-contained ``report.html`` (figures inlined as base64) from one block list."""
from __future__ import annotations

import base64
import html
import math
from pathlib import Path

from pvr.errors import PvrError
from pvr.report import stats
from pvr.report.analysis import Analysis
from pvr.report.runs import Run

Block = tuple  # ("h", level, text) | ("p", text) | ("table", header, rows, bold_rows) | ("fig", path, caption)


def ci(mean: float, lo: float, hi: float, n: int, fmt: str = ".3f") -> str:
    if math.isnan(mean):
        return "-"
    if n < 2:
        return f"{mean:{fmt}} (1 seed, no interval)"
    return f"{mean:{fmt}} [{lo:{fmt}}, {hi:{fmt}}]"


#: pvr suites whose tasks define no success (their score is the normalised return)
NO_SUCCESS_SUITES = {"DMC", "Atari"}


def _defines_success(env: str) -> bool:
    import pvr.envs

    try:
        return pvr.envs.suite_for(env).name not in NO_SUCCESS_SUITES
    except PvrError:
        return True


def task_rate(t: dict) -> str:
    """The pooled success cell of a per-task row; "n/a" where the task defines no success (DMC, Atari)."""
    return rate(t["successes"], t["episodes"]) if _defines_success(t["env"]) else "n/a (no success defined)"


def rate(k: int, n: int) -> str:
    if n == 0:
        return "-"
    lo, hi = stats.wilson(k, n)
    return f"{k / n:.3f} ({k}/{n}) [{lo:.3f}, {hi:.3f}]"


def _seconds(s: float) -> str:
    return f"{s:.0f} s" if s < 120 else (f"{s / 60:.1f} min" if s < 7200 else f"{s / 3600:.1f} h")


def wall_time(run: Run | None) -> str:
    if run is None or not run.wall_time:
        return "-"
    return ", ".join(f"{k} {_seconds(v)}" for k, v in run.wall_time.items())


STAGES = (("collect", "collect"), ("embed", "embed"), ("train", "train"), ("evaluate", "evaluation"))
STAGES_NOTE = ("Stage times: wall time of collect and embed (the run's datasets, recorded in the stores; "
               "shared by every run on the same data, so they are not summed across runs), train (every epoch) "
               "and evaluation (every evaluation point, in the evaluation process, which runs alongside "
               "training). — where a stage recorded no time (e.g. a run made before pvr recorded it).")


def stage_cells(run: Run | None) -> list[str]:
    """collect, embed, train and evaluation wall time of a run; — where none is recorded."""
    stages = {} if run is None else run.stages
    return [_seconds(stages[k]) if k in stages else "—" for k, _ in STAGES]


METHODS = (
    "Score: the success rate where the env has one, else the return divided by the manifest's maximum "
    "(DMC: 1000). Metric *final* reads the last evaluation (the original paper's reading), *best* the highest "
    "score over training (CortexBench's). Per task: mean over finished seeds with a 95 % percentile-bootstrap "
    "interval over seeds, and the success rate pooled over all evaluation episodes with a 95 % Wilson interval "
    "(under *best* the episodes of the selected evaluation, so optimistic). Per suite and across suites: "
    "rliable's stratified bootstrap over runs within each task, on the tasks every encoder has results on, "
    "using per task as many seeds as the encoder's scarcest task has; interquartile mean (IQM), mean, and the "
    "probability of improvement P(X > Y) (Mann-Whitney per task, averaged over tasks). Mean rank: the rank of "
    "each encoder's per-task mean (1 = best, ties share the average rank), averaged over those tasks. Only "
    "finished runs (with a `done` marker) enter the statistics; learning curves also show unfinished runs."
)


def blocks(a: Analysis, figures: list[tuple[Path, str]], outside: list[Run]) -> list[Block]:
    out: list[Block] = [("h", 1, f"pvr report: {a.protocol}"),
                        ("p", f"Computed from: {a.basis()}; {a.reps} bootstrap resamples.")]
    missing = a.missing
    out.append(("p", f"**{len(missing)} of {len(a.slots)} expected runs are missing**"
                     " (no run directory, or not finished): marked in the Runs table."
                if missing else f"All {len(a.slots)} expected runs are finished."))

    out.append(("h", 2, "Per task"))
    out.append(("p", f"Mean over seeds [95 % bootstrap CI]; success pooled over episodes [95 % Wilson CI]. "
                     f"{a.basis()}."))
    rows = []
    for t in a.per_task:
        seeds = f"{len(t['seeds'])}/{t['expected']}"
        if t["missing_seeds"]:
            seeds += f" (missing seed {', '.join(map(str, t['missing_seeds']))})"
        epochs = "-" if not t["epochs"] else "-".join(map(str, sorted({t["epochs"][0], t["epochs"][-1]})))
        rows.append([t["env"], t["suite"], t["encoder"], seeds,
                     ci(t["score"], *t["score_ci"], len(t["seeds"])) + f" ({t['label']})",
                     task_rate(t),
                     "-" if math.isnan(t["return"]) else f"{t['return']:.3g}", epochs])
    out.append(("table", ["task", "suite", "encoder", "seeds", "score", "success", "return", "epoch"], rows, []))

    if a.per_suite:
        out.append(("h", 2, "Per suite"))
        out.append(("p", "Normalised score over the suite's tasks that every encoder has results on, "
                         "95 % stratified-bootstrap CI."))
        out.append(("table", ["suite", "encoder", "tasks", "runs", "mean", "IQM"],
                    [[s["suite"], s["encoder"], str(len(s["envs"])), str(s["runs"]),
                      ci(s["mean"], *s["mean_ci"], s["seeds_per_task"]),
                      ci(s["iqm"], *s["iqm_ci"], s["seeds_per_task"])] for s in a.per_suite], []))

    if a.overall:
        o = a.overall
        out.append(("h", 2, "Across suites"))
        out.append(("p", f"{len(o['envs'])} tasks ({', '.join(o['envs'])}); 95 % stratified-bootstrap CIs."))
        out.append(("table", ["encoder", "runs", "IQM", "mean", "mean rank"],
                    [[e, str(o["runs"][e]), ci(g["iqm"], *g["iqm_ci"], o["seeds_per_task"][e]),
                      ci(g["mean"], *g["mean_ci"], o["seeds_per_task"][e]), f"{o['mean_rank'][e]:.2f}"]
                     for e, g in o["aggregates"].items()], []))
        if o["poi"]:
            out.append(("table", ["X", "Y", "P(X > Y)", "runs per task (X, Y)"],
                        [[p["x"], p["y"], ci(p["p"], *p["ci"], min(p["runs"])), f"{p['runs'][0]}, {p['runs'][1]}"]
                         for p in o["poi"]], []))

    out.append(("h", 2, "Figures"))
    for path, caption in figures:
        out.append(("fig", path, caption))

    out.append(("h", 2, "Runs"))
    rows, bold = [], []
    for s in a.slots:
        envs = list(s.run.curves) if s.run is not None and s.run.curves else [s.task]
        for env in envs:
            ev = s.run.pick(env, a.metric, a.scoring) if s.run is not None else None
            if s.missing:
                bold.append(len(rows))
            rows.append([env, s.encoder, str(s.seed), s.status,
                         "-" if ev is None else str(ev.epoch),
                         "-" if ev is None else f"{a.scoring.score(ev.success, ev.ret, env):.3f}",
                         "-" if ev is None or math.isnan(ev.success) else rate(round(ev.success * ev.episodes),
                                                                               ev.episodes),
                         *stage_cells(s.run), "-" if s.run is None else str(s.run.path)])
    out.append(("table", ["task", "encoder", "seed", "status", "epoch", "score", "success",
                          *(label for _, label in STAGES), "run"], rows, bold))
    out.append(("p", STAGES_NOTE))
    notes = []
    for s in a.slots:
        for d in s.duplicates:
            notes.append(f"{d.path} duplicates ({s.task}, {s.encoder}, seed {s.seed}); {s.run.path} is used.")
    for r in outside:
        notes.append(f"{r.path} ({r.task}, {r.encoder}, seed {r.seed}) is outside the manifest's grid; not used.")
    if notes:
        out.append(("h", 2, "Notes"))
        out += [("p", n) for n in notes]
    out.append(("h", 2, "Method"))
    out.append(("p", METHODS))
    return out


def _md_cell(s: str) -> str:
    return s.replace("|", "\\|")


def markdown(bs: list[Block], out_dir: Path) -> str:
    lines: list[str] = []
    for b in bs:
        if b[0] == "h":
            lines += ["#" * b[1] + " " + b[2], ""]
        elif b[0] == "p":
            lines += [b[1], ""]
        elif b[0] == "table":
            _, head, rows, bold = b
            lines.append("| " + " | ".join(head) + " |")
            lines.append("|" + "|".join("---" for _ in head) + "|")
            for i, r in enumerate(rows):
                cells = [_md_cell(c) for c in r]
                if i in bold:
                    cells = [f"**{c}**" for c in cells]
                lines.append("| " + " | ".join(cells) + " |")
            lines.append("")
        elif b[0] == "fig":
            rel = Path(b[1]).resolve().relative_to(out_dir.resolve()) if _inside(b[1], out_dir) else b[1]
            lines += [f"![{Path(b[1]).stem}]({rel})", "", f"*{b[2]}*", ""]
    return "\n".join(lines)


def _inside(p: Path, d: Path) -> bool:
    try:
        Path(p).resolve().relative_to(d.resolve())
        return True
    except ValueError:
        return False


def _inline(text: str) -> str:
    """Escape, then turn the markdown bold and code the blocks use into tags."""
    import re

    t = html.escape(text)
    t = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", t)
    t = re.sub(r"\*(.+?)\*", r"<em>\1</em>", t)
    return re.sub(r"`(.+?)`", r"<code>\1</code>", t)


CSS = ("body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}"
       "table{border-collapse:collapse;margin:1em 0;font-size:0.9em}th,td{border:1px solid #ccc;padding:3px 8px;"
       "text-align:left}th{background:#f3f3f3}tr.missing td{background:#fde8e8;font-weight:600}"
       "figure{margin:1.5em 0}img{max-width:100%}figcaption{font-size:0.85em;color:#555}")


def html_page(bs: list[Block]) -> str:
    title = next((b[2] for b in bs if b[0] == "h"), "pvr report")
    parts = ["<!DOCTYPE html>", "<html><head><meta charset='utf-8'>", f"<title>{html.escape(title)}</title>",
             f"<style>{CSS}</style></head><body>"]
    for b in bs:
        if b[0] == "h":
            parts.append(f"<h{b[1]}>{html.escape(b[2])}</h{b[1]}>")
        elif b[0] == "p":
            parts.append(f"<p>{_inline(b[1])}</p>")
        elif b[0] == "table":
            _, head, rows, bold = b
            parts.append("<table><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in head) + "</tr>")
            for i, r in enumerate(rows):
                cls = " class='missing'" if i in bold else ""
                parts.append(f"<tr{cls}>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>")
            parts.append("</table>")
        elif b[0] == "fig":
            data = base64.b64encode(Path(b[1]).read_bytes()).decode("ascii")
            parts.append(f"<figure><img alt='{html.escape(Path(b[1]).name)}' src='data:image/png;base64,{data}'>"
                         f"<figcaption>{_inline(b[2])}</figcaption></figure>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def console_table(a: Analysis) -> str:
    """The per-task table for a terminal."""
    head = ["encoder", "env", "seeds", "epoch", "score [95% CI]", "success [Wilson 95%]", "return"]
    rows = []
    for t in a.per_task:
        seeds = f"{len(t['seeds'])}/{t['expected']}"
        rows.append([t["encoder"], t["env"], seeds + ("*" if t["missing_seeds"] else ""),
                     "-" if not t["epochs"] else str(t["epochs"][-1]),
                     ci(t["score"], *t["score_ci"], len(t["seeds"]), ".2f"), task_rate(t),
                     "-" if math.isnan(t["return"]) else f"{t['return']:.3f}"])
    widths = [max(len(x) for x in col) for col in zip(head, *rows)]
    line = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()  # noqa: E731
    out = [line(head), line(["-" * w for w in widths])] + [line(r) for r in rows]
    if a.missing:
        out.append(f"* {len(a.missing)} of {len(a.slots)} expected runs missing (no run directory or unfinished): "
                   "see the Runs table of report.md")
    return "\n".join(out)
