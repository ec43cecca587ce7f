"""Plug-ins that carry the lab's methods into other training engines.

* :mod:`lab.integrations.verl`: every lab estimator as ``lab_<name>`` in verl's
  advantage-estimator registry and the lab's clip rules in its policy-loss registry
  (``docs/integrations.md``). verl is imported lazily: this package imports, and its
  doctests run, without verl installed.
"""
