//! Sluice: a small type-1 hypervisor for AArch64.
//!
//! The crate is host-testable pure logic (trap decoding, stage-2 tables, device
//! models, configuration checks, the guest DTB) plus a thin layer that touches real
//! registers and exists only in the bare-metal build (`cfg(bare_metal)`, set by
//! `build.rs` for `target_os = "none"` on AArch64).
#![cfg_attr(not(test), no_std)]
#![deny(unsafe_code)]

extern crate alloc;

pub mod arch;
pub mod bits;
pub mod console;
pub mod devices;
pub mod drivers;
pub mod fdt_check;
pub mod guest_dtb;
pub mod guest_log;
pub mod host;
pub mod mm;
pub mod sync;
pub mod trace;
pub mod vgic;
pub mod vm;

#[cfg(bare_metal)]
pub mod boot;
#[cfg(bare_metal)]
pub mod logger;
#[cfg(bare_metal)]
pub mod run;
