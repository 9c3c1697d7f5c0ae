# tunnels — build, test and try it.
#
#   make test          unit tests + end-to-end tests against a real kube-apiserver, kwok and,
#                      as root on Linux, a real node (kubelet + containerd + runc) (what CI runs)
#   make cluster       start (or reuse) a local control plane on loopback for trying tunnels
#   make cluster-down  stop it
#   make build         build bin/tunnels

GO        ?= go
GOFLAGS   ?=
TEST_TIMEOUT ?= 60m
CLUSTERCTL = cd tests && $(GO) run ./cluster/clusterctl

.PHONY: all build test lint unit e2e smoke cluster-bin cluster cluster-down fuzz demo bench

all: build

build:
	$(GO) build -o bin/tunnels ./cmd/tunnels

# test is the one command a newcomer and CI run: static checks, the unit tests
# with the race detector, then the tests/ module (schema, kubeconfig
# differential, protocol against the kubelet's code, end to end against the
# real control plane). The control plane is built on first use (minutes, once)
# and the test cluster is stopped at the end unless KEEP_CLUSTER=1.
test: lint unit e2e

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	cd tests && $(GO) vet ./...

unit:
	$(GO) test -race -count=1 ./...

cluster-bin:
	bash tests/cluster/build.sh

# The real node's tests are skipped where it cannot run (not root, not Linux,
# no runc or CNI plugins): `clusterctl node` says so in a banner before and
# after the tests, and fails instead when TUNNELS_REQUIRE_NODE=1 (CI).
e2e: cluster-bin
	@$(CLUSTERCTL) node -name test
	@status=0; \
	  (cd tests && $(GO) test -race -count=1 -timeout $(TEST_TIMEOUT) ./...) || status=$$?; \
	  $(MAKE) --no-print-directory smoke || status=1; \
	  ($(CLUSTERCTL) node -name test) || status=1; \
	  if [ -z "$$KEEP_CLUSTER" ] && [ -z "$$TUNNELS_CLUSTER_DIR" ]; then $(CLUSTERCTL) down -name test; fi; \
	  exit $$status

# smoke runs every other command the README offers, briefly, so that none
# breaks unnoticed: each fuzzer for a few seconds, each benchmark once, and
# the demo brought up, fetched through its tunnels and stopped (on the test
# cluster, which `make e2e` runs it on before stopping that cluster).
smoke:
	$(MAKE) --no-print-directory fuzz FUZZTIME=20000x
	$(MAKE) --no-print-directory bench BENCH_SMOKE=1
	DEMO_CHECK=1 DEMO_CLUSTER=test bash tests/cluster/demo.sh

cluster: cluster-bin
	$(CLUSTERCTL) up

# cluster-down stops exactly what `make cluster` started, the real node
# included (its containers, bridge, mounts and cgroups; kernel settings restored).
cluster-down:
	$(CLUSTERCTL) down

# fuzz runs each fuzzer for FUZZTIME. -fuzz takes a regexp that must match
# exactly one fuzz test, so each name is anchored (FuzzParse alone would also
# match FuzzParsePortSpec, and go test refuses to fuzz two). FUZZTIME is a
# count of inputs, not a duration: Go 1.26's fuzz coordinator can report
# "context deadline exceeded" as a failure when a duration runs out while a
# worker is busy (golang/go#75804, fixed in Go 1.27), which failed CI once.
FUZZTIME ?= 200000x
fuzz:
	$(GO) test -run='^$$' -fuzz='^FuzzParsePortSpec$$' -fuzztime=$(FUZZTIME) ./config
	$(GO) test -run='^$$' -fuzz='^FuzzParse$$' -fuzztime=$(FUZZTIME) ./config
	$(GO) test -run='^$$' -fuzz='^FuzzEdits$$' -fuzztime=$(FUZZTIME) ./config

demo:
	bash tests/cluster/demo.sh

# bench prints ratios and latencies measured in the same run (nothing here
# asserts a time): two tables of medians over 5 repetitions, each also
# written as JSON to bin/: tunnels against client-go and direct loopback
# on the kubelet's server code over TLS and plain HTTP (bench-protocol.json),
# and the tunnels and kubectl binaries through the real apiserver and kwok
# over SPDY and WebSocket (bench-binaries.json); then the client memory of
# 1,000 idle connections, save-to-accepting over 100 edits, 100 tunnels to
# all listening, and the scale run (250 tunnels x 2 ports over 5 contexts:
# listening, save, RSS, pod watches on the apiserver). BENCH_SMOKE=1 runs
# each benchmark once and each table's cases once, small, the scale run
# aside, which `make test` does so that none of them breaks unnoticed.
ifdef BENCH_SMOKE
BENCH_SHORT = -short
BENCH_SAVES = 1x
BENCH_HUNDRED = 1x
BENCH_SCALE = true
else
BENCH_SHORT =
BENCH_SAVES = 100x
BENCH_HUNDRED = 5x
BENCH_SCALE = cd tests && $(GO) test -run '^$$' -bench UpScale -benchtime 1x -timeout 20m ./e2e
endif
bench: cluster-bin
	$(GO) test -run '^$$' -bench . -benchtime 1x ./forward
	cd tests && BENCH_JSON=$(CURDIR)/bin/bench-protocol.json $(GO) test -run '^$$' -bench Table -benchtime 1x -timeout 15m $(BENCH_SHORT) ./protocol
	cd tests && BENCH_JSON=$(CURDIR)/bin/bench-binaries.json $(GO) test -run '^$$' -bench Binaries -benchtime 1x -timeout 15m $(BENCH_SHORT) ./e2e
	cd tests && $(GO) test -run '^$$' -bench UpSaveToAccept -benchtime $(BENCH_SAVES) ./e2e
	cd tests && $(GO) test -run '^$$' -bench UpHundredTunnels -benchtime $(BENCH_HUNDRED) ./e2e
	$(BENCH_SCALE)
