"""Plots written as PNG: the training curve, BLEU against training time, and the helpers the benchmarks share."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from nmt.files import atomic_write_bytes


def pyplot():
    """matplotlib's pyplot on the file-only Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_png(fig, path: Path) -> None:
    """Write a figure to `path` as PNG (atomically) and free it."""
    import io

    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    pyplot().close(fig)
    atomic_write_bytes(path, buffer.getvalue())


def plot_training_curve(metrics: list[dict[str, Any]], path: Path, title: str) -> None:
    plt = pyplot()
    train = [m for m in metrics if m["type"] == "train"]
    valid = [m for m in metrics if m["type"] == "valid"]
    fig, (ax_loss, ax_bleu) = plt.subplots(1, 2, figsize=(10, 4))
    if train:
        ax_loss.plot([m["step"] for m in train], [m["train_loss"] for m in train], label="train", alpha=0.7)
    if valid:
        ax_loss.plot([m["step"] for m in valid], [m["valid_loss"] for m in valid], "o-", label="validation")
        ax_bleu.plot([m["step"] for m in valid], [m["valid_bleu"] for m in valid], "o-", color="tab:green")
    ax_loss.set(xlabel="step", ylabel="loss per token (NLL)", title=f"{title}: loss")
    ax_loss.legend()
    ax_bleu.set(xlabel="step", ylabel="BLEU", title=f"{title}: validation BLEU")
    for ax in (ax_loss, ax_bleu):
        ax.grid(alpha=0.3)
    save_png(fig, path)


def plot_bleu_against_time(curve: list[dict[str, Any]], path: Path, title: str) -> None:
    """Validation BLEU against training wall time (minutes), one point per validation."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    minutes = [m["elapsed"] / 60 for m in curve]
    ax.plot(minutes, [m["valid_bleu"] for m in curve], "o-", color="tab:green")
    for m, x in zip(curve, minutes, strict=True):
        ax.annotate(
            f"{m['valid_bleu']:.1f}",
            (x, m["valid_bleu"]),
            textcoords="offset points",
            xytext=(0, 6),
            ha="center",
            fontsize=8,
        )
    ax.set(xlabel="training wall time (minutes)", ylabel="validation BLEU (greedy)", title=title)
    ax.grid(alpha=0.3)
    save_png(fig, path)


def plot_learning_curves(
    runs: dict[str, list[dict[str, Any]]],
    path: Path,
    title: str,
    reference: dict[str, list[tuple[int, float]]] | None = None,
) -> None:
    """Several runs' training perplexity and validation perplexity against the step, one line per run.

    `runs` maps a label to its metrics rows (metrics.jsonl); `reference` maps a label to (step, training perplexity)
    points drawn as stars (figures measured elsewhere, e.g. another toolkit's log)."""
    import math

    plt = pyplot()
    fig, (ax_train, ax_valid) = plt.subplots(1, 2, figsize=(11, 4.5))
    for label, metrics in runs.items():
        train = [m for m in metrics if m["type"] == "train"]
        valid = [m for m in metrics if m["type"] == "valid"]
        line = ax_train.plot([m["step"] for m in train], [math.exp(m["train_loss"]) for m in train], label=label)
        color = line[0].get_color()
        ax_valid.plot([m["step"] for m in valid], [m["valid_ppl"] for m in valid], "o-", color=color, label=label)
    for (label, points), marker in zip((reference or {}).items(), "*Pd^", strict=False):
        steps, ppls = zip(*points, strict=True)
        ax_train.plot(steps, ppls, marker, markersize=12, color="black", linestyle="none", label=label)
    ax_train.set(xlabel="step", ylabel="training perplexity (no smoothing, dropout on)", title=f"{title}: training")
    ax_valid.set(xlabel="step", ylabel="validation perplexity", title=f"{title}: validation")
    for ax in (ax_train, ax_valid):
        ax.set_yscale("log")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
    save_png(fig, path)
