//! The physical interrupts Sluice takes at EL2, as GIC INTIDs (a PPI's INTID is
//! its number plus 16). The timers' PPIs are the board's (`platform::qemu_virt`);
//! the maintenance interrupt's is the one the GICv3 architecture recommends.

use platform::qemu_virt;

/// First PPI INTID.
const PPI_BASE: u32 = 16;

/// The vGIC maintenance interrupt (PPI 9).
pub const MAINTENANCE: u32 = PPI_BASE + 9;
/// The EL1 virtual timer's interrupt, forwarded to the guest hardware-linked.
pub const VIRTUAL_TIMER: u32 = PPI_BASE + qemu_virt::VIRTUAL_TIMER_PPI;
/// The EL1 physical timer's interrupt, forwarded to the guest hardware-linked.
pub const PHYSICAL_TIMER: u32 = PPI_BASE + qemu_virt::PHYSICAL_TIMER_PPI;
/// The EL2 physical timer's interrupt: Sluice's own alarm.
pub const HYP_TIMER: u32 = PPI_BASE + qemu_virt::HYP_TIMER_PPI;
/// What the CPU interface acknowledges when nothing is pending.
pub const SPURIOUS: u32 = 1023;
