# Bindery: the two commands the README promises are `make run` and `make test`.
CARGO ?= cargo

.PHONY: run build test test-rust test-python test-node lint fmt

## Run Bindery with the embedded SQLite default (./data), listening on 127.0.0.1:8080.
run:
	$(CARGO) run --release -- serve

build:
	$(CARGO) build --workspace --all-targets

## Every test: unit, property and end-to-end tests in Rust, then the conformance suites that
## drive Bindery through Twilio's own helper libraries (Python and Node).
test: test-rust test-python test-node

test-rust: build
	$(CARGO) nextest run --workspace --no-fail-fast

test-python: build
	tests/conformance/python/run.sh

test-node: build
	tests/conformance/node/run.sh

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all
