"""gdb helpers for IncroOS: memory statistics and page-table walks, read
from kernel memory through gdb (QEMU's gdb stub).

    (gdb) source scripts/incroos-gdb.py     # scripts/gdbinit does this
    (gdb) incroos-meminfo                   # PMM (per NUMA node) and heap counters
    (gdb) incroos-walk 0x10000000           # each page-table level for an address
    (gdb) incroos-spaces                    # the address space each CPU has loaded
    (gdb) incroos-walk 0x8000400000 $incroos_pml4(0)   # ... in CPU 0's space

All need the memory manager initialised (e.g. stop in incroos::shell::session::run).
"""

import re

import gdb

DIRECT_MAP = 0xFFFF_8000_0000_0000
LEVELS = ["PML4", "PDPT", "PD", "PT"]
FLAG_NAMES = [(0, "P"), (1, "W"), (2, "U"), (3, "WT"), (4, "NC"), (5, "A"), (6, "D"),
              (7, "PS"), (8, "G"), (63, "NX")]


def locked_value(path):
    """The value inside an IrqMutex<Option<T>> static, or None."""
    return locked_option(gdb.parse_and_eval(path))


def locked_option(mutex):
    """The value inside an IrqMutex<Option<T>>, or None.

    IrqMutex is a ticket lock (fields next_ticket, now_serving,
    data: UnsafeCell<T>). The lock is not taken: a debugger stopped the
    machine, and whoever holds it may be halfway through a change."""
    option = mutex["data"]["value"]
    names = [field.name for field in option.type.fields()]
    if "Some" not in names:
        return None
    try:
        return option["Some"]["__0"]
    except gdb.error:
        return None


def read_u64(address):
    memory = gdb.selected_inferior().read_memory(address, 8)
    return int.from_bytes(bytes(memory), "little")


def print_nodes(pmm):
    """Per NUMA node: total and free frames and whole free 2 MiB chunks,
    read from the allocator's chunk table (one packed word per 2 MiB
    chunk: free count in bits 0-15, node in bits 27-29; see
    mm/src/pmm/chunks.rs)."""
    nodes = int(pmm["nodes"])
    table = pmm["chunks"]["table"]
    count = int(table["length"])
    words = bytes(gdb.selected_inferior().read_memory(int(table["data_ptr"]), count * 8))
    free = [0] * nodes
    whole = [0] * nodes
    for index in range(count):
        word = int.from_bytes(words[index * 8:index * 8 + 8], "little")
        node = (word >> 27) & 7
        if node < nodes:
            free[node] += word & 0xFFFF
            whole[node] += (word & 0xFFFF) == 512
    for node in range(nodes):
        print("      node {}: {} frames, {} free, {} free 2 MiB chunks".format(
            node, int(pmm["node_total"][node]), free[node], whole[node]))


class MemInfo(gdb.Command):
    """Print the PMM's and the heap's counters: incroos-meminfo"""

    def __init__(self):
        super().__init__("incroos-meminfo", gdb.COMMAND_USER)

    def invoke(self, argument, from_tty):
        pmm = locked_value("incroos::kernel_mm::pmm::PMM")
        if pmm is None:
            print("PMM:  not initialised")
        else:
            stats = pmm["stats"]
            print("PMM:  {} frames total, {} free, {} used, {} reserved".format(
                int(stats["total"]), int(stats["free"]), int(stats["used"]), int(stats["reserved"])))
            print_nodes(pmm)
        heap = locked_value("incroos::kernel_mm::heap::HEAP")
        if heap is None:
            print("heap: not initialised")
        else:
            stats = heap["stats"]
            # In memory, `free` leaves out the free slab slots (Heap::stats()
            # adds them); print the sum, as the kernel does.
            free = int(stats["free"]) + int(stats["slab_free"])
            print("heap: {} bytes mapped, {} used, {} free ({} in slab slots), {} live allocations, peak {}".format(
                int(stats["mapped"]), int(stats["used"]), free, int(stats["slab_free"]),
                int(stats["live_allocations"]), int(stats["peak_used"])))


class BreakAtEntry(gdb.Command):
    """Break at a function's first instruction: incroos-break FUNCTION

    `break *FUNCTION` does that but fails with "Attempt to use a type name
    as an expression" once the compiler emits a closure type under the
    function's path (a closure inside it); `break FUNCTION` stops after
    the prologue and may name a macro's line. This asks gdb where the
    function's first line starts and breaks at that address."""

    def __init__(self):
        super().__init__("incroos-break", gdb.COMMAND_BREAKPOINTS)

    def invoke(self, argument, from_tty):
        name = argument.strip()
        where = gdb.execute("info line " + name, to_string=True)
        found = re.search(r"starts at address (0x[0-9a-f]+)", where)
        if not found:
            raise gdb.GdbError("no code found for {}: {}".format(name, where.strip()))
        gdb.execute("break *" + found.group(1))


def kernel_pml4():
    """The physical address of the kernel's PML4 (the VMM's)."""
    vmm = locked_value("incroos::kernel_mm::vmm::VMM")
    if vmm is None:
        raise gdb.GdbError("the VMM is not initialised yet")
    return int(vmm["pml4"]["start_address"]["__0"])


def online_cpus():
    """(index, PerCpu value) for every online CPU, from smp::CPUS."""
    records = gdb.parse_and_eval("incroos::arch::x86_64::smp::CPUS")
    low, high = records.type.range()
    cpus = []
    for index in range(low, high + 1):
        pointer = records[index]["p"]["value"]
        if int(pointer):
            cpus.append((index, pointer.dereference()))
    return cpus


def loaded_space(record):
    """The user space a PerCpu record has loaded, as (its address, its
    PML4's physical address or None if it is being torn down), or None
    when the CPU runs on the kernel's own tables.

    `PerCpu.user_space` is a type-erased pointer to a
    `user::space::UserSpace`, whose `inner` is an IrqMutex<Option<
    AddressSpace>>, whose mapper holds the root frame."""
    try:
        address = int(record["user_space"]["p"]["value"])
    except gdb.error:
        raise gdb.GdbError("this kernel's PerCpu has no user_space field")
    if not address:
        return None
    try:
        space_type = gdb.lookup_type("incroos::user::space::UserSpace")
    except gdb.error:
        raise gdb.GdbError("no type incroos::user::space::UserSpace in the symbols")
    space = gdb.Value(address).cast(space_type.pointer()).dereference()
    core = locked_option(space["inner"])
    if core is None:
        return address, None
    return address, int(core["mapper"]["pml4"]["start_address"]["__0"])


def cpu_pml4(index):
    """The PML4 CPU `index` runs on: its user space's, else the kernel's."""
    for number, record in online_cpus():
        if number == index:
            space = loaded_space(record)
            if space is not None and space[1] is not None:
                return space[1]
            return kernel_pml4()
    raise gdb.GdbError("CPU {} is not online".format(index))


class Spaces(gdb.Command):
    """List the address space each online CPU has loaded: incroos-spaces

    Prints the kernel's PML4, then per CPU its user space (the UserSpace
    record's address and its PML4) or "the kernel's own". The selected
    CPU's CR3 shows which one it runs on now. Walk one with
    `incroos-walk ADDRESS PML4` or `incroos-walk ADDRESS $incroos_pml4(CPU)`."""

    def __init__(self):
        super().__init__("incroos-spaces", gdb.COMMAND_USER)

    def invoke(self, argument, from_tty):
        print("kernel: PML4 at {:#x}".format(kernel_pml4()))
        for index, record in online_cpus():
            space = loaded_space(record)
            if space is None:
                print("CPU {}: the kernel's own tables".format(index))
            elif space[1] is None:
                print("CPU {}: user space at {:#x}, being torn down".format(index, space[0]))
            else:
                print("CPU {}: user space at {:#x}, PML4 at {:#x}".format(index, space[0], space[1]))
        try:
            cr3 = int(gdb.parse_and_eval("$cr3"))
        except gdb.error:
            return  # a gdb stub without control registers
        print("CR3 of the selected CPU: {:#x}".format(cr3 & 0x000F_FFFF_FFFF_F000))


class Pml4(gdb.Function):
    """$incroos_pml4(CPU): the physical address of the PML4 that CPU runs
    on (its user space's, or the kernel's when it has none loaded)."""

    def __init__(self):
        super().__init__("incroos_pml4")

    def invoke(self, cpu):
        return cpu_pml4(int(cpu))


class Walk(gdb.Command):
    """Walk the page tables for a virtual address: incroos-walk ADDRESS [PML4]

    PML4 is the physical address of the root table to start from (any gdb
    expression: $cr3, $incroos_pml4(0), a number from incroos-spaces; its
    low 12 bits, CR3's flags, are ignored); without it the kernel's."""

    def __init__(self):
        super().__init__("incroos-walk", gdb.COMMAND_USER)

    def invoke(self, argument, from_tty):
        words = gdb.string_to_argv(argument)
        if len(words) not in (1, 2):
            raise gdb.GdbError("usage: incroos-walk ADDRESS [PML4]")
        virt = int(gdb.parse_and_eval(words[0])) & 0xFFFF_FFFF_FFFF_FFFF
        if len(words) == 2:
            table = int(gdb.parse_and_eval(words[1])) & 0x000F_FFFF_FFFF_F000
            whose = "given"
        else:
            table = kernel_pml4()
            whose = "the kernel's"
        print("walk {:#018x} (PML4 at {:#x}, {}, read through the direct map):".format(virt, table, whose))
        for depth, name in enumerate(LEVELS):
            shift = 39 - 9 * depth
            index = (virt >> shift) & 511
            entry = read_u64(DIRECT_MAP + table + index * 8)
            flags = " ".join(label for bit, label in FLAG_NAMES if entry >> bit & 1)
            print("  {:<4}[{:>3}] = {:#018x}  {}".format(name, index, entry, flags or "not present"))
            if not entry & 1:
                print("  => not mapped")
                return
            frame = entry & 0x000F_FFFF_FFFF_F000
            if depth == 3 or entry & 0x80:
                size = 1 << shift
                print("  => physical {:#x} ({} page)".format(
                    frame + (virt & (size - 1)), {30: "1 GiB", 21: "2 MiB", 12: "4 KiB"}[shift]))
                return
            table = frame


MemInfo()
BreakAtEntry()
Spaces()
Pml4()
Walk()
