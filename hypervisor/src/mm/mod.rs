//! Memory management: each guest's RAM and the translation tables that confine the
//! guest to it.
//!
//! - [`stage2`] builds one VM's stage-2 tables (guest-physical to host-physical) over
//!   a [`stage2::TableMemory`], so the table logic runs unchanged on the host in
//!   tests and at EL2 over identity-mapped frames;
//! - [`heap_tables`] is that table memory on the hypervisor's heap;
//! - [`guest_memory`] is the one bounds-checked way to read and write guest RAM.

pub mod frames;
pub mod guest_memory;
#[cfg(bare_metal)]
pub mod heap;
pub mod heap_tables;
pub mod stage2;
