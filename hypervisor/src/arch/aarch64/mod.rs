//! AArch64 at EL2: syndrome decoding, exception injection and, in the bare-metal
//! build, boot, MMU, vectors and the trap entry.

pub mod el2_tables;
pub mod esr;
pub mod features;
pub mod guest_cpu;
pub mod inject;
pub mod insn;
pub mod intid;
pub mod sysreg;
pub mod trap_frame;
pub mod virtual_interface;

#[cfg(bare_metal)]
pub mod boot;
#[cfg(bare_metal)]
pub mod el2;
#[cfg(bare_metal)]
pub mod stacks;
#[cfg(bare_metal)]
pub mod vectors;
