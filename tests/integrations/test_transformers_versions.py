"""`lab train` with the default ``hf`` backend on this environment's transformers.

pyproject allows ``transformers>=5.10,<6``; ``make test-integrations`` runs this file in
``.venv-verl`` (5.10, the oldest) and ``.venv-vllm`` (5.19, a middle one), next to
``tests/test_speed_paths.py`` (the lean forward against transformers' own); the main venv has
the newest. 5.24 renamed the KV cache argument and output field (``past_key_values`` ->
``cache``): before the fix every version below 5.24 crashed at the first rollout.
"""

import transformers
from train_run import lab_train

from lab.models import fast


def test_lab_train_with_the_hf_backend_finishes_two_steps_on_this_transformers(tmp_path):
    lines = lab_train("hf", 2, tmp_path)
    assert [r["step"] for r in lines] == [0, 1], transformers.__version__
    assert all(r["perf/tokens_per_s"] > 0 for r in lines)


def test_the_cache_keyword_follows_the_installed_transformers():
    major, minor = (int(x) for x in transformers.__version__.split(".")[:2])
    assert fast.cache_keyword() == ("cache" if (major, minor) >= (5, 24) else "past_key_values")
