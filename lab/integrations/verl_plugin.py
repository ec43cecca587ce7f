"""verl plug-in entry point (``[project.entry-points."verl.plugins"]`` in pyproject.toml).

verl imports every ``verl.plugins`` entry point at the end of ``import verl``, in every
process (driver, task runner, Ray workers), unless ``VERL_USE_EXTERNAL_PLUGINS=none``.
Importing this module

* registers the lab's estimators and policy losses (:func:`lab.integrations.verl.register`);
* installs the trainer hooks (:func:`lab.integrations.verl.install_trainer_hooks`) on verl's
  v1 ``PPOTrainer`` when its module ``verl.trainer.ppo.v1.trainer_base`` is imported (at
  once if it already is): importing it here would load verl's whole engine stack in every
  process that merely imports verl. The hooks pass through unless
  ``algorithm.adv_estimator`` starts with ``lab_``.

verl swallows plug-in errors at debug level, so failures are logged here as warnings.
"""

from __future__ import annotations

import importlib.abc
import logging
import sys

_log = logging.getLogger("lab.integrations.verl")
TRAINER_MODULE = "verl.trainer.ppo.v1.trainer_base"


def _install_hooks(module) -> None:
    try:
        from lab.integrations.verl import install_trainer_hooks

        install_trainer_hooks(module.PPOTrainer)
    except Exception as e:  # noqa: BLE001 - verl would hide it
        _log.warning("lab: verl trainer hooks not installed (lab_kae/lab_blend/lab_basis need them): %s: %s", type(e).__name__, e)


class _AfterImport(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Runs :func:`_install_hooks` right after ``TRAINER_MODULE`` is executed."""

    def find_spec(self, fullname, path, target=None):
        if fullname != TRAINER_MODULE:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None and spec.loader is not None:
                self._inner = spec.loader
                spec.loader = self
                return spec
        return None

    def create_module(self, spec):
        return self._inner.create_module(spec)

    def exec_module(self, module):
        self._inner.exec_module(module)
        sys.meta_path[:] = [f for f in sys.meta_path if f is not self]
        _install_hooks(module)


try:
    from lab.integrations.verl import register

    register()
except Exception as e:  # noqa: BLE001
    _log.warning("lab: could not register the lab's estimators/losses in verl: %s: %s", type(e).__name__, e)
else:
    if TRAINER_MODULE in sys.modules:
        _install_hooks(sys.modules[TRAINER_MODULE])
    elif not any(isinstance(f, _AfterImport) for f in sys.meta_path):
        sys.meta_path.insert(0, _AfterImport())
