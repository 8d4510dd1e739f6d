# Bindery: the two commands the README promises are `make run` and `make test`.
CARGO ?= cargo

.PHONY: run build test lint fmt

## Run Bindery with the embedded SQLite default (./data), listening on 127.0.0.1:8080.
run:
	$(CARGO) run --release -- serve

build:
	$(CARGO) build --workspace --all-targets

## Every test: unit, property, and end-to-end against the real binary.
test: build
	$(CARGO) nextest run --workspace --no-fail-fast

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all
