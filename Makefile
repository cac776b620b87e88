# Vigil. `make test` is what CI runs (through .ci/run).
GO ?= go
PKGS := ./...
# Packages with concurrency, run under the race detector by `make race`.
RACE_PKGS := ./broker/... ./bench/... ./controller/... ./probes/... ./slo/... ./mitigator/...

.PHONY: all build test race vet fmt bench fuzz tidy chaos

all: build test

build:
	$(GO) build -o bin/vigil ./cmd/vigil

test:
	$(GO) test -count=1 -timeout 20m $(PKGS)

race:
	$(GO) test -race -count=1 -timeout 25m $(RACE_PKGS)

vet:
	$(GO) vet $(PKGS)
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

# Go micro-benchmarks (log engine, broker hot paths). For whole-system
# numbers see docs/benchmarks.md and `vigil bench`.
bench:
	$(GO) test -run '^$$' -bench . -benchmem $(PKGS)

# Short fuzzing of every decoder; the seed corpora also run in `make test`.
FUZZTIME ?= 30s
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzAppend$$' -fuzztime $(FUZZTIME) ./broker/log/
	$(GO) test -run '^$$' -fuzz '^FuzzRecover$$' -fuzztime $(FUZZTIME) ./broker/log/
	$(GO) test -run '^$$' -fuzz '^FuzzRecoverMetadata$$' -fuzztime $(FUZZTIME) ./broker/log/
	$(GO) test -run '^$$' -fuzz '^FuzzRequest$$' -fuzztime $(FUZZTIME) ./broker/
	$(GO) test -run '^$$' -fuzz '^FuzzCompactedAppend$$' -fuzztime $(FUZZTIME) ./broker/log/
	$(GO) test -run '^$$' -fuzz '^FuzzReplay$$' -fuzztime $(FUZZTIME) ./broker/group/
	$(GO) test -run '^$$' -fuzz '^FuzzAppendAsFollower$$' -fuzztime $(FUZZTIME) ./broker/log/
	$(GO) test -run '^$$' -fuzz '^FuzzRecordContexts$$' -fuzztime $(FUZZTIME) ./broker/
	$(GO) test -run '^$$' -fuzz '^FuzzTelemetryPayload$$' -fuzztime $(FUZZTIME) ./broker/
	$(GO) test -run '^$$' -fuzz '^FuzzDecodePayload$$' -fuzztime $(FUZZTIME) ./probes/
	$(GO) test -run '^$$' -fuzz '^FuzzParseTraceparent$$' -fuzztime $(FUZZTIME) ./probes/

tidy:
	$(GO) mod tidy

# The randomized cluster durability test (docs/durability.md): CHAOS of
# kill -9s and restarts of brokers and controllers, then every acknowledged
# record must read back once and in order. CHAOS_SEED repeats a run.
CHAOS ?= 90s
chaos:
	VIGIL_CHAOS=$(CHAOS) VIGIL_CHAOS_SEED=$(CHAOS_SEED) $(GO) test -count=1 -timeout 20m -run '^TestClusterChaos$$' -v ./cmd/vigil/
