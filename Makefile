# One-command set-up for students and instructors.
#   make lab    create .venv if needed, install the course with JupyterLab, open JupyterLab on notebooks/
#   make test   the same set-up with the test tools, then the unit tests and every notebook under nbval
# The install is skipped while pyproject.toml is unchanged (the stamps are keyed on its checksum).

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cksum < pyproject.toml | cut -d' ' -f1)
LAB_STAMP := $(STAMP)-lab
PYTEST_ARGS ?=

.PHONY: setup lab headers student test test-unit test-notebooks benchmark benchmark-notebooks notebooks checkpoints clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -e '.[dev]'
	@rm -f $(VENV)/.installed-*
	@touch $@

# The course and JupyterLab only (the `lab` extra); `setup` above adds the test tools (the `dev` extra).
$(LAB_STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -e '.[lab]'
	@touch $@

lab: $(LAB_STAMP)
	$(VENV)/bin/jupyter lab --ServerApp.root_dir=notebooks

# Rewrite every notebook's launch links and install cell, and the README's launch links, from
# [tool.vae-lesson] in pyproject.toml (the repository and the pinned ref). Running it twice changes nothing.
headers:
	$(PYTHON) tools/notebook_headers.py

# The student edition: copies of the notebooks without the solutions, in dist/student/.
student:
	$(PYTHON) tools/student_edition.py --out dist/student

# Unit tests, then the notebooks in strict nbval (outputs compared, sanitized by notebooks/nbval_sanitize.cfg).
test: $(STAMP)
	$(PY) -m pytest tests notebooks --nbval --nbval-current-env --nbval-cell-timeout=900 \
		--nbval-sanitize-with notebooks/nbval_sanitize.cfg $(PYTEST_ARGS)

test-unit: $(STAMP)
	$(PY) -m pytest tests -m "not browser" $(PYTEST_ARGS)

test-notebooks: $(STAMP)
	$(PY) -m pytest notebooks --nbval --nbval-current-env --nbval-cell-timeout=900 \
		--nbval-sanitize-with notebooks/nbval_sanitize.cfg $(PYTEST_ARGS)

benchmark: $(STAMP)
	$(PY) benchmarks/bench_batching.py
	$(PY) benchmarks/bench_training.py
	$(PY) benchmarks/bench_training.py --lecture-epochs 30

# Each notebook's run time and peak memory on its own with an empty model cache, then all in sequence.
benchmark-notebooks: $(STAMP)
	$(PY) benchmarks/bench_notebooks.py

# Re-execute every notebook in course order and save its outputs (figures included), training into
# and reusing checkpoints/: what to run after changing vae_lesson, before committing.
notebooks: $(STAMP)
	$(PY) benchmarks/bench_notebooks.py --no-alone --write --cache checkpoints

# Train the course's 20-D VAE (the recipe vae-20d-lecture, as notebooks 05 and 06 train it) from the command
# line into checkpoints/vae-20d-lecture (model.pt, history.json, samples.png; see
# `python -m vae_lesson train --help`). The notebooks' own model cache is filled by `make notebooks`.
checkpoints: $(STAMP)
	$(PY) -m vae_lesson train --recipe vae-20d-lecture --out checkpoints/vae-20d-lecture

clean:
	rm -rf $(VENV) checkpoints .pytest_cache
