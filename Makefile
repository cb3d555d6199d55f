# edge-sbc — see README.md.
GO       ?= go
BIN      := bin/edge-sbc
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -X main.version=$(VERSION)
PREFIX   ?= /usr/local
DESTDIR  ?=
# Debian packages the tests talk to (real peers on loopback).
TEST_DEBS := sip-tester socat openssl systemd baresip-core sox tshark prometheus npm chromium redis-server
# How long `make test` fuzzes each target (`make fuzz` runs longer).
FUZZ_BRIEF ?= 5s
FUZZTIME   ?= 2m
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2

.PHONY: all build run test test-cluster test-deps unit integration lint fuzz bench soak install clean

all: build

build:
	$(GO) build -trimpath -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/edge-sbc

# Runs the SBC on its embedded loopback configuration.
run: build
	./$(BIN) run

# Installs what the tests need when it is missing (you are expected to be
# root, as on CI), then runs every test.
test: test-deps build lint
	$(GO) test -count=1 -race -timeout 12m ./...
	$(MAKE) --no-print-directory fuzz FUZZTIME=$(FUZZ_BRIEF)

# The cluster tests alone, verbose (make test runs them too): package
# sip/cluster on a real redis-server, the limits across two edge-sbc
# processes, and the takeover (as root: two SBC processes in network
# namespaces, the active killed, the service address moved, the media gap
# logged in pass-through and terminate mode).
test-cluster: test-deps build
	$(GO) test -count=1 -v ./sip/cluster/
	$(GO) test -count=1 -v -run '^(TestCluster|TestTakeover)' ./sip/ ./test/

# Fuzz targets for every parser of network input.
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzRequestPolicy$$' -fuzztime $(FUZZTIME) ./sip
	$(GO) test -run '^$$' -fuzz '^FuzzOffer$$' -fuzztime $(FUZZTIME) ./media
	$(GO) test -run '^$$' -fuzz '^FuzzOfferTerminate$$' -fuzztime $(FUZZTIME) ./media
	$(GO) test -run '^$$' -fuzz '^FuzzDecode$$' -fuzztime $(FUZZTIME) ./sip/hep

test-deps:
	@missing=""; \
	command -v sipp  >/dev/null || missing="$$missing sip-tester"; \
	command -v socat >/dev/null || missing="$$missing socat"; \
	command -v openssl >/dev/null || missing="$$missing openssl"; \
	command -v systemd-analyze >/dev/null || missing="$$missing systemd"; \
	command -v baresip >/dev/null || missing="$$missing baresip-core"; \
	command -v sox >/dev/null || missing="$$missing sox"; \
	command -v tshark >/dev/null || missing="$$missing tshark"; \
	command -v promtool >/dev/null || missing="$$missing prometheus"; \
	command -v npm >/dev/null || missing="$$missing npm"; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
	command -v redis-server >/dev/null || missing="$$missing redis-server"; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi
	@# hep-js, the HEP decoder of the HEP export test (test/hep); without the
	@# npm registry that test skips.
	@[ -f test/hep/node_modules/hep-js/index.js ] || (cd test/hep && npm ci --no-audit --no-fund) || \
		echo "test-deps: npm ci in test/hep failed: TestHEPExportDecodedByHepJS will skip"
	@[ -x "$$($(GO) env GOPATH)/bin/staticcheck" ] || (cd /tmp && $(GO) install $(STATICCHECK))

unit:
	$(GO) test -count=1 -short ./...

integration: test-deps build
	$(GO) test -count=1 -v ./test/...

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	@if command -v staticcheck >/dev/null; then staticcheck ./...; \
	elif [ -x $$($(GO) env GOPATH)/bin/staticcheck ]; then $$($(GO) env GOPATH)/bin/staticcheck ./...; \
	else echo "staticcheck not installed (go install honnef.co/go/tools/cmd/staticcheck@latest)"; fi

# Benchmark suite (test/bench): call rate over mutual TLS next to Kamailio,
# concurrent calls, media relay vs a bare forwarder, SRTP terminate, and the
# go test -bench figures of ./media and ./dnsresolve. Prints a table and
# writes bench.json. BENCHFLAGS=-quick for a smoke run; -sections 1,2,3,4,5
# to choose. Section 1 installs what it needs when missing and says so:
# Debian's kamailio + kamailio-tls-modules (apt-get), and the TLS-native sipp
# into SIPP_TLS_PREFIX with the shared tools/sipp-tls/install.sh (found next
# to the repository, or give SIPP_TLS_INSTALL=path/to/install.sh); without
# it, Debian's sipp behind socat.
SIPP_TLS_PREFIX  ?= /var/tmp/edge-sbc-sipp-tls
SIPP_TLS_INSTALL ?=
bench: test-deps build
	$(GO) run ./test/bench -sbc $(BIN) -out bench.json -sipp-tls-prefix $(SIPP_TLS_PREFIX) \
		$(if $(SIPP_TLS_INSTALL),-sipp-tls-install $(SIPP_TLS_INSTALL)) $(BENCHFLAGS)

# Soak: a steady SIPS call load through the SBC (sipp -> socat -> edge-sbc ->
# socat -> sipp, loopback) for SOAK_DURATION, sampling /metrics; fails on a
# failed call or when goroutines, open fds or RSS do not return to baseline.
#   make soak SOAK_DURATION=2m      (go run ./test/soak -h for the other flags)
SOAK_DURATION ?= 10m
soak:
	$(GO) run ./test/soak -duration $(SOAK_DURATION)

# Installs the binary, the systemd unit and an example config. The unit
# runs as user edge-sbc: create it with
#   useradd --system --home /var/lib/edge-sbc --shell /usr/sbin/nologin edge-sbc
install: build
	install -D -m 0755 $(BIN) $(DESTDIR)$(PREFIX)/bin/edge-sbc
	sed 's|/usr/local/bin/edge-sbc|$(PREFIX)/bin/edge-sbc|g' config/systemd/edge-sbc.service > edge-sbc.service.tmp
	install -D -m 0644 edge-sbc.service.tmp $(DESTDIR)/lib/systemd/system/edge-sbc.service
	rm -f edge-sbc.service.tmp
	install -D -m 0644 config/example.yaml $(DESTDIR)/etc/edge-sbc/edge-sbc.yaml.example

clean:
	rm -rf bin
