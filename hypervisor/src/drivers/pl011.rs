//! The host's PL011 UART, which Sluice owns (ARM PrimeCell UART PL011 TRM, 3.3).
//!
//! The firmware or QEMU has configured the line already; Sluice only moves bytes.
#![allow(unsafe_code)]

use tock_registers::interfaces::{Readable, Writeable};
use tock_registers::registers::{ReadOnly, ReadWrite};
use tock_registers::{register_bitfields, register_structs};

register_bitfields! {u32,
    /// Flag register.
    FR [
        /// Transmit FIFO full.
        TXFF OFFSET(5) NUMBITS(1) [],
        /// Still sending: the transmit FIFO or the shift register holds data.
        BUSY OFFSET(3) NUMBITS(1) [],
        /// Receive FIFO empty.
        RXFE OFFSET(4) NUMBITS(1) [],
    ]
}

register_structs! {
    /// The registers Sluice uses.
    Registers {
        (0x000 => dr: ReadWrite<u32>),
        (0x004 => _reserved0),
        (0x018 => fr: ReadOnly<u32, FR::Register>),
        (0x01c => _reserved1),
        (0x038 => imsc: ReadWrite<u32>),
        (0x03c => _reserved2),
        (0x044 => icr: ReadWrite<u32>),
        (0x048 => @END),
    }
}

/// The host UART.
pub struct Uart {
    regs: &'static Registers,
}

impl Uart {
    /// The PL011 at `base`.
    ///
    /// # Safety
    ///
    /// `base` must be the address of a PL011's registers, mapped as device memory for
    /// as long as the value lives, and no other code may drive that UART.
    pub unsafe fn new(base: usize) -> Self {
        // SAFETY: the caller guarantees a mapped PL011 at `base` that only we use.
        let regs = unsafe { &*(base as *const Registers) };
        Self { regs }
    }

    /// Sends one byte, waiting while the transmit FIFO is full.
    pub fn put(&mut self, byte: u8) {
        while self.regs.fr.is_set(FR::TXFF) {
            core::hint::spin_loop();
        }
        self.regs.dr.set(byte as u32);
    }

    /// Waits until every byte written has left the UART (or about a second of
    /// polling has passed: a UART that never says so must not hang a power-off).
    pub fn wait_until_sent(&mut self) {
        for _ in 0..10_000_000 {
            if !self.regs.fr.is_set(FR::BUSY) {
                return;
            }
            core::hint::spin_loop();
        }
    }

    /// Raises the UART's interrupt when bytes arrive (receive and receive-timeout).
    pub fn enable_receive_interrupt(&mut self) {
        const RXIM: u32 = 1 << 4;
        const RTIM: u32 = 1 << 6;
        self.regs.icr.set(0x7ff);
        self.regs.imsc.set(RXIM | RTIM);
    }

    /// A received byte, if one is waiting.
    pub fn get(&mut self) -> Option<u8> {
        (!self.regs.fr.is_set(FR::RXFE)).then(|| self.regs.dr.get() as u8)
    }
}

// SAFETY: the registers are reached only through the global console lock.
unsafe impl Send for Uart {}
