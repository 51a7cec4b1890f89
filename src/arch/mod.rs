//! Machine glue. Only x86-64 exists; everything that touches the CPU or a
//! device register lives below here and stays thin.

pub mod x86_64;
