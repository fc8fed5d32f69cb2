# streamgate: `make run` runs the gateway on its embedded store, `make test` runs every test.
CARGO ?= cargo
BIN := target/release/streamgate
# System packages the tests need (real peers); installed when missing. dnsmasq-base is
# dnsmasq without its system service (the tests start their own); bind9-dnsutils has dig;
# chromium and chromium-driver run the dashboard's tests in a real browser.
APT_PACKAGES := mosquitto mosquitto-clients curl openssl etcd-server etcd-client haproxy \
	dnsmasq-base bind9-dnsutils rsyslog chromium chromium-driver

.PHONY: build run test deps lint bench

build:
	$(CARGO) build --release --bin streamgate

run: build
	./$(BIN) -c conf/config.yaml

deps:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y $$missing; \
	fi
	@command -v cargo-nextest >/dev/null 2>&1 || $(CARGO) install cargo-nextest --locked

test: deps build
	$(CARGO) nextest run --release --workspace --no-fail-fast

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --release --workspace --all-targets -- -D warnings
	@command -v cargo-deny >/dev/null 2>&1 || $(CARGO) install cargo-deny --locked
	$(CARGO) deny check licenses bans sources

# Benchmarks, not part of `test`: criterion micro-benchmarks, then every scenario against
# mosquitto, streamgate and HAProxy 2.6, then configuration scale on streamgate alone
# (`--config-routes N` stream routes, 10000 by default, 0 skips it); rewrites docs/benchmarks.md.
# Sizes are flags of mqtt-bench, e.g. `make bench BENCH_ARGS='--rounds 5 --idle-clients 8000'`;
# `--scenarios config-scale --config-routes 500 --out -` runs only that one (see `--help`).
BENCH_ARGS ?=
BENCH_DIR := $(or $(CARGO_TARGET_DIR),target)/bench-results
CRITERION := --output-format bencher --warm-up-time 1 --measurement-time 2
bench: build
	@missing=""; for p in haproxy mosquitto; do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y $$missing; \
		for s in $$missing; do service $$s stop >/dev/null 2>&1 || true; done; \
	fi
	@mkdir -p $(BENCH_DIR)
	$(CARGO) bench -p sg-mqtt --bench connect -- $(CRITERION) > $(BENCH_DIR)/mqtt.txt && cat $(BENCH_DIR)/mqtt.txt
	$(CARGO) bench -p sg-balancer --bench chash -- $(CRITERION) > $(BENCH_DIR)/balancer.txt && cat $(BENCH_DIR)/balancer.txt
	$(CARGO) run --release -p sg-bench --bin mqtt-bench -- \
		--micro $(BENCH_DIR)/mqtt.txt --micro $(BENCH_DIR)/balancer.txt $(BENCH_ARGS)

# Fuzzes the MQTT CONNECT decoder and the PROXY protocol parser (cargo-fuzz on the stable
# toolchain), FUZZ_SECONDS each (600 by default).
FUZZ_SECONDS ?= 600
.PHONY: fuzz
fuzz:
	@command -v cargo-fuzz >/dev/null 2>&1 || $(CARGO) install cargo-fuzz --locked
	cd fuzz && for target in mqtt_connect proxy_header; do \
		RUSTC_BOOTSTRAP=1 cargo fuzz run $$target -- -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 || exit 1; \
	done
