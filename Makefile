# medgan — `make reproduce` renders every study report; `make test` runs the test suite.
# Both create the environment first (a Python venv in .venv, or the active conda env with
# USE_CONDA=1 after `conda env create -f environment.yml`).

PYTHON   ?= python3
VENV     ?= .venv
PROFILE  ?= default
NB       ?=
DATA     ?=
SET      ?=
REHEARSE ?=
JOBS     ?= 2
LAB_ARGS ?=

ifeq ($(USE_CONDA),1)
PY := python
STAMP := .setup-stamp
else
PY := $(VENV)/bin/python
STAMP := $(VENV)/.setup-stamp
endif

comma    := ,
NB_ARGS   := $(foreach n,$(subst $(comma), ,$(NB)),--nb $(n))
SET_ARGS  := $(foreach s,$(SET),--set $(s))
DATA_ARG  := $(if $(DATA),--data $(DATA),)
REHEARSE_ARG := $(if $(REHEARSE),--rehearse,)
# `make reproduce JOBS=1` renders one notebook at a time; without it the runner chooses (one per core on a CPU)
REPRO_JOBS := $(if $(filter command line environment,$(origin JOBS)),--jobs $(JOBS),)
# a rehearsal's phantoms are the paper-size sets of params/<nb>/rehearse.yaml
PHANTOM_PROFILE := $(if $(REHEARSE),rehearse,default)

.PHONY: help setup data reproduce test test-fast lab benchmarks clean-reports

help:
	@echo "make reproduce [PROFILE=smoke|default|paper] [NB=02_ct...] [DATA=/path] [SET='train.steps=10'] [JOBS=1]"
	@echo "make reproduce PROFILE=paper REHEARSE=1   the paper profiles on paper-size phantoms, cut to fit a CPU"
	@echo "make test       run the test suite (creates the environment first)"
	@echo "make lab        JupyterLab on the notebooks"
	@echo "make data       generate the embedded phantom datasets"
	@echo "make benchmarks speed/memory ratios against reference implementations"

# The environment is rebuilt only when pyproject.toml changes: a second `make setup` takes seconds.
$(STAMP): pyproject.toml
ifneq ($(USE_CONDA),1)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
endif
	$(PY) -m pip install --quiet --disable-pip-version-check -e ".[test]"
	# the "Python (medgan)" kernel the notebooks ask for, visible to any JupyterLab or VS Code of this user
	$(PY) -m ipykernel install --user --name medgan --display-name "Python (medgan)" >/dev/null
	# notebooks are committed without outputs: nbstripout cleans them as git stages them
	if git rev-parse --git-dir >/dev/null 2>&1; then $(PY) -m nbstripout --install; fi
	touch $@

setup: $(STAMP)

data: setup
	$(PY) -m medgan data --all --jobs 2

reproduce: setup
	$(PY) -m medgan data --all --jobs 2 --profile $(PHANTOM_PROFILE) $(NB_ARGS) $(if $(DATA),--real-data,)
	$(PY) -m medgan reproduce --profile $(PROFILE) $(REHEARSE_ARG) $(NB_ARGS) $(DATA_ARG) $(SET_ARGS) $(REPRO_JOBS)
	@echo "Reports: reports/index.html"

# The suite runs on JOBS workers; the paper-size rehearsal (marked whole_machine) then runs alone,
# so that it has every core and the RAM it was measured with.
test: setup
	OMP_NUM_THREADS=1 $(PY) -m pytest -n $(JOBS) -q -rs --durations=15 -m "not whole_machine"
	$(PY) -m pytest -q -rs --durations=1 -m whole_machine

test-fast: setup
	$(PY) -m pytest -q -m "not slow"

lab: setup
	$(PY) -m jupyter lab notebooks $(LAB_ARGS)

benchmarks: setup
	$(PY) benchmarks/metrics.py
	$(PY) benchmarks/data_phantoms.py
	$(PY) benchmarks/training.py

clean-reports:
	rm -rf reports/*.html reports/*.json reports/*.ipynb reports/_tmp-*
