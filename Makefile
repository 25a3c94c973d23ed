# Cooperator: build, test and run the operator on a local control plane.
# Every tool is pinned here or in hack/tools/go.mod and built into bin/.

SHELL := /usr/bin/env bash -o pipefail
.SHELLFLAGS := -ec
.DEFAULT_GOAL := help

LOCALBIN := $(CURDIR)/bin
LOCAL := $(CURDIR)/.local
export PATH := $(LOCALBIN):$(PATH)
export GOFLAGS := -buildvcs=false
# Without kustomize's Go plugin loader the binary is a third smaller, and so
# is every process that maps it; internal/testenv.BuildTags says the same.
BUILD_TAGS := kustomize_disable_go_plugin_support

## Pinned tools.
KUBE_VERSION := $(shell awk '$$1 == "k8s.io/kubernetes" {print $$2}' hack/tools/go.mod)
CONTROLLER_TOOLS_VERSION := v0.23.0
KWOK_VERSION := v0.8.0
GOLANGCI_LINT_VERSION := v2.15.0
VERSITYGW_VERSION := v1.8.0
HELM_VERSION := v3.22.0

KUBE_MINOR := $(word 2,$(subst ., ,$(KUBE_VERSION)))
VERSION_LDFLAGS := $(foreach pkg,k8s.io/component-base/version k8s.io/client-go/pkg/version,\
	-X $(pkg).gitVersion=$(KUBE_VERSION) -X $(pkg).gitMajor=1 -X $(pkg).gitMinor=$(KUBE_MINOR))
CONTROL_PLANE := etcd kube-apiserver kube-controller-manager kube-scheduler kubectl

CONTROLLER_GEN := $(LOCALBIN)/controller-gen-$(CONTROLLER_TOOLS_VERSION)
KWOK := $(LOCALBIN)/kwok-$(KWOK_VERSION)
GOLANGCI_LINT := $(LOCALBIN)/golangci-lint-$(GOLANGCI_LINT_VERSION)
VERSITYGW := $(LOCALBIN)/versitygw-$(VERSITYGW_VERSION)
HELM := $(LOCALBIN)/helm-$(HELM_VERSION)

KUBECONFIG ?= $(LOCAL)/kubeconfig
KUBECTL := $(LOCALBIN)/kubectl --kubeconfig=$(KUBECONFIG)

##@ General

.PHONY: help
help: ## Show the targets.
	@awk 'BEGIN {FS = ":.*##"} /^[a-zA-Z_-]+:.*?##/ {printf "  \033[36m%-14s\033[0m %s\n", $$1, $$2} /^##@/ {printf "\n\033[1m%s\033[0m\n", substr($$0, 5)}' $(MAKEFILE_LIST)

##@ Development

.PHONY: manifests
manifests: $(CONTROLLER_GEN) ## Generate the CRDs, RBAC and deepcopy code.
	$(CONTROLLER_GEN) object:headerFile=hack/boilerplate.go.txt paths=./api/...
	$(CONTROLLER_GEN) rbac:roleName=cooperator-manager crd:maxDescLen=512 webhook paths=./api/... paths=./controllers/... paths=./internal/webhook/... \
		output:crd:artifacts:config=config/crd/bases output:rbac:artifacts:config=config/rbac output:webhook:artifacts:config=config/webhook
	hack/sync-chart.sh

.PHONY: verify-manifests
verify-manifests: manifests ## Regenerate; in CI, fail when the committed files were stale.
	@if [ -n "$$CI" ]; then \
		stale=$$(git status --porcelain -- api config charts); \
		[ -z "$$stale" ] || { echo "Generated files are stale; run 'make manifests' and commit:"; echo "$$stale"; git diff --stat; exit 1; }; \
	fi

.PHONY: fmt
fmt: ## Check that gofmt changes nothing.
	@out=$$(gofmt -l $$(git ls-files '*.go')); [ -z "$$out" ] || { echo "gofmt would change: $$out"; exit 1; }

.PHONY: vet
vet: ## go vet.
	go vet ./...

.PHONY: lint
lint: $(GOLANGCI_LINT) ## The pinned golangci-lint.
	$(GOLANGCI_LINT) run ./...

.PHONY: build
build: ## Build bin/cooperator.
	CGO_ENABLED=0 go build -tags $(BUILD_TAGS) -o $(LOCALBIN)/cooperator ./cmd/cooperator

##@ Test

.PHONY: test
test: tools postgres verify-manifests fmt vet lint ## Unit and integration tests on a real local control plane and PostgreSQL.
	go test ./... -count=1 -timeout 45m

.PHONY: postgres
postgres: ## Install PostgreSQL from Debian's packages when it is missing.
	hack/ensure-postgres.sh

.PHONY: bench-backup
bench-backup: postgres $(LOCALBIN)/versitygw ## Backup runner throughput and peak memory against pg_dump; see docs/performance.md.
	go test ./internal/backup -run '^$$' -bench Backup -benchtime 1x -timeout 60m

.PHONY: bench-databases
bench-databases: tools postgres ## Provision 500 shared databases through the operator; see docs/performance.md.
	go test ./controllers -run '^$$' -bench SharedDatabases -benchtime 1x -timeout 60m

N ?= 1000

.PHONY: bench
bench: tools postgres helm build ## Scale: N coops (default 1000; N=100 for a quick run) against client-go and Helm-per-coop; writes bench/; see docs/performance.md.
	go run ./test/bench -n $(N) -helm-version $(HELM_VERSION)

##@ Local cluster

.PHONY: cluster
cluster: tools postgres ## Start the local control plane in the background; writes .local/kubeconfig.
	hack/cluster.sh up

.PHONY: cluster-down
cluster-down: ## Stop the local control plane.
	hack/cluster.sh down

.PHONY: install
install: ## Install the CRDs into the current cluster.
	$(KUBECTL) apply --server-side -f config/crd/bases

.PHONY: run
run: ## Run the operator against the current kubeconfig.
	KUBECONFIG=$(KUBECONFIG) go run ./cmd/cooperator manager --metrics-bind-address=0 --health-probe-bind-address=0

.PHONY: demo
demo: tools postgres build ## Start everything, show sample coops Ready; Ctrl-C tears it all down.
	hack/demo.sh

##@ Tools

.PHONY: tools
tools: $(addprefix $(LOCALBIN)/,$(CONTROL_PLANE)) $(LOCALBIN)/kwok $(LOCALBIN)/kwok-stages.yaml $(CONTROLLER_GEN) $(LOCALBIN)/versitygw $(LOCALBIN)/helm ## Build every pinned tool into bin/.

# The control plane is built from hack/tools, rebuilt only when its pins change.
$(addprefix $(LOCALBIN)/,$(CONTROL_PLANE)) &: hack/tools/go.mod hack/tools/go.sum
	@echo ">> Building the control plane $(KUBE_VERSION) from Go modules into bin/ (first time: about 10 minutes on 2 cores)"
	cd hack/tools && go build -v -ldflags "$(VERSION_LDFLAGS)" -o $(LOCALBIN)/ $(addprefix ./,$(CONTROL_PLANE)) 2>&1 | \
		awk '/:|^#/ { print; next } { n++; if (n % 50 == 0) printf("   ... %d packages compiled (%s)\n", n, $$0) }'
	@touch $(addprefix $(LOCALBIN)/,$(CONTROL_PLANE))

$(KWOK):
	@echo ">> Building kwok $(KWOK_VERSION)"
	GOBIN=$(LOCALBIN)/.kwok go install sigs.k8s.io/kwok/cmd/kwok@$(KWOK_VERSION)
	mv $(LOCALBIN)/.kwok/kwok $@ && rmdir $(LOCALBIN)/.kwok

$(LOCALBIN)/kwok: $(KWOK)
	ln -sf $(notdir $(KWOK)) $@

# kwok's fast stages: nodes go Ready and keep a heartbeat, pods go Running;
# and the project's own, in hack/kwok.
$(LOCALBIN)/kwok-stages.yaml: Makefile $(wildcard hack/kwok/*.yaml)
	@mkdir -p $(LOCALBIN)
	dir=$$(go mod download -json sigs.k8s.io/kwok@$(KWOK_VERSION) | awk -F'"' '$$2 == "Dir" {print $$4}'); \
	for f in node/fast/node-initialize.yaml node/heartbeat/node-heartbeat.yaml pod/fast/pod-ready.yaml pod/fast/pod-complete.yaml pod/fast/pod-delete.yaml; do \
		cat "$$dir/kustomize/stage/$$f"; echo "---"; \
	done > $@
	for f in hack/kwok/*.yaml; do cat "$$f"; echo "---"; done >> $@

$(CONTROLLER_GEN):
	@echo ">> Building controller-gen $(CONTROLLER_TOOLS_VERSION)"
	GOBIN=$(LOCALBIN)/.cg go install sigs.k8s.io/controller-tools/cmd/controller-gen@$(CONTROLLER_TOOLS_VERSION)
	mv $(LOCALBIN)/.cg/controller-gen $@ && rmdir $(LOCALBIN)/.cg

# versitygw: a real S3 server (posix backend on a local folder) for the backup tests.
$(VERSITYGW):
	@echo ">> Building versitygw $(VERSITYGW_VERSION) (first time: about 2 minutes)"
	GOBIN=$(LOCALBIN)/.vgw go install github.com/versity/versitygw/cmd/versitygw@$(VERSITYGW_VERSION)
	mv $(LOCALBIN)/.vgw/versitygw $@ && rmdir $(LOCALBIN)/.vgw

$(LOCALBIN)/versitygw: $(VERSITYGW)
	ln -sf $(notdir $(VERSITYGW)) $@

.PHONY: versitygw
versitygw: $(LOCALBIN)/versitygw ## Build only bin/versitygw, the S3 server of the backup tests.

# helm: the chart's lint and the install tests.
$(HELM):
	@echo ">> Building helm $(HELM_VERSION)"
	GOBIN=$(LOCALBIN)/.helm go install -ldflags "-X helm.sh/helm/v3/internal/version.version=$(HELM_VERSION)" helm.sh/helm/v3/cmd/helm@$(HELM_VERSION)
	mv $(LOCALBIN)/.helm/helm $@ && rmdir $(LOCALBIN)/.helm

$(LOCALBIN)/helm: $(HELM)
	ln -sf $(notdir $(HELM)) $@

.PHONY: helm
helm: $(LOCALBIN)/helm ## Build only bin/helm, for the chart and the install tests.

$(GOLANGCI_LINT):
	@echo ">> Building golangci-lint $(GOLANGCI_LINT_VERSION) (first time: a few minutes)"
	GOBIN=$(LOCALBIN)/.lint go install github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$(GOLANGCI_LINT_VERSION)
	mv $(LOCALBIN)/.lint/golangci-lint $@ && rmdir $(LOCALBIN)/.lint

.PHONY: clean
clean: ## Remove bin/ and .local/.
	rm -rf $(LOCALBIN) $(LOCAL)
