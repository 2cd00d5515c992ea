# prover-fleet: the two commands are `make demo` and `make test`.
SHELL := /bin/bash
GO ?= go
BIN := bin
CIRCUITS_OUT ?= circuits/build
ZKEYS ?= zkeys
# Development key seed for circuits whose keys are not committed (see zkeys/README.md).
DEV_KEY_SEED ?= prover-fleet development key - NOT FOR PRODUCTION
GOTESTFLAGS ?= -race -count=1 -timeout 30m

PROGRAMS := prover-api prover-worker proverctl zkprove zkeygen

.PHONY: all build demo dev test test-short bench bench-quick faults faults-ci nats-server abuse abuse-quick circuits circuits-large keys deps fmt vet clean

all: build

build:
	@mkdir -p $(BIN)
	$(GO) build -o $(BIN)/prover-api ./api
	$(GO) build -o $(BIN)/prover-worker ./worker
	$(GO) build -o $(BIN)/proverctl ./cmd/proverctl
	$(GO) build -o $(BIN)/zkprove ./cmd/zkprove
	$(GO) build -o $(BIN)/zkeygen ./cmd/zkeygen

# What building and testing need: the pinned Debian packages (apt-get, with sudo when not
# root) and the pinned npm packages (npm ci), each only when missing. The same script runs
# in .ci/run; `scripts/deps.sh --dry-run` says what it would install.
deps:
	scripts/deps.sh

# Compile the demo circuits (idempotent: skips what is up to date).
circuits: deps
	scripts/build-circuits.sh $(CIRCUITS_OUT)

# The large demo circuits at 2^20 and 2^22 constraints (circuits/README.md, "Large
# circuits"): compile, C++ witness generators, checked sample inputs in
# $(CIRCUITS_OUT)/inputs, development keys in $(ZKEYS) (all git-ignored). Not part of
# `make test` (its tests build tiny instances); ~30 min of CPU, 4.5 GB of keys.
circuits-large: deps
	DEV_KEY_SEED="$(DEV_KEY_SEED)" ZKEYGEN=$(abspath $(BIN))/zkeygen scripts/build-large-circuits.sh $(CIRCUITS_OUT) $(ZKEYS)

# Development keys that are too large to commit are generated once, quickly,
# by our own Go keygen (snarkjs needs >30 min for 2^17 on 2 cores).
keys: circuits
	@mkdir -p $(BIN)
	$(GO) build -o $(BIN)/zkeygen ./cmd/zkeygen
	@for c in register_demo; do \
	  if [ ! -s $(ZKEYS)/$$c.zkey ] || [ $(CIRCUITS_OUT)/$$c.r1cs -nt $(ZKEYS)/$$c.zkey ]; then \
	    echo "zkeygen: $$c (development key)"; \
	    $(BIN)/zkeygen -r1cs $(CIRCUITS_OUT)/$$c.r1cs -zkey $(ZKEYS)/$$c.zkey -vkey $(ZKEYS)/$$c.vkey.json -seed "$(DEV_KEY_SEED) $$c" || exit 1; \
	  fi; \
	done

# The whole suite, starting what it needs itself (embedded NATS, throwaway Postgres).
test: keys
	$(GO) vet ./...
	PROVER_CIRCUITS=$(abspath $(CIRCUITS_OUT)) PROVER_ZKEYS=$(abspath $(ZKEYS)) $(GO) test $(GOTESTFLAGS) ./...

test-short:
	$(GO) test -short -count=1 ./...

# The whole fleet on this machine, acting as the app for each demo circuit.
demo: keys build
	$(BIN)/proverctl demo -c $(CIRCUITS_OUT) -k $(ZKEYS)

dev: keys build
	$(BIN)/proverctl dev -c $(CIRCUITS_OUT) -k $(ZKEYS)

bench: keys build
	$(GO) run ./bench -c $(CIRCUITS_OUT) -k $(ZKEYS) -out bench/results

bench-quick: keys build
	$(GO) run ./bench -quick -c $(CIRCUITS_OUT) -k $(ZKEYS) -out $${TMPDIR:-/tmp}/bench-quick

# The fault suite (e2e/faults): real processes (PostgreSQL, nats-server built from the pinned
# module, prover-api, prover-workers) under kill -9, outages and restarts. FAULTS_FLAGS adds
# flags, e.g. FAULTS_FLAGS="-scenarios pg-outage -requests 300".
FAULTS_FLAGS ?=
faults: keys build nats-server
	PROVER_CIRCUITS=$(abspath $(CIRCUITS_OUT)) PROVER_ZKEYS=$(abspath $(ZKEYS)) $(GO) run ./e2e/faults -bin $(BIN) $(FAULTS_FLAGS)

# The same at the reduced size CI runs (a few minutes on 2 cores).
faults-ci: keys build nats-server
	PROVER_CIRCUITS=$(abspath $(CIRCUITS_OUT)) PROVER_ZKEYS=$(abspath $(ZKEYS)) $(GO) run ./e2e/faults -bin $(BIN) -size ci $(FAULTS_FLAGS)

# A standalone nats-server built from the version go.mod pins.
nats-server:
	@mkdir -p $(BIN)
	$(GO) build -o $(BIN)/nats-server github.com/nats-io/nats-server/v2

# The frontend under load and attack: prover-api, Postgres, nats-server and a load
# generator as real processes (hello floods from one and from many sources, 10k idle
# WebSockets, silent and slow clients, a legitimate client throughout). Fails when a
# check does not hold. Needs no circuits. abuse-quick is the reduced size CI runs.
abuse:
	$(GO) run ./e2e/abuse -out $${TMPDIR:-/tmp}/abuse

abuse-quick:
	$(GO) run ./e2e/abuse -quick -out $${TMPDIR:-/tmp}/abuse-quick

fmt:
	gofmt -l -w $$(git ls-files '*.go')

vet:
	$(GO) vet ./...

clean:
	rm -rf $(BIN) $(CIRCUITS_OUT)
