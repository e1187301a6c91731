//! Drivers for the host devices Sluice itself uses.

#[cfg(bare_metal)]
pub mod board_clock;
pub mod dma;
#[cfg(bare_metal)]
pub mod gicv3;
#[cfg(bare_metal)]
pub mod host_disks;
#[cfg(bare_metal)]
pub mod pl011;
