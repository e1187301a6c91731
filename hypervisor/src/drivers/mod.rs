//! Drivers for the host devices Sluice itself uses.

#[cfg(bare_metal)]
pub mod gicv3;
#[cfg(bare_metal)]
pub mod pl011;
