//! Host tests of the SRAT, the SLIT and the NUMA topology built from them:
//! synthetic tables, malformed ones, random ones against a model, and the
//! tables QEMU gave SeaBIOS and OVMF for NUMA machines.

use std::vec::Vec;

use mm::pmm::PhysRange;
use proptest::prelude::*;

use super::super::sdt::{read_table, HEADER_LEN};
use super::{captured, fix_checksum, table, FakePhys};
use crate::acpi::*;

const ENABLED: u32 = 1;
const HOT_PLUGGABLE: u32 = 2;
const NON_VOLATILE: u32 = 4;
const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;

/// Offset of the first SRAT entry in the table.
const SRAT_ENTRIES: usize = HEADER_LEN + 12;

fn srat_body(entries: &[&[u8]]) -> Vec<u8> {
    let mut body = vec![1, 0, 0, 0];
    body.extend_from_slice(&[0; 8]);
    for entry in entries {
        body.extend_from_slice(entry);
    }
    body
}

/// A processor local APIC affinity entry (type 0); `domain`'s upper 24
/// bits go where SRAT revision 2 and later read them.
fn local_apic(domain: u32, apic_id: u8, flags: u32) -> Vec<u8> {
    let domain = domain.to_le_bytes();
    let mut entry = vec![0, 16, domain[0], apic_id];
    entry.extend_from_slice(&flags.to_le_bytes());
    entry.push(0); // local SAPIC EID
    entry.extend_from_slice(&domain[1..]);
    entry.extend_from_slice(&[0; 4]); // clock domain
    entry
}

/// A processor local x2APIC affinity entry (type 2).
fn x2apic(domain: u32, apic_id: u32, flags: u32) -> Vec<u8> {
    let mut entry = vec![2, 24, 0, 0];
    entry.extend_from_slice(&domain.to_le_bytes());
    entry.extend_from_slice(&apic_id.to_le_bytes());
    entry.extend_from_slice(&flags.to_le_bytes());
    entry.extend_from_slice(&[0; 8]);
    entry
}

/// A memory affinity entry (type 1).
fn memory(domain: u32, base: u64, length: u64, flags: u32) -> Vec<u8> {
    let mut entry = vec![1, 40];
    entry.extend_from_slice(&domain.to_le_bytes());
    entry.extend_from_slice(&[0; 2]);
    entry.extend_from_slice(&base.to_le_bytes());
    entry.extend_from_slice(&length.to_le_bytes());
    entry.extend_from_slice(&[0; 4]);
    entry.extend_from_slice(&flags.to_le_bytes());
    entry.extend_from_slice(&[0; 8]);
    entry
}

fn slit_body(localities: u64, distances: &[u8]) -> Vec<u8> {
    let mut body = localities.to_le_bytes().to_vec();
    body.extend_from_slice(distances);
    body
}

/// `table` with another revision, checksummed again.
fn revised(mut bytes: Vec<u8>, revision: u8) -> Vec<u8> {
    bytes[8] = revision;
    fix_checksum(&mut bytes, 9);
    bytes
}

/// A machine whose XSDT lists `tables` (whole tables, at 0x2000, 0x3000,
/// ...).
fn machine(tables: &[Vec<u8>]) -> (FakePhys, Rsdp) {
    let mut phys = FakePhys::default();
    let mut xsdt = Vec::new();
    for (index, bytes) in tables.iter().enumerate() {
        let address = 0x2000 + 0x1000 * index as u64;
        xsdt.extend_from_slice(&address.to_le_bytes());
        phys.put(address, bytes.clone());
    }
    phys.put(0x1000, table(b"XSDT", &xsdt));
    let rsdp = Rsdp::parse(&super::rsdp_v2(0x1000)).unwrap();
    (phys, rsdp)
}

/// The topology of a machine with these tables.
fn numa_of(tables: &[Vec<u8>]) -> Option<Result<Numa, AcpiError>> {
    let (phys, rsdp) = machine(tables);
    Acpi::read(&phys, rsdp).unwrap().numa(&phys)
}

/// The topology of a machine with this SRAT body and optional SLIT body.
fn topology(srat: &[&[u8]], slit: Option<&[u8]>) -> Result<Numa, AcpiError> {
    let mut tables = vec![table(b"SRAT", &srat_body(srat))];
    tables.extend(slit.map(|slit| table(b"SLIT", slit)));
    numa_of(&tables).expect("an SRAT")
}

fn ranges(node: &Node) -> Vec<(u64, u64)> {
    (node.memory.iter())
        .map(|memory| (memory.range.start, memory.range.end))
        .collect()
}

fn distances(numa: &Numa) -> Vec<Vec<u8>> {
    let count = numa.nodes().len();
    (0..count)
        .map(|from| {
            (0..count)
                .map(|to| numa.distance(from, to).unwrap())
                .collect()
        })
        .collect()
}

fn bad_entry(offset: usize, kind: u8, len: u8) -> AcpiError {
    AcpiError::BadEntry {
        signature: Signature::SRAT,
        offset,
        kind,
        len,
    }
}

#[test]
fn two_nodes_are_numbered_by_domain_with_their_memory_and_cpus() {
    let numa = topology(
        &[
            &local_apic(5, 2, ENABLED),
            &local_apic(2, 0, ENABLED),
            &local_apic(5, 3, ENABLED),
            &local_apic(2, 1, ENABLED),
            &local_apic(2, 7, 0), // not enabled: ignored
            &x2apic(5, 300, ENABLED),
            &x2apic(2, 301, 0),
            &memory(5, 0x1_0000_0000, GIB, ENABLED | NON_VOLATILE),
            &memory(2, MIB, 511 * MIB, ENABLED),
            &memory(2, 0, 0xA0000, ENABLED),
            &memory(5, 0x2_0000_0000, GIB, ENABLED | HOT_PLUGGABLE),
            &memory(7, 0x3_0000_0000, GIB, 0), // not enabled: no node 7
            &memory(5, 0x4_0000_0000, 0, ENABLED), // empty: ignored
            &[3, 18, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], // GICC: skipped
        ],
        Some(&slit_body(6, &{
            let mut matrix = [0xEEu8; 36];
            for locality in 0..6 {
                matrix[locality * 7] = 10;
            }
            matrix[2 * 6 + 5] = 21;
            matrix[5 * 6 + 2] = 23;
            matrix
        })),
    )
    .unwrap();
    let domains: Vec<_> = numa.nodes().iter().map(|node| node.domain).collect();
    assert_eq!(domains, [2, 5]);
    let (first, second) = (&numa.nodes()[0], &numa.nodes()[1]);
    assert_eq!(ranges(first), [(0, 0xA0000), (MIB, 512 * MIB)]);
    assert_eq!(first.apic_ids, [0, 1]);
    assert_eq!(
        ranges(second),
        [
            (0x1_0000_0000, 0x1_4000_0000),
            (0x2_0000_0000, 0x2_4000_0000)
        ]
    );
    assert_eq!(second.apic_ids, [2, 3, 300]);
    assert_eq!(
        second.memory[0],
        MemoryAffinity {
            domain: 5,
            range: PhysRange::from_len(0x1_0000_0000, GIB),
            hot_pluggable: false,
            non_volatile: true,
        }
    );
    assert!(second.memory[1].hot_pluggable && !second.memory[1].non_volatile);
    // The SLIT is indexed by domain: rows 2 and 5 of its six.
    assert!(numa.distances_from_slit());
    assert_eq!(distances(&numa), [[10, 21], [23, 10]]);
    assert_eq!(numa.distance(0, 2), None);
    assert_eq!(numa.node_of_domain(5), Some(1));
    assert_eq!(numa.node_of_domain(7), None);
    assert_eq!(numa.node_of_apic(300), Some(1));
    assert_eq!(numa.node_of_apic(7), None);
    assert_eq!(numa.node_of_address(0x9FFFF), Some(0));
    assert_eq!(numa.node_of_address(0xA0000), None);
    assert_eq!(numa.node_of_address(0x2_3FFF_FFFF), Some(1));
    assert_eq!(numa.node_of_address(0x3_0000_0000), None);
}

#[test]
fn the_srat_counts_what_it_ignores_and_skips() {
    let bytes = table(
        b"SRAT",
        &srat_body(&[
            &local_apic(0, 0, ENABLED),
            &local_apic(0, 1, 0),
            &memory(0, 0, GIB, ENABLED),
            &memory(0, 0, 0, 0),
            &memory(0, GIB, 0, ENABLED),
            &[0x7F, 2],
        ]),
    );
    let (phys, _) = machine(&[bytes]);
    let srat = Srat::parse(&read_table(&phys, 0x2000).unwrap(), 0x2000).unwrap();
    assert_eq!(srat.revision, 1);
    assert_eq!(srat.processors.len(), 1);
    assert_eq!(srat.memory.len(), 1);
    assert_eq!((srat.ignored_entries, srat.other_entries), (3, 1));
}

#[test]
fn without_an_srat_there_is_no_topology() {
    assert_eq!(numa_of(&[]), None);
    // A SLIT alone says nothing about which memory is where.
    assert_eq!(numa_of(&[table(b"SLIT", &slit_body(1, &[10]))]), None);
    for name in ["seabios-pc-smp2-of-4", "ovmf-q35-smp4", "ovmf-pc"] {
        let (phys, rsdp) = captured(name);
        assert_eq!(Acpi::read(&phys, rsdp).unwrap().numa(&phys), None, "{name}");
    }
}

#[test]
fn without_a_slit_distances_are_10_local_and_20_remote() {
    let numa = topology(
        &[
            &memory(0, 0, GIB, ENABLED),
            &memory(1, GIB, GIB, ENABLED),
            &memory(3, 2 * GIB, GIB, ENABLED),
        ],
        None,
    )
    .unwrap();
    assert!(!numa.distances_from_slit());
    assert_eq!(distances(&numa), [[10, 20, 20], [20, 10, 20], [20, 20, 10]]);
    assert!(numa.nodes().iter().all(|node| node.apic_ids.is_empty()));
}

#[test]
fn domains_are_32_bits_from_srat_revision_2() {
    let entries = srat_body(&[
        &local_apic(0x0102_0304, 0, ENABLED),
        &memory(0x0102_0304, 0, GIB, ENABLED),
    ]);
    let wide = numa_of(&[revised(table(b"SRAT", &entries), 3)])
        .unwrap()
        .unwrap();
    assert_eq!(wide.nodes()[0].domain, 0x0102_0304);
    assert_eq!(wide.nodes()[0].apic_ids, [0]);
    // Revision 1 (ACPI 2.0, QEMU's): 8-bit domains, the rest reserved.
    let narrow = numa_of(&[table(b"SRAT", &entries)]).unwrap().unwrap();
    assert_eq!(narrow.nodes().len(), 1);
    assert_eq!(narrow.nodes()[0].domain, 0x04);
    assert_eq!(narrow.nodes()[0].apic_ids, [0]);
}

#[test]
fn malformed_srat_entries_are_errors_naming_the_offset() {
    let first = SRAT_ENTRIES;
    let error = |entries: &[&[u8]]| topology(entries, None).unwrap_err();
    assert_eq!(error(&[&[1, 0]]), bad_entry(first, 1, 0));
    assert_eq!(error(&[&[0x7F, 1]]), bad_entry(first, 0x7F, 1));
    assert_eq!(error(&[&local_apic(0, 0, 1)[..8]]), bad_entry(first, 0, 16));
    let mut short_memory = memory(0, 0, GIB, ENABLED);
    short_memory[1] = 24;
    short_memory.truncate(24);
    assert_eq!(error(&[&short_memory]), bad_entry(first, 1, 24));
    let mut short_x2apic = x2apic(0, 0, ENABLED);
    short_x2apic[1] = 16;
    short_x2apic.truncate(16);
    assert_eq!(error(&[&short_x2apic]), bad_entry(first, 2, 16));
    // Running past the end of the table, after a good entry.
    assert_eq!(
        error(&[&memory(0, 0, GIB, ENABLED), &memory(0, GIB, GIB, 1)[..20]]),
        bad_entry(first + 40, 1, 40)
    );
    // A lone type byte at the very end.
    assert_eq!(
        error(&[&memory(0, 0, GIB, ENABLED), &[1]]),
        bad_entry(first + 40, 1, 0)
    );
    assert_eq!(
        error(&[&memory(0, u64::MAX - 10, 11, ENABLED)]),
        AcpiError::BadMemoryRange {
            offset: first,
            base: u64::MAX - 10,
            length: 11
        }
    );
    // One that ends exactly at the top is fine, and a disabled one is
    // not looked at.
    assert!(topology(&[&memory(0, u64::MAX - 10, 10, ENABLED)], None).is_ok());
    assert!(topology(
        &[
            &memory(0, 0, GIB, ENABLED),
            &memory(0, u64::MAX, u64::MAX, 0)
        ],
        None
    )
    .is_ok());
}

#[test]
fn a_truncated_srat_is_too_short() {
    let srat = table(b"SRAT", &[1, 0, 0, 0, 0, 0]);
    assert_eq!(
        numa_of(&[srat]),
        Some(Err(AcpiError::TooShort {
            signature: Signature::SRAT,
            len: 42,
            needed: 48
        }))
    );
}

#[test]
fn an_srat_or_slit_the_header_check_rejected_is_the_error() {
    let srat = table(b"SRAT", &srat_body(&[&memory(0, 0, GIB, ENABLED)]));
    let slit = table(b"SLIT", &slit_body(1, &[10]));
    let mut bad_srat = srat.clone();
    bad_srat[50] ^= 1;
    assert_eq!(
        numa_of(&[bad_srat, slit.clone()]),
        Some(Err(AcpiError::BadChecksum {
            signature: Signature::SRAT,
            address: 0x2000
        }))
    );
    let mut bad_slit = slit.clone();
    bad_slit[44] ^= 1;
    assert_eq!(
        numa_of(&[srat.clone(), bad_slit]),
        Some(Err(AcpiError::BadChecksum {
            signature: Signature::SLIT,
            address: 0x3000
        }))
    );
    let mut short_slit = slit;
    short_slit[4..8].copy_from_slice(&20u32.to_le_bytes());
    assert_eq!(
        numa_of(&[srat, short_slit]),
        Some(Err(AcpiError::BadLength {
            signature: Signature::SLIT,
            address: 0x3000,
            len: 20
        }))
    );
}

#[test]
fn a_table_that_changed_since_it_was_read_is_an_error() {
    let srat = table(b"SRAT", &srat_body(&[&memory(0, 0, GIB, ENABLED)]));
    let (mut phys, rsdp) = machine(&[srat]);
    let acpi = Acpi::read(&phys, rsdp).unwrap();
    phys.regions[0].1 = table(b"SSDT", &[]);
    assert_eq!(
        acpi.numa(&phys),
        Some(Err(AcpiError::WrongSignature {
            address: 0x2000,
            expected: Signature::SRAT,
            found: Signature(*b"SSDT")
        }))
    );
    phys.regions.remove(0);
    assert!(matches!(
        acpi.numa(&phys),
        Some(Err(AcpiError::Unreadable {
            address: 0x2000,
            ..
        }))
    ));
}

#[test]
fn malformed_slits_are_errors() {
    let two_nodes: [&[u8]; 2] = [&memory(0, 0, GIB, ENABLED), &memory(1, GIB, GIB, ENABLED)];
    let error = |slit: &[u8]| topology(&two_nodes, Some(slit)).unwrap_err();
    assert_eq!(
        error(&[2, 0, 0, 0]),
        AcpiError::TooShort {
            signature: Signature::SLIT,
            len: 40,
            needed: 44
        }
    );
    // 2 localities need 4 bytes; 3 are there.
    assert_eq!(
        error(&slit_body(2, &[10, 21, 21])),
        AcpiError::BadLocalityCount {
            localities: 2,
            len: 47
        }
    );
    for huge in [u64::MAX, 1 << 32, 1 << 63] {
        assert_eq!(
            error(&slit_body(huge, &[10; 16])),
            AcpiError::BadLocalityCount {
                localities: huge,
                len: 60
            }
        );
    }
    let bad = |offset, from, to, distance| AcpiError::BadDistance {
        offset,
        from,
        to,
        distance,
    };
    assert_eq!(error(&slit_body(2, &[10, 21, 21, 11])), bad(47, 1, 1, 11));
    assert_eq!(error(&slit_body(2, &[10, 10, 21, 10])), bad(45, 0, 1, 10));
    assert_eq!(error(&slit_body(2, &[10, 21, 0, 10])), bad(46, 1, 0, 0));
}

#[test]
fn unreachable_distances_and_asymmetry_are_kept() {
    let numa = topology(
        &[&memory(0, 0, GIB, ENABLED), &memory(1, GIB, GIB, ENABLED)],
        // Bytes after the matrix are not looked at.
        Some(&slit_body(2, &[10, 0xFF, 30, 10, 0, 0])),
    )
    .unwrap();
    assert_eq!(distances(&numa), [[10, UNREACHABLE], [30, 10]]);
}

#[test]
fn inconsistent_topologies_are_errors() {
    let cpu = |domain, id| local_apic(domain, id, ENABLED);
    assert_eq!(
        topology(&[&cpu(0, 0), &cpu(1, 1)], None),
        Err(AcpiError::NoNumaMemory)
    );
    assert_eq!(
        topology(
            &[
                &memory(1, GIB, GIB, ENABLED),
                &memory(0, 0, GIB + 1, ENABLED)
            ],
            None
        ),
        Err(AcpiError::OverlappingMemory {
            domain: 0,
            range: PhysRange::from_len(0, GIB + 1),
            other_domain: 1,
            other: PhysRange::from_len(GIB, GIB),
        })
    );
    // Within one domain too; touching ranges are fine.
    assert!(matches!(
        topology(
            &[&memory(0, 0, GIB, ENABLED), &memory(0, MIB, MIB, ENABLED)],
            None
        ),
        Err(AcpiError::OverlappingMemory { .. })
    ));
    assert!(topology(
        &[&memory(0, 0, GIB, ENABLED), &memory(1, GIB, GIB, ENABLED)],
        None
    )
    .is_ok());
    assert_eq!(
        topology(&[&memory(0, 0, GIB, ENABLED), &cpu(0, 4), &cpu(3, 4)], None),
        Err(AcpiError::ApicInTwoDomains {
            apic_id: 4,
            domain: 0,
            other_domain: 3
        })
    );
    // The same CPU twice in one domain is only said twice.
    let twice = topology(&[&memory(0, 0, GIB, ENABLED), &cpu(0, 4), &cpu(0, 4)], None);
    assert_eq!(twice.unwrap().nodes()[0].apic_ids, [4]);
    // A SLIT without a row for domain 2.
    assert_eq!(
        topology(
            &[&memory(0, 0, GIB, ENABLED), &memory(2, GIB, GIB, ENABLED)],
            Some(&slit_body(2, &[10, 21, 21, 10]))
        ),
        Err(AcpiError::DomainNotInSlit {
            domain: 2,
            localities: 2
        })
    );
}

#[test]
fn more_domains_than_max_nodes_are_an_error() {
    let entries = |count: u32| -> Vec<Vec<u8>> {
        (0..count)
            .map(|domain| memory(domain, u64::from(domain) * GIB, GIB, ENABLED))
            .collect()
    };
    let most = entries(MAX_NODES as u32);
    let most: Vec<&[u8]> = most.iter().map(Vec::as_slice).collect();
    assert_eq!(topology(&most, None).unwrap().nodes().len(), MAX_NODES);
    let too_many = entries(MAX_NODES as u32 + 1);
    let too_many: Vec<&[u8]> = too_many.iter().map(Vec::as_slice).collect();
    assert_eq!(
        topology(&too_many, None),
        Err(AcpiError::TooManyNodes {
            domains: MAX_NODES + 1,
            max: MAX_NODES
        })
    );
    // A CPU's domain counts as much as a memory range's.
    let mut with_cpu = most.clone();
    let cpu = x2apic(99, 0, ENABLED);
    with_cpu.push(&cpu);
    assert!(matches!(
        topology(&with_cpu, None),
        Err(AcpiError::TooManyNodes { domains: 9, .. })
    ));
}

#[test]
fn the_errors_read_as_warnings() {
    let text = |error: AcpiError| error.to_string();
    assert_eq!(
        text(bad_entry(48, 1, 0)),
        "SRAT: entry of type 1 at offset 48 has bad length 0"
    );
    assert_eq!(
        text(AcpiError::BadDistance {
            offset: 44,
            from: 0,
            to: 0,
            distance: 11
        }),
        "SLIT: distance 11 from locality 0 to 0 (offset 44) is impossible: a locality is 10 from itself"
    );
    assert_eq!(
        text(AcpiError::OverlappingMemory {
            domain: 0,
            range: PhysRange::from_len(0, GIB),
            other_domain: 1,
            other: PhysRange::from_len(MIB, GIB),
        }),
        "SRAT: memory 0x0000000000-0x0040000000 of domain 0 overlaps 0x0000100000-0x0040100000 of domain 1"
    );
    assert_eq!(
        text(AcpiError::TooManyNodes {
            domains: 9,
            max: MAX_NODES
        }),
        "SRAT: 9 proximity domains, more than the 8 NUMA nodes supported"
    );
}

/// The checked topology of a captured machine, and its ACPI tables.
fn captured_numa(name: &str) -> (Numa, Acpi) {
    let (phys, rsdp) = captured(name);
    let acpi = Acpi::read(&phys, rsdp).unwrap();
    assert!(
        acpi.problems.is_empty() && acpi.rejected.is_empty(),
        "{name}"
    );
    let numa = acpi.numa(&phys).expect("an SRAT").expect("a good topology");
    (numa, acpi)
}

fn bytes(node: &Node) -> u64 {
    node.memory.iter().map(|memory| memory.range.len()).sum()
}

/// QEMU's first node starts with the 640 KiB below the VGA hole, then
/// RAM from 1 MiB: its size less the 384 KiB hole.
const LEGACY_HOLE: u64 = 0x100000 - 0xA0000;

#[test]
fn seabios_two_nodes_of_two_cpus() {
    let (numa, acpi) = captured_numa("seabios-pc-numa2");
    let nodes = numa.nodes();
    assert_eq!(nodes.len(), 2);
    assert_eq!((nodes[0].domain, nodes[1].domain), (0, 1));
    assert_eq!(ranges(&nodes[0]), [(0, 0xA0000), (MIB, 256 * MIB)]);
    assert_eq!(ranges(&nodes[1]), [(256 * MIB, 512 * MIB)]);
    assert_eq!(bytes(&nodes[0]), 256 * MIB - LEGACY_HOLE);
    assert_eq!(bytes(&nodes[1]), 256 * MIB);
    assert_eq!(
        (&nodes[0].apic_ids[..], &nodes[1].apic_ids[..]),
        (&[0, 1][..], &[2, 3][..])
    );
    assert!(numa.distances_from_slit());
    assert_eq!(distances(&numa), [[10, 21], [21, 10]]);
    // Every CPU the SRAT places, the MADT has enabled.
    let madt = acpi.madt.unwrap();
    assert!(madt
        .enabled_processors()
        .all(|cpu| numa.node_of_apic(cpu.apic_id).is_some()));
}

#[test]
fn seabios_srat_pads_with_disabled_memory_entries() {
    let (phys, rsdp) = captured("seabios-pc-numa2");
    let acpi = Acpi::read(&phys, rsdp).unwrap();
    let address = acpi.table(Signature::SRAT).unwrap().address;
    let srat = Srat::parse(&read_table(&phys, address).unwrap(), address).unwrap();
    // QEMU writes at least nodes + 2 memory entries, the last one empty
    // and disabled, and SRAT revision 1.
    assert_eq!((srat.revision, srat.memory.len()), (1, 3));
    assert_eq!((srat.ignored_entries, srat.other_entries), (1, 0));
    assert!(srat.processors.iter().all(|cpu| !cpu.x2apic));
}

#[test]
fn ovmf_q35_three_nodes_one_memory_only() {
    let (numa, _) = captured_numa("ovmf-q35-numa3");
    let nodes = numa.nodes();
    assert_eq!(nodes.len(), 3);
    assert_eq!(ranges(&nodes[0]), [(0, 0xA0000), (MIB, 256 * MIB)]);
    assert_eq!(ranges(&nodes[1]), [(256 * MIB, 512 * MIB)]);
    assert_eq!(ranges(&nodes[2]), [(512 * MIB, 768 * MIB)]);
    assert_eq!(bytes(&nodes[0]), 256 * MIB - LEGACY_HOLE);
    assert_eq!(nodes[0].apic_ids, [0, 1]);
    assert_eq!(nodes[1].apic_ids, [2, 3]);
    assert!(nodes[2].apic_ids.is_empty());
    // Each direction as given to QEMU: row = from, column = to.
    assert_eq!(distances(&numa), [[10, 21, 31], [22, 10, 41], [32, 42, 10]]);
}

#[test]
fn seabios_node_above_4g_without_slit() {
    let (numa, _) = captured_numa("seabios-pc-numa2-above-4g");
    let nodes = numa.nodes();
    assert_eq!(nodes.len(), 2);
    // The pc machine keeps 3 GiB below the PCI hole: node 0's 3 GiB is
    // all of it, node 1's 2 GiB starts at 4 GiB.
    assert_eq!(ranges(&nodes[0]), [(0, 0xA0000), (MIB, 3 * GIB)]);
    assert_eq!(ranges(&nodes[1]), [(4 * GIB, 6 * GIB)]);
    assert_eq!(bytes(&nodes[0]), 3 * GIB - LEGACY_HOLE);
    assert_eq!(bytes(&nodes[1]), 2 * GIB);
    assert_eq!(nodes[1].apic_ids, [2, 3]);
    // No -numa dist: QEMU writes no SLIT.
    assert!(!numa.distances_from_slit());
    assert_eq!(distances(&numa), [[10, 20], [20, 10]]);
    assert_eq!(numa.node_of_address(0xBFFF_FFFF), Some(0));
    assert_eq!(numa.node_of_address(0xC000_0000), None);
    assert_eq!(numa.node_of_address(4 * GIB), Some(1));
}

#[test]
fn ovmf_node_split_by_the_pci_hole_with_hotplug() {
    let (numa, acpi) = captured_numa("ovmf-pc-numa2-hotplug");
    let nodes = numa.nodes();
    assert_eq!(nodes.len(), 2);
    assert_eq!(ranges(&nodes[0]), [(0, 0xA0000), (MIB, 2 * GIB)]);
    // Node 1's 3 GiB: 1 GiB below the hole, 2 GiB above 4 GiB; then the
    // hot-plug area (maxmem - RAM + 1 GiB a slot) QEMU gives the last node.
    assert_eq!(
        ranges(&nodes[1]),
        [(2 * GIB, 3 * GIB), (4 * GIB, 6 * GIB), (6 * GIB, 11 * GIB)]
    );
    let present: u64 = (nodes[1].memory.iter())
        .filter(|memory| !memory.hot_pluggable)
        .map(|memory| memory.range.len())
        .sum();
    assert_eq!(present, 3 * GIB);
    assert!(nodes[1].memory[2].hot_pluggable);
    assert_eq!(bytes(&nodes[0]), 2 * GIB - LEGACY_HOLE);
    // The SRAT places all possible CPUs; the MADT enables the first two.
    assert_eq!(nodes[1].apic_ids, [2, 3]);
    let enabled: Vec<_> = (acpi.madt.unwrap().enabled_processors())
        .map(|cpu| cpu.apic_id)
        .collect();
    assert_eq!(enabled, [0, 1]);
    assert_eq!(distances(&numa), [[10, 28], [28, 10]]);
}

const NUMA_FIXTURES: [&str; 4] = [
    "seabios-pc-numa2",
    "ovmf-q35-numa3",
    "seabios-pc-numa2-above-4g",
    "ovmf-pc-numa2-hotplug",
];

/// Every 7th byte of the captured SRATs and SLITs flipped: with the
/// checksum left as it was the flip is caught (the topology is an error,
/// or the table is rejected when its signature broke); with the checksum fixed
/// the parser sees the bad byte and gives a topology or an error, never a
/// panic.
#[test]
fn every_7th_byte_flipped_in_the_captured_srat_and_slit() {
    for name in NUMA_FIXTURES {
        let (clean, rsdp) = captured(name);
        for region in 0..clean.regions.len() {
            let signature = &clean.regions[region].1[..4];
            if signature != b"SRAT" && signature != b"SLIT" {
                continue;
            }
            let len = clean.regions[region].1.len();
            for at in (0..len).step_by(7) {
                let mut phys = FakePhys {
                    regions: clean.regions.clone(),
                };
                phys.regions[region].1[at] ^= 0x10;
                let acpi = Acpi::read(&phys, rsdp).unwrap();
                // A flip in the signature hides the table (it is rejected
                // under another name: no SRAT, or no SLIT and the default
                // distances); any other flip is the topology's error.
                let hidden = at < 4 && !acpi.rejected.is_empty();
                let caught = hidden || acpi.numa(&phys).is_some_and(|numa| numa.is_err());
                assert!(caught, "{name}: flip at {at} went unnoticed");
                if at != 9 {
                    fix_checksum(&mut phys.regions[region].1, 9);
                }
                let acpi = Acpi::read(&phys, rsdp).unwrap();
                let _ = acpi.numa(&phys);
            }
        }
    }
}

proptest! {
    #![proptest_config(mm::testing::cases(256))]

    /// Random bytes as an SRAT body and a SLIT body: a value or an error,
    /// never a panic.
    #[test]
    fn random_srats_and_slits_never_panic(
        srat in prop::collection::vec(any::<u8>(), 0..300),
        slit in prop::collection::vec(any::<u8>(), 0..80),
        entries in prop::collection::vec((0u8..4, any::<u32>(), any::<u64>(), any::<u64>(), 0u32..8), 0..12),
    ) {
        let _ = numa_of(&[table(b"SRAT", &srat), table(b"SLIT", &slit)]);
        // Well-formed entries of random values, with the random SLIT.
        let entries: Vec<Vec<u8>> = (entries.iter())
            .map(|&(kind, domain, base, length, flags)| match kind {
                0 => local_apic(domain, base as u8, flags),
                1 => memory(domain, base, length, flags),
                2 => x2apic(domain, base as u32, flags),
                _ => vec![kind, (length % 64) as u8 | 2],
            })
            .collect();
        let entries: Vec<&[u8]> = entries.iter().map(Vec::as_slice).collect();
        let srat = revised(table(b"SRAT", &srat_body(&entries)), 3);
        let _ = numa_of(&[srat, table(b"SLIT", &slit)]);
    }

    /// Random memory and CPU entries against a model: the topology holds
    /// exactly the enabled ones, by domain, or the error the model
    /// expects.
    #[test]
    fn random_topologies_match_a_model(
        ranges in prop::collection::vec((0u32..10, 0u64..64, 0u64..8, any::<bool>()), 0..12),
        cpus in prop::collection::vec((0u32..10, 0u32..64, any::<bool>()), 0..16),
    ) {
        let mut entries = Vec::new();
        for &(domain, start, pages, enabled) in &ranges {
            entries.push(memory(domain, start << 12, pages << 12, u32::from(enabled)));
        }
        for &(domain, apic_id, enabled) in &cpus {
            entries.push(x2apic(domain, apic_id, u32::from(enabled)));
        }
        let entries: Vec<&[u8]> = entries.iter().map(Vec::as_slice).collect();
        let numa = numa_of(&[revised(table(b"SRAT", &srat_body(&entries)), 3)]).unwrap();

        let memory: Vec<(u32, u64, u64)> = (ranges.iter())
            .filter(|&&(_, _, pages, enabled)| enabled && pages > 0)
            .map(|&(domain, start, pages, _)| (domain, start << 12, (start + pages) << 12))
            .collect();
        let cpus: Vec<(u32, u32)> = (cpus.iter())
            .filter(|&&(_, _, enabled)| enabled)
            .map(|&(domain, apic_id, _)| (domain, apic_id))
            .collect();
        let mut domains: Vec<u32> = memory.iter().map(|m| m.0).chain(cpus.iter().map(|c| c.0)).collect();
        domains.sort();
        domains.dedup();
        let overlap = memory.iter().enumerate().any(|(i, a)| {
            memory[i + 1..].iter().any(|b| a.1.max(b.1) < a.2.min(b.2))
        });
        let apic_in_two = cpus.iter().any(|a| cpus.iter().any(|b| a.1 == b.1 && a.0 != b.0));
        match numa {
            Err(AcpiError::NoNumaMemory) => prop_assert!(memory.is_empty()),
            Err(AcpiError::TooManyNodes { domains: count, .. }) => {
                prop_assert!(!memory.is_empty());
                prop_assert_eq!(count, domains.len());
                prop_assert!(count > MAX_NODES);
            }
            Err(AcpiError::OverlappingMemory { .. }) => {
                prop_assert!(domains.len() <= MAX_NODES && overlap);
            }
            Err(AcpiError::ApicInTwoDomains { .. }) => {
                prop_assert!(domains.len() <= MAX_NODES && !overlap && apic_in_two);
            }
            Err(error) => prop_assert!(false, "unexpected {:?}", error),
            Ok(numa) => {
                prop_assert!(!memory.is_empty() && domains.len() <= MAX_NODES);
                prop_assert!(!overlap && !apic_in_two);
                let found: Vec<u32> = numa.nodes().iter().map(|node| node.domain).collect();
                prop_assert_eq!(&found, &domains);
                for (id, node) in numa.nodes().iter().enumerate() {
                    let mut want: Vec<(u64, u64)> = (memory.iter())
                        .filter(|m| m.0 == node.domain)
                        .map(|m| (m.1, m.2))
                        .collect();
                    want.sort();
                    prop_assert_eq!(self::ranges(node), want);
                    let mut want: Vec<u32> = (cpus.iter())
                        .filter(|c| c.0 == node.domain)
                        .map(|c| c.1)
                        .collect();
                    want.sort();
                    want.dedup();
                    prop_assert_eq!(&node.apic_ids, &want);
                    for &apic_id in &node.apic_ids {
                        prop_assert_eq!(numa.node_of_apic(apic_id), Some(id));
                    }
                    for to in 0..numa.nodes().len() {
                        let expected = if to == id { LOCAL_DISTANCE } else { REMOTE_DISTANCE };
                        prop_assert_eq!(numa.distance(id, to), Some(expected));
                    }
                }
            }
        }
    }
}
