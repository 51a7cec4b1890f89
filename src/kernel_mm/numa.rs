//! NUMA: the nodes the ACPI SRAT describes, handed to the PMM (which
//! 2 MiB chunk is whose, distances for the fallback order) and to the
//! CPUs (whose allocations look at which node first).
//!
//! No SRAT means one node, exactly as without NUMA; a broken SRAT or SLIT
//! is reported as a warning and also means one node.

use alloc::vec::Vec;

use spin::Once;

use crate::acpi::{AcpiError, Numa};
use crate::arch::x86_64::smp;
use crate::boot::BootInfo;
use crate::kernel_mm::firmware::FirmwareMemory;
use crate::kernel_mm::pmm;
use mm::pmm::{NodeError, NodeMemory, PhysRange};

/// Where the node layout came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// The SRAT, with distances from the SLIT (`true`) or the default
    /// 10 local / 20 remote.
    Srat {
        /// Whether a SLIT gave the distances.
        slit: bool,
    },
    /// No ACPI tables, or no SRAT among them.
    NoSrat,
    /// The SRAT or SLIT was unusable.
    Rejected(AcpiError),
    /// The PMM refused the layout.
    Refused(NodeError),
}

/// One node as the kernel uses it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeInfo {
    /// Its ACPI proximity domain.
    pub domain: u32,
    /// Its memory ranges, as the SRAT gives them.
    pub memory: Vec<PhysRange>,
    /// Kernel CPU numbers of the online CPUs on it.
    pub cpus: Vec<usize>,
}

/// The machine's NUMA layout.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Topology {
    /// How it was found.
    pub source: Source,
    /// The nodes (one when there is no usable SRAT).
    pub nodes: Vec<NodeInfo>,
    /// `distances[from][to]`.
    pub distances: Vec<Vec<u8>>,
    /// Chunks of usable memory no SRAT range covers (given to node 0).
    pub unassigned_chunks: usize,
    /// Online CPUs the SRAT does not place (put on node 0).
    pub unplaced_cpus: Vec<usize>,
}

static TOPOLOGY: Once<Topology> = Once::new();

/// Reads the SRAT and SLIT (if any), splits the PMM into their nodes and
/// tells every online CPU its node. Runs once, after the CPUs started.
pub fn init(info: &BootInfo<'_>) -> &'static Topology {
    TOPOLOGY.call_once(|| {
        let found =
            crate::firmware::tables().and_then(|acpi| acpi.numa(&FirmwareMemory::new(info)));
        match found {
            Some(Ok(numa)) => apply(&numa).unwrap_or_else(|error| {
                log::warn!("NUMA: the PMM refused the SRAT's layout ({error:?}): one node");
                one_node(Source::Refused(error))
            }),
            Some(Err(error)) => {
                log::warn!("NUMA: {error}: treating memory as one node");
                one_node(Source::Rejected(error))
            }
            None => one_node(Source::NoSrat),
        }
    })
}

/// The layout found at boot (`None` before [`init`]).
pub fn topology() -> Option<&'static Topology> {
    TOPOLOGY.get()
}

/// One node: all memory and every CPU.
fn one_node(source: Source) -> Topology {
    let memory = pmm::with(|pmm| pmm.usable().to_vec()).unwrap_or_default();
    Topology {
        source,
        nodes: alloc::vec![NodeInfo {
            domain: 0,
            memory,
            cpus: (0..smp::online()).collect(),
        }],
        distances: alloc::vec![alloc::vec![10]],
        unassigned_chunks: 0,
        unplaced_cpus: Vec::new(),
    }
}

/// Gives the SRAT's layout to the PMM and the CPUs.
fn apply(numa: &Numa) -> Result<Topology, NodeError> {
    let count = numa.nodes().len();
    let distance = |from: usize, to: usize| {
        numa.distance(from, to)
            .unwrap_or(if from == to { 10 } else { 20 })
    };
    let memory: Vec<NodeMemory> = numa
        .nodes()
        .iter()
        .enumerate()
        .flat_map(|(node, info)| {
            info.memory.iter().map(move |affinity| NodeMemory {
                node: node as u8,
                range: affinity.range,
            })
        })
        .collect();
    let report = pmm::with(|pmm| pmm.set_nodes(count, &memory, distance))
        .unwrap_or(Err(NodeError::TooManyNodes))?;
    if report.unassigned_chunks > 0 {
        log::warn!(
            "NUMA: {} of usable memory lies in no SRAT range: counted to node 0",
            crate::units::HumanSize(report.unassigned_chunks as u64 * mm::layout::HUGE_PAGE_SIZE)
        );
    }
    let mut nodes: Vec<NodeInfo> = numa
        .nodes()
        .iter()
        .map(|node| NodeInfo {
            domain: node.domain,
            memory: node.memory.iter().map(|affinity| affinity.range).collect(),
            cpus: Vec::new(),
        })
        .collect();
    let mut unplaced = Vec::new();
    for index in 0..smp::online() {
        let Some(cpu) = smp::cpu(index) else { continue };
        match numa.node_of_apic(cpu.apic_id()) {
            Some(node) => {
                cpu.set_node(node as u8);
                nodes[node].cpus.push(index);
            }
            None => {
                log::warn!(
                    "NUMA: CPU {index} (APIC id {}) is in no SRAT domain: node 0",
                    cpu.apic_id()
                );
                nodes[0].cpus.push(index);
                unplaced.push(index);
            }
        }
    }
    Ok(Topology {
        source: Source::Srat {
            slit: numa.distances_from_slit(),
        },
        nodes,
        distances: (0..count)
            .map(|from| (0..count).map(|to| distance(from, to)).collect())
            .collect(),
        unassigned_chunks: report.unassigned_chunks,
        unplaced_cpus: unplaced,
    })
}
