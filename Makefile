# IncroOS build, run, debug and test.
#
#   make run      build the ISO and boot it in QEMU (serial on this terminal)
#   make test     host tests, lints, and the in-kernel suite under BIOS and UEFI
#
# Every target first checks the tools it needs (scripts/deps.sh): as root it
# installs missing Debian packages, with rustup the pinned toolchain's
# target and components; whatever is left is named in one message.

SHELL    := /bin/bash
CARGO    ?= cargo
BUILD    := build
KERNEL   := $(BUILD)/kernel.elf
ISO      := $(BUILD)/incroos.iso
MEM      ?= 256M
# CPUs for make run / run-uefi (the tests choose their own).
SMP      ?= 1
# scripts/qemu.sh holds the one QEMU command line (ACCEL=kvm, OVMF=path).
QEMU     := scripts/qemu.sh
# A window when a display exists; serial (and the QEMU monitor on Ctrl-A C)
# on this terminal either way.
DISPLAY_ARGS = $(if $(DISPLAY),,-display none)

KERNEL_SOURCES := $(shell find src mm/src asm include tests/c -type f) mm/Cargo.toml linker.ld build.rs Cargo.toml Cargo.lock

.PHONY: all help deps deps-plots kernel iso run run-uefi debug gdb test test-host test-boot test-shell test-gdb fuzz soak bench plots clean

all: iso

help:
	@echo "make run          build the ISO and boot it in QEMU (SeaBIOS); serial here, Ctrl-A X quits"
	@echo "make run-uefi     the same through OVMF (UEFI)"
	@echo "make test         every test: host tests and lints, the boot matrix, shell, NMI and gdb checks"
	@echo "make test-host    deps.sh's messages, cargo fmt --check, clippy (kernel and host), rustdoc links, host unit and property tests"
	@echo "make test-boot    the boot matrix: the in-kernel suite on many machines, failure reports"
	@echo "make test-numa    the suite on NUMA machines (2 nodes, 3 with a memory-only one, one above 4 GiB)"
	@echo "make test-shell   the shell over serial, the UEFI screen, NMIs and every CPU from the QEMU monitor"
	@echo "make test-gdb     the debugger workflow in batch mode"
	@echo "make iso          build/incroos.iso (BIOS + UEFI) and build/kernel.elf (with symbols)"
	@echo "make debug        QEMU paused with its gdb stub on :1234 (then make gdb in another terminal)"
	@echo "make gdb          gdb attached to make debug's QEMU, with the kernel's symbols"
	@echo "make bench        host benchmarks against peers, ratios from one run; CSVs in build/bench/, then the charts"
	@echo "make plots        SVG charts in docs/img/ from build/bench/*.csv (installs matplotlib as root)"
	@echo "make fuzz         long property-test runs (FUZZ_SCALE=200 times the usual cases)"
	@echo "make soak         the suite under random allocation failures (10 seeds, 1, 2, 4, 8 CPUs), then 20 times on 4 CPUs"
	@echo "make clean        remove target/ and build/"
	@echo "variables: MEM=512M (RAM), SMP=4 (CPUs), ACCEL=kvm (where KVM works); cargo run boots the kernel too"

deps:
	@scripts/deps.sh

$(KERNEL): $(KERNEL_SOURCES) | deps
	$(CARGO) build
	@mkdir -p $(BUILD)
	cp target/x86_64-unknown-none/debug/incroos $(KERNEL)
	@grub-file --is-x86-multiboot2 $(KERNEL) || { echo "error: $(KERNEL) is not a Multiboot2 kernel" >&2; exit 1; }

kernel: $(KERNEL)

# iso-image(output, grub.cfg[, modules dir]): a hybrid BIOS + UEFI image
# with the kernel, without its debug info (GRUB reads the whole file into
# RAM: the 8 MiB of DWARF left a 16 MiB machine no room to boot), and the
# files of the modules directory in /boot/modules. gdb uses $(KERNEL).
define iso-image
	@rm -rf $(1).dir && mkdir -p $(1).dir/boot/grub
	@strip --strip-debug -o $(1).dir/boot/kernel.elf $(KERNEL)
	@cp $(2) $(1).dir/boot/grub/grub.cfg
	@if [ -n "$(3)" ]; then cp -r $(3) $(1).dir/boot/modules; fi
	@grub-mkrescue -o $(1) $(1).dir >$(1).log 2>&1 || { cat $(1).log >&2; exit 1; }
	@rm -rf $(1).dir
endef

$(ISO): $(KERNEL) grub/grub.cfg
	$(call iso-image,$@,grub/grub.cfg)
	@echo "built $@ (kernel with symbols: $(KERNEL))"

iso: $(ISO)

run: iso
	@scripts/run.sh $(ISO) bios $(MEM) -smp $(SMP)

run-uefi: iso
	@scripts/run.sh $(ISO) uefi $(MEM) -smp $(SMP)

# QEMU waits for gdb on localhost:1234; `make gdb` in another terminal attaches.
debug: iso
	@echo "QEMU is paused with its gdb stub on :1234; run 'make gdb' in another terminal"
	$(QEMU) $(ISO) bios $(MEM) -serial mon:stdio $(DISPLAY_ARGS) -s -S

gdb: $(KERNEL)
	@# Look for a listener on port 1234 (0x04D2) without connecting to it.
	@grep -qs ':04D2 0\{8,32\}:0000 0A' /proc/net/tcp /proc/net/tcp6 || { \
	    echo "error: nothing listens on localhost:1234: start \`make debug\` in another terminal first" >&2; exit 1; }
	gdb -q $(KERNEL) -x scripts/gdbinit

# Test ISOs: the same kernel with a fixed command line (grub/test.cfg.in)
# and TEST_MODULES self-checking boot modules of 320 KiB
# (scripts/make-modules.py; integrity::boot_modules_are_intact checks them).
TEST_MODULES ?= 0
$(BUILD)/test-%.iso: $(KERNEL) grub/test.cfg.in scripts/make-modules.py
	@rm -rf $@.modules
	@lines=$$(python3 scripts/make-modules.py $@.modules $(TEST_MODULES) 327680) && \
	    sed -e 's|@CMDLINE@|$(TEST_CMDLINE)|' -e "s|@MODULES@|$$lines|" grub/test.cfg.in >$@.cfg
	$(call iso-image,$@,$@.cfg,$(if $(filter-out 0,$(TEST_MODULES)),$@.modules))

$(BUILD)/test-suite.iso: TEST_CMDLINE = test
$(BUILD)/test-report.iso: TEST_CMDLINE = report exit
$(BUILD)/test-poweroff.iso: TEST_CMDLINE = report poweroff
$(BUILD)/test-smp1.iso: TEST_CMDLINE = report exit smp=1
$(BUILD)/test-selftest.iso: TEST_CMDLINE = test test.filter=selftest::
$(BUILD)/test-panic.iso: TEST_CMDLINE = crash=panic
$(BUILD)/test-null.iso: TEST_CMDLINE = crash=null
$(BUILD)/test-overflow.iso: TEST_CMDLINE = crash=overflow
$(BUILD)/test-oom.iso: TEST_CMDLINE = crash=oom
$(BUILD)/test-ap-panic.iso: TEST_CMDLINE = crash=ap-panic
$(BUILD)/test-pmm32.iso: TEST_CMDLINE = test pmm.max=32M
$(BUILD)/test-shell.iso: TEST_CMDLINE = report
$(BUILD)/test-modules.iso: TEST_CMDLINE = test
$(BUILD)/test-nomatch.iso: TEST_CMDLINE = test test.filter=no_such_test
$(BUILD)/test-pmm64g.iso: TEST_CMDLINE = test pmm.max=64G
$(BUILD)/test-failures.iso: TEST_CMDLINE = test fail=pmm:random=$(FAIL_ONE_IN),seed=$(FAIL_SEED)
$(BUILD)/test-badword.iso: TEST_CMDLINE = report exit smp=none
# The whole suite with 1 frame allocation in FAIL_ONE_IN failing at random.
FAIL_ONE_IN ?= 40
FAIL_SEED ?= 20261201
$(BUILD)/test-modules.iso: TEST_MODULES = 10
TEST_ISOS := $(addprefix $(BUILD)/test-,$(addsuffix .iso,suite report poweroff smp1 selftest panic null overflow oom ap-panic pmm32 shell modules nomatch pmm64g failures badword))
# Every boot test fails on a WARN or ERROR line its rule does not declare
# (--expect-log: must appear; --allow-log: may); the suite's own are
# declared by its tests and written `[expected ...]`.
BOOT_TEST := @scripts/boot-test.sh
# NUMA machines for the boots (the same as the ACPI fixtures of
# scripts/capture-acpi.py): two nodes with two CPUs each; three nodes, the
# last with memory only; a node whose RAM lies above 4 GiB.
numa-ram = -object memory-backend-ram,id=m$(1),size=$(2) -numa node,nodeid=$(1),memdev=m$(1)$(if $(3),$(comma)cpus=$(3))
comma := ,
NUMA_2 := $(call numa-ram,0,256M,0-1) $(call numa-ram,1,256M,2-3) -numa dist,src=0,dst=1,val=21
NUMA_3 := $(call numa-ram,0,256M,0-1) $(call numa-ram,1,256M,2-3) $(call numa-ram,2,256M) \
    -numa dist,src=0,dst=1,val=21 -numa dist,src=0,dst=2,val=31 -numa dist,src=1,dst=0,val=22 \
    -numa dist,src=1,dst=2,val=41 -numa dist,src=2,dst=0,val=32 -numa dist,src=2,dst=1,val=42
NUMA_ABOVE_4G := $(call numa-ram,0,3G,0-1) $(call numa-ram,1,2G,2-3)
# What a heap logs when frame allocations fail on purpose under it.
INJECTED_FAILURE_LOGS := --allow-log 'heap: cannot grow to 0x[0-9a-f]+: out of physical frames'

test: test-host test-boot test-numa test-shell test-gdb
	@echo "make test: all passed"

test-host: deps
	@scripts/deps-test.sh
	$(CARGO) fmt --check
	$(CARGO) clippy --workspace -- -D warnings
	$(CARGO) host-clippy -- -D warnings
	RUSTDOCFLAGS="-D warnings" $(CARGO) doc --workspace --no-deps -q
	$(CARGO) host-test

# The boot matrix: each line boots one ISO and checks how the kernel ended.
test-boot: $(TEST_ISOS)
	$(BOOT_TEST) suite-bios $(BUILD)/test-suite.iso
	$(BOOT_TEST) suite-uefi $(BUILD)/test-suite.iso --uefi
	$(BOOT_TEST) suite-48m $(BUILD)/test-suite.iso --mem 48M
	$(BOOT_TEST) suite-64m $(BUILD)/test-suite.iso --mem 64M
	$(BOOT_TEST) suite-512m $(BUILD)/test-suite.iso --mem 512M
	$(BOOT_TEST) suite-3.5g $(BUILD)/test-suite.iso --mem 3584M
	$(BOOT_TEST) suite-4g-pci-hole $(BUILD)/test-suite.iso --mem 4G
	$(BOOT_TEST) suite-6g-above-4g $(BUILD)/test-suite.iso --mem 6G \
	    --expect 'usable +0x01[0-9a-f]{8}-' --expect '^ktest: [0-9]+ passed, 0 failed'
	$(BOOT_TEST) suite-q35 $(BUILD)/test-suite.iso -- -machine q35
	$(BOOT_TEST) suite-q35-uefi $(BUILD)/test-suite.iso --uefi -- -machine q35
	$(BOOT_TEST) suite-smp2 $(BUILD)/test-suite.iso -- -smp 2
	$(BOOT_TEST) suite-cpu-max-1g-pages $(BUILD)/test-suite.iso \
	    --expect 'direct map: .* 1 GiB pages' --expect 'CPU protections: PGE on, SMEP on, SMAP on, UMIP on' \
	    --expect 'SMAP on: direct kernel reads of a user page fault, copies go through' \
	    --expect 'SMEP on: a kernel call into a user page faults' --expect 'umip_on_where_offered \.\.\. +UMIP on' \
	    --expect '^ktest: [0-9]+ passed, 0 failed, 0 skipped' -- -cpu max
	$(BOOT_TEST) ten-modules-bios $(BUILD)/test-modules.iso \
	    --expect '10 boot modules intact' --expect '^ktest: [0-9]+ passed, 0 failed'
	$(BOOT_TEST) ten-modules-q35-uefi-12g $(BUILD)/test-modules.iso --uefi --mem 12G \
	    --expect '10 boot modules intact' --expect ', 0 changed since entry' \
	    --expect '^ktest: [0-9]+ passed, 0 failed' -- -machine q35
	$(BOOT_TEST) pmm-design-window-32m $(BUILD)/test-pmm32.iso \
	    --expect 'PMM manages 8192 frames' --expect '^ktest: [0-9]+ passed, 0 failed'
	$(BOOT_TEST) pmm-window-beyond-ram $(BUILD)/test-pmm64g.iso
	$(BOOT_TEST) suite-random-frame-failures $(BUILD)/test-failures.iso \
	    --expect 'under failure injection .* [0-9]+ without' --expect 'ktest: under .*, 0 without\b' \
	    $(INJECTED_FAILURE_LOGS)
	$(BOOT_TEST) not-enough-memory $(BUILD)/test-suite.iso --mem 16M --exit 35 \
	    --expect 'IncroOS boot failed: physical memory manager: not enough memory'
	@scripts/min-memory-test.sh min-memory-suite $(BUILD)/test-suite.iso
	@scripts/min-memory-test.sh min-memory-modules $(BUILD)/test-modules.iso --expect '10 boot modules intact'
	$(BOOT_TEST) report-bios $(BUILD)/test-report.iso --exit 33 \
	    --expect 'firmware: +BIOS' --expect 'memory map \(' --expect 'available RAM' --expect 'IncroOS is up' \
	    --expect 'ACPI: +RSDP revision 0 from the Multiboot2 tag' --expect '^  RSDT 0x' --expect '^  APIC 0x' \
	    --expect 'CPUs: 1 in the MADT, 1 enabled' \
	    --expect '^VGA text console: 80x25 characters at 0xb8000$$' \
	    --expect '^framebuffer: +EGA text \(characters\) 80x25' --reject '^framebuffer console'
	$(BOOT_TEST) report-uefi $(BUILD)/test-report.iso --uefi --exit 33 \
	    --expect 'firmware: +UEFI' --expect 'memory map \(' --expect 'IncroOS is up' \
	    --expect 'ACPI: +RSDP revision 2 from the Multiboot2 tag' --expect '^  XSDT 0x' --expect '^  DSDT 0x' \
	    --expect '^framebuffer console: [0-9]+x[0-9]+ pixels, [0-9]+ bpp' --reject '^VGA text console'
	$(BOOT_TEST) acpi-poweroff-bios $(BUILD)/test-poweroff.iso --exit 0 \
	    --expect 'power off: ACPI S5 through PM1a control 0x604' --reject 'ACPI power-off failed'
	$(BOOT_TEST) acpi-poweroff-uefi $(BUILD)/test-poweroff.iso --uefi --exit 0 \
	    --expect 'power off: ACPI S5 through PM1a control 0xb004' --reject 'ACPI power-off failed'
	$(BOOT_TEST) acpi-poweroff-q35-smp4 $(BUILD)/test-poweroff.iso --exit 0 \
	    --expect 'CPUs: 4 in the MADT, 4 enabled' --expect 'power off: ACPI S5 through PM1a control 0x604' \
	    --reject 'ACPI power-off failed' -- -machine q35 -smp 4
	$(BOOT_TEST) acpi-cpus-not-enabled $(BUILD)/test-report.iso --exit 33 \
	    --expect 'CPUs: 4 in the MADT, 2 enabled' --expect 'APIC id +3 \(processor 3\), not enabled' \
	    --expect '^CPUs: +2 online; local APIC through xAPIC' --expect 'APIC id +2: not enabled in the MADT: not started' \
	    -- -smp 2,maxcpus=4
	$(BOOT_TEST) smp-limit-1 $(BUILD)/test-smp1.iso --exit 33 \
	    --expect '^CPUs: +1 online' --expect 'APIC id +1: over the smp= limit: not started' -- -smp 2
	$(BOOT_TEST) suite-smp4-bios $(BUILD)/test-suite.iso -- -smp 4
	$(BOOT_TEST) suite-smp2-uefi $(BUILD)/test-suite.iso --uefi -- -smp 2
	$(BOOT_TEST) suite-smp4-uefi $(BUILD)/test-suite.iso --uefi -- -smp 4
	$(BOOT_TEST) suite-smp4-q35-uefi $(BUILD)/test-suite.iso --uefi -- -machine q35 -smp 4
	$(BOOT_TEST) suite-smp8-q35 $(BUILD)/test-suite.iso --mem 512M -- -machine q35 -smp 8
	$(BOOT_TEST) harness-reports-failure $(BUILD)/test-selftest.iso --exit 35 \
	    --expect 'this_test_fails_on_purpose \.\.\. FAILED' --expect 'left: +2' \
	    --expect 'selftest\.rs:[0-9]+' --expect '^ktest: 0 passed, 1 failed'
	$(BOOT_TEST) filter-matching-nothing-fails $(BUILD)/test-nomatch.iso --exit 35 \
	    --expect 'no test matched the filter "no_such_test"'
	$(BOOT_TEST) panic-report $(BUILD)/test-panic.iso --exit 35 \
	    --expect 'KERNEL PANIC at src/ktest/selftest\.rs:[0-9]+:[0-9]+' --expect 'deliberate panic' \
	    --expect '^backtrace' --expect-log 'crash=panic: crashing on purpose'
	$(BOOT_TEST) panic-report-smp4 $(BUILD)/test-panic.iso --exit 35 \
	    --expect 'KERNEL PANIC at src/ktest/selftest\.rs:[0-9]+:[0-9]+' --expect 'deliberate panic' \
	    --expect-log 'crash=panic: crashing on purpose' -- -smp 4
	$(BOOT_TEST) panic-on-another-cpu $(BUILD)/test-ap-panic.iso --exit 35 \
	    --expect 'KERNEL PANIC at src/ktest/selftest\.rs:[0-9]+:[0-9]+' \
	    --expect 'deliberate panic on CPU 3 \(crash=ap-panic\)' --expect 'on CPU 3 \(the others were halted\)' \
	    --expect-log 'crash=ap-panic: crashing on purpose' --reject 'no CPU panicked' -- -smp 4
	$(BOOT_TEST) null-write-report $(BUILD)/test-null.iso --exit 35 \
	    --expect 'CPU EXCEPTION: page fault \(#PF\)' --expect 'CR2\): 0x0000000000000000' \
	    --expect 'write, page not present, kernel mode' --expect 'null pointer' \
	    --expect-log 'crash=null: crashing on purpose'
	$(BOOT_TEST) stack-overflow-report $(BUILD)/test-overflow.iso --exit 35 \
	    --expect 'CPU EXCEPTION: double fault' --expect 'stack guard page: kernel stack overflow' \
	    --expect-log 'crash=overflow: crashing on purpose'
	$(BOOT_TEST) heap-oom-report $(BUILD)/test-oom.iso --exit 35 \
	    --expect 'KERNEL PANIC at' --expect 'memory allocation of 33554432 bytes failed' \
	    --expect-log 'crash=oom: crashing on purpose' \
	    --expect-log '\[ERROR kernel_mm::heap\] heap: out of memory: 33554432 bytes \(32 MiB\) aligned to 1'
	$(BOOT_TEST) bad-command-line-word $(BUILD)/test-badword.iso --exit 33 --expect 'IncroOS is up' \
	    --expect-log 'ignoring unknown command-line word "smp=none"'
	$(BOOT_TEST) undeclared-warning-fails $(BUILD)/test-badword.iso --exit 33 --expect 'IncroOS is up' \
	    --fails-with '^1 undeclared WARN or ERROR log lines, the first: \[WARN  [a-z_:]+\] ignoring unknown'
	$(BOOT_TEST) no-long-mode $(BUILD)/test-report.iso --hang --timeout 4 \
	    --expect 'IncroOS boot failed: CPU does not support long mode' -- -cpu qemu32
	$(BOOT_TEST) no-nx $(BUILD)/test-report.iso --hang --timeout 4 \
	    --expect 'IncroOS boot failed: CPU does not support the NX' -- -cpu qemu64,-nx

# The memory debug shell driven over serial, every command and bad input.
# ... and the UEFI framebuffer console, checked on a QEMU screenshot
# (kept as build/test-logs/screen-uefi.png); and real NMIs injected from
# QEMU's monitor while the shell runs.
# NUMA machines: the whole suite on each, and the layout the boot report
# gives checked against what QEMU was told.
test-numa: $(BUILD)/test-suite.iso
	$(BOOT_TEST) numa-2-nodes $(BUILD)/test-suite.iso --mem 512M \
	    --expect 'NUMA: +2 nodes from the SRAT, distances from the SLIT' \
	    --expect 'node 0 \(domain 0\): 25[0-9.]+ MiB total, .*; CPUs 0 1;' \
	    --expect 'node 1 \(domain 1\): 25[56][0-9.]* MiB total, .*; CPUs 2 3; memory 0x0*10000000-0x0*20000000$$' \
	    --expect 'distance from node 0: +10 +21' --expect '^ktest: [0-9]+ passed, 0 failed' \
	    -- -smp 4 $(NUMA_2)
	$(BOOT_TEST) numa-3-nodes-memory-only-q35-uefi $(BUILD)/test-suite.iso --uefi --mem 768M \
	    --expect 'NUMA: +3 nodes from the SRAT, distances from the SLIT' \
	    --expect 'node 2 \(domain 2\): 25[0-9.]* MiB total, .*; CPUs none; memory 0x0*20000000-0x0*30000000$$' \
	    --expect 'distance from node 2: +32 +42 +10' --expect '^ktest: [0-9]+ passed, 0 failed' \
	    -- -machine q35 -smp 4 $(NUMA_3)
	$(BOOT_TEST) numa-node-above-4g $(BUILD)/test-suite.iso --mem 5G \
	    --expect 'NUMA: +2 nodes from the SRAT, no SLIT' \
	    --expect 'node 1 \(domain 1\): 2 GiB total, .*; CPUs 2 3; memory 0x0*100000000-0x0*180000000$$' \
	    --expect '^ktest: [0-9]+ passed, 0 failed' -- -smp 4 $(NUMA_ABOVE_4G)

test-shell: $(BUILD)/test-shell.iso
	@scripts/shell-test.sh $(BUILD)/test-shell.iso bios
	@python3 scripts/screen-test.py $(BUILD)/test-shell.iso
	@python3 scripts/nmi-test.py $(BUILD)/test-shell.iso
	@python3 scripts/smp-check.py $(BUILD)/test-shell.iso bios 4
	@python3 scripts/smp-check.py $(BUILD)/test-shell.iso uefi 4 -machine q35
	@python3 scripts/user-monitor-check.py $(BUILD)/test-shell.iso
	@out=$$(printf 'shutdown\n' | $(CARGO) run -q 2>&1); \
	    if grep -q 'shutting down' <<<"$$out"; then echo "cargo run ... ok"; \
	    else echo "cargo run ... FAILED"; tail -n 15 <<<"$$out"; exit 1; fi

# The gdb workflow of `make debug` + `make gdb`, checked in batch mode; the
# suite ISO runs user programs, for a walk of a user address space.
test-gdb: $(ISO) $(BUILD)/test-suite.iso
	@scripts/gdb-test.sh $(ISO) $(BUILD)/test-suite.iso

# Long property-test runs against the models (heap, PMM, bitmap, memory-map
# normalisation, page tables, Multiboot2 parsing): FUZZ_SCALE times the
# cases `make test` runs. Not part of `make test`.
FUZZ_SCALE ?= 200
fuzz: deps
	INCROOS_FUZZ_SCALE=$(FUZZ_SCALE) $(CARGO) host-test -- --test-threads 2

# The fault-injection soak: the whole suite under random frame-allocation
# failures, SOAK_SEEDS seeds at 1 in 20, each on 1, 2, 4 and 8 CPUs, then
# 20 runs without failures on 4 CPUs. Every test must pass or fail only
# with injected failures; no panic, hang or corruption (the integrity
# tests at the end re-check the boot data). Not part of `make test`.
SOAK_SEEDS ?= 1 2 3 4 5 6 7 8 9 10
soak: $(KERNEL) grub/test.cfg.in scripts/make-modules.py
	@for seed in $(SOAK_SEEDS); do \
	    rm -f $(BUILD)/test-failures.iso; \
	    $(MAKE) -s FAIL_ONE_IN=20 FAIL_SEED=$$seed $(BUILD)/test-failures.iso || exit 1; \
	    for cpus in 1 2 4 8; do \
	        scripts/boot-test.sh soak-seed$$seed-smp$$cpus $(BUILD)/test-failures.iso \
	            --expect 'ktest: under .*, 0 without\b' $(INJECTED_FAILURE_LOGS) -- -smp $$cpus || exit 1; \
	    done; \
	done
	@rm -f $(BUILD)/test-failures.iso
	@$(MAKE) -s $(BUILD)/test-suite.iso
	@for run in $$(seq 1 20); do \
	    scripts/boot-test.sh soak-smp4-run$$run $(BUILD)/test-suite.iso -- -smp 4 || exit 1; \
	done
	@echo "make soak: all passed"

# Host benchmarks (release build): each prints ratios against a baseline
# measured in the same run, progress on stderr, and appends its figures to
# $(BENCH_DIR)/<bench>.csv (schema: mm/benches/support/mod.rs); then the
# charts, where matplotlib is installed. Not part of `make test`.
BENCH_DIR := $(BUILD)/bench
# Debian's python3-matplotlib is for /usr/bin/python3 (scripts/deps.sh).
PLOTS_PYTHON ?= /usr/bin/python3
export PLOTS_PYTHON
PLOT = $(PLOTS_PYTHON) scripts/plots.py $(BENCH_DIR) docs/img
bench: deps
	INCROOS_BENCH_DIR=$(CURDIR)/$(BENCH_DIR) \
	    INCROOS_BENCH_COMMIT=$$(git describe --always --dirty 2>/dev/null) $(CARGO) host-bench
	@if scripts/deps.sh --check plots; then $(PLOT); \
	    else echo "make bench: no charts drawn; \`make plots\` installs matplotlib (as root) and draws them" >&2; fi

# SVG charts of the newest figures in $(BENCH_DIR) (scripts/plots.py):
# heap ns/op per allocator per workload, heap latencies, the workloads the
# heap was not tuned for, paging, and PMM cost by fill level (skipped
# with a note while pmm.csv has no rows).
plots: deps-plots
	$(PLOT)

deps-plots:
	@scripts/deps.sh plots

clean:
	$(CARGO) clean
	rm -rf $(BUILD)
