VENV   := .venv
PY     := $(VENV)/bin/python
DLCLI  := $(VENV)/bin/dlcli
EXTRAS := dev$(shell nvidia-smi -L >/dev/null 2>&1 && echo ,gpu)

.PHONY: setup train test test-all test-crash lint bench bench-quick clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[$(EXTRAS)]"
	touch $@

train: setup
	$(DLCLI) train configs/mnist.yaml

test: setup
	$(PY) -m pytest -q -m "not slow" -n auto --dist loadgroup

test-all: setup
	$(PY) -m pytest -q -n auto --dist loadgroup

# kill -9 at every write point of a training run (strace), not a sample of them
test-crash: setup
	DLCLI_KILL_POINTS=all DLCLI_KILL_WORKERS=2 $(PY) -m pytest -q -s tests/test_kill_points.py

lint: setup
	$(VENV)/bin/ruff check dlcli tests benchmarks
	$(VENV)/bin/ruff format --check dlcli tests benchmarks
	$(VENV)/bin/mypy

# every command against plain Keras, medians of 3 alternating pairs (~30 minutes on 2 cores),
# then photo folders of 4,000, 16,000 and 64,000 images against image_dataset_from_directory,
# then many epochs of tiny tables (iris, XOR) against model.fit
bench: setup
	$(PY) benchmarks/bench.py
	$(PY) benchmarks/photo_folders.py
	$(PY) benchmarks/tiny_epochs.py

# one pair of each, the convnet for 1 epoch (within 5 minutes): benchmarks/results-quick.json
bench-quick: setup
	$(PY) benchmarks/bench.py --quick
	$(PY) benchmarks/photo_folders.py --sizes 2000 --output benchmarks/results-photos-quick.json
	$(PY) benchmarks/tiny_epochs.py --pairs 1 --output benchmarks/results-tiny-quick.json

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
