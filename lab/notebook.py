"""Figures in the lessons that render everywhere: plotly's own MIME type plus a static PNG.

JupyterLab draws a plotly figure from its own MIME type (``application/vnd.plotly.v1+json``),
which nbconvert's HTML and GitHub's notebook viewer cannot draw. :func:`static_images`
makes every figure displayed afterwards carry both: the interactive figure (JupyterLab and
VS Code pick it) and an ``image/png`` drawn by kaleido (nbconvert HTML and GitHub pick it).

* :func:`static_images` ``() -> None``: register the ``"lab"`` plotly renderer and make it
  the default; call it once at the top of a notebook.
* :func:`mimebundle` ``(fig, *, image=png) -> dict``: the display bundle of one figure.
* :func:`png` ``(fig_dict) -> bytes | None``: the PNG, or None where no browser can draw it.

The PNG comes from kaleido (>= 1) driving a Chromium-based browser it finds on ``PATH``
(Debian's ``/usr/bin/chromium``; ``BROWSER_PATH`` overrides), one browser process per kernel
for all figures (kaleido's sync server): about 3 s to start, then under a second per figure.
Nothing is downloaded: MathJax is off (no CDN) and plotly.js is the copy inside the plotly
package. Without kaleido or a browser the figure keeps its interactive MIME type alone, and
one warning says why.
"""

from __future__ import annotations

import base64
import warnings
from typing import Any, Callable

from lab.errors import reason

PLOTLY_MIME = "application/vnd.plotly.v1+json"
PNG_MIME = "image/png"
DEFAULT_SIZE = (700, 450)
"""Width and height (pixels) of a figure whose layout sets none."""
TIMEOUT_S = 60.0
"""Longest wait for one image (kaleido's per-figure timeout)."""

_state: dict[str, Any] = {"started": False, "failed": None}


def png(fig_dict: dict) -> bytes | None:
    """A static PNG of a plotly figure dict, or None (with one warning) when it cannot be drawn.

    Shapes: none. The first call starts kaleido's browser; later calls reuse it.
    """
    if _state["failed"] is not None:
        return None
    try:
        import kaleido

        if not _state["started"]:
            kaleido.start_sync_server(mathjax=False, timeout=TIMEOUT_S, silence_warnings=True)
            _state["started"] = True
        layout = fig_dict.get("layout", {})
        width = layout.get("width") or DEFAULT_SIZE[0]
        height = layout.get("height") or DEFAULT_SIZE[1]
        return kaleido.calc_fig_sync(fig_dict, opts={"format": "png", "width": width, "height": height})
    except Exception as e:  # no kaleido, no browser, a browser that died: keep the interactive figure
        _state["failed"] = f"{type(e).__name__}: {reason(e, 200)}"
        warnings.warn(f"lab.notebook: figures carry no static image ({_state['failed']}); "
                      "install kaleido>=1 and chromium for nbconvert/GitHub rendering", RuntimeWarning, stacklevel=2)
        return None


def mimebundle(fig, *, image: Callable[[dict], bytes | None] = png) -> dict:
    """The display bundle of ``fig`` (a figure or its dict): plotly's MIME type and, when
    ``image`` draws one, a base64 PNG.

    >>> import plotly.graph_objects as go
    >>> bundle = mimebundle(go.Figure(go.Scatter(y=[1, 3, 2])), image=lambda d: b"\\x89PNG")
    >>> sorted(bundle), bundle["image/png"]
    (['application/vnd.plotly.v1+json', 'image/png'], 'iVBORw==')
    >>> sorted(mimebundle(go.Figure(), image=lambda d: None))
    ['application/vnd.plotly.v1+json']
    """
    import plotly.io as pio

    fig_dict = fig if isinstance(fig, dict) else fig.to_dict()
    bundle = pio.renderers["plotly_mimetype"].to_mimebundle(dict(fig_dict))
    data = image(fig_dict)
    if data:
        bundle[PNG_MIME] = base64.b64encode(data).decode("ascii")
    return bundle


def static_images() -> None:
    """Make every plotly figure shown from now on carry a static PNG next to the interactive one.

    Registers the plotly renderer ``"lab"`` (:func:`mimebundle`) and sets it as
    ``plotly.io.renderers.default``; calling it again changes nothing.

    >>> import plotly.io as pio
    >>> old = pio.renderers.default
    >>> static_images(); pio.renderers.default
    'lab'
    >>> pio.renderers.default = old
    """
    import plotly.io as pio
    from plotly.io._base_renderers import MimetypeRenderer

    class _LabRenderer(MimetypeRenderer):
        def to_mimebundle(self, fig_dict):
            return mimebundle(fig_dict)

    pio.renderers["lab"] = _LabRenderer()
    pio.renderers.default = "lab"


def verl_overrides(estimator: str, *, rule: str = "ppo", measure: str = "ratio", delta: float | None = None,
                   group_size: int | None = None, loss_agg: str | None = None, params: dict | None = None) -> str:
    """The verl command-line overrides that run a lab configuration through the lab's verl
    adapter (``lab.integrations.verl``, docs/integrations.md), names checked against it.

    ``delta`` is verl's ``actor.clip_ratio``: ratio clipping's ε, or a KL measure's budget δ.
    ``params`` (the estimator's parameters) become the ``LAB_VERL_ESTIMATOR_PARAMS`` variable.

    >>> verl_overrides("kae", measure="kl3", delta=0.01996, group_size=4, params={"min_width": 4.0})
    'LAB_VERL_ESTIMATOR_PARAMS=\\'{"kae": {"min_width": 4.0}}\\' python -m verl.trainer.main_ppo ... algorithm.adv_estimator=lab_kae actor_rollout_ref.actor.policy_loss.loss_mode=lab_ppo_kl3 actor_rollout_ref.actor.clip_ratio=0.01996 actor_rollout_ref.rollout.n=4'
    >>> verl_overrides("kae", rule="ppo", measure="kl9")
    Traceback (most recent call last):
    ...
    ValueError: the lab's verl adapter has no policy loss 'lab_ppo_kl9'; it has lab_dual_clip, lab_dual_clip_kl1, lab_dual_clip_kl2, lab_dual_clip_kl3, lab_ppo, lab_ppo_kl1, lab_ppo_kl2, lab_ppo_kl3, lab_vanilla
    """
    import json

    from lab.integrations import verl as lab_verl

    est = f"{lab_verl.PREFIX}{estimator}"
    loss = f"{lab_verl.PREFIX}{rule}" + ("" if measure == "ratio" else f"_{measure}")
    for name, known, what in ((est, lab_verl.estimator_names(), "estimator"), (loss, lab_verl.policy_loss_names(), "policy loss")):
        if name not in known:
            raise ValueError(f"the lab's verl adapter has no {what} {name!r}; it has {', '.join(known)}")
    parts = [f"algorithm.adv_estimator={est}", f"actor_rollout_ref.actor.policy_loss.loss_mode={loss}"]
    if delta is not None:
        parts.append(f"actor_rollout_ref.actor.clip_ratio={delta:.4g}")
    if group_size is not None:
        parts.append(f"actor_rollout_ref.rollout.n={group_size}")
    if loss_agg is not None:
        parts.append(f"actor_rollout_ref.actor.loss_agg_mode={loss_agg}")
    env = f"{lab_verl.PARAMS_ENV}='{json.dumps({estimator: params})}' " if params else ""
    return env + "python -m verl.trainer.main_ppo ... " + " ".join(parts)
