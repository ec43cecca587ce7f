"""Plug-ins that carry the lab's methods into other training engines (``docs/integrations.md``).

* :mod:`lab.integrations.trl`: ``LabGRPOTrainer``, TRL's ``GRPOTrainer`` with the lab's
  estimators (stateful ones with their memory, identical on every rank, saved in TRL's
  checkpoints) and optionally a lab clip rule as its loss.
* :mod:`lab.integrations.verl`: every lab estimator as ``lab_<name>`` in verl's
  advantage-estimator registry and the lab's clip rules in its policy-loss registry;
  :mod:`lab.integrations.verl_check` (``python -m lab.integrations.verl --check``) says whether
  an environment can run verl's training loop.
* :mod:`lab.integrations.common`: what both share (prompt hashing, reference samples).

TRL and verl are imported lazily: this package imports, and its doctests run, without them.
"""
