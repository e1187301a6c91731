//! Sluice: a small type-1 hypervisor for AArch64.
//!
//! The crate is host-testable pure logic (trap decoding, stage-2 tables, device
//! models, configuration checks, the guest DTB) plus a thin `arch` layer that touches
//! real registers and exists only in the bare-metal build (`cfg(bare_metal)`).
#![cfg_attr(not(test), no_std)]
#![deny(unsafe_code)]

extern crate alloc;

pub mod arch;
pub mod console;
pub mod devices;
pub mod guest_dtb;
pub mod mm;
pub mod vm;
