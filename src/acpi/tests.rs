//! Host tests of the ACPI parsing: synthetic tables built here, malformed
//! ones, random bytes, and the tables QEMU gave SeaBIOS and OVMF
//! (`tests/fixtures/acpi/`, captured by `scripts/capture-acpi.py`). The
//! SRAT, SLIT and NUMA topology tests are in `tests/numa.rs`.

use std::vec::Vec;

use proptest::prelude::*;

use super::sdt::{checksum_ok, HEADER_LEN};
use super::*;

mod numa;

/// Physical memory made of byte regions at given addresses.
#[derive(Default)]
struct FakePhys {
    regions: Vec<(u64, Vec<u8>)>,
}

impl FakePhys {
    fn put(&mut self, address: u64, bytes: Vec<u8>) {
        self.regions.push((address, bytes));
    }
}

impl PhysMemory for FakePhys {
    fn read(&self, address: u64, buffer: &mut [u8]) -> Result<(), AcpiError> {
        let len = buffer.len() as u64;
        for (start, bytes) in &self.regions {
            let end = start + bytes.len() as u64;
            if address >= *start && address + len <= end {
                let offset = (address - start) as usize;
                buffer.copy_from_slice(&bytes[offset..offset + buffer.len()]);
                return Ok(());
            }
        }
        Err(AcpiError::Unreadable { address, len })
    }
}

/// Sets byte `at` so that `bytes` sum to 0.
fn fix_checksum(bytes: &mut [u8], at: usize) {
    bytes[at] = 0;
    let sum = bytes.iter().fold(0u8, |sum, &byte| sum.wrapping_add(byte));
    bytes[at] = sum.wrapping_neg();
}

/// A table with `signature` around `body`, checksummed.
fn table(signature: &[u8; 4], body: &[u8]) -> Vec<u8> {
    let mut bytes = Vec::new();
    bytes.extend_from_slice(signature);
    bytes.extend_from_slice(&((HEADER_LEN + body.len()) as u32).to_le_bytes());
    bytes.push(1); // revision
    bytes.push(0); // checksum
    bytes.extend_from_slice(b"INCROS");
    bytes.extend_from_slice(b"TESTTABL");
    bytes.extend_from_slice(&[0; 12]);
    bytes.extend_from_slice(body);
    fix_checksum(&mut bytes, 9);
    bytes
}

/// The 20 bytes of an ACPI 1.0 RSDP with `revision`, checksummed.
fn rsdp_first_part(revision: u8, rsdt: u32) -> Vec<u8> {
    let mut bytes = Vec::new();
    bytes.extend_from_slice(b"RSD PTR ");
    bytes.push(0);
    bytes.extend_from_slice(b"INCROS");
    bytes.push(revision);
    bytes.extend_from_slice(&rsdt.to_le_bytes());
    fix_checksum(&mut bytes, 8);
    bytes
}

fn rsdp_v2(xsdt: u64) -> Vec<u8> {
    let mut bytes = rsdp_first_part(2, 0);
    bytes.extend_from_slice(&36u32.to_le_bytes());
    bytes.extend_from_slice(&xsdt.to_le_bytes());
    bytes.extend_from_slice(&[0; 4]);
    fix_checksum(&mut bytes, 32);
    bytes
}

fn rsdp_v1(rsdt: u32) -> Vec<u8> {
    rsdp_first_part(0, rsdt)
}

fn madt_body(entries: &[&[u8]]) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&0xFEE0_0000u32.to_le_bytes());
    body.extend_from_slice(&1u32.to_le_bytes());
    for entry in entries {
        body.extend_from_slice(entry);
    }
    body
}

fn local_apic(uid: u8, id: u8, flags: u32) -> Vec<u8> {
    let mut entry = vec![0, 8, uid, id];
    entry.extend_from_slice(&flags.to_le_bytes());
    entry
}

fn fadt_body(dsdt: u32, pm1a: u32) -> Vec<u8> {
    let mut bytes = vec![0u8; 244];
    let mut put =
        |offset: usize, value: &[u8]| bytes[offset..offset + value.len()].copy_from_slice(value);
    put(40, &dsdt.to_le_bytes());
    put(48, &0xB2u32.to_le_bytes());
    put(52, &[0xF1]);
    put(64, &pm1a.to_le_bytes());
    put(76, &0x608u32.to_le_bytes());
    put(89, &[2]);
    put(112, &(1u32 << 8).to_le_bytes());
    bytes[HEADER_LEN..].to_vec()
}

/// `Name (_S5, Package (elements) { values })` after some other AML.
fn s5_aml(elements: u8, values: &[u8]) -> Vec<u8> {
    let mut code = vec![0x10, 0x05, b'\\', b'_', b'S', b'B', b'_']; // a scope first
    code.extend_from_slice(&[NAME, b'_', b'S', b'5', b'_', 0x12, 0x06, elements]);
    code.extend_from_slice(values);
    code
}

const NAME: u8 = 0x08;

/// A whole machine: RSDP -> XSDT -> MADT, FADT -> DSDT.
fn machine(madt: Vec<u8>) -> (FakePhys, Rsdp) {
    let mut phys = FakePhys::default();
    let mut xsdt_body = Vec::new();
    xsdt_body.extend_from_slice(&0x2000u64.to_le_bytes());
    xsdt_body.extend_from_slice(&0x3000u64.to_le_bytes());
    phys.put(0x1000, table(b"XSDT", &xsdt_body));
    phys.put(0x2000, table(b"APIC", &madt));
    phys.put(0x3000, table(b"FACP", &fadt_body(0x4000, 0x604)));
    phys.put(0x4000, table(b"DSDT", &s5_aml(2, &[0x0A, 0x05, 0x00])));
    (phys, Rsdp::parse(&rsdp_v2(0x1000)).unwrap())
}

#[test]
fn a_whole_machine_is_read() {
    let madt = madt_body(&[
        &local_apic(0, 0, 1),
        &local_apic(1, 1, 1),
        &local_apic(2, 2, 0),
        &local_apic(3, 3, 2),
        &[1, 12, 0, 0, 0x00, 0x00, 0xC0, 0xFE, 0, 0, 0, 0],
        &[2, 10, 0, 0, 2, 0, 0, 0, 0, 0],
        &[4, 6, 0xFF, 0, 0, 1],
        &[0x7F, 3, 0], // unknown type: skipped by its length
    ]);
    let (phys, rsdp) = machine(madt);
    let acpi = Acpi::read(&phys, rsdp).unwrap();
    assert!(acpi.problems.is_empty(), "{:?}", acpi.problems);
    assert!(acpi.rejected.is_empty());
    let names: Vec<_> = acpi.tables.iter().map(|t| t.header.signature).collect();
    assert_eq!(
        names,
        [
            Signature::XSDT,
            Signature::MADT,
            Signature::FADT,
            Signature::DSDT
        ]
    );
    let madt = acpi.madt.unwrap();
    assert_eq!(madt.local_apic_address, 0xFEE0_0000);
    assert!(madt.pc_at_compatible);
    assert_eq!(madt.processors.len(), 4);
    assert_eq!(madt.enabled_processors().count(), 2);
    assert!(madt.processors[3].online_capable && !madt.processors[3].enabled);
    assert_eq!(
        madt.io_apics,
        [IoApic {
            id: 0,
            address: 0xFEC0_0000,
            gsi_base: 0
        }]
    );
    assert_eq!(
        madt.overrides,
        [SourceOverride {
            source: 0,
            gsi: 2,
            flags: 0
        }]
    );
    assert_eq!((madt.nmi_entries, madt.other_entries), (1, 1));
    let fadt = acpi.fadt.unwrap();
    assert_eq!(fadt.dsdt, 0x4000);
    assert_eq!(fadt.pm1a_control, Some(Pm1Control::Io(0x604)));
    assert_eq!(fadt.pm1b_control, None);
    assert_eq!((fadt.smi_command, fadt.acpi_enable), (0xB2, 0xF1));
    assert_eq!((fadt.pm_timer, fadt.pm_timer_32bit), (Some(0x608), true));
    assert_eq!(acpi.s5, Some(SleepType { a: 5, b: 0 }));
}

#[test]
fn an_acpi_1_machine_is_read_through_the_rsdt() {
    let mut phys = FakePhys::default();
    phys.put(0x1000, table(b"RSDT", &0x2000u32.to_le_bytes()));
    phys.put(0x2000, table(b"APIC", &madt_body(&[&local_apic(0, 0, 1)])));
    let acpi = Acpi::read(&phys, Rsdp::parse(&rsdp_v1(0x1000)).unwrap()).unwrap();
    assert_eq!(acpi.tables[0].header.signature, Signature::RSDT);
    assert_eq!(acpi.madt.unwrap().processors.len(), 1);
    assert_eq!(acpi.problems, [AcpiError::Missing(Signature::FADT)]);
}

#[test]
fn bad_rsdps_are_refused() {
    let good = rsdp_v2(0x1000);
    let mut bad_first = good.clone();
    bad_first[8] ^= 1;
    assert_eq!(
        Rsdp::parse(&bad_first),
        Err(AcpiError::BadRsdpChecksum { extended: false })
    );
    let mut bad_extended = good.clone();
    bad_extended[32] ^= 1;
    assert_eq!(
        Rsdp::parse(&bad_extended),
        Err(AcpiError::BadRsdpChecksum { extended: true })
    );
    let mut bad_signature = good.clone();
    bad_signature[0] = b'X';
    assert_eq!(
        Rsdp::parse(&bad_signature),
        Err(AcpiError::BadRsdpSignature)
    );
    assert_eq!(
        Rsdp::parse(&good[..30]),
        Err(AcpiError::TruncatedRsdp { len: 30 })
    );
    assert_eq!(
        Rsdp::parse(&good[..10]),
        Err(AcpiError::TruncatedRsdp { len: 10 })
    );
}

#[test]
fn a_bad_table_is_rejected_and_the_rest_still_read() {
    let (mut phys, rsdp) = machine(madt_body(&[&local_apic(0, 0, 1)]));
    phys.regions[1].1[20] ^= 0x55; // the MADT's checksum breaks
    let acpi = Acpi::read(&phys, rsdp).unwrap();
    assert_eq!(
        acpi.rejected,
        [(
            0x2000,
            AcpiError::BadChecksum {
                signature: Signature::MADT,
                address: 0x2000
            }
        )]
    );
    assert!(acpi.madt.is_none() && acpi.fadt.is_some() && acpi.s5.is_some());
    assert_eq!(acpi.problems, [AcpiError::Missing(Signature::MADT)]);
}

#[test]
fn bad_lengths_and_unreadable_tables_are_errors() {
    let mut phys = FakePhys::default();
    let mut short = table(b"XSDT", &[]);
    short[4..8].copy_from_slice(&20u32.to_le_bytes());
    phys.put(0x1000, short);
    let rsdp = Rsdp::parse(&rsdp_v2(0x1000)).unwrap();
    assert_eq!(
        Acpi::read(&phys, rsdp),
        Err(AcpiError::BadLength {
            signature: Signature::XSDT,
            address: 0x1000,
            len: 20
        })
    );
    let mut huge = table(b"XSDT", &[]);
    huge[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
    phys.regions[0].1 = huge;
    assert!(matches!(
        Acpi::read(&phys, rsdp),
        Err(AcpiError::BadLength { .. })
    ));
    // The header claims more bytes than memory holds.
    let mut long = table(b"XSDT", &[]);
    long[4..8].copy_from_slice(&100u32.to_le_bytes());
    phys.regions[0].1 = long;
    assert_eq!(
        Acpi::read(&phys, rsdp),
        Err(AcpiError::Unreadable {
            address: 0x1000,
            len: 100
        })
    );
    let nowhere = Rsdp::parse(&rsdp_v2(0x9000)).unwrap();
    assert_eq!(
        Acpi::read(&phys, nowhere),
        Err(AcpiError::Unreadable {
            address: 0x9000,
            len: 36
        })
    );
}

#[test]
fn a_root_table_of_the_wrong_kind_is_an_error() {
    let mut phys = FakePhys::default();
    phys.put(0x1000, table(b"RSDT", &[]));
    let rsdp = Rsdp::parse(&rsdp_v2(0x1000)).unwrap();
    assert_eq!(
        Acpi::read(&phys, rsdp),
        Err(AcpiError::WrongSignature {
            address: 0x1000,
            expected: Signature::XSDT,
            found: Signature::RSDT
        })
    );
}

fn madt_error(entries: &[&[u8]]) -> AcpiError {
    let (phys, rsdp) = machine(madt_body(entries));
    let acpi = Acpi::read(&phys, rsdp).unwrap();
    assert!(acpi.madt.is_none());
    acpi.problems[0]
}

#[test]
fn malformed_madt_entries_are_errors() {
    let bad = |offset, kind, len| AcpiError::BadEntry {
        signature: Signature::MADT,
        offset,
        kind,
        len,
    };
    let first = HEADER_LEN + 8;
    assert_eq!(madt_error(&[&[0, 0]]), bad(first, 0, 0));
    assert_eq!(madt_error(&[&[0x7F, 1]]), bad(first, 0x7F, 1));
    assert_eq!(madt_error(&[&[0, 6, 0, 0, 1, 0]]), bad(first, 0, 6));
    assert_eq!(
        madt_error(&[&local_apic(0, 0, 1), &[1, 40, 0, 0]]),
        bad(first + 8, 1, 40)
    );
    assert_eq!(
        madt_error(&[&[9, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]]),
        bad(first, 9, 12)
    );
    // A lone type byte at the very end.
    assert_eq!(madt_error(&[&[0]]), bad(first, 0, 0));
}

#[test]
fn a_madt_without_its_fixed_fields_is_too_short() {
    let (mut phys, rsdp) = machine(Vec::new());
    phys.regions[1].1 = table(b"APIC", &[0, 0, 0xE0]);
    let acpi = Acpi::read(&phys, rsdp).unwrap();
    assert_eq!(
        acpi.problems,
        [AcpiError::TooShort {
            signature: Signature::MADT,
            len: 39,
            needed: 44
        }]
    );
}

#[test]
fn x2apic_entries_and_the_address_override_are_read() {
    let mut x2apic = vec![9, 16, 0, 0];
    x2apic.extend_from_slice(&300u32.to_le_bytes());
    x2apic.extend_from_slice(&1u32.to_le_bytes());
    x2apic.extend_from_slice(&7u32.to_le_bytes());
    let mut address = vec![5, 12, 0, 0];
    address.extend_from_slice(&0x1_FEE0_0000u64.to_le_bytes());
    let (phys, rsdp) = machine(madt_body(&[&x2apic, &address]));
    let madt = Acpi::read(&phys, rsdp).unwrap().madt.unwrap();
    assert_eq!(
        madt.processors,
        [LocalApic {
            processor_uid: 7,
            apic_id: 300,
            enabled: true,
            online_capable: false,
            x2apic: true
        }]
    );
    assert_eq!(madt.local_apic_address, 0x1_FEE0_0000);
}

#[test]
fn a_short_fadt_is_reported() {
    let (mut phys, rsdp) = machine(madt_body(&[]));
    phys.regions[2].1 = table(b"FACP", &[0; 40]);
    let acpi = Acpi::read(&phys, rsdp).unwrap();
    assert_eq!(
        acpi.problems,
        [AcpiError::TooShort {
            signature: Signature::FADT,
            len: 76,
            needed: 116
        }]
    );
    assert!(acpi.s5.is_none());
}

#[test]
fn s5_is_found_in_its_usual_forms_only() {
    assert_eq!(
        find_s5(&s5_aml(2, &[0x00, 0x00])),
        Ok(SleepType { a: 0, b: 0 })
    );
    assert_eq!(
        find_s5(&s5_aml(2, &[0x0A, 0x07, 0x01])),
        Ok(SleepType { a: 7, b: 1 })
    );
    assert_eq!(
        find_s5(&s5_aml(1, &[0x0A, 0x05])),
        Ok(SleepType { a: 5, b: 0 })
    );
    let rooted = [
        NAME, b'\\', b'_', b'S', b'5', b'_', 0x12, 0x04, 0x02, 0x01, 0x00,
    ];
    assert_eq!(find_s5(&rooted), Ok(SleepType { a: 1, b: 0 }));
    // A method named _S5_ (MethodOp 0x14), a name cut off, a value too
    // big for SLP_TYP, no elements: not usable.
    assert_eq!(
        find_s5(&[0x14, 0x05, b'_', b'S', b'5', b'_', 0x00]),
        Err(AcpiError::NoS5)
    );
    assert_eq!(
        find_s5(&[NAME, b'_', b'S', b'5', b'_', 0x12]),
        Err(AcpiError::NoS5)
    );
    assert_eq!(find_s5(&s5_aml(1, &[0x0A, 0x09])), Err(AcpiError::NoS5));
    assert_eq!(find_s5(&s5_aml(0, &[])), Err(AcpiError::NoS5));
    assert_eq!(find_s5(b"_S5_"), Err(AcpiError::NoS5));
}

#[test]
fn the_bios_scan_finds_only_aligned_valid_rsdps() {
    let mut area = vec![0u8; 0x400];
    let rsdp = rsdp_v1(0x1234);
    area[0x18..0x18 + 20].copy_from_slice(&rsdp); // misaligned: skipped
    let mut broken = rsdp.clone();
    broken[8] ^= 1;
    area[0x100..0x100 + 20].copy_from_slice(&broken); // bad checksum: skipped
    area[0x200..0x200 + 20].copy_from_slice(&rsdp);
    let (address, found) = scan_for_rsdp(&area, 0xE0000).unwrap();
    assert_eq!((address, found.rsdt), (0xE0200, 0x1234));
    assert!(scan_for_rsdp(&area[..0x200], 0xE0000).is_none());
}

#[test]
fn checksums_sum_to_zero() {
    let bytes = table(b"TEST", &[1, 2, 3]);
    assert!(checksum_ok(&bytes));
    assert!(!checksum_ok(&bytes[1..]));
}

proptest! {
    #![proptest_config(mm::testing::cases(256))]

    /// Random bytes as an RSDP, a MADT body, a FADT body or AML: an error
    /// or a value, never a panic.
    #[test]
    fn random_tables_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        let _ = Rsdp::parse(&bytes);
        let _ = find_s5(&bytes);
        let _ = scan_for_rsdp(&bytes, 0);
        let (mut phys, rsdp) = machine(Vec::new());
        phys.regions[1].1 = table(b"APIC", &bytes);
        phys.regions[2].1 = table(b"FACP", &bytes);
        phys.regions[3].1 = table(b"DSDT", &bytes);
        let acpi = Acpi::read(&phys, rsdp);
        prop_assert!(acpi.is_ok());
    }

    /// Flipping any byte of a good machine's tables gives a result or an
    /// error, never a panic, and a flipped checksum-covered byte is caught.
    #[test]
    fn corrupted_tables_never_panic(region in 0usize..4, at in any::<prop::sample::Index>(), bit in 0u8..8) {
        let (mut phys, rsdp) = machine(madt_body(&[&local_apic(0, 0, 1)]));
        let bytes = &mut phys.regions[region].1;
        let at = at.index(bytes.len());
        bytes[at] ^= 1 << bit;
        match Acpi::read(&phys, rsdp) {
            Ok(acpi) => prop_assert!(region == 0 || !acpi.rejected.is_empty() || !acpi.problems.is_empty()),
            Err(_) => prop_assert!(region == 0),
        }
    }
}

/// The tables of a captured machine (`tests/fixtures/acpi/NAME/`), each at
/// the address in its file name, and its RSDP.
fn captured(name: &str) -> (FakePhys, Rsdp) {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/acpi")
        .join(name);
    let mut phys = FakePhys::default();
    let mut rsdp = None;
    for entry in std::fs::read_dir(&dir).expect("fixture directory") {
        let path = entry.unwrap().path();
        let bytes = std::fs::read(&path).unwrap();
        let file = path.file_stem().unwrap().to_str().unwrap().to_owned();
        match file.split_once('@') {
            Some((_, address)) => phys.put(u64::from_str_radix(address, 16).unwrap(), bytes),
            None => rsdp = Some(Rsdp::parse(&bytes).expect("captured RSDP")),
        }
    }
    (phys, rsdp.expect("rsdp.bin"))
}

fn signatures(acpi: &Acpi) -> Vec<String> {
    acpi.tables
        .iter()
        .map(|table| table.header.signature.to_string())
        .collect()
}

#[test]
fn seabios_tables_with_cpus_not_enabled() {
    let (phys, rsdp) = captured("seabios-pc-smp2-of-4");
    assert_eq!(rsdp.revision, 0);
    let acpi = Acpi::read(&phys, rsdp).unwrap();
    assert!(acpi.problems.is_empty() && acpi.rejected.is_empty());
    assert_eq!(
        signatures(&acpi),
        ["RSDT", "FACP", "APIC", "HPET", "WAET", "DSDT"]
    );
    let madt = acpi.madt.as_ref().unwrap();
    let ids: Vec<_> = madt
        .processors
        .iter()
        .map(|cpu| (cpu.apic_id, cpu.enabled))
        .collect();
    assert_eq!(ids, [(0, true), (1, true), (2, false), (3, false)]);
    assert_eq!(madt.local_apic_address, 0xFEE0_0000);
    assert_eq!(
        madt.io_apics,
        [IoApic {
            id: 0,
            address: 0xFEC0_0000,
            gsi_base: 0
        }]
    );
    // QEMU routes the PIT's IRQ 0 to GSI 2.
    assert!(madt.overrides.contains(&SourceOverride {
        source: 0,
        gsi: 2,
        flags: 0
    }));
    let fadt = acpi.fadt.unwrap();
    assert_eq!(fadt.pm1a_control, Some(Pm1Control::Io(0x604)));
    assert_eq!(fadt.pm_timer, Some(0x608));
    assert_eq!(acpi.s5, Some(SleepType { a: 0, b: 0 }));
}

#[test]
fn ovmf_q35_tables() {
    let (phys, rsdp) = captured("ovmf-q35-smp4");
    assert_eq!(rsdp.revision, 2);
    let acpi = Acpi::read(&phys, rsdp).unwrap();
    assert!(acpi.problems.is_empty() && acpi.rejected.is_empty());
    assert_eq!(signatures(&acpi)[0], "XSDT");
    assert!(acpi.table(Signature(*b"MCFG")).is_some());
    let madt = acpi.madt.as_ref().unwrap();
    assert_eq!(madt.enabled_processors().count(), 4);
    let fadt = acpi.fadt.unwrap();
    // ICH9's PM block at 0x600, found through the ACPI 2.0 X_ field.
    assert_eq!(fadt.pm1a_control, Some(Pm1Control::Io(0x604)));
    assert_eq!(acpi.s5, Some(SleepType { a: 0, b: 0 }));
}

#[test]
fn ovmf_pc_tables() {
    let (phys, rsdp) = captured("ovmf-pc");
    let acpi = Acpi::read(&phys, rsdp).unwrap();
    assert!(acpi.problems.is_empty() && acpi.rejected.is_empty());
    assert_eq!(
        signatures(&acpi),
        ["XSDT", "FACP", "APIC", "HPET", "WAET", "BGRT", "DSDT"]
    );
    assert_eq!(acpi.madt.as_ref().unwrap().processors.len(), 1);
    // OVMF moves PIIX4's PM block to 0xB000.
    assert_eq!(
        acpi.fadt.unwrap().pm1a_control,
        Some(Pm1Control::Io(0xB004))
    );
    assert!(acpi.s5.is_some());
}

/// Every single-bit flip in every captured table: a value or an error,
/// never a panic; a flip inside a checksummed table is always caught.
#[test]
fn every_bit_flip_in_the_captured_tables_is_caught() {
    for name in [
        "seabios-pc-smp2-of-4",
        "ovmf-q35-smp4",
        "seabios-pc-numa2",
        "ovmf-q35-numa3",
        "seabios-pc-numa2-above-4g",
        "ovmf-pc-numa2-hotplug",
    ] {
        let (clean, rsdp) = captured(name);
        for region in 0..clean.regions.len() {
            let len = clean.regions[region].1.len();
            for at in (0..len).step_by(7) {
                let mut phys = FakePhys {
                    regions: clean.regions.clone(),
                };
                phys.regions[region].1[at] ^= 0x10;
                let signature = Signature(phys.regions[region].1[..4].try_into().unwrap());
                // An error (the root table broke) is caught too.
                if let Ok(acpi) = Acpi::read(&phys, rsdp) {
                    assert!(
                        !acpi.rejected.is_empty() || !acpi.problems.is_empty(),
                        "{name}: flip at {at} of {signature} went unnoticed"
                    );
                }
            }
        }
    }
}
