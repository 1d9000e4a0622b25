# The two commands (README): `make serve` and `make test`. Both bootstrap .venv on a fresh Debian.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
NATIVE_SRC := $(wildcard native/src/*.c native/include/*.h) native/build.py
ASAN_DIR := build/asan
# io_uring for the drives when a recent enough liburing is installed: native/build.py decides,
# for the cffi build and (through this) the direct gcc builds alike.
URING = $(shell $(PY) native/build.py --uring-flags)

.PHONY: serve test tools lint typecheck layers unit native asan bench clean fuzz

# Install the package (which compiles native/ through cffi) whenever the C sources or the
# dependencies change.
$(VENV)/.installed: pyproject.toml setup.py $(NATIVE_SRC)
	-test "$$(id -u)" != 0 || test -e /usr/include/liburing.h || \
	    (export DEBIAN_FRONTEND=noninteractive; apt-get install -y -qq liburing-dev >/dev/null 2>&1 || \
	     (apt-get update -qq && apt-get install -y -qq liburing-dev >/dev/null))
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

# Single node on the embedded defaults: ./data, 6 drive directories (EC 4+2), S3 on 127.0.0.1:9000.
# Override with e.g. `make serve SERVE_ARGS="--s3 0.0.0.0:9000 --data /srv/store"`.
serve: $(VENV)/.installed
	$(VENV)/bin/store serve $(SERVE_ARGS)

# The real clients the integration tests drive, from Debian (installed when running as root and
# missing; the aws CLI comes with the test extra): rclone and s3cmd for S3; qemu-img/qemu-io,
# libnbd's nbdinfo/nbdcopy/nbdsh (and its Python binding), nbdkit and fio for NBD; etcd for the
# cluster's metadata.
TOOLS_PKGS = rclone s3cmd qemu-utils libnbd-bin python3-libnbd nbdkit fio etcd-server
TOOLS_CMDS = rclone s3cmd qemu-img qemu-io nbdinfo nbdcopy nbdsh nbdkit fio etcd
tools:
	@missing=""; for c in $(TOOLS_CMDS); do command -v $$c >/dev/null || missing="$$missing $$c"; done; \
	if [ -n "$$missing" ]; then \
	    if [ "$$(id -u)" = 0 ]; then \
	        export DEBIAN_FRONTEND=noninteractive; \
	        apt-get install -y -qq --no-install-recommends $(TOOLS_PKGS) >/dev/null 2>&1 || \
	        (apt-get update -qq && apt-get install -y -qq --no-install-recommends $(TOOLS_PKGS) >/dev/null); \
	    else \
	        echo "make test: missing$$missing (sudo apt-get install $(TOOLS_PKGS))" >&2; exit 1; \
	    fi; \
	fi

# The drive and volume suites run again on the drives' thread-pool path (the rest ran on
# io_uring, where this kernel allows it; see STORE_DRIVE_IO in docs/config.md).
DRIVE_IO_TESTS = tests/unit/chunk tests/unit/volumes tests/integration/test_nbd.py \
    tests/integration/test_nbd_degraded.py
test: $(VENV)/.installed tools lint layers typecheck asan
	$(PY) -m pytest -q
	STORE_DRIVE_IO=threads $(PY) -m pytest -q $(DRIVE_IO_TESTS)

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check store tests bench fuzz native/build.py

typecheck: $(VENV)/.installed
	$(VENV)/bin/mypy

layers: $(VENV)/.installed
	$(VENV)/bin/lint-imports

# The native tests again, against an AddressSanitizer + UBSan build of the library: first the C
# self-check (exact-size allocations), then the Python property tests through the same library.
asan: $(VENV)/.installed
	mkdir -p build
	gcc -O1 -g -std=c11 -D_GNU_SOURCE -Wall -Wextra -Inative/include \
	    -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer \
	    native/src/*.c native/tests/check.c -o build/native-check -lpthread $(URING)
	./build/native-check
	$(PY) native/build.py --sanitize build/asan-obj >/dev/null
	$(PY) native/asan_tree.py build/asan-obj $(ASAN_DIR)
	ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 \
	LD_PRELOAD="$$(gcc -print-file-name=libasan.so) $$(gcc -print-file-name=libubsan.so)" \
	PYTHONMALLOC=malloc STORE_EXPECT_SANITIZED=1 HYPOTHESIS_PROFILE=asan \
	    sh -c 'cd $(ASAN_DIR) && ../../$(PY) -m pytest -q -p no:cacheprovider tests/native'

# Peers: ISA-L 2.32 (inside the pyeclib wheel), pyeclib, the crc32c package; Debian's libisal2 too.
bench: $(VENV)/.installed
	$(PY) -m pip install --quiet -e '.[bench]'
	-test "$$(id -u)" != 0 || test -e /usr/lib/x86_64-linux-gnu/libisal.so.2 || \
	    (apt-get install -y -qq libisal2 >/dev/null 2>&1 || \
	     (apt-get update -qq && apt-get install -y -qq libisal2 >/dev/null))
	$(PY) bench/ec.py --out bench/out

# Coverage-guided fuzzing of the sans-IO parsers (fuzz/README in fuzz/__init__.py): each target for
# FUZZ_SECONDS on a copy of its seeds in build/fuzz/<target>, where new inputs and crash files land;
# the committed corpus is never written. `make fuzz FUZZ_SECONDS=60` for a short round.
FUZZ_SECONDS ?= 300
FUZZ_TARGETS = s3_router s3_sigv4 s3_chunked s3_xml s3_policy s3_postform nbd_handshake nbd_transmission rpc_wire
fuzz: $(VENV)/.installed
	@failed=""; for t in $(FUZZ_TARGETS); do \
	    mkdir -p build/fuzz/$$t && cp fuzz/corpus/$$t/* build/fuzz/$$t/ && \
	    $(PY) fuzz/$$t.py -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 \
	        -artifact_prefix=build/fuzz/$$t- build/fuzz/$$t || failed="$$failed $$t"; \
	done; \
	test -z "$$failed" || { echo "make fuzz: crashes in$$failed (inputs in build/fuzz/)" >&2; exit 1; }

clean:
	rm -rf build $(VENV) store/_native*.so store/_native.c *.egg-info
