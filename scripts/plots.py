#!/usr/bin/env python3
"""Draws the benchmarks' charts (SVG) from the CSVs `make bench` writes.

    scripts/plots.py [RESULTS_DIR [CHARTS_DIR]]    (build/bench, docs/img)

The CSV schema is documented in mm/benches/support/mod.rs: one row per
(workload, subject, metric) of a run, runs appended. Each chart uses the
newest row of every (workload, subject, metric), so a run narrowed to some
workloads (`cargo host-bench --bench heap -- burst`) updates those only; its
footnote names the runs and commits drawn. Charts:

    heap-mean.svg     mean ns/op (throughput) per allocator per workload,
                      the heap's own workloads (TUNED_HEAP_WORKLOADS)
    heap-latency.svg  p50 / p99 / p99.9 ns of single operations, the same
    heap-untuned.svg  the workloads the heap was not tuned for (all other
                      heap workloads): mean ns/op per allocator, and the
                      efficiency and in-place realloc rate of each
    paging.svg        each paging workload's figure per subject
    pmm-fill.svg      PMM mean ns per alloc+free pair by fill level, from
                      the pmm workloads named pairs-fill-<percent>
    slab.svg          object cache: mean ns/op per subject on 1 and 2
                      threads, and each subject's 2-thread scaling

A missing CSV, or one without the rows a chart needs, skips that chart
with a one-line note. The SVGs are reproducible (no date, fixed ids) so
that a redraw of the same figures changes no file.
"""

import csv
import math
import os
import re
import sys

import matplotlib

matplotlib.use("svg")
import matplotlib.pyplot as plt  # noqa: E402 (after the backend is chosen)

plt.rcParams.update(
    {
        "svg.hashsalt": "incroos",  # fixed element ids
        "svg.fonttype": "none",  # text stays text
        "font.family": "sans-serif",
        "font.size": 9,
        "axes.spines.top": False,
        "axes.spines.right": False,
    }
)
# The same colour for a subject in every chart of a benchmark.
PALETTE = plt.get_cmap("tab10").colors
SUBJECT_COLOURS = {}


def colour(subject):
    if subject not in SUBJECT_COLOURS:
        SUBJECT_COLOURS[subject] = PALETTE[len(SUBJECT_COLOURS) % len(PALETTE)]
    return SUBJECT_COLOURS[subject]


# The heap benchmark's own workloads, the ones the heap was tuned on
# (mm/benches/heap.rs); every other heap workload is one it was not tuned
# for (mm/benches/heap/untuned.rs, threads.rs) and goes to heap-untuned.svg.
TUNED_HEAP_WORKLOADS = ["mix-300-live", "mix-4000-live", "burst-25k-64b"]
TUNED = "|".join(map(re.escape, TUNED_HEAP_WORKLOADS))


def note(message):
    print(f"plots: {message}")


class Results:
    """The newest row of each (workload, subject, metric) of one CSV."""

    def __init__(self, path):
        self.path = path
        self.rows = {}
        with open(path, newline="") as file:
            for row in csv.DictReader(file):
                row["value"] = float(row["value"])
                key = (row["workload"], row["subject"], row["metric"])
                # Rows come oldest first; a later run replaces.
                self.rows.pop(key, None)
                self.rows[key] = row

    def select(self, metric, workload=None):
        """Rows of `metric` (of `workload`, or a regex over workloads), in
        the order the newest run wrote them."""
        ordered = sorted(self.rows.values(), key=lambda r: r["run"])
        return [
            r
            for r in ordered
            if r["metric"] == metric
            and (workload is None or re.fullmatch(workload, r["workload"]))
        ]

    def footnote(self, rows):
        runs = sorted({(r["run"], r["commit"]) for r in rows})
        drawn = "; ".join(
            f"{run}" + (f", code {commit}" if commit else "") for run, commit in runs
        )
        return f"{os.path.basename(self.path)}: make bench {drawn}"


def ordered(values):
    """`values` once each, in first-seen order."""
    return list(dict.fromkeys(values))


def label(value):
    """3 significant digits, whole numbers from 100 up (as the tables)."""
    if value == 0:
        return "0"
    digits = max(0, 2 - math.floor(math.log10(abs(value))))
    return f"{value:,.{digits}f}"


def log_scale_if_wide(axes, values):
    positive = [v for v in values if v > 0]
    if positive and max(positive) / min(positive) > 30:
        axes.set_yscale("log")
        return True
    return False


def finish(figure, path, footnote):
    # A figure-level x label, so the layout makes room for it.
    figure.supxlabel(footnote, x=0.01, ha="left", fontsize=7, color="0.4")
    figure.savefig(path, metadata={"Date": None})
    plt.close(figure)
    note(f"wrote {path}")


def grouped_bars(axes, rows, groups, subjects, value_label=True):
    """One group of bars per workload, one bar per subject."""
    width = 0.8 / len(subjects)
    by_key = {(r["workload"], r["subject"]): r["value"] for r in rows}
    for index, subject in enumerate(subjects):
        xs, heights = [], []
        for position, group in enumerate(groups):
            if (group, subject) in by_key:
                xs.append(position + (index - (len(subjects) - 1) / 2) * width)
                heights.append(by_key[(group, subject)])
        bars = axes.bar(xs, heights, width, label=subject, color=colour(subject))
        if value_label:
            axes.bar_label(bars, [label(h) for h in heights], fontsize=6, padding=1)
    axes.set_xticks(range(len(groups)), groups)


def heap_mean(results, out):
    rows = results.select("mean", TUNED)
    if not rows:
        return note(f"{results.path} has no mean rows: skipped heap-mean.svg")
    workloads = ordered(r["workload"] for r in rows)
    subjects = ordered(r["subject"] for r in rows)
    units = ordered(r["unit"] for r in rows)
    figure, axes = plt.subplots(figsize=(8, 4.2), layout="constrained")
    grouped_bars(axes, rows, workloads, subjects)
    log = log_scale_if_wide(axes, [r["value"] for r in rows])
    axes.set_ylabel(f"mean {'/'.join(units)}{' (log scale)' if log else ''}")
    axes.set_title(
        "Heap throughput: a run's time / its operations, nothing timed per "
        "operation (lower is faster)"
    )
    axes.legend(fontsize=7, ncols=min(len(subjects), 3), loc="upper left")
    axes.margins(y=0.15)
    finish(figure, os.path.join(out, "heap-mean.svg"), results.footnote(rows))


def heap_latency(results, out):
    percentiles = ["p50", "p99", "p99.9"]
    rows = [r for p in percentiles for r in results.select(p, TUNED)]
    if not rows:
        return note(f"{results.path} has no latency rows: skipped heap-latency.svg")
    workloads = ordered(r["workload"] for r in results.select("p50", TUNED))
    subjects = ordered(r["subject"] for r in results.select("p50", TUNED))
    figure, panels = plt.subplots(
        1, len(workloads), figsize=(3.2 * len(workloads), 3.8), layout="constrained",
        sharey=True, squeeze=False,
    )
    for axes, workload in zip(panels[0], workloads):
        mine = [dict(r, workload=r["metric"]) for r in rows if r["workload"] == workload]
        grouped_bars(axes, mine, percentiles, subjects, value_label=False)
        axes.set_yscale("log")
        axes.set_title(workload)
    panels[0][0].set_ylabel("ns per operation, TSC resolution ~10 ns (log scale)")
    # The first panel has room above its bars (the lists peak later).
    panels[0][0].legend(fontsize=7, loc="upper left")
    figure.suptitle("Heap latency: single operations timed with the TSC (lower is faster)")
    finish(figure, os.path.join(out, "heap-latency.svg"), results.footnote(rows))


def heap_untuned(results, out):
    rows = [r for r in results.select("mean") if r["workload"] not in TUNED_HEAP_WORKLOADS]
    if not rows:
        return note(f"{results.path} has no untuned-workload rows: skipped heap-untuned.svg")
    workloads = ordered(r["workload"] for r in rows)
    # The baseline first, whichever run drew it last.
    baselines = {r["baseline"] for r in rows if r["baseline"] == r["subject"]}
    subjects = sorted(ordered(r["subject"] for r in rows), key=lambda s: s not in baselines)
    units = ordered(r["unit"] for r in rows)
    efficiency = results.select("efficiency", r"mixed-lifetimes-efficiency")
    in_place = results.select("grown-in-place")
    figure = plt.figure(figsize=(10, 7), layout="constrained")
    top, bottom = figure.subfigures(2, 1, height_ratios=[1.6, 1])
    axes = top.subplots()
    grouped_bars(axes, rows, workloads, subjects, value_label=False)
    log = log_scale_if_wide(axes, [r["value"] for r in rows])
    axes.set_ylabel(f"mean {'/'.join(units)}{' (log scale)' if log else ''}")
    axes.set_title(
        "Heap throughput on workloads it was not tuned for: a run's time / its "
        "operations (lower is faster;\nabove each bar its ratio to "
        f"{', '.join(sorted(baselines)) or 'the baseline'} in the same run)"
    )
    axes.tick_params(axis="x", labelsize=7)
    axes.legend(fontsize=7, ncols=min(len(subjects), 4), loc="upper left")
    axes.margins(y=0.2)
    # Each bar's ratio to this heap above it, where the run measured one.
    width = 0.8 / len(subjects)
    for r in rows:
        if r["ratio"] and r["subject"] != r["baseline"]:
            x = workloads.index(r["workload"]) + (
                subjects.index(r["subject"]) - (len(subjects) - 1) / 2
            ) * width
            axes.annotate(f"{label(float(r['ratio']))}x", (x, r["value"]), textcoords="offset points",
                          xytext=(0, 2), ha="center", fontsize=5, rotation=90)
    left, right = bottom.subplots(1, 2)
    for panel, panel_rows, title, ylabel in [
        (left, efficiency, "Efficiency: mixed lifetimes to the first failure (higher is better)",
         "live requested bytes / arena, %"),
        (right, in_place, "realloc growth: grows that kept the address (higher is better)",
         "grown in place, %"),
    ]:
        rank = {subject: i for i, subject in enumerate(subjects)}
        panel_rows = sorted(panel_rows, key=lambda r: rank.get(r["subject"], len(rank)))
        names = [r["subject"] for r in panel_rows]
        values = [r["value"] for r in panel_rows]
        bars = panel.bar(range(len(names)), values, 0.6, color=[colour(n) for n in names])
        panel.bar_label(bars, [label(v) for v in values], fontsize=7, padding=1)
        panel.set_xticks(range(len(names)), names, rotation=30, ha="right", fontsize=7)
        panel.set_title(title, fontsize=8)
        panel.set_ylabel(ylabel)
        panel.margins(y=0.15)
    footnote = results.footnote(rows + efficiency + in_place)
    finish(figure, os.path.join(out, "heap-untuned.svg"), footnote)


def paging(results, out):
    # Each workload's first figure of a time: mean or time.
    rows = results.select("mean") + results.select("time")
    if not rows:
        return note(f"{results.path} has no mean or time rows: skipped paging.svg")
    workloads = ordered(r["workload"] for r in rows)
    figure, panels = plt.subplots(
        1, len(workloads), figsize=(3.4 * len(workloads), 3.4), layout="constrained",
        squeeze=False,
    )
    for axes, workload in zip(panels[0], workloads):
        mine = [r for r in rows if r["workload"] == workload]
        subjects = [r["subject"] for r in mine]
        values = [r["value"] for r in mine]
        bars = axes.bar(subjects, values, 0.6, color=[colour(s) for s in subjects])
        axes.bar_label(bars, [label(v) for v in values], fontsize=7, padding=1)
        log = log_scale_if_wide(axes, values)
        axes.set_ylabel(f"{mine[0]['metric']} {mine[0]['unit']}{' (log scale)' if log else ''}")
        axes.set_title(workload)
        axes.margins(y=0.15)
    figure.suptitle("Page tables over fake RAM (lower is faster)")
    finish(figure, os.path.join(out, "paging.svg"), results.footnote(rows))


def pmm_fill(results, out):
    rows = results.select("mean", r"pairs-fill-\d+")
    if not rows:
        return note(f"{results.path} has no pairs-fill-<percent> mean rows: skipped pmm-fill.svg")
    figure, axes = plt.subplots(figsize=(6, 3.8), layout="constrained")
    for subject in ordered(r["subject"] for r in rows):
        points = sorted(
            (int(r["workload"].rsplit("-", 1)[1]), r["value"])
            for r in rows
            if r["subject"] == subject
        )
        fills, values = zip(*points)
        axes.plot(fills, values, marker="o", label=subject, color=colour(subject))
        for fill, value in points:
            axes.annotate(label(value), (fill, value), textcoords="offset points",
                          xytext=(0, 5), ha="center", fontsize=7)
    log = log_scale_if_wide(axes, [r["value"] for r in rows])
    axes.set_xlabel("memory allocated before timing (fill, %)")
    units = "/".join(ordered(r["unit"] for r in rows))
    axes.set_ylabel(f"mean {units}{' (log scale)' if log else ''}")
    axes.set_title("PMM: single-frame free+alloc pairs by fill level (lower is faster)")
    axes.legend(fontsize=7, loc="center right")
    axes.margins(y=0.2)
    finish(figure, os.path.join(out, "pmm-fill.svg"), results.footnote(rows))


def slab(results, out):
    rows = results.select("mean")
    scaling = results.select("scaling")
    if not rows or not scaling:
        return note(f"{results.path} has no mean or scaling rows: skipped slab.svg")
    workloads = ordered(r["workload"] for r in rows)
    subjects = ordered(r["subject"] for r in rows)
    figure, (left, right) = plt.subplots(
        1, 2, figsize=(10, 4), layout="constrained", width_ratios=[2, 1]
    )
    grouped_bars(left, rows, workloads, subjects)
    left.set_yscale("log")
    left.set_ylabel("mean ns/op (log scale)")
    left.set_title("Alloc or free of a 64-byte object (lower is faster)")
    left.tick_params(axis="x", labelsize=7, rotation=20)
    left.legend(fontsize=7, loc="upper left")
    left.margins(y=0.15)
    groups = ordered(r["workload"] for r in scaling)
    grouped_bars(right, scaling, groups, ordered(r["subject"] for r in scaling))
    right.axhline(2.0, color="0.5", linewidth=0.8, linestyle="--")
    right.axhline(1.0, color="0.5", linewidth=0.8, linestyle=":")
    right.set_ylabel("1-thread ns/op / 2-thread ns/op")
    right.set_title("Scaling to two threads (2.0: perfect)")
    right.tick_params(axis="x", labelsize=7, rotation=20)
    right.margins(y=0.15)
    finish(figure, os.path.join(out, "slab.svg"), results.footnote(rows + scaling))


def main():
    results_dir = sys.argv[1] if len(sys.argv) > 1 else "build/bench"
    out = sys.argv[2] if len(sys.argv) > 2 else "docs/img"
    os.makedirs(out, exist_ok=True)
    charts = {
        "heap": [heap_mean, heap_latency, heap_untuned],
        "paging": [paging],
        "pmm": [pmm_fill],
        "slab": [slab],
    }
    for bench, draws in charts.items():
        path = os.path.join(results_dir, f"{bench}.csv")
        if not os.path.exists(path):
            note(f"{path} is missing (no benchmark wrote it yet): skipped the {bench} charts")
            continue
        results = Results(path)
        SUBJECT_COLOURS.clear()
        for draw in draws:
            draw(results, out)


if __name__ == "__main__":
    main()
