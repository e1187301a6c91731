//! The physical interrupts Sluice takes at EL2, as GIC INTIDs (a PPI's INTID is
//! its number plus 16). The timers' and the PMU's PPIs are the board's (`platform::qemu_virt`);
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
/// The PMU's overflow interrupt, forwarded to the guest hardware-linked when the
/// guest has the PMU (`super::features`).
pub const PMU_OVERFLOW: u32 = PPI_BASE + qemu_virt::PMU_PPI;
/// The PPIs whose sources are the guest's own (its timers, its PMU): each is
/// forwarded to the vCPU on the CPU it fires on, hardware-linked.
pub const LINKED_PPIS: [u32; 3] = [VIRTUAL_TIMER, PHYSICAL_TIMER, PMU_OVERFLOW];
/// [`LINKED_PPIS`] as a mask of INTIDs (bit n for INTID n).
pub const LINKED_PPI_MASK: u32 = (1 << VIRTUAL_TIMER) | (1 << PHYSICAL_TIMER) | (1 << PMU_OVERFLOW);
/// The EL2 physical timer's interrupt: Sluice's own alarm.
pub const HYP_TIMER: u32 = PPI_BASE + qemu_virt::HYP_TIMER_PPI;
/// What the CPU interface acknowledges when nothing is pending.
pub const SPURIOUS: u32 = 1023;
