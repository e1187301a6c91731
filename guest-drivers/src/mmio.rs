//! Register access that compiles to one plain load or store.
//!
//! A hypervisor decodes a trapped MMIO access from the syndrome only when the
//! instruction is a single load or store of one register (ESR_EL2.ISV = 1), so every
//! register access here is one volatile access of the register's exact width:
//! [`Reg32`] for control registers, [`Reg16`] and [`Reg8`] for the narrower fields of
//! a device's configuration space.
#![allow(unsafe_code)]

/// Defines a register type of one width; the three types differ only in it.
macro_rules! register {
    ($(#[$doc:meta])* $name:ident, $ty:ty, $bits:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy)]
        pub struct $name {
            addr: usize,
        }

        impl $name {
            #[doc = concat!("Names the ", $bits, "-bit register at `addr`.")]
            ///
            /// # Safety
            ///
            #[doc = concat!(
                "`addr` must be the ", $bits, "-bit aligned address of a device register that"
            )]
            /// stays mapped for as long as the value is used, and reading or writing it
            /// must have no effect that breaks memory safety.
            pub const unsafe fn new(addr: usize) -> Self {
                Self { addr }
            }

            #[doc = concat!("Reads the register with one ", $bits, "-bit load.")]
            pub fn read(&self) -> $ty {
                // SAFETY: `new`'s contract: the address is a mapped, aligned device register.
                unsafe { core::ptr::read_volatile(self.addr as *const $ty) }
            }

            #[doc = concat!("Writes the register with one ", $bits, "-bit store.")]
            pub fn write(&self, value: $ty) {
                // SAFETY: `new`'s contract: the address is a mapped, aligned device register.
                unsafe { core::ptr::write_volatile(self.addr as *mut $ty, value) }
            }
        }
    };
}

register!(
    /// A 32-bit device register at a fixed address.
    Reg32,
    u32,
    "32"
);
register!(
    /// A 16-bit device register (or configuration field) at a fixed address.
    Reg16,
    u16,
    "16"
);
register!(
    /// An 8-bit device register (or configuration field) at a fixed address.
    Reg8,
    u8,
    "8"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_width_reads_and_writes_its_own_bytes() {
        let mut words = [0u32; 2];
        let base = words.as_mut_ptr() as usize;
        // SAFETY: `words` is a live, aligned local that outlives the registers.
        let (r32, r16, r8) = unsafe { (Reg32::new(base), Reg16::new(base + 4), Reg8::new(base + 7)) };
        r32.write(0x1234_5678);
        r16.write(0xbeef);
        r8.write(0xaa);
        assert_eq!(r32.read(), 0x1234_5678);
        assert_eq!(r16.read(), 0xbeef);
        assert_eq!(r8.read(), 0xaa);
        assert_eq!(words[1], 0xaa00_beef);
    }
}
