"""Make docs/img/trust_regions.png and print the bounds and matched-budget tables of docs/losses.md.

Run from the repository root:  .venv/bin/python docs/make_trust_region_figure.py
The picture the KL3 notebook builds on: d(w) of ratio (ε = 0.2), KL2 and KL3 against the
ratio w, the budget δ as a level line, and the clip interval [l, u] = {w : d(w) ≤ δ} each
one gives; below, the intervals side by side in ratio space. Every number comes from
``lab.losses``.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from lab.losses import MEASURES, clip_bounds, matched_delta  # noqa: E402

DELTAS = (0.01, 0.02, 0.03, 0.05, 0.1)
W_RANGE = (0.5, 1.8)
COLORS = {"ratio": "#1f77b4", "clip-higher": "#ff7f0e", "kl2": "#2ca02c", "kl3": "#d62728", "kl3b": "#f4a3a3"}


def bounds_table(deltas=DELTAS) -> str:
    """Markdown table of [l, u] for kl3, kl2, kl1 and ratio at each δ, computed by lab.losses."""
    rows = [
        "| δ | KL3: w − 1 − log w ≤ δ | KL2: ½(log w)² ≤ δ | KL1: abs(log w) ≤ δ | ratio: abs(w − 1) ≤ δ |",
        "|---|---|---|---|---|",
    ]
    for d in deltas:
        cells = [f"[{lo:.4f}, {hi:.4f}]" for lo, hi in (clip_bounds(m, d) for m in ("kl3", "kl2", "kl1", "ratio"))]
        rows.append(f"| {d} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def matched_table() -> str:
    """Markdown table of each measure's matched budget (``lab.losses.matched_delta``) and its interval."""
    rows = [
        "| measure | matched δ | [l, u] | room down 1 − l | room up u − 1 |",
        "|---|---|---|---|---|",
    ]
    for m in ("ratio", "kl1", "kl2", "kl3"):
        d = matched_delta(m)
        lo, hi = clip_bounds(m, d)
        rows.append(f"| `{m}` | {d:.5f} | [{lo:.4f}, {hi:.4f}] | {1 - lo:.4f} | {hi - 1:.4f} |")
    return "\n".join(rows)


def _panel(ax, measure: str, delta: float, title: str, color: str, ymax: float, compare: str | None = None) -> None:
    w = np.linspace(*W_RANGE, 800)
    d = np.array([MEASURES.get(measure).d(float(x)) for x in w])
    lo, hi = clip_bounds(measure, delta)
    if compare is not None:
        dc = np.array([MEASURES.get(compare).d(float(x)) for x in w])
        ax.plot(w, dc, color="0.6", lw=1.2, ls=":", label=f"{compare.upper()} (for comparison)")
    ax.axvspan(lo, hi, color=color, alpha=0.12, lw=0)
    ax.plot(w, d, color=color, lw=2.2, label=f"{measure.upper()} d(w)")
    ax.axhline(delta, color="k", lw=0.9, ls="--")
    ax.text(W_RANGE[1] - 0.02, delta + 0.02 * ymax, f"δ = {delta}", ha="right", va="bottom", fontsize=9)
    for x in (lo, hi):
        ax.plot([x, x], [0, delta], color=color, lw=1.0)
        ax.plot(x, delta, "o", color=color, ms=5)
    ax.text((lo + hi) / 2, 0.9 * ymax, f"[l, u] = [{lo:.3f}, {hi:.3f}]\nroom: −{1 - lo:.3f} / +{hi - 1:.3f}",
            ha="center", va="top", fontsize=9, bbox=dict(boxstyle="round,pad=0.25", fc="white", ec=color, lw=0.8))
    ax.axvline(1.0, color="0.3", lw=0.6)
    ax.set_xlim(*W_RANGE)
    ax.set_ylim(0, ymax)
    ax.set_title(title, fontsize=10)
    ax.set_xlabel("ratio w = π_θ / π_old")
    if compare is not None:
        ax.legend(fontsize=8, loc="center right", frameon=False)


def make_figure(path: Path, delta: float = 0.03, eps: float = 0.2) -> Path:
    fig = plt.figure(figsize=(13, 7.2))
    grid = fig.add_gridspec(2, 3, height_ratios=[1.35, 1.0], hspace=0.42, wspace=0.22)
    top = [fig.add_subplot(grid[0, i]) for i in range(3)]
    _panel(top[0], "ratio", eps, f"ratio: d(w) = |w − 1|, ε = {eps}", COLORS["ratio"], ymax=0.55)
    _panel(top[1], "kl2", delta, "KL2: d(w) = ½ (log w)²  (symmetric in log w)", COLORS["kl2"], ymax=0.12)
    _panel(top[2], "kl3", delta, "KL3: d(w) = w − 1 − log w  (asymmetric)", COLORS["kl3"], ymax=0.12, compare="kl2")
    top[0].set_ylabel("divergence d(w)")

    ax = fig.add_subplot(grid[1, :])
    intervals = [
        (f"ratio ε={eps} (PPO / GRPO)", clip_bounds("ratio", eps), COLORS["ratio"]),
        ("clip-higher 0.2 / 0.28 (DAPO)", clip_bounds("ratio", delta_low=0.2, delta_high=0.28), COLORS["clip-higher"]),
        (f"KL2 δ={delta}", clip_bounds("kl2", delta), COLORS["kl2"]),
        (f"KL3 δ={delta}", clip_bounds("kl3", delta), COLORS["kl3"]),
        ("KL3 δ=0.02", clip_bounds("kl3", 0.02), COLORS["kl3b"]),
    ]
    for i, (label, (lo, hi), color) in enumerate(reversed(intervals)):
        ax.plot([lo, hi], [i, i], lw=9, solid_capstyle="butt", color=color)
        ax.text(hi + 0.015, i, f"[{lo:.3f}, {hi:.3f}]   down {1 - lo:.3f} / up {hi - 1:.3f}", va="center", fontsize=9)
    ax.axvline(1.0, color="k", lw=0.8)
    ax.set_yticks(range(len(intervals)), [x[0] for x in reversed(intervals)], fontsize=9)
    ax.set_ylim(-0.7, len(intervals) - 0.3)
    ax.set_xlim(*W_RANGE)
    ax.set_xlabel("ratio w = π_θ / π_old   (the PPO surrogate clips w to the bar)")
    ax.set_title("The same trust regions as clip intervals in ratio space", fontsize=10)
    ax.grid(axis="x", color="0.9")
    fig.suptitle("A trust region {w : d(w) ≤ δ} is a clip interval [l, u]", fontsize=12)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


if __name__ == "__main__":
    print(make_figure(Path(__file__).resolve().parent / "img" / "trust_regions.png"))
    print(bounds_table())
    print(matched_table())
