# fetchd — run `make help` for the targets.

GO      ?= go
BUF     := $(GO) tool -modfile=tools/go.mod buf
BIN     := bin
ARGS    ?=
FUZZTIME ?= 30s

.DEFAULT_GOAL := help

.PHONY: help
help: ## Show this help.
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  %-14s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: build
build: ## Build bin/fetchd and bin/grpcurl.
	$(GO) build -o $(BIN)/fetchd ./cmd/fetchd
	$(GO) build -modfile=tools/go.mod -o $(BIN)/grpcurl github.com/fullstorydev/grpcurl/cmd/grpcurl

.PHONY: run
run: ## Run fetchd with its defaults on localhost:50051 (extra flags: make run ARGS='-allow-cidr 127.0.0.0/8').
	$(GO) build -o $(BIN)/fetchd ./cmd/fetchd
	$(BIN)/fetchd $(ARGS)

.PHONY: test
test: vet checkgenerate buflint gotest ## Run every check and test: vet, generated code, buf lint and format, go test -race.

.PHONY: gotest
gotest: ## Run the Go tests with the race detector.
	$(GO) test -race -count=1 -timeout=15m ./...

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
