//! QEMU `virt` (AArch64): the layout every Sluice guest sees.
//!
//! Guests get the same addresses and interrupt numbers as a guest on plain
//! `qemu-system-aarch64 -machine virt`, so a binary built for that board runs on
//! Sluice unmodified. Values follow QEMU's `hw/arm/virt.c` memory map.

use crate::Region;

/// GICv3 distributor (GICD).
pub const GICD: Region = Region::new(0x0800_0000, 0x1_0000);
/// GICv3 redistributor frames (GICR), one `GICR_FRAME_SIZE` frame pair per vCPU.
pub const GICR_BASE: u64 = 0x080a_0000;
/// Size of one redistributor (RD_base and SGI_base frames).
pub const GICR_FRAME_SIZE: u64 = 0x2_0000;
/// The PL011 UART.
pub const UART: Region = Region::new(0x0900_0000, 0x1000);
/// The PL011's shared peripheral interrupt (INTID 33).
pub const UART_SPI: u32 = 1;
/// The PL031 real-time clock.
pub const RTC: Region = Region::new(0x0901_0000, 0x1000);
/// The PL031's shared peripheral interrupt (INTID 34).
pub const RTC_SPI: u32 = 2;
/// First virtio-mmio slot.
pub const VIRTIO_MMIO_BASE: u64 = 0x0a00_0000;
/// Distance between two virtio-mmio slots.
pub const VIRTIO_MMIO_SLOT_SIZE: u64 = 0x200;
/// Number of virtio-mmio slots QEMU virt has.
pub const VIRTIO_MMIO_SLOTS: u32 = 32;
/// SPI of virtio-mmio slot 0; slot n uses SPI `VIRTIO_MMIO_FIRST_SPI + n`.
pub const VIRTIO_MMIO_FIRST_SPI: u32 = 16;
/// Base of guest RAM.
pub const RAM_BASE: u64 = 0x4000_0000;
/// Largest guest RAM Sluice gives a VM (the guest IPA space is 39 bits).
pub const RAM_MAX_SIZE: u64 = 255 << 30;

/// PPI of the EL1 virtual timer (INTID 27).
pub const VIRTUAL_TIMER_PPI: u32 = 11;
/// PPI of the EL1 physical timer (INTID 30).
pub const PHYSICAL_TIMER_PPI: u32 = 14;
/// PPI of the EL2 physical timer (INTID 26).
pub const HYP_TIMER_PPI: u32 = 10;
/// PPI of the PMU's overflow interrupt (INTID 23).
pub const PMU_PPI: u32 = 7;
/// PPI of the secure physical timer (INTID 29).
pub const SECURE_TIMER_PPI: u32 = 13;

/// Guest-physical region of virtio-mmio slot `n`.
pub const fn virtio_mmio_slot(n: u32) -> Region {
    Region::new(VIRTIO_MMIO_BASE + n as u64 * VIRTIO_MMIO_SLOT_SIZE, VIRTIO_MMIO_SLOT_SIZE)
}

/// Guest RAM of `size` bytes.
pub const fn guest_ram(size: u64) -> Region {
    Region::new(RAM_BASE, size)
}
