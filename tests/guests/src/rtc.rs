//! QEMU virt's PL031 real-time clock at `0x0901_0000` (SPI 2, INTID 34): seconds
//! since 1970, a load register that sets them, a match register with an interrupt.
#![allow(unsafe_code)]

use platform::qemu_virt::{RTC, RTC_SPI};

/// The clock's interrupt.
pub const INTID: u32 = 32 + RTC_SPI;

/// Register offsets (PL031 TRM, table 3-1).
mod reg {
    pub const DR: usize = 0x00;
    pub const MR: usize = 0x04;
    pub const LR: usize = 0x08;
    pub const IMSC: usize = 0x10;
    pub const RIS: usize = 0x14;
    pub const ICR: usize = 0x1c;
    pub const PERIPH_ID0: usize = 0xfe0;
}

fn read(offset: usize) -> u32 {
    // SAFETY: the PL031's registers at QEMU virt's address, mapped as device memory
    // (the MMU is off); reads have no side effects.
    unsafe { core::ptr::read_volatile((RTC.base as usize + offset) as *const u32) }
}

fn write(offset: usize, value: u32) {
    // SAFETY: as `read`; the clock's registers hold no memory addresses.
    unsafe { core::ptr::write_volatile((RTC.base as usize + offset) as *mut u32, value) }
}

/// The address of the data register (for a test that loads it itself).
pub fn data_register() -> u64 {
    RTC.base + reg::DR as u64
}

/// The time, in seconds since 1970.
pub fn now() -> u32 {
    read(reg::DR)
}

/// Sets the time (the load register).
pub fn set(seconds: u32) {
    write(reg::LR, seconds);
}

/// What the load register holds.
pub fn loaded() -> u32 {
    read(reg::LR)
}

/// The first identification byte (0x31 for a PL031).
pub fn part_number() -> u32 {
    read(reg::PERIPH_ID0)
}

/// Arms the alarm for `seconds` and unmasks its interrupt.
pub fn set_alarm(seconds: u32) {
    write(reg::MR, seconds);
    write(reg::IMSC, 1);
}

/// Whether the alarm went off (RTCRIS).
pub fn alarm_raised() -> bool {
    read(reg::RIS) & 1 != 0
}

/// Clears the alarm's interrupt and masks it.
pub fn clear_alarm() {
    write(reg::ICR, 1);
    write(reg::IMSC, 0);
}
