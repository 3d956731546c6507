"""Every picture segcli plots, written atomically as PNG: a training run's loss and metric curves
(``results.png``), and ``segcli eval``'s precision-recall curves per class (instance) and
row-normalised confusion matrix (semantic)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from segcli.fileio import atomic_path


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def plot_pr_curves(precision: dict, recall: np.ndarray, title: str, path: Path) -> None:
    """One panel per IoU threshold (0.50, 0.75): a curve per class and their mean.

    ``precision``: {"iou_0.50": [R, K], "iou_0.75": [R, K], "classes": names}; -1 marks a class
    without ground truth (left out).
    """
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5))
    for axis, key in zip(axes, ("iou_0.50", "iou_0.75")):
        values = np.asarray(precision[key])
        scored = []
        for k, name in enumerate(precision["classes"]):
            curve = values[:, k]
            if (curve < 0).all():
                continue
            curve = np.clip(curve, 0, None)
            scored.append(curve)
            axis.plot(recall, curve, linewidth=1, label=f"{name} {curve.mean():.3f}")
        if scored:
            mean = np.mean(scored, axis=0)
            axis.plot(recall, mean, linewidth=2.5, color="black", label=f"all classes {mean.mean():.3f}")
        axis.set(title=f"{title} precision-recall at IoU {key[-4:]}", xlabel="recall", ylabel="precision",
                 xlim=(0, 1), ylim=(0, 1.02))
        axis.grid(alpha=0.3)
        axis.legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    with atomic_path(path, overwrite=True) as tmp:
        fig.savefig(tmp, format="png", dpi=90)
    plt.close(fig)


def plot_confusion_matrix(matrix: np.ndarray, names: list[str], path: Path) -> None:
    """Rows: true class; columns: predicted; each row normalised to 1 (pixel counts in JSON)."""
    plt = _pyplot()
    matrix = np.asarray(matrix, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        normalised = np.nan_to_num(matrix / matrix.sum(1, keepdims=True))
    size = max(4.0, 0.6 * len(names) + 2)
    fig, axis = plt.subplots(figsize=(size + 1, size))
    image = axis.imshow(normalised, cmap="Blues", vmin=0, vmax=1)
    axis.set_xticks(range(len(names)), names, rotation=45, ha="right", fontsize=8)
    axis.set_yticks(range(len(names)), names, fontsize=8)
    axis.set(xlabel="predicted", ylabel="true", title="confusion matrix (row-normalised)")
    if len(names) <= 20:
        for i in range(len(names)):
            for j in range(len(names)):
                axis.text(j, i, f"{normalised[i, j]:.2f}", ha="center", va="center", fontsize=7,
                          color="white" if normalised[i, j] > 0.5 else "black")
    fig.colorbar(image, ax=axis, fraction=0.046)
    fig.tight_layout()
    with atomic_path(path, overwrite=True) as tmp:
        fig.savefig(tmp, format="png", dpi=90)
    plt.close(fig)


def plot_curves(rows: list[dict], metric: str, path: Path) -> None:
    """Training loss terms and the validation metric per epoch, as one PNG."""
    plt = _pyplot()
    epochs = [row["epoch"] for row in rows]
    terms = [k for k in rows[0] if k.startswith("loss_")] if rows else []
    loss_keys = ["loss"] + (terms if len(terms) > 1 else [])
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for key in loss_keys:
        left.plot(epochs, [row.get(key) for row in rows], label=key, marker=".")
    left.set(title="training loss", xlabel="epoch")
    left.legend(fontsize=7)
    points = [(row["epoch"], row[metric]) for row in rows if isinstance(row.get(metric), (int, float))]
    if points:
        right.plot(*zip(*points), marker="o", color="tab:green")
    right.set(title=f"validation {metric}", xlabel="epoch", ylim=(0, 1))
    fig.tight_layout()
    with atomic_path(path, overwrite=True) as tmp:
        fig.savefig(tmp, format="png", dpi=90)
    plt.close(fig)
