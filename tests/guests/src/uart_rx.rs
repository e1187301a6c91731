//! Console input: the PL011's receive interrupt fills a ring that the guest reads.
//!
//! [`enable`] turns on the receiver and its FIFO, asks for the receive interrupt
//! (RXIM: the FIFO reached its trigger level) and the receive timeout interrupt
//! (RTIM: bytes sat in the FIFO below the level), and routes the UART's SPI (INTID
//! 33, level) to the calling CPU. The handler clears both interrupts, then reads DR
//! while FR.RXFE says the FIFO has data and queues the bytes for [`read_byte`]. In
//! that order, a byte that arrives while it drains raises the interrupt again rather
//! than being cleared unseen (QEMU's PL011 raises RX once per arriving byte, and a
//! write to ICR takes it back even if the FIFO still holds data); Linux's
//! `pl011_int` does the same. Register offsets and
//! bits: PL011 TRM (ARM DDI 0183), 3.2 and 3.3; every access is one 32-bit load or
//! store ([`Reg32`]).

use core::sync::atomic::{AtomicU8, AtomicUsize, Ordering};

/// Bytes the ring holds (a power of two).
pub const RING_SIZE: usize = 256;

/// A ring of bytes with one producer (the interrupt handler) and one consumer (the
/// guest's main loop), both on one CPU or on two.
pub struct ByteRing {
    bytes: [AtomicU8; RING_SIZE],
    /// Bytes ever pushed (wrapping); written by the producer only.
    head: AtomicUsize,
    /// Bytes ever popped (wrapping); written by the consumer only.
    tail: AtomicUsize,
}

impl ByteRing {
    /// An empty ring.
    pub const fn new() -> Self {
        Self {
            bytes: [const { AtomicU8::new(0) }; RING_SIZE],
            head: AtomicUsize::new(0),
            tail: AtomicUsize::new(0),
        }
    }

    /// Queues `byte`; false (and the byte is dropped) when the ring is full.
    pub fn push(&self, byte: u8) -> bool {
        let head = self.head.load(Ordering::Relaxed);
        if head.wrapping_sub(self.tail.load(Ordering::Acquire)) == RING_SIZE {
            return false;
        }
        self.bytes[head % RING_SIZE].store(byte, Ordering::Relaxed);
        self.head.store(head.wrapping_add(1), Ordering::Release);
        true
    }

    /// The oldest queued byte, if any.
    pub fn pop(&self) -> Option<u8> {
        let tail = self.tail.load(Ordering::Relaxed);
        if tail == self.head.load(Ordering::Acquire) {
            return None;
        }
        let byte = self.bytes[tail % RING_SIZE].load(Ordering::Relaxed);
        self.tail.store(tail.wrapping_add(1), Ordering::Release);
        Some(byte)
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.tail.load(Ordering::Relaxed) == self.head.load(Ordering::Acquire)
    }
}

impl Default for ByteRing {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(bare_metal)]
pub use self::hw::{dropped, enable, has_input, read_byte, INTID};

#[cfg(bare_metal)]
#[allow(unsafe_code)]
mod hw {
    use core::sync::atomic::{AtomicUsize, Ordering};

    use guest_drivers::mmio::Reg32;
    use platform::qemu_virt::{UART, UART_SPI};

    use super::ByteRing;
    use crate::gic::{self, Trigger};
    use crate::irq;

    /// INTID of the UART's interrupt (SPI 1).
    pub const INTID: u32 = gic::FIRST_SPI + UART_SPI;

    const DR: usize = 0x00;
    const FR: usize = 0x18;
    const LCR_H: usize = 0x2c;
    const CR: usize = 0x30;
    const IFLS: usize = 0x34;
    const IMSC: usize = 0x38;
    const ICR: usize = 0x44;
    /// FR.RXFE: the receive FIFO is empty.
    const FR_RXFE: u32 = 1 << 4;
    /// LCR_H.FEN: the 16-byte FIFOs on (off, the receiver holds one byte).
    const LCR_H_FEN: u32 = 1 << 4;
    /// CR: UARTEN, TXE, RXE.
    const CR_ENABLE_ALL: u32 = (1 << 0) | (1 << 8) | (1 << 9);
    /// IFLS.RXIFLSEL = 0b000: the receive interrupt at 1/8 full (the lowest level).
    const IFLS_RX_MASK: u32 = 0b111 << 3;
    /// Receive (RX, bit 4) and receive timeout (RT, bit 6) interrupts, in IMSC and ICR.
    const INT_RX_RT: u32 = (1 << 4) | (1 << 6);

    static RX: ByteRing = ByteRing::new();
    /// Bytes dropped because the ring was full.
    static DROPPED: AtomicUsize = AtomicUsize::new(0);

    fn reg(offset: usize) -> Reg32 {
        // SAFETY: QEMU virt (and every Sluice guest) has a PL011 at `UART.base`; the
        // offsets are its 32-bit registers, whose access has no effect on memory.
        unsafe { Reg32::new(UART.base as usize + offset) }
    }

    /// Turns on receive interrupts, routed to the calling CPU, and queues what the
    /// receiver already holds. Call after `gic::init_distributor` and
    /// `gic::init_cpu`.
    pub fn enable() {
        let _masked = irq::Masked::new();
        irq::register(INTID, handle_interrupt);
        let lcr_h = reg(LCR_H);
        lcr_h.write(lcr_h.read() | LCR_H_FEN);
        let cr = reg(CR);
        cr.write(cr.read() | CR_ENABLE_ALL);
        let ifls = reg(IFLS);
        ifls.write(ifls.read() & !IFLS_RX_MASK);
        let imsc = reg(IMSC);
        imsc.write(imsc.read() | INT_RX_RT);
        gic::enable_spi(INTID, Trigger::Level);
        // Bytes that came before: their interrupt may be gone (see the module doc).
        drain();
    }

    /// The handler of [`INTID`].
    fn handle_interrupt(_intid: u32) {
        drain();
    }

    /// Clears the receive interrupts, then moves the FIFO's bytes into the ring.
    fn drain() {
        reg(ICR).write(INT_RX_RT);
        let (dr, fr) = (reg(DR), reg(FR));
        while fr.read() & FR_RXFE == 0 {
            // DR bits [11:8] are error flags; the byte is in [7:0].
            if !RX.push(dr.read() as u8) {
                DROPPED.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// The oldest byte received and not read yet.
    pub fn read_byte() -> Option<u8> {
        RX.pop()
    }

    /// Whether a byte is waiting.
    pub fn has_input() -> bool {
        !RX.is_empty()
    }

    /// Bytes lost because the guest did not read them in time.
    pub fn dropped() -> usize {
        DROPPED.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_bytes_in_order_and_refuses_when_full() {
        let ring = ByteRing::new();
        assert!(ring.is_empty() && ring.pop().is_none());
        for round in 0..3u8 {
            for i in 0..RING_SIZE {
                assert!(ring.push(i as u8 ^ round));
            }
            assert!(!ring.push(0xff));
            for i in 0..RING_SIZE {
                assert_eq!(ring.pop(), Some(i as u8 ^ round));
            }
            assert!(ring.is_empty());
        }
    }

    #[test]
    fn one_producer_and_one_consumer_on_two_threads() {
        let ring = std::sync::Arc::new(ByteRing::new());
        let producer = {
            let ring = ring.clone();
            std::thread::spawn(move || {
                for i in 0..100_000u32 {
                    while !ring.push(i as u8) {
                        std::hint::spin_loop();
                    }
                }
            })
        };
        for i in 0..100_000u32 {
            let byte = loop {
                if let Some(b) = ring.pop() {
                    break b;
                }
            };
            assert_eq!(byte, i as u8);
        }
        producer.join().unwrap();
    }
}
