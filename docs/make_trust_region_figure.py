"""Make docs/img/trust_regions.png and print the bounds table of docs/losses.md.

Run: .venv/bin/python docs/make_trust_region_figure.py
The picture the KL3 notebook builds on: d(w) of ratio / KL2 / KL3 against the ratio w, the
budget δ, and the clip interval each one gives.
"""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from lab.losses import MEASURES, clip_bounds  # noqa: E402

DELTAS = (0.01, 0.02, 0.03, 0.05, 0.1)


def bounds_table() -> str:
    """Markdown table of [l, u] for kl3, kl2, kl1 and ratio at each δ, computed by lab.losses."""
    rows = ["| δ | KL3: w − 1 − log w ≤ δ | KL2: ½(log w)² ≤ δ | KL1: abs(log w) ≤ δ | ratio: abs(w − 1) ≤ δ |", "|---|---|---|---|---|"]
    for d in DELTAS:
        cells = [f"[{lo:.4f}, {hi:.4f}]" for lo, hi in (clip_bounds(m, d) for m in ("kl3", "kl2", "kl1", "ratio"))]
        rows.append(f"| {d} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def make_figure(path: Path, delta: float = 0.03, eps: float = 0.2) -> Path:
    w = np.linspace(0.5, 1.8, 600)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    ax = axes[0]
    styles = {"kl3": ("KL3: w − 1 − log w", "C3"), "kl2": ("KL2: ½ (log w)²", "C0"), "kl1": ("KL1: |log w|", "C2")}
    for m, (label, color) in styles.items():
        d = np.array([MEASURES.get(m).d(float(x)) for x in w])
        ax.plot(w, d, color=color, label=label)
        lo, hi = clip_bounds(m, delta)
        ax.plot([lo, hi], [delta, delta], "o", color=color, ms=4)
    ax.axhline(delta, color="k", lw=0.8, ls="--")
    ax.text(0.52, delta * 1.15, f"δ = {delta}", fontsize=9)
    ax.set_ylim(0, 0.12)
    ax.set_xlabel("ratio w = π_θ / π_old")
    ax.set_ylabel("divergence d(w)")
    ax.set_title("Trust region {w : d(w) ≤ δ} is an interval")
    ax.legend(fontsize=8, loc="upper center")
    ax = axes[1]
    intervals = [("ratio ε=0.2 (PPO)", clip_bounds("ratio", eps)), ("clip-higher 0.2/0.28 (DAPO)", clip_bounds("ratio", delta_low=0.2, delta_high=0.28)),
                 (f"KL2 δ={delta}", clip_bounds("kl2", delta)), (f"KL3 δ={delta}", clip_bounds("kl3", delta)), ("KL3 δ=0.02", clip_bounds("kl3", 0.02))]
    for i, (label, (lo, hi)) in enumerate(intervals):
        ax.plot([lo, hi], [i, i], lw=6, solid_capstyle="butt", color=f"C{i}")
        ax.text(hi + 0.01, i, f"[{lo:.3f}, {hi:.3f}]  down {1 - lo:.3f} / up {hi - 1:.3f}", va="center", fontsize=8)
    ax.axvline(1.0, color="k", lw=0.8)
    ax.set_yticks(range(len(intervals)), [x[0] for x in intervals], fontsize=8)
    ax.set_xlim(0.7, 1.75)
    ax.set_xlabel("ratio w")
    ax.set_title("Clip intervals in ratio space")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


if __name__ == "__main__":
    print(make_figure(Path(__file__).parent / "img" / "trust_regions.png"))
    print(bounds_table())
