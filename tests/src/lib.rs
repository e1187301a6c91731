//! Helpers for the host integration tests in `tests/tests/`, where the front-end
//! drivers (guest-drivers, and rcore-os' virtio-drivers as a peer) run against the
//! hypervisor's virtio device models in one process.
//!
//! - [`region`]: the memory drivers and devices share, at a different address for
//!   each (so a missing address translation fails);
//! - [`hal`]: guest-drivers' HAL over that region;
//! - [`slot`]: a device model reached only through trapped-style register accesses,
//!   with notifications run at once (as under Sluice) or held;
//! - [`filter`]: register wrappers that hide or add feature bits, or hook stores;
//! - [`disk`], [`console_sink`]: what the blk and console models are built over;
//! - [`rig`]: slot builders and the variants (legacy/modern, EVENT_IDX, INDIRECT);
//! - [`rings`]: hand-built split virtqueues, to feed the devices malformed input.
//!
//! The bare-metal test guests live in `tests/guests/` and the QEMU scenarios in
//! `tests/scenarios/`.
#![deny(unsafe_code)]

pub mod console_sink;
pub mod disk;
pub mod filter;
pub mod hal;
pub mod host_disk;
pub mod region;
pub mod rig;
pub mod rings;
pub mod slot;
