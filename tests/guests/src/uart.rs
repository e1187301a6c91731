//! Console output on the board's PL011, and the `print!`/`println!` macros.
//!
//! A print holds a lock (IRQs masked) for the whole of its text, so what two CPUs
//! print comes out one whole print after the other. Receiving is `uart_rx`'s job.
//!
//! Only the data register (DR) and the flag register (FR) are used, each with one
//! 32-bit access ([`Reg32`]), so the same code runs on QEMU's PL011 and on Sluice's
//! emulated one. The UART is used as the firmware left it (QEMU's is ready at reset).
//! Register offsets: PL011 TRM (ARM DDI 0183), 3.2.
#![allow(unsafe_code)]

use core::fmt;

use guest_drivers::mmio::Reg32;
use platform::qemu_virt::UART;

use crate::sync::SpinLock;

/// Data register.
const DR: usize = 0x00;
/// Flag register.
const FR: usize = 0x18;
/// FR.TXFF: the transmit FIFO is full.
const FR_TXFF: u32 = 1 << 5;

/// The PL011 at QEMU virt's address.
pub struct Uart {
    dr: Reg32,
    fr: Reg32,
}

impl Uart {
    /// The board's UART.
    pub fn new() -> Self {
        let base = UART.base as usize;
        // SAFETY: QEMU virt (and every Sluice guest) has a PL011 at `UART.base`;
        // DR and FR are aligned 32-bit registers whose access has no effect on memory.
        unsafe { Self { dr: Reg32::new(base + DR), fr: Reg32::new(base + FR) } }
    }

    /// Sends one byte, waiting while the transmit FIFO is full.
    pub fn put_byte(&self, byte: u8) {
        while self.fr.read() & FR_TXFF != 0 {
            core::hint::spin_loop();
        }
        self.dr.write(u32::from(byte));
    }
}

impl Default for Uart {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Write for Uart {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for byte in s.bytes() {
            if byte == b'\n' {
                self.put_byte(b'\r');
            }
            self.put_byte(byte);
        }
        Ok(())
    }
}

/// Held while a CPU prints, so lines from two CPUs do not interleave.
static LOCK: SpinLock = SpinLock::new();

#[doc(hidden)]
pub fn _print(args: fmt::Arguments<'_>) {
    use fmt::Write;
    let _held = LOCK.lock();
    // The UART never reports an error.
    let _ = Uart::new().write_fmt(args);
}

/// Prints to the guest's UART.
#[macro_export]
macro_rules! print {
    ($($arg:tt)*) => {
        $crate::uart::_print(format_args!($($arg)*))
    };
}

/// Prints a line to the guest's UART.
#[macro_export]
macro_rules! println {
    () => {
        $crate::print!("\n")
    };
    ($($arg:tt)*) => {
        $crate::uart::_print(format_args!("{}\n", format_args!($($arg)*)))
    };
}
