# cryptoassets-operator
#
#   make dev    local control plane + operator + sample CryptoAsset (see README)
#   make test   the whole test suite; installs what it needs on a fresh machine

SHELL := /usr/bin/env bash -o pipefail
.SHELLFLAGS := -ec

ROOT            := $(abspath .)
BIN             := $(ROOT)/bin
VERSION         ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
IMAGE_NAME      ?= cryptoassets-operator
IMAGE_TAG       ?= $(VERSION)
IMG             ?= $(IMAGE_NAME):$(IMAGE_TAG)
IMAGE_ARCHIVE   := $(BIN)/image/cryptoassets-operator.tar
CONTROLLER_GEN  := $(BIN)/controller-gen
HELM            := $(BIN)/helm
KUBEBUILDER_ASSETS := $(BIN)/envtest
CRD_DIR         := config/crd/bases
CHART           := charts/cryptoassets-operator
# One package at a time: each starts its own servers (API server, PostgreSQL, btcd and btcwallet),
# and two cores running several of those at once make timeouts, not tests, fail.
GO_TEST_FLAGS   ?= -count=1 -p 1 -timeout 20m
# Where the test harness records the work-arounds it took (see btctest's notice); printed after the suite.
TEST_NOTICES    := $(BIN)/test-notices.log
N               ?= 1000

export KUBEBUILDER_ASSETS
export HELM
export BTCD_BIN_DIR := $(BIN)
# The end-to-end test (test/e2e) finds kwok, kwokctl, helm and the Kubernetes binaries here.
export E2E_BIN := $(BIN)
export PROMTOOL := $(BIN)/promtool
export PROMETHEUS_OPERATOR_CRDS := $(BIN)/crds/prometheus-operator

.PHONY: help
help: ## Show the targets.
	@awk 'BEGIN {FS = ":.*##"} /^[a-zA-Z_-]+:.*##/ {printf "  %-18s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: setup-test setup-dev setup-node
setup-test: ## Install what the tests need (etcd, kube-apiserver, helm, controller-gen, promtool, the Prometheus Operator CRDs) under bin/.
	hack/setup-tools.sh test
setup-dev: ## Install what `make dev` needs (adds kube-controller-manager, kube-scheduler, kwok).
	hack/setup-tools.sh dev
setup-node: ## Install what a real node needs (adds containerd, runc, CNI plugins, iptables, kubelet, kube-proxy).
	hack/setup-tools.sh node

.PHONY: build
build: ## Build bin/cryptoassets.
	CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=$(VERSION)" -o $(BIN)/cryptoassets .

.PHONY: plugin
plugin: build ## Build the kubectl plugin, bin/kubectl-cryptoassets (the same binary under the name kubectl finds): put it on your PATH and run `kubectl cryptoassets status`.
	cp $(BIN)/cryptoassets $(BIN)/kubectl-cryptoassets

.PHONY: image
image: build ## Build the image as a docker-archive (bin/image/cryptoassets-operator.tar) without a Docker engine.
	go run ./hack/image -binary $(BIN)/cryptoassets -tag $(IMG) -version $(VERSION) \
		-revision "$$(git rev-parse HEAD 2>/dev/null)" -out $(IMAGE_ARCHIVE)
	@echo "import: ctr -n k8s.io images import $(IMAGE_ARCHIVE)   (or: docker load -i $(IMAGE_ARCHIVE))"

.PHONY: generate manifests
generate: ## Generate deepcopy code.
	$(CONTROLLER_GEN) object:headerFile=hack/boilerplate.go.txt paths=./api/...
manifests: ## Generate the CRD, the operator's ClusterRole and the chart's copies of them.
	$(CONTROLLER_GEN) crd rbac:roleName=cryptoassets-operator paths=./api/... paths=./controllers/... \
		output:crd:artifacts:config=$(CRD_DIR) output:rbac:artifacts:config=config/rbac
	go run ./hack/crdmeta $(CRD_DIR)/cryptoassets.io_cryptoassets.yaml
	hack/sync-chart.sh

.PHONY: verify-generated
verify-generated: ## Fail when generated files are out of date with the Go sources.
	hack/verify-generated.sh

.PHONY: fmt vet
fmt:
	gofmt -l -w $$(git ls-files '*.go')
vet:
	go vet ./...
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { echo "gofmt needed:"; gofmt -l $$(git ls-files '*.go'); exit 1; }

.PHONY: lint-chart
lint-chart:
	$(HELM) lint --strict $(CHART)

.PHONY: test
test: setup-node verify-generated vet lint-chart ## Run the whole test suite against real servers, the end-to-end scenario on real pods included.
	@rm -f $(TEST_NOTICES)
	@REQUIRE_TEST_ASSETS=1 TEST_NOTICES=$(TEST_NOTICES) go test $(GO_TEST_FLAGS) ./...; rc=$$?; \
	if [ -s $(TEST_NOTICES) ]; then echo "work-arounds the test harness took:"; cat $(TEST_NOTICES); fi; exit $$rc

.PHONY: bench-operator bench-helper bench
BENCH_RUN = REQUIRE_TEST_ASSETS=1 BENCH_N=$(N) OPERATOR_BINARY=$(BIN)/cryptoassets \
	go test -count=1 -run '^$$' -benchtime 1x -timeout 90m ./test/bench/ -bench
bench-operator: setup-test build ## Operator benchmark: N CryptoAssets (N=1000) among 10000 unrelated objects vs writing the same objects directly.
	$(BENCH_RUN) 'BenchmarkOperatorConvergence' 2>&1 | go run ./hack/benchtable
bench-helper: setup-test build ## Helper benchmarks: footprint of 50 idle helpers, an idle poll on an old ledger, a metrics scrape on a shared database, transfers vs pgbench, events vs bare HTTP, broadcast, intake and rescan vs bare RPC.
	$(BENCH_RUN) 'BenchmarkHelperFootprint|BenchmarkIdleCatchUp|BenchmarkOutboxStats|BenchmarkLedgerTransfers|BenchmarkEventDelivery|BenchmarkBroadcast|BenchmarkIntake|BenchmarkRescan' 2>&1 | go run ./hack/benchtable
bench: setup-test build ## All benchmarks, one table: ours, the baseline measured in the same run, ratio, goal. Sizes: N, BENCH_* (see test/bench).
	$(BENCH_RUN) '.' 2>&1 | go run ./hack/benchtable

.PHONY: dev
BACKEND ?= bitcoind
dev: setup-node build devstack ## Real one-node cluster (image built here), Helm chart, operator and helper pods, PostgreSQL, simnet node; BACKEND=null for no node, RUNTIME=kwok for simulated pods; Ctrl-C stops all.
	$(BIN)/devstack -backend $(BACKEND)

# The dev stack runs as a built binary, not under `go run`: go run exits 1 when Ctrl-C reaches it,
# even after the stack stopped cleanly, so make reported an error for a normal stop.
.PHONY: devstack
devstack:
	go build -o $(BIN)/devstack ./hack/devstack

.PHONY: docker-build
docker-build: ## Build the image with a Docker engine (`make image` needs none).
	docker build --build-arg VERSION=$(VERSION) -t $(IMG) .

.PHONY: clean
clean:
	rm -rf $(BIN)/cryptoassets $(BIN)/devstack .dev

.PHONY: dev-smoke
dev-smoke: setup-node build devstack ## Start the dev stack, take one deposit from payment to credit, stop.
	$(BIN)/devstack -backend $(BACKEND) -smoke
