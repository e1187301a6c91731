//! virtio-console (virtio 1.2 §5.3): one port, no MULTIPORT.
//!
//! Queue 0 (receiveq) carries input to the guest, queue 1 (transmitq) output from it.
//! Output goes to the [`BoxedConsole`] given at construction (the console
//! multiplexer), a chain at a time, as soon as the driver notifies, within a
//! [`Budget`] per call and the VM's share of the console: a chain longer than either
//! allows is sent over several calls (the chain being sent is kept, with how much of
//! it went), and its buffer is returned only once all of it went. Nothing a driver
//! queued is dropped; a driver that sends faster than its share waits. EMERG_WRITE is
//! offered: a write to `emerg_wr` (configuration offset 8) sends its low byte at once,
//! whatever the device's state (§5.3.6: the driver may use it before setting up
//! anything).
//!
//! Input is pushed by the host side ([`VirtioBackend::input`], reached through
//! `VirtioMmio::input`) into a bounded buffer of [`INPUT_CAPACITY`] bytes, and moves
//! from there into receive buffers as the driver posts them (on its notify, or at
//! once if buffers are waiting). Bytes that find the buffer full are dropped and
//! counted ([`VirtioBackend::input_dropped`]); the caller keeps nothing. A reset of
//! the device empties the buffer (the driver that comes next starts from a clean
//! line).

use super::chain::Chain;
use super::queue::{Queue, QueueError};
use super::{device_id, read_config_image, Budget, Progress, VirtioBackend};
use crate::console::ring::ByteRing;
use crate::console::BoxedConsole;
use crate::mm::guest_memory::GuestMemory;
use alloc::boxed::Box;

/// Feature bits (§5.3.3).
pub mod feature {
    /// `cols` and `rows` are valid (not offered).
    pub const SIZE: u64 = 1 << 0;
    /// Several ports and the control queues (not offered).
    pub const MULTIPORT: u64 = 1 << 1;
    /// `emerg_wr` is supported.
    pub const EMERG_WRITE: u64 = 1 << 2;
}

/// Bytes of input held until the driver posts receive buffers.
pub const INPUT_CAPACITY: usize = 4096;

/// The receive queue.
const RECEIVEQ: usize = 0;
/// The transmit queue.
const TRANSMITQ: usize = 1;

/// Offsets in `struct virtio_console_config` (§5.3.4): cols (u16), rows (u16),
/// max_nr_ports (u32), emerg_wr (u32).
mod config {
    pub const MAX_NR_PORTS: usize = 4;
    pub const EMERG_WR: u64 = 8;
    pub const LEN: usize = 12;
}

/// A virtio console with one port.
pub struct Console {
    out: BoxedConsole,
    held: ByteRing<INPUT_CAPACITY>,
    dropped: u64,
    /// The receive chain being filled (see [`Chain::new`]: made once, reused).
    receiving: Box<Chain>,
    /// The transmit chain being sent, and how many of its bytes were, if a call's
    /// budget ran out in the middle of it.
    sending: Box<Chain>,
    sent: Option<u64>,
    /// Where transmitted bytes pass on their way to the console (a field, so a
    /// one-byte write does not clear 256 bytes of stack first).
    bounce: [u8; 256],
}

impl Console {
    /// A console whose output goes to `out`.
    pub fn new(out: BoxedConsole) -> Self {
        Self {
            out,
            held: ByteRing::new(),
            dropped: 0,
            receiving: Box::new(Chain::new(0)),
            sending: Box::new(Chain::new(0)),
            sent: None,
            bounce: [0; 256],
        }
    }

    /// Moves held input into posted receive buffers, a chain at a time.
    fn deliver(&mut self, q: &mut Queue, mem: &GuestMemory) -> Result<(), QueueError> {
        while !self.held.is_empty() {
            if !q.pop_into(mem, &mut self.receiving)? {
                break;
            }
            let chain = &self.receiving;
            let mut writer = chain.writer();
            let mut written = 0;
            loop {
                let front = self.held.front();
                if front.is_empty() {
                    break;
                }
                let n = writer.write(mem, front)?;
                let full = n < front.len();
                self.held.consume(n);
                written += n;
                if full {
                    break;
                }
            }
            // At most the chain's writable length, which a queue bounds well below 4 GiB
            // times 256; saturate anyway.
            q.push_used(mem, chain.head(), u32::try_from(written).unwrap_or(u32::MAX))?;
        }
        Ok(())
    }

    /// Sends the chains the driver queued for transmission to the console, the
    /// partly sent one first, within one budget.
    fn transmit(&mut self, q: &mut Queue, mem: &GuestMemory) -> Result<Progress, QueueError> {
        let mut budget = Budget::per_call();
        loop {
            let sent = match self.sent.as_mut() {
                Some(sent) => sent,
                None => {
                    if !budget.take_chain() {
                        return Ok(Progress::More);
                    }
                    if !q.pop_into(mem, &mut self.sending)? {
                        return Ok(Progress::Done);
                    }
                    self.sent.insert(0)
                }
            };
            let mut reader = self.sending.reader();
            reader.skip(*sent);
            loop {
                let room = self.bounce.len().min(usize::try_from(budget.bytes_left()).unwrap_or(usize::MAX));
                if room == 0 {
                    return Ok(Progress::More);
                }
                let n = reader.read(mem, &mut self.bounce[..room])?;
                if n == 0 {
                    break;
                }
                // The console takes what the VM's share allows; the rest waits in
                // the guest's buffer for a later call.
                let taken = self.out.offer(&self.bounce[..n]);
                *sent += taken as u64;
                budget.spend_bytes(n as u64);
                if taken < n {
                    return Ok(Progress::Waiting);
                }
            }
            self.sent = None;
            q.push_used(mem, self.sending.head(), 0)?;
        }
    }
}

impl VirtioBackend for Console {
    fn name(&self) -> &str {
        "virtio-console"
    }

    fn device_id(&self) -> u32 {
        device_id::CONSOLE
    }

    fn features(&self) -> u64 {
        feature::EMERG_WRITE
    }

    fn queue_count(&self) -> usize {
        2
    }

    /// cols and rows 0 (SIZE is not offered), max_nr_ports 1, emerg_wr reads 0.
    fn read_config(&self, offset: u64, data: &mut [u8]) {
        let mut c = [0u8; config::LEN];
        c[config::MAX_NR_PORTS..config::MAX_NR_PORTS + 4].copy_from_slice(&1u32.to_le_bytes());
        read_config_image(&c, offset, data);
    }

    /// A write that covers `emerg_wr`'s first byte sends that byte.
    fn write_config(&mut self, offset: u64, data: &[u8]) {
        if let Some(&byte) = config::EMERG_WR.checked_sub(offset).and_then(|i| data.get(i as usize)) {
            self.out.write(&[byte]);
        }
    }

    fn activate(&mut self, _features: u64) {}

    fn reset(&mut self) {
        self.held.clear();
        self.sent = None;
    }

    fn process_queue(
        &mut self,
        index: usize,
        queues: &mut [Queue],
        mem: &GuestMemory,
    ) -> Result<Progress, QueueError> {
        match (index, queues.get_mut(index)) {
            (RECEIVEQ, Some(q)) => self.deliver(q, mem).map(|()| Progress::Done),
            (TRANSMITQ, Some(q)) => self.transmit(q, mem),
            _ => Ok(Progress::Done),
        }
    }

    fn poll(&mut self, queues: &mut [Queue], mem: &GuestMemory) -> Result<(), QueueError> {
        match queues.get_mut(RECEIVEQ) {
            Some(q) if q.ready() => self.deliver(q, mem),
            _ => Ok(()),
        }
    }

    fn input(&mut self, bytes: &[u8]) -> usize {
        let taken = bytes.iter().take_while(|&&b| self.held.push(b)).count();
        self.dropped += (bytes.len() - taken) as u64;
        taken
    }

    fn input_dropped(&self) -> u64 {
        self.dropped
    }
}

#[cfg(test)]
mod tests;
