//! Register access that compiles to one plain load or store.
//!
//! A hypervisor emulates a trapped device access from its syndrome, which the
//! architecture gives (ESR_EL2.ISV = 1) only for a load or store of one register
//! without writeback (Arm ARM, ISS encoding for a Data Abort). `read_volatile` and
//! `write_volatile` promise one access, not its form: LLVM folds address arithmetic
//! into them and has compiled a register read to the pre-indexed
//! `ldr w9, [x8, #0x80]!` (ISV = 0), which Sluice must refuse. So on AArch64 every
//! access here is inline assembly, `ldr`/`str` of the register's width from a base
//! register with no offset, index or writeback (as Linux's `readl`/`writel` in
//! `arch/arm64/include/asm/io.h`); elsewhere (host tests) a volatile access.
//! [`Reg32`] for control registers, [`Reg64`] for 64-bit ones (GICR_TYPER,
//! GICD_IROUTER<n>), [`Reg16`] and [`Reg8`] for narrower configuration fields.
#![allow(unsafe_code)]

/// Defines a register type of one width; they differ in the width and the
/// instructions.
macro_rules! register {
    ($(#[$doc:meta])* $name:ident, $ty:ty, $bits:literal, $load:literal, $store:literal) => {
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
                #[cfg(target_arch = "aarch64")]
                {
                    let value: $ty;
                    // SAFETY: `new`'s contract: a mapped, aligned device register. The
                    // asm is a compiler barrier, like a volatile access.
                    unsafe {
                        core::arch::asm!($load, v = out(reg) value, a = in(reg) self.addr,
                            options(nostack, preserves_flags))
                    };
                    value
                }
                #[cfg(not(target_arch = "aarch64"))]
                // SAFETY: `new`'s contract: the address is a mapped, aligned register.
                unsafe {
                    core::ptr::read_volatile(self.addr as *const $ty)
                }
            }

            #[doc = concat!("Writes the register with one ", $bits, "-bit store.")]
            pub fn write(&self, value: $ty) {
                #[cfg(target_arch = "aarch64")]
                // SAFETY: as in `read`.
                unsafe {
                    core::arch::asm!($store, v = in(reg) value, a = in(reg) self.addr,
                        options(nostack, preserves_flags))
                };
                #[cfg(not(target_arch = "aarch64"))]
                // SAFETY: as in `read`.
                unsafe {
                    core::ptr::write_volatile(self.addr as *mut $ty, value)
                };
            }
        }
    };
}

register!(
    /// A 64-bit device register at a fixed address.
    Reg64,
    u64,
    "64",
    "ldr {v:x}, [{a}]",
    "str {v:x}, [{a}]"
);
register!(
    /// A 32-bit device register at a fixed address.
    Reg32,
    u32,
    "32",
    "ldr {v:w}, [{a}]",
    "str {v:w}, [{a}]"
);
register!(
    /// A 16-bit device register (or configuration field) at a fixed address.
    Reg16,
    u16,
    "16",
    "ldrh {v:w}, [{a}]",
    "strh {v:w}, [{a}]"
);
register!(
    /// An 8-bit device register (or configuration field) at a fixed address.
    Reg8,
    u8,
    "8",
    "ldrb {v:w}, [{a}]",
    "strb {v:w}, [{a}]"
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
