# The two commands of the README: `make run` and `make test` (as root).
.PHONY: run test setup check bench

setup:
	./scripts/setup.sh

run: setup
	./scripts/lab.sh

test: setup
	.venv/bin/python -m pytest -q -p no:cacheprovider tests

check: setup
	.venv/bin/python -m pyrouter check -c config/lab.yaml

bench: setup
	.venv/bin/python benchmarks/forwarding.py
