# fetchd — run `make help` for the targets.

GO      ?= go
BUF     := $(GO) tool -modfile=tools/go.mod buf
BIN     := bin
ARGS    ?=
FUZZTIME ?= 60s
FUZZ_PKGS := ./server ./server/internal/egress ./server/internal/fetcher ./cmd/fetchd/internal/recvlimit

.DEFAULT_GOAL := help

.PHONY: help
help: ## Show this help.
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  %-14s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: build
build: ## Build bin/fetchd, bin/fetchctl and bin/grpcurl.
	$(GO) build -o $(BIN)/fetchd ./cmd/fetchd
	$(GO) build -o $(BIN)/fetchctl ./cmd/fetchctl
	$(GO) build -modfile=tools/go.mod -o $(BIN)/grpcurl github.com/fullstorydev/grpcurl/cmd/grpcurl

.PHONY: run
run: ## Run fetchd with its defaults on localhost:50051 (extra flags: make run ARGS='-allow-cidr 127.0.0.0/8').
	$(GO) build -o $(BIN)/fetchd ./cmd/fetchd
	$(BIN)/fetchd $(ARGS)

.PHONY: test
test: vet checkgenerate buflint deploytest fuzzshort gotest abuse ## Run every check and test: vet, generated code, buf lint and format, go test -race, manifests, a short fuzz run, the abuse cases.

.PHONY: gotest
gotest: ## Run the Go tests with the race detector (the fetcher's run once per HTTP engine, as subtests).
	$(GO) test -race -count=1 -timeout=15m ./...

.PHONY: abuse
abuse: ## Attack the fetchd binary (memory cases of abuse, without -race) and check its peak RSS and that it keeps answering.
	$(GO) test -count=1 -run 'TestAbuse' -v ./cmd/fetchd

.PHONY: bench
bench: ## Benchmark fetchd against an in-process baseline (about 5-6 minutes); writes bench/results.md and bench/concurrency.svg.
	$(GO) run ./cmd/fetchbench $(ARGS)

.PHONY: bench-engines
bench-engines: ## Measure HTTP/1.1 engines side by side: net/http against fetchd's lean h1, and against fasthttp's client (bench/engines is its own module).
	$(GO) test -run NONE -bench BenchmarkTransport -benchtime 50000x -count 3 ./server/internal/h1
	cd bench/engines && $(GO) test -run NONE -bench . -benchtime 50000x -count 3 .

.PHONY: deploytest
deploytest: ## Decode the Kubernetes manifests strictly (deploy/ is its own module).
	cd deploy && $(GO) test -count=1 ./...

.PHONY: fuzzshort
fuzzshort: ## Run every fuzz target for 3s.
	@$(MAKE) --no-print-directory fuzz FUZZTIME=3s

.PHONY: fuzz
# A failing input fails at once, with the fuzzer's output (the input is written
# to the package's testdata/fuzz, where plain go test runs it from then on). A
# run that fails without one (the fuzzing engine itself, such as a worker lost
# on a loaded machine) is shown and run once more.
fuzz: ## Run every fuzz target for FUZZTIME (default 60s each).
	@out=$$(mktemp) && trap 'rm -f "$$out"' EXIT && \
	for pkg in $(FUZZ_PKGS); do \
		for f in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz'); do \
			echo "fuzz $$pkg $$f ($(FUZZTIME))"; \
			if ! $(GO) test -run=NONE -fuzz="^$$f$$" -fuzztime=$(FUZZTIME) $$pkg >"$$out" 2>&1; then \
				if grep -q 'Failing input written to' "$$out"; then cat "$$out"; exit 1; fi; \
				echo "fuzz $$pkg $$f failed without a failing input; once more:"; tail -n 20 "$$out"; \
				$(GO) test -run=NONE -fuzz="^$$f$$" -fuzztime=$(FUZZTIME) $$pkg >"$$out" 2>&1 || { cat "$$out"; exit 1; }; \
			fi; \
		done; \
	done

.PHONY: vet
vet: ## Run go vet.
	$(GO) vet ./...

.PHONY: generate
generate: ## Regenerate gen/ from proto/ with buf.
	$(BUF) generate

.PHONY: checkgenerate
checkgenerate: ## Fail if gen/ differs from what `make generate` writes.
	@tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && \
	$(BUF) generate -o "$$tmp" && \
	diff -r gen "$$tmp/gen" && echo "gen/ is up to date"

.PHONY: buflint
buflint: ## Run buf lint and check buf format.
	$(BUF) lint
	$(BUF) format -d --exit-code

.PHONY: lint
lint: vet buflint ## Run go vet, buf lint and buf format, and check gofmt.
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go') | grep -v '^gen/' || true); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

.PHONY: clean
clean: ## Remove bin/.
	rm -rf $(BIN)
