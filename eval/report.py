"""``memarl report``: several evaluations of one suite side by side, as one table and one plot.

Each entry is ``LABEL=PATH``; PATH is an evaluation folder (``memarl eval --out``, holding
``summary.json``) or a run directory, whose ``eval/SUITE`` folder is then read. The report is
built from the summaries ``memarl eval`` wrote, so it re-plays nothing and costs nothing.

Writes ``OUT.md`` (per entry: the metric over the whole suite and over each band, the other
metrics over the whole suite; then the metric at each axis value when the suite has few of them), ``OUT.json`` and ``OUT.png``
(that metric against the suite's axis, one line per entry with its 95% CI band, and T-Maze's
0.5 chance line).
"""
from __future__ import annotations

import dataclasses
import json
import textwrap
from pathlib import Path
from typing import Any

import numpy as np

from memarl.configs import option_label, validate_fields
from memarl.errors import MemarlError
from memarl.eval.evaluate import format_metric, style_metric_axes
from memarl.files import check_output_file

MAX_AXIS_COLUMNS = 16
"""a suite with more axis values than this gets bands only in the table (the plot has them all)"""
LINE_STYLES = ("-", "--", ":", "-.")
MARKERS = ("o", "s", "^", "D")
"""line style and marker of the entries of each pass through the colour cycle"""


@dataclasses.dataclass
class ReportConfig:
    """``memarl report``: evaluations of one suite as one table and one plot."""

    entries: tuple[str, ...] = ()
    """LABEL=PATH, one per line of the report; PATH is an evaluation folder or a run directory"""
    suite: str | None = None
    """the suite whose evaluations to read (needed for run directories; checked against each summary)"""
    out: str = ""
    """output path without suffix: OUT.md, OUT.json and OUT.png are written"""
    metric: str | None = None
    """the metric plotted and tabled per axis value (default: the suite's first metric)"""
    title: str | None = None
    """title of the table and the plot (default: the suite's name)"""
    notes: tuple[str, ...] = ()
    """lines put under the title (how the runs were trained, the budget)"""
    force: bool = False
    """replace an earlier report at OUT"""

    def validate(self) -> list[Path]:
        """Every option and output file before anything is read or written."""
        validate_fields(self, label=option_label)
        if not self.entries:
            raise MemarlError("report needs at least one LABEL=PATH entry")
        if not self.out:
            raise MemarlError("--out is required (the path of the report without suffix)")
        for label, value in (("--suite", self.suite), ("--metric", self.metric), ("--title", self.title)):
            if value is not None and not value.strip():
                raise MemarlError(f"{label} must not be empty")
        return [check_output_file(Path(self.out + suffix), "--out", self.force)
                for suffix in (".md", ".json", ".png")]


def parse_entry(entry: str) -> tuple[str, str]:
    label, sep, path = entry.partition("=")
    if not sep or not label.strip() or not path.strip():
        raise MemarlError(f"report entry {entry!r} must be LABEL=PATH")
    return label.strip(), path.strip()


def load_summary(path: str, suite: str | None) -> dict:
    """The ``summary.json`` of an evaluation folder, or of a run's evaluation of ``suite``."""
    folder = Path(path)
    if not folder.exists():
        raise MemarlError(f"{path} does not exist")
    if not (folder / "summary.json").is_file():
        if suite is None:
            raise MemarlError(f"{path} has no summary.json; pass --suite to read a run's "
                              f"eval/SUITE folder")
        folder = folder / "eval" / Path(suite).stem
        if not (folder / "summary.json").is_file():
            raise MemarlError(f"no evaluation of {suite} in {path} (run `memarl eval "
                              f"{path} --suite {suite}` first)")
    try:
        summary = json.loads((folder / "summary.json").read_text())
    except (OSError, ValueError) as error:
        raise MemarlError(f"{folder / 'summary.json'} is not readable: {error}") from None
    if suite is not None and summary.get("suite") != Path(suite).stem:
        raise MemarlError(f"{folder} holds suite {summary.get('suite')!r}, not {suite!r}")
    return summary


def overall(summary: dict, metric: str) -> float:
    """Episode-weighted mean of ``metric`` over every axis value."""
    groups = summary["groups"]
    weights = np.array([g["episodes"] for g in groups], dtype=np.float64)
    return float(np.dot(weights, [g[metric] for g in groups]) / weights.sum())


def build_report(cfg: ReportConfig) -> dict[str, Any]:
    """The entries' summaries, checked to be of one suite with one axis and the metric."""
    entries = [parse_entry(e) for e in cfg.entries]
    labels = [label for label, _ in entries]
    if len(set(labels)) != len(labels):
        raise MemarlError(f"labels must differ, got {', '.join(labels)}")
    summaries = [load_summary(path, cfg.suite) for _, path in entries]
    suites = {s["suite"] for s in summaries}
    if len(suites) > 1:
        raise MemarlError(f"the entries evaluate different suites ({', '.join(sorted(suites))})")
    metrics = summaries[0]["metrics"]
    metric = cfg.metric if cfg.metric is not None else metrics[0]
    if metric not in metrics:
        raise MemarlError(f"--metric {metric!r} is not a metric of suite {suites.pop()} "
                          f"({', '.join(metrics)})")
    return {"suite": summaries[0]["suite"], "axis": summaries[0]["axis"], "metric": metric,
            "metrics": metrics, "title": cfg.title or f"{summaries[0]['suite']}",
            "notes": list(cfg.notes),
            "entries": [{"label": label, "path": path, "policy": s.get("label"),
                         "overall": {m: overall(s, m) for m in metrics},
                         "bands": s["bands"], "groups": s["groups"]}
                        for (label, path), s in zip(entries, summaries)]}


def report_markdown(report: dict) -> str:
    metrics, axis, metric = report["metrics"], report["axis"], report["metric"]
    entries = report["entries"]
    lines = [f"# {report['title']}", ""] + [f"- {n}" for n in report["notes"]]
    lines.append(f"- suite `{report['suite']}`; built by `memarl report` from each entry's "
                 f"`summary.json`")
    total = sum(g["episodes"] for g in entries[0]["groups"])
    # a band holding every episode repeats the "all" column
    band_names = [b["band"] for b in entries[0]["bands"] if b["episodes"] < total]
    others = [m for m in metrics if m != metric]
    header = [f"{metric} all"] + [f"{metric} {name}" for name in band_names] + [f"{m} all" for m in others]
    lines += ["", "| entry | " + " | ".join(header) + " |", "|---|" + "---|" * len(header)]
    for entry in entries:
        bands = {b["band"]: b for b in entry["bands"]}
        cells = [format_metric(entry["overall"][metric])]
        cells += [format_metric(bands[name][metric]) if name in bands else "-" for name in band_names]
        cells += [format_metric(entry["overall"][m]) for m in others]
        lines.append(f"| {entry['label']} | " + " | ".join(cells) + " |")
    values = sorted({g[axis] for e in entries for g in e["groups"]}, key=lambda v: (isinstance(v, str), v))
    if len(values) <= MAX_AXIS_COLUMNS:
        lines += ["", f"{metric} at each {axis.replace('_', ' ')} (mean ± 95% CI half-width):", "",
                  "| entry | " + " | ".join(str(v) for v in values) + " |",
                  "|---|" + "---|" * len(values)]
        for entry in entries:
            by = {g[axis]: g for g in entry["groups"]}
            cells = [f"{format_metric(by[v][metric])} ± {format_metric(by[v][metric + '_ci95'])}" if v in by else "-"
                     for v in values]
            lines.append(f"| {entry['label']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot_report(report: dict, path: Path) -> None:
    """The metric against the axis, a line per entry; a bar per entry when the axis has one value."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    axis, metric, entries = report["axis"], report["metric"], report["entries"]
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    values = sorted({g[axis] for e in entries for g in e["groups"]}, key=str)
    if len(values) == 1:
        ax.bar(range(len(entries)), [e["groups"][0][metric] for e in entries],
               yerr=[e["groups"][0][f"{metric}_ci95"] for e in entries], capsize=3, alpha=0.8)
        ax.set_xticks(range(len(entries)), [e["label"] for e in entries], rotation=30,
                      ha="right", fontsize=8)
        ax.set_xlabel(f"{axis.replace('_', ' ')} {values[0]}")
        style_metric_axes(ax, axis, metric, [])
    else:
        all_xs: list[float] = []
        colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
        for index, entry in enumerate(entries):
            groups = entry["groups"]
            xs = list(range(len(groups))) if axis == "map_name" else [g[axis] for g in groups]
            mean = np.array([g[metric] for g in groups])
            ci = np.array([g[f"{metric}_ci95"] for g in groups])
            # past the colour cycle, a new line style and marker keep every entry distinguishable
            cycle = index // len(colors)
            color = colors[index % len(colors)]
            ax.plot(xs, mean, color=color, linestyle=LINE_STYLES[cycle % len(LINE_STYLES)],
                    marker=MARKERS[cycle % len(MARKERS)], markersize=3, label=entry["label"])
            ax.fill_between(xs, mean - ci, mean + ci, color=color, alpha=0.15)
            all_xs += xs
        style_metric_axes(ax, axis, metric, all_xs)
        ax.set_xlabel(axis.replace("_", " ") if axis != "map_name" else "map (suite order)")
    ax.set_ylabel(metric)
    ax.set_title(textwrap.fill(report["title"], 90), fontsize=9)
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_report(cfg: ReportConfig) -> list[Path]:
    md_path, json_path, png_path = cfg.validate()
    report = build_report(cfg)
    md_path.parent.mkdir(parents=True, exist_ok=True)
    md_path.write_text(report_markdown(report))
    json_path.write_text(json.dumps(report, indent=1) + "\n")
    plot_report(report, png_path)
    return [md_path, json_path, png_path]
