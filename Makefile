# IncroOS build, run, debug and test.
#
#   make run      build the ISO and boot it in QEMU (serial on this terminal)
#   make test     host tests, lints, and the in-kernel suite under BIOS and UEFI
#
# Every target first checks the tools it needs (scripts/deps.sh): as root it
# installs missing Debian packages, otherwise it names them.

CARGO    ?= cargo
BUILD    := build
KERNEL   := $(BUILD)/kernel.elf
ISO      := $(BUILD)/incroos.iso
MEM      ?= 256M
QEMU     := qemu-system-x86_64
QEMU_ARGS = -accel tcg -m $(MEM) -cdrom $(ISO) -boot d -no-reboot \
            -device isa-debug-exit,iobase=0xf4,iosize=0x04
OVMF     := /usr/share/ovmf/OVMF.fd
# A window when a display exists; serial (and the QEMU monitor on Ctrl-A C)
# on this terminal either way.
DISPLAY_ARGS = $(if $(DISPLAY),,-display none)

KERNEL_SOURCES := $(shell find src asm -type f) linker.ld build.rs Cargo.toml Cargo.lock

.PHONY: all deps kernel iso run run-uefi debug gdb test test-host test-boot clean

all: iso

deps:
	@scripts/deps.sh

$(KERNEL): $(KERNEL_SOURCES) | deps
	$(CARGO) build
	@mkdir -p $(BUILD)
	cp target/x86_64-unknown-none/debug/incroos $(KERNEL)
	@grub-file --is-x86-multiboot2 $(KERNEL) || { echo "error: $(KERNEL) is not a Multiboot2 kernel" >&2; exit 1; }

kernel: $(KERNEL)

# iso-image(output, grub.cfg): a hybrid BIOS + UEFI image with the kernel.
define iso-image
	@rm -rf $(1).dir && mkdir -p $(1).dir/boot/grub
	@cp $(KERNEL) $(1).dir/boot/kernel.elf
	@cp $(2) $(1).dir/boot/grub/grub.cfg
	@grub-mkrescue -o $(1) $(1).dir >$(1).log 2>&1 || { cat $(1).log >&2; exit 1; }
	@rm -rf $(1).dir
endef

$(ISO): $(KERNEL) grub/grub.cfg
	$(call iso-image,$@,grub/grub.cfg)
	@echo "built $@ (kernel with symbols: $(KERNEL))"

iso: $(ISO)

run: iso
	$(QEMU) $(QEMU_ARGS) -serial mon:stdio $(DISPLAY_ARGS)

run-uefi: iso | deps
	$(QEMU) $(QEMU_ARGS) -bios $(OVMF) -serial mon:stdio $(DISPLAY_ARGS)

# QEMU waits for gdb on localhost:1234; `make gdb` in another terminal attaches.
debug: iso
	@echo "QEMU is paused with its gdb stub on :1234; run 'make gdb' in another terminal"
	$(QEMU) $(QEMU_ARGS) -serial mon:stdio $(DISPLAY_ARGS) -s -S

gdb: $(KERNEL)
	gdb -q $(KERNEL) -x scripts/gdbinit

# Test ISOs: the same kernel with a fixed command line (grub/test.cfg.in).
$(BUILD)/test-%.iso: $(KERNEL) grub/test.cfg.in
	@sed 's|@CMDLINE@|$(TEST_CMDLINE)|' grub/test.cfg.in >$@.cfg
	$(call iso-image,$@,$@.cfg)

$(BUILD)/test-suite.iso: TEST_CMDLINE = test
$(BUILD)/test-report.iso: TEST_CMDLINE = report

test: test-host test-boot
	@echo "make test: all passed"

test-host: deps
	$(CARGO) fmt --check
	$(CARGO) clippy -- -D warnings
	$(CARGO) host-clippy -- -D warnings
	$(CARGO) host-test

test-boot: $(BUILD)/test-suite.iso
	@scripts/boot-test.sh suite-bios $(BUILD)/test-suite.iso
	@scripts/boot-test.sh suite-uefi $(BUILD)/test-suite.iso --uefi

clean:
	$(CARGO) clean
	rm -rf $(BUILD)
