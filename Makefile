# Run `make` or `make help` for the targets.
.DEFAULT_GOAL := help
GO ?= go

.PHONY: help run test bench bench-large lint build screenshots

help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-z-]+:.*## / {printf "  make %-8s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

run: ## start the whole product on a local PostgreSQL it starts itself (Ctrl-C stops both)
	@scripts/install-deps.sh postgresql
	@printf 'building bin/auditlog (compiling: about 2 min on a fresh clone, seconds after) ... '
	@t=$$(date +%s.%N); $(GO) mod download && $(GO) build -o bin/auditlog ./cmd/auditlog && awk -v t="$$t" -v n="$$(date +%s.%N)" 'BEGIN { printf "%.1fs\n", n - t }'
	@exec bin/auditlog dev

test: ## run every test against a real PostgreSQL, with the race detector
	@scripts/install-deps.sh postgresql chromium
	$(GO) test -race -timeout 20m ./...

bench: ## run the benchmarks on a local PostgreSQL and print the results table
	$(GO) run ./bench

bench-large: ## load 100M events (about 120 GB of disk; BENCH_FLAGS=-scale=0.5 for half) and measure reads and retention on them
	$(GO) run ./bench -run '^large$$' $(BENCH_FLAGS)

screenshots: ## redraw docs/screenshots/: the Activity page's states at 1440x900 and 390x844, from its browser tests
	@scripts/install-deps.sh postgresql chromium
	AUDITLOG_SCREENSHOTS=$(CURDIR)/docs/screenshots AUDITLOG_REQUIRE_BROWSER=1 $(GO) test -count=1 -run 'TestActivityPage' ./api

lint: ## check formatting (gofmt) and run go vet
	@out="$$(gofmt -l .)"; if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

build: ## build bin/auditlog
	$(GO) build -o bin/auditlog ./cmd/auditlog
