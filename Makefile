# icevm — see README.md. `make vm-test` and `make test` set up everything they need:
# apt build dependencies (as root), the project venv, QEMU with the e810 device, the guest image.
# Artefacts are cached under $(ICEVM_CACHE) (default ~/.cache/icevm).

PYTHON ?= python3
VENV   := .venv
VPY    := $(VENV)/bin/python
PYTEST := $(VPY) -m pytest
REPORTS := reports

.PHONY: all venv deps qemu qemu-asan qemu-fuzz coverage guest kernels patched-module \
        selftest-guest build vm-test unit qtest test lint bench bench-boot bench-rx clean-build

all: build

venv: $(VENV)/.installed
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VPY) -m pip install -q --upgrade pip
	$(VPY) -m pip install -q -e '.[dev]'
	touch $@

deps: venv
	$(VPY) -m icevm.build deps

qemu: venv
	$(VPY) -m icevm.build qemu

# The same QEMU with AddressSanitizer and UBSan, a second cached build (build-asan) that
# scripts/fuzz-device and tests/qtest/test_fuzz.py run.
qemu-asan: venv
	$(VPY) -m icevm.build qemu-asan

# QEMU's libFuzzer targets (qemu-fuzz-x86_64, generic-fuzz) with ASan+UBSan, built by Debian's
# clang-19 (installed by the deps step, as root): a third cached build, build-fuzz, that
# scripts/fuzz-generic runs. Not part of `make test`: CI replays the corpus on qemu/qemu-asan.
qemu-fuzz: venv
	$(VPY) -m icevm.build qemu-fuzz
	$(PYTEST) tests/qtest/test_fuzz_generic.py -q -rfE

# Line coverage of qemu-device/*.c (clang source-based, build-coverage): replays the qtests,
# the corpus and the fuzzers' corpora, writes reports/coverage/ (table + HTML).
# COVERAGE_ARGS: e.g. `--vm` to add one VM-suite run, `--fuzz-corpus DIR`.
coverage: venv
	$(VPY) -m icevm.build coverage
	$(PYTEST) tests/unit/test_coverage_lines.py -q -rfE
	$(VPY) scripts/fuzz-coverage $(COVERAGE_ARGS)

guest: venv
	$(VPY) -m icevm.build guest safe full

# The guest images of the other kernels the `kernels` tests boot (tests/vm/test_kernels.py in
# full mode, test_quiet.py in both): Debian bookworm's 6.1 and trixie-backports' newest, pinned
# in guest-image/kernels/*.lock, and the full image with each kernel's ice.ko rebuilt with the
# unwind fix by that kernel's own compiler (guest-image/module-build/*.lock).
KERNELS ?= bookworm,trixie-backports

kernels: deps
	$(VPY) -m icevm.build guest safe full --kernel $(KERNELS)
	$(VPY) -m icevm.build patched-module --kernel $(KERNELS) --guest full

# Debian's ice.ko with guest-image/patches/<X.Y>/ice-free-irq-dev-id.patch, built out of tree
# by the kernel's own compiler (icevm.build.module_build), and the guest images carrying it.
patched-module: deps
	$(VPY) -m icevm.build patched-module

# The guest the kernel's NIC selftests run in (`icevm selftests`, marker `selftests`): the full
# image plus an add-on archive of python3, iproute2, … and the tests built from the kernel's
# own linux-source (icevm.build.selftests).
selftest-guest: guest
	$(VPY) -m icevm.build.selftests guest

build: qemu guest patched-module

# The scripts have no .py suffix and each is a __main__: mypy takes them one at a time.
lint: venv
	$(VPY) -m ruff check controller tests scripts scripts/*
	$(VPY) -m mypy
	for f in scripts/*; do head -1 $$f | grep -q python || continue; \
	    $(VPY) -m mypy --no-error-summary $$f || exit 1; done

unit: venv
	$(PYTEST) tests/unit $(NO_FUZZ) -q

# The qtests run twice: on the plain build, then on the ASan+UBSan build, where a sanitizer
# report in QEMU's stderr fails the test (test_fuzz runs on that build already).
# The tests that need Debian's clang-19 (installed only by `make qemu-fuzz` / `make coverage`),
# which CI does not make: the generic-fuzz tests (`make qemu-fuzz` runs them) and the
# coverage reader's test on a clang-compiled toy (`make coverage` runs it). The other targets
# leave them out rather than skip them.
NO_FUZZ = --ignore=tests/qtest/test_fuzz_generic.py --ignore=tests/unit/test_coverage_lines.py
QTEST_ASAN = ICEVM_QTEST_ASAN=1 $(PYTEST) tests/qtest --ignore=tests/qtest/test_fuzz.py $(NO_FUZZ) -q -rfE

qtest: build qemu-asan
	$(PYTEST) tests/qtest $(NO_FUZZ) -q -rA --junitxml=$(REPORTS)/qtest.xml
	$(QTEST_ASAN) --junitxml=$(REPORTS)/qtest-asan.xml

# The main job: build what is missing, run the VM suite, print its report.
vm-test: build kernels selftest-guest
	$(PYTEST) tests/vm -rA --junitxml=$(REPORTS)/vm.xml

# Every test: lint, unit, qtest, VM.
test: lint build qemu-asan kernels selftest-guest
	$(PYTEST) tests $(NO_FUZZ) -rA --junitxml=$(REPORTS)/all.xml
	$(QTEST_ASAN) --junitxml=$(REPORTS)/qtest-asan.xml

# The benchmark suite (boot, restore, matrix, rx, tx): bench/*.json and the README's table.
bench: build
	$(VPY) scripts/bench

bench-boot: build
	$(VPY) scripts/bench-boot

bench-rx: build
	$(VPY) scripts/bench-rx

clean-build:
	rm -rf "$${ICEVM_CACHE:-$$HOME/.cache/icevm}/src" "$${ICEVM_CACHE:-$$HOME/.cache/icevm}/guest" \
	       "$${ICEVM_CACHE:-$$HOME/.cache/icevm}/module-build" "$${ICEVM_CACHE:-$$HOME/.cache/icevm}/modules"
