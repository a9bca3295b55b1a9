# Palisade build. Generated code (protobuf, bpf2go) is committed: `make build`
# and `make test` need only Go; `make generate` needs clang/llvm/libbpf-dev
# for the BPF part.

GO        ?= go
BIN       := bin
TOOLBIN   := $(CURDIR)/.bin
BUF_VERSION           := v1.75.0
PROTOC_GEN_GO_VERSION := v1.36.12
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -X github.com/palisade-sec/palisade/internal/version.Version=$(VERSION)
TEST_TIMEOUT ?= 20m

.PHONY: all build package generate generate-proto generate-bpf check-generated test test-short demo bench lint clean tools

all: build

build:
	@mkdir -p $(BIN)
	$(GO) build -ldflags '$(LDFLAGS)' -o $(BIN)/ ./agent/cmd/palisade-agent ./controller/cmd/palisade-controller ./controller/cmd/palisadectl ./controller/cmd/palisade-sim

$(TOOLBIN)/buf:
	GOBIN=$(TOOLBIN) $(GO) install github.com/bufbuild/buf/cmd/buf@$(BUF_VERSION)

$(TOOLBIN)/protoc-gen-go:
	GOBIN=$(TOOLBIN) $(GO) install google.golang.org/protobuf/cmd/protoc-gen-go@$(PROTOC_GEN_GO_VERSION)

tools: $(TOOLBIN)/buf $(TOOLBIN)/protoc-gen-go

generate: generate-proto generate-bpf

generate-proto: tools
	cd proto && PATH=$(TOOLBIN):$$PATH buf lint && PATH=$(TOOLBIN):$$PATH buf generate

generate-bpf:
	@if [ -f bpf/gen.go ]; then $(GO) generate ./bpf/...; fi

# Regenerates everything and fails if the committed generated code differs.
check-generated: generate
	@git diff --exit-code -- proto bpf || (echo "generated code is out of date: run make generate and commit" >&2; exit 1)

test:
	$(GO) vet ./...
	$(GO) test -count=1 -timeout $(TEST_TIMEOUT) ./...

test-short:
	$(GO) test -short -count=1 ./...

# .deb and .rpm for amd64 and arm64 in dist/ (packaging/cmd/mkpkg, nfpm;
# its own go.mod keeps nfpm's dependencies out of the product's).
package:
	cd packaging/cmd/mkpkg && $(GO) run . -root $(CURDIR) -version $(VERSION) -out dist

# The demo loads eBPF programs into a cgroup it creates: run as root.
demo: build
	$(GO) run ./scripts/demo

# soak: the randomized fault schedule (kills, restarts, partitions) against a
# 3-node cluster for SOAK_DURATION, checked for linearizability.
SOAK_DURATION ?= 10m
soak:
	PALISADE_FAULT_DURATION=$(SOAK_DURATION) $(GO) test -count=1 -timeout 60m -run TestLinearizable -v ./test/cluster/

bench: build
	@mkdir -p bench/results
	./scripts/bench.sh

lint:
	$(GO) vet ./...
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || (gofmt -l $$(git ls-files '*.go'); echo "gofmt needed" >&2; exit 1)

clean:
	rm -rf $(BIN) $(TOOLBIN)
