//! virtio-console driver (virtio 1.2 §5.3), single port: blocking `write` on the
//! transmit queue, non-blocking `try_write` and `read`, and the emergency write.
//!
//! The receive buffers are the driver's own DMA memory ([`RX_BUFFERS`] buffers of
//! [`RX_BUFFER_SIZE`] bytes), posted at initialisation; `read` copies out of a filled
//! buffer and posts it again once it is empty. `write` hands the device the caller's
//! bytes and waits for them; `try_write` copies them into one of [`TX_BUFFERS`]
//! transmit buffers of its own and returns at once, or takes nothing when all are
//! with the device (the device is slower than the writer: its ring is full).
//!
//! DMA memory: 6 pages (two 32-entry rings of 2 pages, the receive buffers 1, the
//! transmit buffers 1).
//! Indirect tables are not used: every chain here is a single buffer.
#![allow(unsafe_code)]

pub mod spec;

use crate::dma::DmaRegion;
use crate::error::{Error, Result};
use crate::features;
use crate::hal::Hal;
use crate::init;
use crate::queue::{QueueOptions, Segment, VirtQueue};
use crate::transport::{device_id, DeviceStatus, Transport};
use spec::*;

/// Entries of each queue (at most; the device may offer fewer).
pub const QUEUE_SIZE: usize = 32;
/// Receive buffers the driver keeps posted (fewer if the queue is smaller).
pub const RX_BUFFERS: usize = 16;
/// Bytes of each receive buffer.
pub const RX_BUFFER_SIZE: usize = 256;
/// Transmit buffers `try_write` copies into (fewer if the queue is smaller).
pub const TX_BUFFERS: usize = 16;
/// Bytes of each transmit buffer.
pub const TX_BUFFER_SIZE: usize = 256;
/// The transmit token of `write`'s own buffer (a `try_write` buffer's is its index).
const CALLER_BUFFER: u16 = u16::MAX;
/// How many empty polls a blocking write makes between reads of the device status.
const STATUS_POLL_INTERVAL: u32 = 1024;

/// The features this driver accepts when offered.
pub const SUPPORTED_FEATURES: u64 =
    F_SIZE | F_EMERG_WRITE | features::RING_EVENT_IDX | features::RING_INDIRECT_DESC | features::VERSION_1;

/// A received buffer being read: which, how many bytes it holds, how many are read.
#[derive(Debug, Clone, Copy)]
struct Pending {
    index: u16,
    len: usize,
    pos: usize,
}

/// A virtio console device (port 0).
pub struct VirtioConsole<H: Hal + Clone, T: Transport> {
    transport: T,
    rx: VirtQueue<H, u16, QUEUE_SIZE>,
    tx: VirtQueue<H, u16, QUEUE_SIZE>,
    rx_buffers: DmaRegion,
    tx_buffers: DmaRegion,
    /// The transmit buffers not with the device (a bit each).
    tx_free: u32,
    current: Option<Pending>,
    features: u64,
    broken: bool,
}

impl<H: Hal + Clone, T: Transport> VirtioConsole<H, T> {
    /// Initialises the console behind `transport` (§3.1.1): reset, features
    /// ([`SUPPORTED_FEATURES`] as offered), receive queue 0 filled with buffers,
    /// transmit queue 1, DRIVER_OK.
    ///
    /// # Errors
    ///
    /// As for [`crate::blk::VirtioBlk::new`].
    pub fn new(mut transport: T, hal: H) -> Result<Self> {
        init::expect_device(&transport, device_id::CONSOLE)?;
        let features = init::negotiate(&mut transport, SUPPORTED_FEATURES)?;
        let options = QueueOptions::from_features(features, 0);
        // SAFETY: dropped only after a reset, in `Drop` or on the error paths below
        // (`abandon` resets before the queues go out of scope).
        let rx = match unsafe { VirtQueue::new(&mut transport, hal.clone(), RECEIVEQ, options) } {
            Ok(queue) => queue,
            Err(e) => {
                init::abandon(&mut transport);
                return Err(e);
            }
        };
        // SAFETY: as above.
        let tx = match unsafe { VirtQueue::new(&mut transport, hal, TRANSMITQ, options) } {
            Ok(queue) => queue,
            Err(e) => {
                init::abandon(&mut transport);
                return Err(e);
            }
        };
        let rx_buffers = match DmaRegion::alloc(rx.hal(), RX_BUFFERS * RX_BUFFER_SIZE) {
            Ok(region) => region,
            Err(e) => {
                init::abandon(&mut transport);
                return Err(e);
            }
        };
        let tx_buffers = match DmaRegion::alloc(rx.hal(), TX_BUFFERS * TX_BUFFER_SIZE) {
            Ok(region) => region,
            Err(e) => {
                init::abandon(&mut transport);
                // SAFETY: the device is reset; nothing else holds the receive buffers.
                unsafe { rx_buffers.free(rx.hal()) };
                return Err(e);
            }
        };
        let tx_free = (1u32 << TX_BUFFERS.min(usize::from(tx.size()))) - 1;
        let mut console = Self {
            transport,
            rx,
            tx,
            rx_buffers,
            tx_buffers,
            tx_free,
            current: None,
            features,
            broken: false,
        };
        let posted = RX_BUFFERS.min(usize::from(console.rx.size()));
        for index in 0..posted as u16 {
            if let Err(e) = console.post(index) {
                console.break_device();
                return Err(e);
            }
        }
        init::driver_ok(&mut console.transport);
        // §3.1.1: the device may not be notified before DRIVER_OK.
        console.rx.kick(&mut console.transport);
        Ok(console)
    }

    /// The negotiated features.
    pub fn features(&self) -> u64 {
        self.features
    }

    /// The console's (columns, rows), when the device gives them (VIRTIO_CONSOLE_F_SIZE).
    pub fn size(&self) -> Option<(u16, u16)> {
        (self.features & F_SIZE != 0).then(|| {
            (self.transport.read_config_u16(CONFIG_COLS), self.transport.read_config_u16(CONFIG_ROWS))
        })
    }

    /// The transport, for interrupt handling and inspection.
    pub fn transport(&self) -> &T {
        &self.transport
    }

    /// Sends `data` and waits until the device has taken it.
    ///
    /// # Errors
    ///
    /// [`Error::Broken`]; [`Error::BadUsedId`] / [`Error::BadUsedIndex`] /
    /// [`Error::DeviceNeedsReset`], after which the device is reset and the driver
    /// broken.
    pub fn write(&mut self, data: &[u8]) -> Result {
        if self.broken {
            return Err(Error::Broken);
        }
        for chunk in data.chunks(u32::MAX as usize) {
            // SAFETY: the loop below returns only once the device has given the
            // buffer back or has been reset, so `chunk` outlives its use.
            unsafe { self.tx.add_buf(&[chunk], &mut [], CALLER_BUFFER) }?;
            self.tx.kick(&mut self.transport);
            let mut polls = 0u32;
            loop {
                match self.tx.get_buf() {
                    Ok(Some(used)) if used.token == CALLER_BUFFER => break,
                    Ok(Some(used)) => self.tx_free |= 1 << used.token,
                    Ok(None) => {}
                    Err(e) => {
                        self.break_device();
                        return Err(e);
                    }
                }
                polls = polls.wrapping_add(1);
                if polls.is_multiple_of(STATUS_POLL_INTERVAL)
                    && self.transport.status().contains(DeviceStatus::DEVICE_NEEDS_RESET)
                {
                    self.break_device();
                    return Err(Error::DeviceNeedsReset);
                }
                crate::relax::relax();
            }
        }
        Ok(())
    }

    /// Sends the first bytes of `data` without waiting: copies up to
    /// [`TX_BUFFER_SIZE`] of them into a free transmit buffer of the driver's and
    /// hands it to the device; returns how many (0 when every buffer is still with
    /// the device, i.e. its ring is full, or when `data` is empty).
    ///
    /// # Errors
    ///
    /// As for [`Self::write`].
    pub fn try_write(&mut self, data: &[u8]) -> Result<usize> {
        if self.broken {
            return Err(Error::Broken);
        }
        loop {
            match self.tx.get_buf() {
                Ok(Some(used)) if used.token != CALLER_BUFFER => self.tx_free |= 1 << used.token,
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(e) => {
                    self.break_device();
                    return Err(e);
                }
            }
        }
        if data.is_empty() || self.tx_free == 0 {
            return Ok(0);
        }
        let index = self.tx_free.trailing_zeros() as u16;
        let n = data.len().min(TX_BUFFER_SIZE);
        let at = usize::from(index) * TX_BUFFER_SIZE;
        self.tx_buffers.write_bytes(at, &data[..n]);
        let seg = Segment { addr: self.tx_buffers.paddr(at), len: n as u32, device_writable: false };
        // SAFETY: the buffer is the driver's own DMA memory, freed only after the
        // device is reset (in `Drop`), and not written again until the device returns it.
        unsafe { self.tx.add_segments(&[seg], index) }?;
        self.tx_free &= !(1 << index);
        self.tx.kick(&mut self.transport);
        Ok(n)
    }

    /// Whether every `try_write` buffer is back from the device (all it was given went).
    pub fn tx_idle(&mut self) -> bool {
        self.try_write(&[]).is_ok()
            && self.tx_free.count_ones() as usize == TX_BUFFERS.min(usize::from(self.tx.size()))
    }

    /// Copies received bytes into `buf` without waiting; returns how many (0 when
    /// none arrived). Emptied receive buffers are posted again.
    ///
    /// # Errors
    ///
    /// [`Error::Broken`]; [`Error::BadUsedId`] / [`Error::BadUsedIndex`], after which
    /// the device is reset and the driver broken.
    pub fn read(&mut self, buf: &mut [u8]) -> Result<usize> {
        if self.broken {
            return Err(Error::Broken);
        }
        let mut done = 0;
        let mut reposted = false;
        while done < buf.len() {
            let mut pending = match self.current.take() {
                Some(pending) => pending,
                None => match self.rx.get_buf() {
                    Ok(Some(used)) => Pending {
                        index: used.token,
                        // Never trust the device beyond the buffer's real size.
                        len: (used.len as usize).min(RX_BUFFER_SIZE),
                        pos: 0,
                    },
                    Ok(None) => break,
                    Err(e) => {
                        self.break_device();
                        return Err(e);
                    }
                },
            };
            let n = (pending.len - pending.pos).min(buf.len() - done);
            let at = usize::from(pending.index) * RX_BUFFER_SIZE + pending.pos;
            self.rx_buffers.read_bytes(at, &mut buf[done..done + n]);
            done += n;
            pending.pos += n;
            if pending.pos == pending.len {
                self.post(pending.index)?;
                reposted = true;
            } else {
                self.current = Some(pending);
            }
        }
        if reposted {
            self.rx.kick(&mut self.transport);
        }
        Ok(done)
    }

    /// Whether received bytes are waiting for `read`.
    pub fn has_input(&self) -> bool {
        self.current.is_some() || self.rx.has_used()
    }

    /// Prints `byte` through the `emerg_wr` configuration field: no queue, no
    /// interrupt, usable before the queues or after they broke.
    ///
    /// # Errors
    ///
    /// [`Error::Unsupported`] unless VIRTIO_CONSOLE_F_EMERG_WRITE was negotiated.
    pub fn emergency_write(&mut self, byte: u8) -> Result {
        if self.features & F_EMERG_WRITE == 0 {
            return Err(Error::Unsupported);
        }
        self.transport.write_config_u32(CONFIG_EMERG_WR, u32::from(byte));
        Ok(())
    }

    /// Reads and acknowledges the interrupt status (see
    /// [`crate::transport::interrupt`]).
    pub fn ack_interrupt(&mut self) -> u32 {
        self.transport.take_interrupt()
    }

    /// Asks for an interrupt when input arrives. Returns false when input is already
    /// waiting: read it instead of waiting for an interrupt.
    pub fn enable_rx_interrupts(&mut self) -> bool {
        self.rx.enable_cb() && self.current.is_none()
    }

    /// Asks the device not to interrupt on input (a hint).
    pub fn disable_rx_interrupts(&mut self) {
        self.rx.disable_cb();
    }

    /// Posts receive buffer `index` (its token is its index).
    fn post(&mut self, index: u16) -> Result {
        let seg = Segment {
            addr: self.rx_buffers.paddr(usize::from(index) * RX_BUFFER_SIZE),
            len: RX_BUFFER_SIZE as u32,
            device_writable: true,
        };
        // SAFETY: the buffer is the driver's own DMA memory, freed only after the
        // device is reset (in `Drop`), and not read until the device returns it.
        unsafe { self.rx.add_segments(&[seg], index) }.map(|_| ())
    }

    /// After a fatal error: resets the device and refuses further I/O.
    fn break_device(&mut self) {
        self.broken = true;
        self.current = None;
        init::abandon(&mut self.transport);
    }
}

impl<H: Hal + Clone, T: Transport> Drop for VirtioConsole<H, T> {
    fn drop(&mut self) {
        // Stop the device before the queues and receive buffers are freed.
        let _ = self.transport.reset();
        // SAFETY: the device is reset; the buffers came from the receive queue's HAL
        // and are not used again.
        unsafe {
            self.rx_buffers.free(self.rx.hal());
            self.tx_buffers.free(self.rx.hal());
        }
    }
}

#[cfg(test)]
mod tests;
