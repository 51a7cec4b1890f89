//! The NUMA topology the SRAT and SLIT describe, checked: nodes numbered
//! 0..n in order of proximity domain, each with its memory ranges and
//! APIC ids, and the distance between every two.
//!
//! A topology that does not hold together (overlapping memory, an APIC id
//! in two domains, a SLIT without a row for a domain, more domains than
//! [`MAX_NODES`]) is an [`AcpiError`]: the kernel warns and treats the
//! machine as one node, as it does when there is no SRAT.
#![forbid(unsafe_code)]

use alloc::vec::Vec;

use super::slit::{Slit, LOCAL_DISTANCE};
use super::srat::{MemoryAffinity, Srat};
use super::AcpiError;

/// Most NUMA nodes the kernel supports. An SRAT naming more proximity
/// domains is an error, not cut short.
pub const MAX_NODES: usize = 8;

/// Distance between two different nodes when there is no SLIT (the
/// ACPI convention Linux follows too: 10 local, 20 remote).
pub const REMOTE_DISTANCE: u8 = 20;

/// One NUMA node: a proximity domain some enabled SRAT entry names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Node {
    /// Its ACPI proximity domain.
    pub domain: u32,
    /// Its memory ranges, by address (none for a node of CPUs only).
    /// Hot-pluggable ranges are included, marked: the memory map says
    /// which bytes hold RAM.
    pub memory: Vec<MemoryAffinity>,
    /// The APIC ids of its processors, ascending (none for a memory-only
    /// node). The SRAT lists every possible processor: the MADT says
    /// which are enabled.
    pub apic_ids: Vec<u32>,
}

/// The checked NUMA topology. Node ids are indices into [`Numa::nodes`],
/// given in ascending order of proximity domain (so they do not depend
/// on the order of the SRAT's entries).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Numa {
    nodes: Vec<Node>,
    /// Row `from`, column `to`, by node id; only the first `nodes.len()`
    /// rows and columns mean anything.
    distances: [[u8; MAX_NODES]; MAX_NODES],
    from_slit: bool,
}

impl Numa {
    /// The topology of `srat`, with the distances of `slit` (indexed by
    /// proximity domain; localities no domain names are ignored), or 10
    /// local and [`REMOTE_DISTANCE`] remote without one.
    pub fn new(srat: &Srat, slit: Option<&Slit>) -> Result<Self, AcpiError> {
        if srat.memory.is_empty() {
            return Err(AcpiError::NoNumaMemory);
        }
        let mut domains: Vec<u32> = (srat.processors.iter().map(|cpu| cpu.domain))
            .chain(srat.memory.iter().map(|memory| memory.domain))
            .collect();
        domains.sort_unstable();
        domains.dedup();
        if domains.len() > MAX_NODES {
            return Err(AcpiError::TooManyNodes {
                domains: domains.len(),
                max: MAX_NODES,
            });
        }
        let memory = memory_by_address(srat)?;
        let cpus = cpus_by_apic_id(srat)?;
        let mut distances = [[0; MAX_NODES]; MAX_NODES];
        for (from, &source) in domains.iter().enumerate() {
            for (to, &destination) in domains.iter().enumerate() {
                distances[from][to] = match slit {
                    Some(slit) => slit_distance(slit, source, destination)?,
                    None if from == to => LOCAL_DISTANCE,
                    None => REMOTE_DISTANCE,
                };
            }
        }
        let nodes = domains
            .iter()
            .map(|&domain| Node {
                domain,
                memory: (memory.iter())
                    .filter(|memory| memory.domain == domain)
                    .copied()
                    .collect(),
                apic_ids: (cpus.iter())
                    .filter(|&&(_, cpu_domain)| cpu_domain == domain)
                    .map(|&(apic_id, _)| apic_id)
                    .collect(),
            })
            .collect();
        Ok(Numa {
            nodes,
            distances,
            from_slit: slit.is_some(),
        })
    }

    /// Every node, by node id (at least one, at most [`MAX_NODES`]).
    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    /// The distance from node `from` to node `to` (10 for a node to
    /// itself, above 10 between two, 255 for unreachable; not necessarily
    /// the same both ways), `None` if either is not a node.
    pub fn distance(&self, from: usize, to: usize) -> Option<u8> {
        (from < self.nodes.len() && to < self.nodes.len()).then(|| self.distances[from][to])
    }

    /// Whether the distances came from a SLIT (else they are the 10/20
    /// default).
    pub fn distances_from_slit(&self) -> bool {
        self.from_slit
    }

    /// The node of proximity domain `domain`, if it is one.
    pub fn node_of_domain(&self, domain: u32) -> Option<usize> {
        self.nodes.iter().position(|node| node.domain == domain)
    }

    /// The node of the processor with `apic_id`, if the SRAT names it.
    pub fn node_of_apic(&self, apic_id: u32) -> Option<usize> {
        self.nodes
            .iter()
            .position(|node| node.apic_ids.contains(&apic_id))
    }

    /// The node whose memory holds physical `address`, if any does.
    pub fn node_of_address(&self, address: u64) -> Option<usize> {
        self.nodes.iter().position(|node| {
            node.memory
                .iter()
                .any(|memory| memory.range.contains(address))
        })
    }
}

/// The SRAT's memory ranges sorted by address; an error if two overlap.
fn memory_by_address(srat: &Srat) -> Result<Vec<MemoryAffinity>, AcpiError> {
    let mut memory = srat.memory.clone();
    memory.sort_unstable_by_key(|memory| (memory.range.start, memory.range.end));
    // Sorted by start, any overlap shows between neighbours.
    match (memory.windows(2)).find(|pair| pair[0].range.overlaps(&pair[1].range)) {
        Some(pair) => Err(AcpiError::OverlappingMemory {
            domain: pair[0].domain,
            range: pair[0].range,
            other_domain: pair[1].domain,
            other: pair[1].range,
        }),
        None => Ok(memory),
    }
}

/// The SRAT's processors as (APIC id, domain), sorted, each once; an
/// error if one APIC id is in two domains.
fn cpus_by_apic_id(srat: &Srat) -> Result<Vec<(u32, u32)>, AcpiError> {
    let mut cpus: Vec<(u32, u32)> = (srat.processors.iter())
        .map(|cpu| (cpu.apic_id, cpu.domain))
        .collect();
    cpus.sort_unstable();
    cpus.dedup();
    match (cpus.windows(2)).find(|pair| pair[0].0 == pair[1].0) {
        Some(pair) => Err(AcpiError::ApicInTwoDomains {
            apic_id: pair[0].0,
            domain: pair[0].1,
            other_domain: pair[1].1,
        }),
        None => Ok(cpus),
    }
}

/// The SLIT's distance between two SRAT domains; an error if it has no
/// locality for one of them (the larger one is then such a domain).
fn slit_distance(slit: &Slit, source: u32, destination: u32) -> Result<u8, AcpiError> {
    let row = usize::try_from(source).ok();
    let column = usize::try_from(destination).ok();
    (row.zip(column))
        .and_then(|(row, column)| slit.distance(row, column))
        .ok_or(AcpiError::DomainNotInSlit {
            domain: source.max(destination),
            localities: slit.localities(),
        })
}
