"""The report's figures: pandas in, matplotlib out, one function per figure.

Colours follow the scheme (the same colour for onnx-int8-dynamic in every figure), markers follow the source
model (baseline, pruned-4, ...), so one variant looks the same everywhere.
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from prunequant.io import save_figure  # noqa: E402
from prunequant.params.quantize import SCHEME_FAMILY  # noqa: E402

MARKERS = ["o", "s", "^", "D", "v", "P", "X", "*"]
GREY = "#b0b0b0"


def scheme_colours(schemes: list[str]) -> dict[str, str]:
    """A fixed colour per scheme, in registry order: tab10 then Dark2, without their greys (grey marks
    dominated variants)."""
    colours = plt.get_cmap("tab10").colors + plt.get_cmap("Dark2").colors
    palette = [h for h in map(matplotlib.colors.to_hex, colours) if h not in ("#7f7f7f", "#666666")]
    ordered = list(SCHEME_FAMILY) + [s for s in schemes if s not in SCHEME_FAMILY]
    return {name: palette[i % len(palette)] for i, name in enumerate(ordered)}


def source_markers(sources: list[str]) -> dict[str, str]:
    return {source: MARKERS[i % len(MARKERS)] for i, source in enumerate(sources)}


def _save(fig, path) -> None:
    fig.tight_layout()
    save_figure(fig, path, dpi=120, bbox_inches="tight")  # legends and labels outside the axes stay whole
    plt.close(fig)


def pareto_mask(cost: np.ndarray, accuracy: np.ndarray) -> np.ndarray:
    """True for variants no other variant beats on both (lower or equal cost and higher or equal accuracy,
    one of them strictly)."""
    front = np.ones(len(cost), dtype=bool)
    for i in range(len(cost)):
        dominated = (cost <= cost[i]) & (accuracy >= accuracy[i]) & ((cost < cost[i]) | (accuracy > accuracy[i]))
        front[i] = not dominated.any()
    return front


def pareto_plot(table: pd.DataFrame, cost: str, cost_label: str, title: str, path, *, log_x: bool = True) -> None:
    """Accuracy against one cost: front variants coloured and labelled, dominated ones grey."""
    data = table.dropna(subset=[cost, "accuracy"]).reset_index(drop=True)
    colours = scheme_colours(data.precision.unique().tolist())
    markers = source_markers(list(dict.fromkeys(data.source)))
    front = pareto_mask(data[cost].to_numpy(float), data.accuracy.to_numpy(float))
    fig, ax = plt.subplots(figsize=(8, 5.2))
    for on_front, row in zip(front, data.itertuples(index=False), strict=True):
        ax.scatter(row._asdict()[cost], 100 * row.accuracy, marker=markers[row.source], s=55 if on_front else 35,
                   color=colours[row.precision] if on_front else GREY, edgecolor="black" if on_front else "none",
                   zorder=3 if on_front else 2)
    line = data[front].sort_values(cost)
    ax.step(line[cost], 100 * line.accuracy, where="post", color="black", linewidth=0.8, alpha=0.6, zorder=1)
    if log_x:
        ax.set_xscale("log")
        plain = matplotlib.ticker.FuncFormatter(lambda value, _: f"{value:g}")
        ax.xaxis.set_major_formatter(plain)
        ax.xaxis.set_minor_formatter(plain)
        ax.tick_params(axis="x", which="minor", labelsize=7)
    ax.margins(x=0.08, y=0.08)
    # Front variants are numbered on the chart and named beside it: labels never overlap.
    names = []
    for i, row in enumerate(line.itertuples(index=False), start=1):
        ax.annotate(str(i), (row._asdict()[cost], 100 * row.accuracy), textcoords="offset points", xytext=(5, 4),
                    fontsize=8, fontweight="bold")
        names.append(f"{i}  {row.label}")
    ax.text(1.02, 0.62, "Pareto front\n" + "\n".join(names), transform=ax.transAxes, va="top", fontsize=8,
            family="monospace")
    ax.set_xlabel(cost_label)
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.25)
    handles = [plt.Line2D([], [], marker=markers[s], color="black", linestyle="none", label=s) for s in markers]
    handles += [plt.Line2D([], [], marker="o", color=GREY, linestyle="none", label="dominated")]
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8, title="source model")
    _save(fig, path)


def latency_plot(bench: pd.DataFrame, x: str, title: str, path) -> None:
    """p50 latency against batch size or sequence length: one panel per source model, one line per scheme
    and runtime, log-log axes."""
    data = bench.dropna(subset=["latency_ms_p50"])
    sources = list(dict.fromkeys(data.source))
    colours = scheme_colours(data.precision.unique().tolist())
    # each runtime's default way is a solid line; fixed shapes and CUDA graphs dashed, torch.compile dotted
    styles = {"eager": "-", "onnxruntime": "-", "openvino": "-", "onnxruntime-fixed": "--", "openvino-fixed": "--",
              "cudagraph": "--", "compile": ":"}
    legend_inches = 3.4
    fig, axes = plt.subplots(1, len(sources), figsize=(4.6 * len(sources) + legend_inches, 4.4), sharey=True,
                             squeeze=False)
    seen = {}
    for ax, source in zip(axes[0], sources, strict=True):
        for (precision, runtime), group in data[data.source == source].groupby(["precision", "runtime"], sort=False):
            group = group.sort_values(x)
            label = precision if runtime in ("eager", "onnxruntime", "openvino") else f"{precision} ({runtime})"
            (line,) = ax.plot(group[x], group.latency_ms_p50, styles.get(runtime, "-"), marker="o", markersize=3,
                              color=colours[precision], label=label)
            seen.setdefault(label, line)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ticks = sorted(data[x].unique())
        ax.set_xticks(ticks, [str(int(t)) for t in ticks])
        ax.minorticks_off()
        ax.set_title(f"{source} ({int(data[data.source == source].layers.iloc[0])} layers)")
        ax.set_xlabel("batch size (sentences)" if x == "batch_size" else "sequence length (tokens)")
        ax.grid(True, which="both", alpha=0.25)
    axes[0][0].set_ylabel("latency p50 (ms)")
    right = 1 - legend_inches / fig.get_figwidth()
    fig.legend(seen.values(), seen.keys(), loc="center left", bbox_to_anchor=(right + 0.005, 0.5), fontsize=8,
               title="scheme (runtime)")
    fig.suptitle(title)
    fig.tight_layout(rect=(0, 0, right, 1))
    save_figure(fig, path, dpi=120, bbox_inches="tight")
    plt.close(fig)


def normalise_cost(values: pd.Series, floor: float) -> pd.Series:
    """Best (lowest) -> 1, worst -> floor, linear in between; all equal -> 1."""
    low, high = values.min(), values.max()
    if high == low:
        return pd.Series(1.0, index=values.index)
    return floor + (1 - floor) * (high - values) / (high - low)


def normalise_accuracy(values: pd.Series, low: float, high: float, floor: float) -> pd.Series:
    return floor + (1 - floor) * ((values - low) / (high - low)).clip(0, 1)


def radar_scores(table: pd.DataFrame, axes: dict[str, str], accuracy_range: tuple[float, float],
                 floor: float) -> pd.DataFrame:
    """Each axis in [floor, 1]: costs over the shown variants inverted (best 1), accuracy within its range."""
    scores = pd.DataFrame(index=table.index)
    for column in axes:
        if column == "accuracy":
            scores[column] = normalise_accuracy(table[column], *accuracy_range, floor)
        else:
            scores[column] = normalise_cost(table[column], floor)
    return scores


def radar_plot(table: pd.DataFrame, axes: dict[str, str], accuracy_range: tuple[float, float], floor: float,
               title: str, path) -> None:
    """One polygon per variant over the given axes (column -> label)."""
    scores = radar_scores(table, axes, accuracy_range, floor)
    colours = scheme_colours(table.precision.unique().tolist())
    angles = np.linspace(0, 2 * np.pi, len(axes), endpoint=False).tolist()
    fig, ax = plt.subplots(figsize=(8.4, 6), subplot_kw={"polar": True})
    markers = source_markers(list(dict.fromkeys(table.source)))
    styles = {source: style for source, style in zip(markers, ["-", "--", ":", "-."] * 4, strict=False)}
    for index, row in table.iterrows():
        values = scores.loc[index].tolist()
        ax.plot(angles + angles[:1], values + values[:1], styles[row.source], marker=markers[row.source],
                linewidth=1.8, color=colours[row.precision], label=row.label)
        ax.fill(angles + angles[:1], values + values[:1], color=colours[row.precision], alpha=0.06)
    ax.set_xticks(angles)
    ax.set_xticklabels(list(axes.values()), fontsize=9)
    for label, angle in zip(ax.get_xticklabels(), angles, strict=True):  # keep the labels off the circle
        side = np.cos(angle)
        label.set_horizontalalignment("left" if side > 0.1 else "right" if side < -0.1 else "center")
    ax.tick_params(axis="x", pad=10)
    ax.set_ylim(0, 1)
    ax.set_yticks([floor, 0.5, 1.0])
    ax.set_yticklabels([f"{floor:g}", "0.5", "1"], fontsize=7, color="grey")
    ax.set_title(title, pad=18)
    ax.legend(loc="upper left", bbox_to_anchor=(1.08, 1.0), fontsize=8)
    _save(fig, path)
