# streamgate: `make run` runs the gateway on its embedded store, `make test` runs every test.
CARGO ?= cargo
BIN := target/release/streamgate
# System packages the tests need (real peers); installed when missing.
APT_PACKAGES := mosquitto mosquitto-clients curl openssl etcd-server etcd-client

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

bench: build
	$(CARGO) run --release -p sg-bench --bin idle-memory

# Fuzzes the MQTT CONNECT decoder (cargo-fuzz on the stable toolchain); FUZZ_SECONDS=600 by default.
FUZZ_SECONDS ?= 600
.PHONY: fuzz
fuzz:
	@command -v cargo-fuzz >/dev/null 2>&1 || $(CARGO) install cargo-fuzz --locked
	cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run mqtt_connect -- -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1
