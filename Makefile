# Bindery: the two commands the README promises are `make run` and `make test`.
CARGO ?= cargo

.PHONY: run build setup deny test test-rust test-python test-node test-schemathesis test-console soak lint fmt

## Run Bindery with the embedded SQLite default (./data), listening on 127.0.0.1:8080.
run:
	$(CARGO) run --release -- serve

build:
	$(CARGO) build --workspace --all-targets

## Every test, on a fresh Debian machine too: installs what is missing (tests/setup.sh), checks
## the dependencies (cargo deny, offline advisories), then the unit, property and end-to-end
## tests in Rust and the conformance suites that drive Bindery through Twilio's own helper
## libraries (Python and Node), and the console in a real browser.
test: setup deny test-rust test-python test-node test-schemathesis test-console

## What the tests need and the machine lacks: Debian packages (as root), cargo-nextest,
## cargo-deny, the RustSec advisory snapshot.
setup:
	tests/setup.sh

## Advisories (against the offline RustSec snapshot), licenses, bans and sources.
deny: setup
	tests/deny.sh

# tests/crash.rs SIGKILLs the release binary (BINDERY_CRASH_BIN overrides it): build it first.
test-rust: setup build
	$(CARGO) build --release --bin bindery
	$(CARGO) nextest run --workspace --no-fail-fast

## The long crash run: SOAK_CYCLES SIGKILLs of the release binary under concurrent writes,
## each followed by a restart and the checks of tests/crash.rs. `cargo test`, not nextest:
## the run outlasts nextest's per-test timeout.
SOAK_CYCLES ?= 200
soak:
	$(CARGO) build --release --bin bindery
	BINDERY_CRASH_CYCLES=$(SOAK_CYCLES) $(CARGO) test --test e2e crash:: -- --nocapture

test-python: setup build
	tests/conformance/python/run.sh

test-node: setup build
	tests/conformance/node/run.sh

## The console in a real browser (headless chromium), screenshots in target/console-screenshots.
test-console: setup build
	tests/console/run.sh

## Schemathesis against Bindery's own /openapi.json (thousands of generated requests).
test-schemathesis: setup build
	tests/schemathesis/run.sh

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

## The benchmark (crates/bench): builds the release binaries, waits for a quiet machine, runs
## every scenario against a fresh data dir and writes BENCHMARKS.md. It reports and never
## fails on a missed target; not part of `make test`. BENCH_ARGS passes options
## (`target/release/bindery-bench --help`), e.g. BENCH_ARGS="--duration 2 --large 100000".
BENCH_ARGS ?=
.PHONY: bench
bench:
	$(CARGO) build --release -p bindery -p bindery-bench
	target/release/bindery-bench --bindery target/release/bindery --out BENCHMARKS.md $(BENCH_ARGS)
