# The two commands of the README. Each one does all set-up first (scripts/setup.sh, idempotent).
VENV ?= .venv

.PHONY: demo test setup bench

demo: setup
	$(VENV)/bin/tagmill demo --out demo-out

test: setup
	$(VENV)/bin/lint-imports
	$(VENV)/bin/python -m pytest -q

setup:
	@bash scripts/setup.sh

bench: setup
	$(VENV)/bin/python benchmarks/mine_logs.py
	$(VENV)/bin/python benchmarks/shards.py
	$(VENV)/bin/python benchmarks/image_pass.py
	$(VENV)/bin/python benchmarks/taxonomy.py
	$(VENV)/bin/python benchmarks/open_images_wordnet.py
	$(VENV)/bin/python benchmarks/side_info.py
	$(VENV)/bin/python benchmarks/label_quality.py
