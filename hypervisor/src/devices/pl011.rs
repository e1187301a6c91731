//! An emulated Arm PrimeCell UART (PL011), per the PL011 Technical Reference Manual
//! (Arm DDI 0183, r1p5), chapter 3 "Programmers Model".
//!
//! It implements what Linux's `amba-pl011` driver, its earlycon and bare-metal code
//! use. Transmission is immediate: a byte written to UARTDR goes to the console sink
//! at once, so the transmit FIFO is always empty (TXFE = 1, TXFF = 0, BUSY = 0).
//! Received bytes wait in a receive FIFO that the console multiplexer fills with
//! [`Pl011::push_input`].
//!
//! The interrupt model follows QEMU's PL011: writing UARTDR raises the transmit
//! interrupt (TXRIS), receiving a byte raises the receive interrupt (RXRIS) until the
//! FIFO is drained, and UARTICR clears either. [`Pl011::interrupt_pending`] is the
//! combined UARTINTR line (UARTMIS != 0); `devices::Wired` drives the guest's
//! interrupt from it after each access or input. Modem lines, break, errors, IrDA
//! and DMA have no effect; their registers hold what the guest writes.

use crate::guest_log;
use crate::guest_log::Kind;

use super::{AccessWidth, MmioDevice};
use crate::console::BoxedConsole;

/// Register offsets (PL011 TRM 3.2, "Summary of registers").
mod reg {
    /// UARTDR: data.
    pub const DR: u64 = 0x000;
    /// UARTRSR (read) / UARTECR (write): receive status, error clear.
    pub const RSR_ECR: u64 = 0x004;
    /// UARTFR: flags.
    pub const FR: u64 = 0x018;
    /// UARTILPR: IrDA low-power counter.
    pub const ILPR: u64 = 0x020;
    /// UARTIBRD: integer baud rate divisor.
    pub const IBRD: u64 = 0x024;
    /// UARTFBRD: fractional baud rate divisor.
    pub const FBRD: u64 = 0x028;
    /// UARTLCR_H: line control.
    pub const LCR_H: u64 = 0x02c;
    /// UARTCR: control.
    pub const CR: u64 = 0x030;
    /// UARTIFLS: interrupt FIFO level select.
    pub const IFLS: u64 = 0x034;
    /// UARTIMSC: interrupt mask set/clear.
    pub const IMSC: u64 = 0x038;
    /// UARTRIS: raw interrupt status.
    pub const RIS: u64 = 0x03c;
    /// UARTMIS: masked interrupt status.
    pub const MIS: u64 = 0x040;
    /// UARTICR: interrupt clear.
    pub const ICR: u64 = 0x044;
    /// UARTDMACR: DMA control.
    pub const DMACR: u64 = 0x048;
    /// UARTPeriphID0, first of the eight identification registers.
    pub const ID_START: u64 = 0xfe0;
    /// One past UARTPCellID3.
    pub const ID_END: u64 = 0x1000;
}

/// UARTFR bits (PL011 TRM 3.3, UARTFR).
mod fr {
    /// Receive FIFO empty.
    pub const RXFE: u32 = 1 << 4;
    /// Transmit FIFO full.
    pub const TXFF: u32 = 1 << 5;
    /// Receive FIFO full.
    pub const RXFF: u32 = 1 << 6;
    /// Transmit FIFO empty.
    pub const TXFE: u32 = 1 << 7;
}

/// Interrupt bits shared by UARTIMSC, UARTRIS, UARTMIS and UARTICR (PL011 TRM 3.3).
mod int {
    /// Receive interrupt (RXRIS).
    pub const RX: u16 = 1 << 4;
    /// Transmit interrupt (TXRIS).
    pub const TX: u16 = 1 << 5;
    /// All eleven interrupt bits: RI, CTS, DCD, DSR modem, RX, TX, RT receive
    /// timeout, FE, PE, BE, OE errors.
    pub const ALL: u16 = 0x7ff;
}

/// UARTLCR_H.FEN: FIFOs enabled (PL011 TRM 3.3, UARTLCR_H).
const LCR_H_FEN: u8 = 1 << 4;
/// UARTCR reset value: TXE and RXE set, UART disabled (PL011 TRM 3.3, UARTCR).
const CR_RESET: u16 = 0x300;
/// UARTIFLS reset value: both FIFO triggers at half full (PL011 TRM 3.3, UARTIFLS).
const IFLS_RESET: u8 = 0x12;
/// UARTPeriphID0..3 then UARTPCellID0..3 (PL011 TRM 3.3): part number 0x011,
/// designer 0x41 (Arm), revision field 1, as QEMU's PL011 reports them, then the
/// PrimeCell signature 0xB105F00D that Linux's AMBA bus checks.
const ID: [u8; 8] = [0x11, 0x10, 0x14, 0x00, 0x0d, 0xf0, 0x05, 0xb1];

/// Depth of the receive FIFO with UARTLCR_H.FEN set (PL011 r1p5 has 32 entries).
pub const RX_FIFO_DEPTH: usize = 32;

/// The receive FIFO: a ring of [`RX_FIFO_DEPTH`] bytes.
#[derive(Debug)]
struct RxFifo {
    bytes: [u8; RX_FIFO_DEPTH],
    head: usize,
    len: usize,
}

impl RxFifo {
    const fn new() -> Self {
        Self { bytes: [0; RX_FIFO_DEPTH], head: 0, len: 0 }
    }

    fn push(&mut self, byte: u8) {
        self.bytes[(self.head + self.len) % RX_FIFO_DEPTH] = byte;
        self.len += 1;
    }

    fn pop(&mut self) -> Option<u8> {
        if self.len == 0 {
            return None;
        }
        let byte = self.bytes[self.head];
        self.head = (self.head + 1) % RX_FIFO_DEPTH;
        self.len -= 1;
        Some(byte)
    }
}

/// An emulated PL011 UART for one guest.
pub struct Pl011 {
    out: BoxedConsole,
    rx: RxFifo,
    ilpr: u8,
    ibrd: u16,
    fbrd: u8,
    lcr_h: u8,
    cr: u16,
    ifls: u8,
    imsc: u16,
    ris: u16,
    dmacr: u8,
}

impl Pl011 {
    /// A PL011 in its reset state whose output goes to `out`.
    pub fn new(out: BoxedConsole) -> Self {
        Self {
            out,
            rx: RxFifo::new(),
            ilpr: 0,
            ibrd: 0,
            fbrd: 0,
            lcr_h: 0,
            cr: CR_RESET,
            ifls: IFLS_RESET,
            imsc: 0,
            ris: 0,
            dmacr: 0,
        }
    }

    /// Returns every register to its reset value and empties the receive FIFO.
    pub fn reset(&mut self) {
        self.rx = RxFifo::new();
        self.ilpr = 0;
        self.ibrd = 0;
        self.fbrd = 0;
        self.lcr_h = 0;
        self.cr = CR_RESET;
        self.ifls = IFLS_RESET;
        self.imsc = 0;
        self.ris = 0;
        self.dmacr = 0;
    }

    /// Receives `byte` from the console; returns false, dropping nothing, when the
    /// receive FIFO is full (the caller keeps the byte and retries later).
    ///
    /// The FIFO holds [`RX_FIFO_DEPTH`] bytes when the guest enabled FIFOs
    /// (UARTLCR_H.FEN) and one byte otherwise, as on the hardware (PL011 TRM chapter
    /// 2: with FIFOs disabled they act as one-byte holding registers).
    pub fn push_input(&mut self, byte: u8) -> bool {
        if self.rx.len >= self.rx_depth() {
            return false;
        }
        self.rx.push(byte);
        self.ris |= int::RX;
        true
    }

    /// Whether [`push_input`](Self::push_input) would take a byte now.
    pub fn can_take_input(&self) -> bool {
        self.rx.len < self.rx_depth()
    }

    /// Whether the combined interrupt UARTINTR is asserted (UARTMIS != 0).
    pub fn interrupt_pending(&self) -> bool {
        self.mis() != 0
    }

    /// UARTMIS: the raw interrupts the guest unmasked.
    fn mis(&self) -> u16 {
        self.ris & self.imsc
    }

    /// How many bytes the receive FIFO holds in the current mode.
    fn rx_depth(&self) -> usize {
        if self.lcr_h & LCR_H_FEN != 0 {
            RX_FIFO_DEPTH
        } else {
            1
        }
    }

    /// UARTFR (PL011 TRM 3.3). CTS, DSR, DCD and RI read as 0 (modem lines
    /// inactive); BUSY is 0 because transmission is immediate.
    fn flags(&self) -> u32 {
        let mut flags = fr::TXFE;
        if self.rx.len == 0 {
            flags |= fr::RXFE;
        }
        if self.rx.len >= self.rx_depth() {
            flags |= fr::RXFF;
        }
        debug_assert_eq!(flags & fr::TXFF, 0);
        flags
    }

    /// A UARTDR read: the next received byte, without error bits (PL011 TRM 3.3,
    /// UARTDR). An empty FIFO reads as 0.
    fn read_data(&mut self) -> u32 {
        let byte = self.rx.pop().unwrap_or(0);
        if self.rx.len == 0 {
            self.ris &= !int::RX;
        }
        u32::from(byte)
    }

    /// A UARTDR write: sends the byte at once and raises the transmit interrupt.
    fn write_data(&mut self, value: u32) {
        self.out.write(&[value as u8]);
        self.ris |= int::TX;
    }

    fn read_reg(&mut self, offset: u64) -> u32 {
        match offset {
            reg::DR => self.read_data(),
            // No receive errors are ever recorded.
            reg::RSR_ECR => 0,
            reg::FR => self.flags(),
            reg::ILPR => self.ilpr.into(),
            reg::IBRD => self.ibrd.into(),
            reg::FBRD => self.fbrd.into(),
            reg::LCR_H => self.lcr_h.into(),
            reg::CR => self.cr.into(),
            reg::IFLS => self.ifls.into(),
            reg::IMSC => self.imsc.into(),
            reg::RIS => self.ris.into(),
            reg::MIS => self.mis().into(),
            reg::DMACR => self.dmacr.into(),
            reg::ID_START..reg::ID_END => ID[((offset - reg::ID_START) / 4) as usize].into(),
            _ => {
                // ICR is write-only; everything else is not a register.
                guest_log!(Kind::Uart, Debug, "pl011: read of unknown offset {offset:#x}");
                0
            }
        }
    }

    fn write_reg(&mut self, offset: u64, value: u32) {
        match offset {
            reg::DR => self.write_data(value),
            // Clears the (always clear) receive errors.
            reg::RSR_ECR => {}
            reg::ILPR => self.ilpr = value as u8,
            reg::IBRD => self.ibrd = value as u16,
            reg::FBRD => self.fbrd = (value & 0x3f) as u8,
            reg::LCR_H => self.lcr_h = value as u8,
            reg::CR => self.cr = value as u16,
            reg::IFLS => self.ifls = (value & 0x3f) as u8,
            reg::IMSC => self.imsc = value as u16 & int::ALL,
            reg::ICR => self.ris &= !(value as u16 & int::ALL),
            reg::DMACR => self.dmacr = (value & 0x7) as u8,
            _ => guest_log!(
                Kind::Uart,
                Debug,
                "pl011: write of {value:#x} to read-only or unknown offset {offset:#x}"
            ),
        }
    }
}

impl MmioDevice for Pl011 {
    fn name(&self) -> &str {
        "pl011"
    }

    /// Registers are 32-bit and word aligned; 8- and 16-bit accesses at a register's
    /// offset read its low bits. 64-bit and unaligned accesses read as zero.
    fn read(&mut self, offset: u64, width: AccessWidth) -> u64 {
        if width == AccessWidth::Double || offset & 3 != 0 {
            guest_log!(Kind::Uart, Debug, "pl011: {width:?} read at offset {offset:#x} ignored");
            return 0;
        }
        u64::from(self.read_reg(offset)) & width.mask()
    }

    /// 8-, 16- and 32-bit writes at a register's offset write its low bits (the rest
    /// as zero); 64-bit and unaligned writes are ignored.
    fn write(&mut self, offset: u64, width: AccessWidth, value: u64) {
        if width == AccessWidth::Double || offset & 3 != 0 {
            guest_log!(Kind::Uart, Debug, "pl011: {width:?} write at offset {offset:#x} ignored");
            return;
        }
        self.write_reg(offset, (value & width.mask()) as u32);
    }

    fn interrupt_level(&self) -> bool {
        self.interrupt_pending()
    }

    fn reset(&mut self) {
        Pl011::reset(self);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::console::ConsoleOutput;
    use alloc::boxed::Box;
    use alloc::vec::Vec;
    use std::sync::{Arc, Mutex};

    /// A console sink that collects the bytes.
    struct Collect(Arc<Mutex<Vec<u8>>>);

    impl ConsoleOutput for Collect {
        fn write(&mut self, bytes: &[u8]) {
            self.0.lock().unwrap().extend_from_slice(bytes);
        }
    }

    fn uart() -> (Pl011, Arc<Mutex<Vec<u8>>>) {
        let out = Arc::new(Mutex::new(Vec::new()));
        (Pl011::new(Box::new(Collect(out.clone()))), out)
    }

    fn r(u: &mut Pl011, offset: u64) -> u64 {
        u.read(offset, AccessWidth::Word)
    }

    fn w(u: &mut Pl011, offset: u64, value: u64) {
        u.write(offset, AccessWidth::Word, value);
    }

    #[test]
    fn written_bytes_reach_the_console_at_once() {
        let (mut u, out) = uart();
        for &b in b"hi\n" {
            w(&mut u, reg::DR, u64::from(b));
            assert_eq!(r(&mut u, reg::FR) as u32 & (fr::TXFE | fr::TXFF), fr::TXFE);
        }
        // Byte writes and the upper bits of a word are not data.
        u.write(reg::DR, AccessWidth::Byte, u64::from(b'!'));
        w(&mut u, reg::DR, 0xf00 | u64::from(b'?'));
        assert_eq!(out.lock().unwrap().as_slice(), b"hi\n!?");
    }

    #[test]
    fn reset_values() {
        let (mut u, _) = uart();
        assert_eq!(r(&mut u, reg::FR), 0x90); // TXFE | RXFE
        assert_eq!(r(&mut u, reg::CR), 0x300);
        assert_eq!(r(&mut u, reg::IFLS), 0x12);
        for offset in [reg::DR, reg::RSR_ECR, reg::ILPR, reg::IBRD, reg::FBRD, reg::LCR_H] {
            assert_eq!(r(&mut u, offset), 0, "offset {offset:#x}");
        }
        for offset in [reg::IMSC, reg::RIS, reg::MIS, reg::ICR, reg::DMACR] {
            assert_eq!(r(&mut u, offset), 0, "offset {offset:#x}");
        }
        assert!(!u.interrupt_pending());
    }

    #[test]
    fn control_registers_keep_their_width() {
        let (mut u, _) = uart();
        let cases = [
            (reg::ILPR, 0xff),
            (reg::IBRD, 0xffff),
            (reg::FBRD, 0x3f),
            (reg::LCR_H, 0xff),
            (reg::CR, 0xffff),
            (reg::IFLS, 0x3f),
            (reg::IMSC, 0x7ff),
            (reg::DMACR, 0x7),
        ];
        for (offset, mask) in cases {
            w(&mut u, offset, 0xffff_ffff);
            assert_eq!(r(&mut u, offset), mask, "offset {offset:#x}");
            w(&mut u, offset, 0);
        }
        // Error clear is accepted and status still reads zero.
        w(&mut u, reg::RSR_ECR, 0xff);
        assert_eq!(r(&mut u, reg::RSR_ECR), 0);
        u.reset();
        assert_eq!((r(&mut u, reg::CR), r(&mut u, reg::IFLS)), (0x300, 0x12));
    }

    #[test]
    fn identification_registers() {
        let (mut u, _) = uart();
        let ids: Vec<u64> = (0xfe0..0x1000).step_by(4).map(|o| r(&mut u, o)).collect();
        assert_eq!(ids, [0x11, 0x10, 0x14, 0x00, 0x0d, 0xf0, 0x05, 0xb1]);
        // Linux's AMBA bus reads them as bytes too, and they are read-only.
        assert_eq!(u.read(0xff0, AccessWidth::Byte), 0x0d);
        w(&mut u, 0xfe0, 0);
        assert_eq!(r(&mut u, 0xfe0), 0x11);
    }

    #[test]
    fn receive_fifo_fills_and_drains_in_order() {
        let (mut u, _) = uart();
        w(&mut u, reg::LCR_H, 0x70); // 8 bits, FIFOs enabled
        for i in 0..RX_FIFO_DEPTH as u8 {
            assert_eq!(r(&mut u, reg::FR) as u32 & fr::RXFF, 0);
            assert!(u.push_input(b'a' + i));
            assert_eq!(r(&mut u, reg::FR) as u32 & fr::RXFE, 0);
        }
        assert_eq!(r(&mut u, reg::FR) as u32 & fr::RXFF, fr::RXFF);
        assert!(!u.push_input(b'X'));
        for i in 0..RX_FIFO_DEPTH as u8 {
            assert_eq!(r(&mut u, reg::DR), u64::from(b'a' + i));
        }
        assert_eq!(r(&mut u, reg::FR), 0x90);
        // Reading an empty FIFO gives zero.
        assert_eq!(r(&mut u, reg::DR), 0);
        // The ring wraps.
        for &b in b"xyz" {
            assert!(u.push_input(b));
        }
        assert_eq!([r(&mut u, 0), r(&mut u, 0), r(&mut u, 0)], [120, 121, 122]);
    }

    #[test]
    fn without_fen_the_fifo_holds_one_byte() {
        let (mut u, _) = uart();
        assert!(u.push_input(b'1'));
        assert_eq!(r(&mut u, reg::FR) as u32 & (fr::RXFF | fr::RXFE), fr::RXFF);
        assert!(!u.push_input(b'2'));
        assert_eq!(r(&mut u, reg::DR), u64::from(b'1'));
        assert_eq!(r(&mut u, reg::FR) as u32 & (fr::RXFF | fr::RXFE), fr::RXFE);
    }

    #[test]
    fn interrupts_raise_mask_and_clear() {
        let (mut u, _) = uart();
        w(&mut u, reg::LCR_H, 0x70);
        // Raw status rises while masked; nothing is pending.
        w(&mut u, reg::DR, u64::from(b'a'));
        assert_eq!(r(&mut u, reg::RIS), u64::from(int::TX));
        assert_eq!(r(&mut u, reg::MIS), 0);
        assert!(!u.interrupt_pending());
        // Unmasking TX makes it pending; ICR clears it.
        w(&mut u, reg::IMSC, u64::from(int::TX));
        assert_eq!(r(&mut u, reg::MIS), u64::from(int::TX));
        assert!(u.interrupt_pending());
        w(&mut u, reg::ICR, u64::from(int::TX));
        assert_eq!(r(&mut u, reg::RIS), 0);
        assert!(!u.interrupt_pending());
        // RX rises with input and falls when the FIFO drains.
        w(&mut u, reg::IMSC, u64::from(int::RX | int::TX));
        u.push_input(b'1');
        u.push_input(b'2');
        assert_eq!(r(&mut u, reg::MIS), u64::from(int::RX));
        r(&mut u, reg::DR);
        assert!(u.interrupt_pending());
        r(&mut u, reg::DR);
        assert!(!u.interrupt_pending());
        // ICR clears RX too, and only the bits written as 1.
        u.push_input(b'3');
        w(&mut u, reg::DR, u64::from(b'b'));
        w(&mut u, reg::ICR, u64::from(int::RX));
        assert_eq!(r(&mut u, reg::RIS), u64::from(int::TX));
        w(&mut u, reg::ICR, 0x7ff);
        assert_eq!(r(&mut u, reg::RIS), 0);
        // RIS and MIS are read-only; ICR reads as zero.
        w(&mut u, reg::RIS, 0x7ff);
        w(&mut u, reg::MIS, 0x7ff);
        assert_eq!((r(&mut u, reg::RIS), r(&mut u, reg::ICR)), (0, 0));
    }

    #[test]
    fn odd_accesses_are_harmless() {
        let (mut u, out) = uart();
        // 64-bit accesses read zero and write nothing.
        assert_eq!(u.read(reg::CR, AccessWidth::Double), 0);
        u.write(reg::DR, AccessWidth::Double, u64::from(b'x'));
        u.write(reg::CR, AccessWidth::Double, 0);
        assert_eq!(r(&mut u, reg::CR), 0x300);
        // Unaligned and unknown offsets.
        u.write(reg::DR + 1, AccessWidth::Byte, u64::from(b'y'));
        assert_eq!(u.read(reg::CR + 1, AccessWidth::Byte), 0);
        w(&mut u, 0x100, 0xffff_ffff);
        assert_eq!(r(&mut u, 0x100), 0);
        assert_eq!(r(&mut u, 0xffc_0000), 0);
        assert!(out.lock().unwrap().is_empty());
        // Half-word access to a 16-bit register.
        u.write(reg::IBRD, AccessWidth::Half, 0x1234);
        assert_eq!(u.read(reg::IBRD, AccessWidth::Half), 0x1234);
        assert_eq!(u.read(reg::IBRD, AccessWidth::Byte), 0x34);
    }
}
