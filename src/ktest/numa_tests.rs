//! In-kernel tests of NUMA placement: every CPU's frames come from its
//! node, an exhausted node spills to the nearest one, and the per-node
//! counters add up. On a machine with one node they check that everything
//! is node 0 and that an exhausted node has nothing to fall back to.

use alloc::vec::Vec;

use x86_64::PhysAddr;

use super::smp_tests::on_all_cpus;
use super::{Context, Expect, Test, TestResult};
use crate::arch::x86_64::smp;
use crate::kernel_mm::{numa, pmm};
use crate::{kassert, kassert_eq, kprintln};
use mm::pmm::Mobility;

/// The NUMA tests.
pub static TESTS: &[Test] = &[
    Test {
        name: "numa::node_counters_add_up",
        run: node_counters_add_up,
        expects: Expect::NOTHING,
    },
    Test {
        name: "numa::every_cpu_allocates_from_its_own_node",
        run: every_cpu_allocates_from_its_own_node,
        expects: Expect::NOTHING,
    },
    Test {
        name: "numa::an_exhausted_node_falls_back_by_distance",
        run: an_exhausted_node_falls_back_by_distance,
        expects: Expect::NOTHING,
    },
];

fn node_counters_add_up(_: &Context<'_>) -> TestResult {
    let nodes = pmm::nodes();
    let topology = numa::topology();
    kassert!(topology.is_some(), "NUMA set-up did not run");
    kassert_eq!(topology.map(|t| t.nodes.len()), Some(nodes));
    // Node counters come from the PMM's chunks, where cached frames are
    // handed out: compare with its own counters.
    let stats = pmm::allocator_stats();
    let (mut total, mut free) = (0, 0);
    for node in 0..nodes {
        let counters = pmm::node_stats(node);
        kassert!(counters.is_some(), "a node without counters");
        let counters = counters.unwrap_or(mm::pmm::NodeStats {
            total: 0,
            free: 0,
            largest_free_order: None,
        });
        kprintln!(
            "    node {}: {} frames, {} free",
            node,
            counters.total,
            counters.free
        );
        kassert!(counters.free <= counters.total, "more free than total");
        total += counters.total;
        free += counters.free;
    }
    kassert_eq!(total, stats.total);
    kassert_eq!(free, stats.free);
    for index in 0..smp::online() {
        let node = smp::cpu(index).map(|cpu| cpu.node());
        kassert!(node.is_some_and(|node| node < nodes), "a CPU on no node");
    }
    Ok(())
}

/// On each CPU at once: a single frame and a 2 MiB block, both on the
/// CPU's node (every node has both free while the suite runs).
fn every_cpu_allocates_from_its_own_node(_: &Context<'_>) -> TestResult {
    on_all_cpus(|_| {
        let node = pmm::local_node();
        for order in [0, 9] {
            let block = pmm::alloc_order(order, Mobility::Movable);
            kassert!(block.is_ok(), "no block");
            let first = block.map(|f| f.start_address()).unwrap_or(PhysAddr::zero());
            kassert_eq!(pmm::node_of(first), Some(node));
            kassert_eq!(pmm::free_order(first, order), Ok(()));
        }
        Ok(())
    })
}

/// For each node: take every 2 MiB block it has; the next 2 MiB request
/// near it must come from the nearest node (by the SLIT) that still has
/// one, and fail when there is none (one node: always). Everything is
/// given back.
fn an_exhausted_node_falls_back_by_distance(_: &Context<'_>) -> TestResult {
    let nodes = pmm::nodes();
    let before = pmm::stats();
    for node in 0..nodes {
        let order = pmm::with(|p| p.fallback_order(node).to_vec()).unwrap_or_default();
        kassert_eq!(order.first().map(|&n| n as usize), Some(node));
        let capacity = pmm::node_stats(node).map_or(0, |s| s.free as usize / 512) + 1;
        let mut held: Vec<PhysAddr> = Vec::new();
        kassert!(
            held.try_reserve_exact(capacity).is_ok(),
            "no room for the list"
        );
        while held.len() < capacity {
            match pmm::alloc_on(node, 9, Mobility::Movable) {
                Ok(block) => held.push(block.start_address()),
                Err(_) => break,
            }
        }
        let expected = order[1..]
            .iter()
            .map(|&n| n as usize)
            .find(|&n| pmm::node_stats(n).is_some_and(|s| s.largest_free_order >= Some(9)));
        let spilled = pmm::alloc_near(node, 9, Mobility::Movable);
        kprintln!(
            "    node {}: {} blocks of 2 MiB, then {:?} (fallback order {:?})",
            node,
            held.len(),
            spilled.ok().and_then(|f| pmm::node_of(f.start_address())),
            order
        );
        kassert_eq!(
            spilled.ok().and_then(|f| pmm::node_of(f.start_address())),
            expected
        );
        if let Ok(block) = spilled {
            held.push(block.start_address());
        }
        for block in held {
            kassert_eq!(pmm::free_order(block, 9), Ok(()));
        }
        kassert_eq!(pmm::stats(), before);
    }
    Ok(())
}
