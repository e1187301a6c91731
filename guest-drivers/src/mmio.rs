//! Register access that compiles to one plain load or store.
//!
//! A hypervisor decodes a trapped MMIO access from the syndrome only when the
//! instruction is a single load or store of one register (ESR_EL2.ISV = 1), so every
//! register access here is one volatile access of the register's exact width.
#![allow(unsafe_code)]

/// A 32-bit device register at a fixed address.
#[derive(Debug, Clone, Copy)]
pub struct Reg32 {
    addr: usize,
}

impl Reg32 {
    /// Names the register at `addr`.
    ///
    /// # Safety
    ///
    /// `addr` must be the 4-byte aligned address of a device register that stays
    /// mapped for as long as the value is used, and reading or writing it must have
    /// no effect that breaks memory safety.
    pub const unsafe fn new(addr: usize) -> Self {
        Self { addr }
    }

    /// Reads the register with one 32-bit load.
    pub fn read(&self) -> u32 {
        // SAFETY: `new`'s contract: the address is a mapped, aligned device register.
        unsafe { core::ptr::read_volatile(self.addr as *const u32) }
    }

    /// Writes the register with one 32-bit store.
    pub fn write(&self, value: u32) {
        // SAFETY: `new`'s contract: the address is a mapped, aligned device register.
        unsafe { core::ptr::write_volatile(self.addr as *mut u32, value) }
    }
}
