# Entry points (see README.md). Every target installs what it needs first.
JOBS ?= 2
BUILD ?= build

.PHONY: deps build run test test-release test-sanitize test-tsan fuzz clean

deps:
	./scripts/install-deps.sh

build: deps
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo
	cmake --build $(BUILD) -j$(JOBS)

# Start the server in its default mode (in-memory cache on 127.0.0.1:11211).
run: build
	./$(BUILD)/memkeep

# Every test: unit + integration (release build), the same under
# AddressSanitizer and UndefinedBehaviorSanitizer, the unit and replication
# tests under ThreadSanitizer, and a bounded fuzz run.
test: test-release test-sanitize test-tsan fuzz

test-release: build
	cd $(BUILD) && ctest --output-on-failure

test-sanitize: deps
	cmake -S . -B build-sanitize -DCMAKE_BUILD_TYPE=Sanitize
	cmake --build build-sanitize -j$(JOBS)
	cd build-sanitize && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
		ctest --output-on-failure

# ThreadSanitizer on the code with threads that share state: the unit tests
# and the replication integration tests (feeds, links, --repl-sync). A report
# halts the process with exit code 66: the unit test binary then fails, and
# conftest.py's server_factory fails the test whose server exited so.
# tests/tsan.supp says what is suppressed and why.
TSAN_OPTIONS_ALL = halt_on_error=1:exitcode=66:second_deadlock_stack=1:suppressions=$(CURDIR)/tests/tsan.supp
test-tsan: deps
	cmake -S . -B build-tsan -DCMAKE_BUILD_TYPE=Tsan
	cmake --build build-tsan -j$(JOBS)
	TSAN_OPTIONS=$(TSAN_OPTIONS_ALL) ./build-tsan/tests/unit_tests
	TSAN_OPTIONS=$(TSAN_OPTIONS_ALL) MEMKEEP_BIN=$(CURDIR)/build-tsan/memkeep MEMKEEP_SANITIZED=1 \
		/usr/bin/python3 -m pytest -q -p no:cacheprovider $(wildcard tests/integration/test_replication*.py)

# libFuzzer on the text/meta and the binary protocol paths, on what a
# replication peer sends, on the -Y/-S authentication gate, on UDP
# datagrams and on a replication handshake before the proof, bounded in time.
FUZZ_SECONDS ?= 45
REPL_FUZZ_SECONDS ?= 20
GATE_FUZZ_SECONDS ?= 20
fuzz: deps
	CXX=clang++ cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo -DMEMKEEP_FUZZ=ON
	cmake --build build-fuzz -j$(JOBS) --target text_protocol_fuzzer binary_protocol_fuzzer replication_fuzzer \
		auth_gate_fuzzer udp_fuzzer replication_handshake_fuzzer
	mkdir -p build-fuzz/corpus build-fuzz/corpus-binary build-fuzz/corpus-replication build-fuzz/corpus-auth \
		build-fuzz/corpus-udp build-fuzz/corpus-handshake
	./build-fuzz/tests/text_protocol_fuzzer -max_total_time=$(FUZZ_SECONDS) -rss_limit_mb=2048 \
		build-fuzz/corpus tests/fuzz/seeds
	./build-fuzz/tests/binary_protocol_fuzzer -max_total_time=$(FUZZ_SECONDS) -rss_limit_mb=2048 \
		build-fuzz/corpus-binary tests/fuzz/seeds-binary
	./build-fuzz/tests/replication_fuzzer -max_total_time=$(REPL_FUZZ_SECONDS) -rss_limit_mb=2048 \
		build-fuzz/corpus-replication tests/fuzz/seeds-replication
	./build-fuzz/tests/auth_gate_fuzzer -max_total_time=$(GATE_FUZZ_SECONDS) -rss_limit_mb=2048 \
		build-fuzz/corpus-auth tests/fuzz/seeds-auth
	./build-fuzz/tests/udp_fuzzer -max_total_time=$(GATE_FUZZ_SECONDS) -rss_limit_mb=2048 \
		build-fuzz/corpus-udp tests/fuzz/seeds-udp
	./build-fuzz/tests/replication_handshake_fuzzer -max_total_time=$(GATE_FUZZ_SECONDS) -rss_limit_mb=2048 \
		build-fuzz/corpus-handshake tests/fuzz/seeds-handshake

clean:
	rm -rf $(BUILD) build-sanitize build-tsan build-fuzz
