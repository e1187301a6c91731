//! A virtio-console whose other end is another VM's: a channel.
//!
//! Two VMs' console devices are joined by a [`Link`]: what one transmits arrives in
//! the other's receive queue, in order, nothing lost or duplicated. Each end is a
//! [`ChannelPort`] backend (one port, no MULTIPORT), which does nothing on a notify
//! but say that the link has work ([`Link::request`]); the transfer runs outside
//! both devices' accesses, with both devices locked in the link's order, and moves
//! bytes straight from the sender's transmit buffer to the receiver's receive
//! buffer, one copy at EL2, each side's addresses checked in its own VM's memory
//! ([`pass`]).
//!
//! Why there, and not in the sender's notify: a notify holds its own device's lock,
//! and taking the peer's lock inside it would need an order both VMs keep, which a
//! trap on either side can't promise. So the notify only marks the link (one atomic
//! store), and the exit, its device let go, takes the two locks in the link's order
//! (`run::channels`). Neither side's trap waits on the other's lock longer than
//! one transfer, which a [`Budget`] bounds (64 KiB); the rest goes on at later exits.
//!
//! Backpressure, not loss: a transmit buffer is returned only once all its bytes
//! are in the peer's receive buffers; while the peer has none posted (or is not
//! live: booting, reset, off), the sender's buffers stay unreturned and its ring
//! fills, as with a slow serial line. A receive buffer is returned at the end of
//! each transfer that wrote into it. A sender that floods makes Sluice allocate
//! nothing: the link holds no bytes, only the chain being sent.
//!
//! Reset: an end whose driver resets (or whose VM restarts) drops the bytes of the
//! chain it was sending, and counts them ([`ChannelPort::dropped`]); the peer sees
//! nothing but a pause. Without MULTIPORT there is no port-open state to show: a
//! peer that is down holds the sender's data until it is back.

use super::chain::Chain;
use super::queue::{Queue, QueueError};
use super::{device_id, read_config_image, Budget, Progress, VirtioBackend, VirtioMmio};
use crate::guest_log;
use crate::guest_log::Kind;
use crate::mm::guest_memory::GuestMemory;
use alloc::boxed::Box;
use alloc::string::String;
use alloc::sync::Arc;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// The receive queue.
const RECEIVEQ: usize = 0;
/// The transmit queue.
const TRANSMITQ: usize = 1;

/// What joins two console devices in two VMs.
#[derive(Debug)]
pub struct Link {
    name: String,
    /// The two ends as (VM index, virtio slot), in the order their devices are
    /// locked (ascending).
    ends: [(usize, usize); 2],
    /// A transfer is due: a driver notified, went live or reset, or a transfer's
    /// budget ran out.
    due: AtomicBool,
    /// Bytes moved so far, each way (from `ends[0]`, from `ends[1]`).
    moved: [AtomicU64; 2],
}

impl Link {
    /// The link `name` between the devices at `a` and `b` ((VM, slot) each).
    pub fn new(name: &str, a: (usize, usize), b: (usize, usize)) -> Self {
        let ends = if a <= b { [a, b] } else { [b, a] };
        Self { name: String::from(name), ends, due: AtomicBool::new(false), moved: Default::default() }
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The two ends, (VM index, slot), in lock order.
    pub fn ends(&self) -> [(usize, usize); 2] {
        self.ends
    }

    /// Marks a transfer due.
    pub fn request(&self) {
        self.due.store(true, Ordering::Release);
    }

    /// Whether a transfer is due.
    #[inline]
    pub fn is_due(&self) -> bool {
        self.due.load(Ordering::Relaxed)
    }

    /// Takes the due mark: true if a transfer was due (and is now the caller's).
    pub fn take_due(&self) -> bool {
        self.due.swap(false, Ordering::AcqRel)
    }

    /// Bytes moved so far from end `from` (0 or 1) to the other.
    pub fn moved(&self, from: usize) -> u64 {
        self.moved[from].load(Ordering::Relaxed)
    }

    /// Moves bytes both ways between the devices of its ends (`first` is
    /// `ends[0]`'s), within `budget`; marks the link due again if work is left.
    pub fn transfer(&self, first: &mut VirtioMmio, second: &mut VirtioMmio, budget: &mut Budget) {
        let forth = pass_between(first, second, budget);
        let back = pass_between(second, first, budget);
        self.moved[0].fetch_add(forth.bytes, Ordering::Relaxed);
        self.moved[1].fetch_add(back.bytes, Ordering::Relaxed);
        if forth.progress == Progress::More || back.progress == Progress::More {
            self.request();
        }
    }
}

/// The state of one end that lasts from one transfer to the next.
pub struct PortState {
    /// The transmit chain being sent, and how many of its bytes went, if the last
    /// transfer stopped in the middle of it.
    sending: Box<Chain>,
    sent: Option<u64>,
    /// The receive chain being filled (scratch: each transfer returns it).
    receiving: Box<Chain>,
}

/// One end of a [`Link`]: a virtio-console device with one port.
pub struct ChannelPort {
    link: Arc<Link>,
    state: PortState,
    /// Bytes dropped at resets (the rest of the chain being sent).
    dropped: u64,
}

impl ChannelPort {
    /// An end of `link`.
    pub fn new(link: Arc<Link>) -> Self {
        Self {
            link,
            state: PortState {
                sending: Box::new(Chain::new(0)),
                sent: None,
                receiving: Box::new(Chain::new(0)),
            },
            dropped: 0,
        }
    }

    /// Bytes this end's driver queued that a reset dropped.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }
}

impl VirtioBackend for ChannelPort {
    fn name(&self) -> &str {
        "virtio-console channel"
    }

    fn device_id(&self) -> u32 {
        device_id::CONSOLE
    }

    fn features(&self) -> u64 {
        0
    }

    fn queue_count(&self) -> usize {
        2
    }

    /// cols and rows 0, max_nr_ports 1, emerg_wr 0 (none of them offered).
    fn read_config(&self, offset: u64, data: &mut [u8]) {
        let mut c = [0u8; 12];
        c[4..8].copy_from_slice(&1u32.to_le_bytes());
        read_config_image(&c, offset, data);
    }

    fn write_config(&mut self, _offset: u64, _data: &[u8]) {}

    fn activate(&mut self, _features: u64) {
        self.link.request();
    }

    fn reset(&mut self) {
        if let Some(sent) = self.state.sent.take() {
            let lost = self.state.sending.readable_len().saturating_sub(sent);
            self.dropped += lost;
            guest_log!(
                Kind::Virtio,
                Info,
                "channel \"{}\": reset with {lost} bytes not yet delivered; they are dropped ({} so far)",
                self.link.name(),
                self.dropped
            );
        }
        self.link.request();
    }

    fn process_queue(
        &mut self,
        _index: usize,
        _queues: &mut [Queue],
        _mem: &GuestMemory,
    ) -> Result<Progress, QueueError> {
        self.link.request();
        Ok(Progress::Done)
    }

    fn is_channel(&self) -> bool {
        true
    }

    fn port(&mut self) -> Option<&mut PortState> {
        Some(&mut self.state)
    }
}

/// One end of a transfer: a live channel device's queues, memory and state.
pub struct Port<'a> {
    /// Its queues (receive, transmit).
    pub queues: &'a mut [Queue],
    /// Its VM's memory.
    pub mem: &'a GuestMemory,
    /// What lasts between transfers.
    pub state: &'a mut PortState,
}

/// What one direction of a transfer did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Passed {
    /// Bytes moved.
    pub bytes: u64,
    /// Whether the sender's queue is empty ([`Progress::Done`]), the budget ran out
    /// ([`Progress::More`]) or the receiver has no buffer posted
    /// ([`Progress::Waiting`]: its next post makes the link due again).
    pub progress: Progress,
}

/// Moves what `tx`'s driver queued into `rx`'s receive buffers, when both devices
/// are live channel ends; each device then raises the interrupts its queues ask for,
/// or, on a driver error in its rings, needs a reset (the other goes on).
pub fn pass_between(tx: &mut VirtioMmio, rx: &mut VirtioMmio, budget: &mut Budget) -> Passed {
    let outcome = match (tx.port(), rx.port()) {
        (Some(mut t), Some(mut r)) => pass(&mut t, &mut r, budget),
        _ => return Passed { bytes: 0, progress: Progress::Waiting },
    };
    tx.after_port(outcome.tx);
    rx.after_port(outcome.rx);
    outcome.passed
}

/// What [`pass`] did, and each side's driver error if it met one.
pub struct PassOutcome {
    /// The bytes and progress.
    pub passed: Passed,
    /// The sender's rings.
    pub tx: Result<(), QueueError>,
    /// The receiver's rings.
    pub rx: Result<(), QueueError>,
}

/// Moves bytes from `tx`'s transmit chains into `rx`'s receive chains, in order,
/// within `budget`: each transmit chain is returned (length 0) once all of it went,
/// each receive chain at the end with the bytes written. A receive chain is taken
/// only when there is something to write into it.
pub fn pass(tx: &mut Port<'_>, rx: &mut Port<'_>, budget: &mut Budget) -> PassOutcome {
    let mut bytes = 0;
    let mut filled: Option<u64> = None;
    let mut tx_result = Ok(());
    let mut rx_result = Ok(());
    let progress = loop {
        // The chain to send: the one in progress, or the next.
        let sent = match tx.state.sent {
            Some(sent) => sent,
            None => {
                if !budget.take_chain() {
                    break Progress::More;
                }
                match tx.queues[TRANSMITQ].pop_into(tx.mem, &mut tx.state.sending) {
                    Ok(true) => *tx.state.sent.insert(0),
                    Ok(false) => break Progress::Done,
                    Err(e) => {
                        tx_result = Err(e);
                        break Progress::Done;
                    }
                }
            }
        };
        let left = tx.state.sending.readable_len() - sent;
        if left == 0 {
            tx.state.sent = None;
            if let Err(e) = tx.queues[TRANSMITQ].push_used(tx.mem, tx.state.sending.head(), 0) {
                tx_result = Err(e);
                break Progress::Done;
            }
            continue;
        }
        if budget.bytes_left() == 0 {
            break Progress::More;
        }
        // The buffer to fill: the one in progress, or the next the receiver posted.
        let at = match filled {
            Some(at) => at,
            None => match rx.queues[RECEIVEQ].pop_into(rx.mem, &mut rx.state.receiving) {
                Ok(true) => *filled.insert(0),
                Ok(false) => break Progress::Waiting,
                Err(e) => {
                    rx_result = Err(e);
                    break Progress::Waiting;
                }
            },
        };
        let room = rx.state.receiving.writable_len() - at;
        let n = left.min(room).min(budget.bytes_left());
        if n > 0 {
            let mut reader = tx.state.sending.reader();
            reader.skip(sent);
            let mut writer = rx.state.receiving.writer();
            writer.skip(at);
            let copied =
                reader.each_span(n, |src, _, len| writer.write_from(rx.mem, tx.mem, src, len).map(|_| ()));
            if let Err(e) = copied {
                // Chains are checked when popped: only a VM whose memory changed since.
                tx_result = Err(e.into());
                break Progress::Done;
            }
            tx.state.sent = Some(sent + n);
            filled = Some(at + n);
            bytes += n;
            budget.spend_bytes(n);
        }
        if n == room {
            // Full (or a receive chain with no room at all): return it.
            if let Err(e) = return_filled(rx, &mut filled) {
                rx_result = Err(e);
                break Progress::Waiting;
            }
        }
    };
    if rx_result.is_ok() {
        rx_result = return_filled(rx, &mut filled);
    }
    PassOutcome { passed: Passed { bytes, progress }, tx: tx_result, rx: rx_result }
}

/// Returns the receive chain being filled, if any, with the bytes written.
fn return_filled(rx: &mut Port<'_>, filled: &mut Option<u64>) -> Result<(), QueueError> {
    match filled.take() {
        // A chain's writable length fits a u32 many times over 256 buffers; saturate.
        Some(len) => rx.queues[RECEIVEQ].push_used(
            rx.mem,
            rx.state.receiving.head(),
            u32::try_from(len).unwrap_or(u32::MAX),
        ),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests;
