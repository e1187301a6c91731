//! virtio devices over the MMIO transport (virtio 1.2, OASIS committee specification).
//!
//! A device is two halves: [`VirtioMmio`] ([`mmio`]) is the transport, the register
//! block of one virtio-mmio slot with the driver-status state machine, feature
//! negotiation, queue setup and the interrupt status; a [`VirtioBackend`] is the
//! device type behind it ([`blk::Blk`], [`console::Console`]), which sees only its
//! configuration space and its queues. Queues ([`queue::Queue`]) are the device side
//! of split virtqueues (§2.7) and reach guest RAM only through [`GuestMemory`]; a
//! popped descriptor chain is a [`chain::Chain`].
//!
//! Everything here is pure logic, tested on the host with a small hand-written driver
//! (`testing`, test builds only). Once a device is set up, the notify path
//! (QueueNotify, [`VirtioBackend::process_queue`], the used ring, the interrupt
//! decision) allocates nothing.

pub mod blk;
pub mod budget;
pub mod chain;
pub mod channel;
pub mod console;
pub mod mmio;
pub mod queue;
pub mod queue_error;
#[cfg(test)]
pub(crate) mod testing;

pub use budget::{Budget, Progress};
pub use chain::{Buffer, Chain};
pub use mmio::VirtioMmio;
pub use queue::{Queue, QueueError};

use crate::mm::guest_memory::GuestMemory;

/// Device IDs (virtio 1.2 §5).
pub mod device_id {
    /// Block device (§5.2).
    pub const BLOCK: u32 = 2;
    /// Console (§5.3).
    pub const CONSOLE: u32 = 3;
}

/// Reserved feature bits that the transport offers (virtio 1.2 §6).
pub mod transport_features {
    /// VIRTIO_F_RING_INDIRECT_DESC: indirect descriptor tables (§2.7.5.3).
    pub const RING_INDIRECT_DESC: u64 = 1 << 28;
    /// VIRTIO_F_RING_EVENT_IDX: `used_event` and `avail_event` (§2.7.7, §2.7.10).
    pub const RING_EVENT_IDX: u64 = 1 << 29;
    /// VIRTIO_F_VERSION_1: compliance with virtio 1.x (modern devices only).
    pub const VERSION_1: u64 = 1 << 32;
    /// Feature bits 24 to 41 belong to the transport (§6); a backend offers none.
    pub const RESERVED: u64 = ((1 << 42) - 1) & !((1 << 24) - 1);
}

/// Device status bits (virtio 1.2 §2.1).
pub mod status {
    /// The guest found the device.
    pub const ACKNOWLEDGE: u8 = 1;
    /// The guest knows how to drive it.
    pub const DRIVER: u8 = 2;
    /// The driver is set up and ready to drive the device.
    pub const DRIVER_OK: u8 = 4;
    /// Feature negotiation is complete.
    pub const FEATURES_OK: u8 = 8;
    /// The device hit an error the driver must reset it from.
    pub const DEVICE_NEEDS_RESET: u8 = 0x40;
    /// The driver gave up on the device.
    pub const FAILED: u8 = 0x80;
}

/// InterruptStatus bits (virtio 1.2 §4.2.2).
pub mod interrupt {
    /// Used Buffer Notification: a queue's used ring advanced.
    pub const USED_BUFFER: u32 = 1;
    /// Configuration Change Notification (also sent with DEVICE_NEEDS_RESET).
    pub const CONFIG_CHANGE: u32 = 2;
}

/// Largest queue a device offers (QueueNumMax); chains and indirect tables are
/// bounded by the queue size, so by this too.
pub const MAX_QUEUE_SIZE: u16 = 256;

/// VendorID that Sluice's devices report: "SLCE" in little-endian ASCII, as QEMU
/// reports "QEMU" (0x554d4551). Drivers match on DeviceID, not on this.
pub const VENDOR_ID: u32 = u32::from_le_bytes(*b"SLCE");

/// A device type behind a [`VirtioMmio`] transport.
///
/// The transport calls the backend only with its own state settled: queue processing
/// only while the driver has set DRIVER_OK (and not FAILED, and no
/// DEVICE_NEEDS_RESET is pending), and only for queues the driver made ready. An
/// `Err` from a processing call is a driver error the device cannot recover from: the
/// transport sets DEVICE_NEEDS_RESET and stops calling until the driver resets it.
pub trait VirtioBackend: Send {
    /// Short name for logs ("virtio-blk").
    fn name(&self) -> &str;

    /// Device ID (virtio 1.2 §5).
    fn device_id(&self) -> u32;

    /// Device-specific feature bits offered (bits outside 24..=41; the transport adds
    /// its own).
    fn features(&self) -> u64;

    /// Number of virtqueues.
    fn queue_count(&self) -> usize;

    /// Fills `data` with the configuration space bytes at `offset`; bytes past the
    /// end of the configuration space read as zero.
    fn read_config(&self, offset: u64, data: &mut [u8]);

    /// A driver write of `data` to the configuration space at `offset`; read-only
    /// and nonexistent bytes ignore it.
    fn write_config(&mut self, offset: u64, data: &[u8]);

    /// The driver set DRIVER_OK having accepted `features` (transport bits included).
    fn activate(&mut self, features: u64);

    /// The driver reset the device: back to the state it had when built (what it
    /// emulates, such as a disk's contents, is not device state and stays).
    fn reset(&mut self);

    /// The driver notified queue `index` (which is ready), or an earlier call ran
    /// out of its [`Budget`]: consume what the driver made available, pushing
    /// completions to the used ring, within one [`Budget::per_call`]; say
    /// [`Progress::More`] if work is left.
    ///
    /// # Errors
    ///
    /// A [`QueueError`] for driver input the device cannot go on from.
    fn process_queue(
        &mut self,
        index: usize,
        queues: &mut [Queue],
        mem: &GuestMemory,
    ) -> Result<Progress, QueueError>;

    /// Does work that waits on something other than a notification (held input),
    /// once the device is live: at DRIVER_OK and after [`input`](Self::input).
    ///
    /// # Errors
    ///
    /// As for [`process_queue`](Self::process_queue).
    fn poll(&mut self, _queues: &mut [Queue], _mem: &GuestMemory) -> Result<(), QueueError> {
        Ok(())
    }

    /// Takes input from the host side (console keystrokes); returns how many of
    /// `bytes` were taken. Devices without input take none.
    fn input(&mut self, _bytes: &[u8]) -> usize {
        0
    }

    /// The host device behind the backend interrupted (a backend that drives one:
    /// `blk::host`). `live`: the guest's device is live, so its queues may be used.
    fn host_interrupt(
        &mut self,
        _queues: &mut [Queue],
        _mem: &GuestMemory,
        _live: bool,
    ) -> Result<(), QueueError> {
        Ok(())
    }

    /// Input bytes dropped so far because nowhere could hold them.
    fn input_dropped(&self) -> u64 {
        0
    }

    /// Whether this is a channel end (`channel::ChannelPort`), whose other end is a
    /// VM, not the console (typed input never goes to it).
    fn is_channel(&self) -> bool {
        false
    }

    /// The state of a channel end (`channel::ChannelPort`), which a transfer
    /// between two VMs' devices works on; `None` for every other backend.
    fn port(&mut self) -> Option<&mut channel::PortState> {
        None
    }
}

/// Copies `bytes` (a configuration space image) at `offset` into `data`, zeros past
/// its end: the usual [`VirtioBackend::read_config`].
pub(crate) fn read_config_image(bytes: &[u8], offset: u64, data: &mut [u8]) {
    for (i, out) in data.iter_mut().enumerate() {
        *out = usize::try_from(offset)
            .ok()
            .and_then(|o| o.checked_add(i))
            .and_then(|o| bytes.get(o))
            .copied()
            .unwrap_or(0);
    }
}
