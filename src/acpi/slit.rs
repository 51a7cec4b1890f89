//! The SLIT (System Locality Distance Information Table): the relative
//! distance between every two proximity domains ("localities"), an N x N
//! matrix of bytes indexed by domain number, 10 meaning local.
#![forbid(unsafe_code)]

use alloc::vec::Vec;

use super::sdt::{u64_at, Signature, Table, HEADER_LEN};
use super::AcpiError;

/// Bytes of the SLIT's fixed fields after the header (the locality count).
const FIXED: usize = 8;

/// A locality's distance to itself: the unit distances are relative to.
pub const LOCAL_DISTANCE: u8 = 10;
/// The distance meaning one locality cannot reach the other. Kept as it
/// is: a valid distance, the largest.
pub const UNREACHABLE: u8 = 0xFF;

/// What the SLIT says, checked: the diagonal is [`LOCAL_DISTANCE`], every
/// other distance is above it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Slit {
    /// Physical address of the SLIT.
    pub address: u64,
    localities: usize,
    /// Row `from`, column `to`, `localities` x `localities` bytes.
    distances: Vec<u8>,
}

impl Slit {
    /// Parses and checks the SLIT `table` found at `address`. Bytes after
    /// the matrix are ignored.
    pub fn parse(table: &Table, address: u64) -> Result<Self, AcpiError> {
        let body = table.body();
        let localities = u64_at(body, 0).ok_or(AcpiError::TooShort {
            signature: Signature::SLIT,
            len: table.header.length,
            needed: (HEADER_LEN + FIXED) as u32,
        })?;
        let bad_count = AcpiError::BadLocalityCount {
            localities,
            len: table.header.length,
        };
        let count = usize::try_from(localities).map_err(|_| bad_count)?;
        let matrix = count
            .checked_mul(count)
            .and_then(|bytes| body.get(FIXED..FIXED.checked_add(bytes)?))
            .ok_or(bad_count)?;
        for (index, &distance) in matrix.iter().enumerate() {
            let (from, to) = (index / count, index % count);
            let possible = if from == to {
                distance == LOCAL_DISTANCE
            } else {
                distance > LOCAL_DISTANCE
            };
            if !possible {
                return Err(AcpiError::BadDistance {
                    offset: HEADER_LEN + FIXED + index,
                    from,
                    to,
                    distance,
                });
            }
        }
        Ok(Slit {
            address,
            localities: count,
            distances: matrix.to_vec(),
        })
    }

    /// Number of localities (the matrix is this many squared).
    pub fn localities(&self) -> usize {
        self.localities
    }

    /// The distance from locality `from` to `to` (not necessarily the
    /// same as back), `None` if either is not a locality.
    pub fn distance(&self, from: usize, to: usize) -> Option<u8> {
        if from < self.localities && to < self.localities {
            self.distances.get(from * self.localities + to).copied()
        } else {
            None
        }
    }
}
