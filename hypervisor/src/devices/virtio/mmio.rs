//! The virtio-mmio transport (virtio 1.2 §4.2): the register block of one slot.
//!
//! [`VirtioMmio`] is a state machine over the offsets of one 0x200-byte slot, in front
//! of a [`VirtioBackend`]. It is modern (Version 2, §4.2.2) unless built as legacy
//! (Version 1, §4.2.4: GuestPageSize, QueueAlign and QueuePFN instead of QueueReady
//! and the 64-bit ring addresses, and no ConfigGeneration).
//!
//! Choices where the spec leaves room:
//!
//! - Control registers (below 0x100) take aligned 32-bit accesses only (§4.2.2.2);
//!   any other access reads as zero and is ignored, with a debug log line. Registers
//!   the version doesn't have read as zero and ignore writes. Write-only registers
//!   that hold a setting read back what the driver wrote (DriverFeatures, QueueNum,
//!   the ring addresses, GuestPageSize, QueueAlign); the selectors, QueueNotify and
//!   InterruptACK read as zero.
//! - The configuration space (0x100 on) takes 8-, 16-, 32- and 64-bit accesses at any
//!   offset, little-endian; a 64-bit access is the same as two 32-bit ones, low half
//!   first. Bytes past the device's configuration read as zero.
//! - The driver status moves through the steps of §3.1.1 as listed in
//!   `TRANSITIONS`; ACKNOWLEDGE and DRIVER may come in one write (as some drivers
//!   do). Legacy drivers may go from DRIVER to DRIVER_OK without FEATURES_OK (§3.1.2).
//!   FEATURES_OK is refused, by leaving it clear, when the driver accepted a feature
//!   that was not offered or (modern) left out VERSION_1. FAILED can be set at any
//!   time and freezes the status until a reset; writing 0 resets the device at once.
//!   Anything else is ignored with a debug log line.
//! - A queue is set up while not ready; its registers ignore writes while it is ready.
//!   Ring addresses are checked against the VM's RAM and their alignment when the
//!   driver sets QueueReady (legacy: writes QueuePFN). A bad layout leaves the queue
//!   not ready and sets DEVICE_NEEDS_RESET. Any [`QueueError`] sets
//!   DEVICE_NEEDS_RESET; both raise a configuration-change interrupt (§2.1.2), and
//!   the device does no more work until it is reset.
//! - Notifications are served only when the driver has set DRIVER_OK; the backend
//!   runs at once, on the caller's CPU, and [`VirtioMmio::interrupt_level`] then says
//!   whether the slot's interrupt line is up. At DRIVER_OK the backend gets one
//!   [`VirtioBackend::poll`], so input held before then reaches buffers posted
//!   before then.
//! - ConfigGeneration counts device-side configuration changes
//!   ([`VirtioMmio::config_changed`]) and survives resets; the legacy GuestPageSize
//!   survives resets too (Linux writes it once, before resetting the device).

use crate::guest_log;
use crate::guest_log::Kind;
use alloc::boxed::Box;
use alloc::vec::Vec;

use super::queue::{Queue, QueueError};
use super::{interrupt, status, transport_features, Progress, VirtioBackend, MAX_QUEUE_SIZE, VENDOR_ID};
use crate::devices::{AccessWidth, MmioDevice};
use crate::mm::guest_memory::GuestMemory;
use crate::trace::{self, Stage};

/// Register offsets (§4.2.2, and §4.2.4 for the legacy ones); the fuzz target drives
/// the device through them too.
pub mod reg {
    pub const MAGIC: u64 = 0x000;
    pub const VERSION: u64 = 0x004;
    pub const DEVICE_ID: u64 = 0x008;
    pub const VENDOR_ID: u64 = 0x00c;
    pub const DEVICE_FEATURES: u64 = 0x010;
    pub const DEVICE_FEATURES_SEL: u64 = 0x014;
    pub const DRIVER_FEATURES: u64 = 0x020;
    pub const DRIVER_FEATURES_SEL: u64 = 0x024;
    /// Legacy only.
    pub const GUEST_PAGE_SIZE: u64 = 0x028;
    pub const QUEUE_SEL: u64 = 0x030;
    pub const QUEUE_NUM_MAX: u64 = 0x034;
    pub const QUEUE_NUM: u64 = 0x038;
    /// Legacy only.
    pub const QUEUE_ALIGN: u64 = 0x03c;
    /// Legacy only.
    pub const QUEUE_PFN: u64 = 0x040;
    /// Modern only, as are the ring addresses, the shared memory registers,
    /// QueueReset and ConfigGeneration.
    pub const QUEUE_READY: u64 = 0x044;
    pub const QUEUE_NOTIFY: u64 = 0x050;
    pub const INTERRUPT_STATUS: u64 = 0x060;
    pub const INTERRUPT_ACK: u64 = 0x064;
    pub const STATUS: u64 = 0x070;
    pub const QUEUE_DESC_LOW: u64 = 0x080;
    pub const QUEUE_DESC_HIGH: u64 = 0x084;
    pub const QUEUE_DRIVER_LOW: u64 = 0x090;
    pub const QUEUE_DRIVER_HIGH: u64 = 0x094;
    pub const QUEUE_DEVICE_LOW: u64 = 0x0a0;
    pub const QUEUE_DEVICE_HIGH: u64 = 0x0a4;
    pub const SHM_SEL: u64 = 0x0ac;
    pub const SHM_LEN_LOW: u64 = 0x0b0;
    pub const SHM_LEN_HIGH: u64 = 0x0b4;
    pub const SHM_BASE_LOW: u64 = 0x0b8;
    pub const SHM_BASE_HIGH: u64 = 0x0bc;
    pub const QUEUE_RESET: u64 = 0x0c0;
    pub const CONFIG_GENERATION: u64 = 0x0fc;
    pub const CONFIG: u64 = 0x100;
}

/// The six modern ring address registers, as a pattern.
macro_rules! ring_registers {
    () => {
        reg::QUEUE_DESC_LOW
            | reg::QUEUE_DESC_HIGH
            | reg::QUEUE_DRIVER_LOW
            | reg::QUEUE_DRIVER_HIGH
            | reg::QUEUE_DEVICE_LOW
            | reg::QUEUE_DEVICE_HIGH
    };
}

/// Which ring (descriptors, driver area, device area) and which half a ring address
/// register holds.
fn ring_register(offset: u64) -> (usize, bool) {
    (((offset - reg::QUEUE_DESC_LOW) / 0x10) as usize, offset & 4 != 0)
}

/// "virt" in little-endian ASCII.
pub const MAGIC: u32 = 0x7472_6976;

/// Legacy GuestPageSize and QueueAlign before the driver writes them.
const LEGACY_DEFAULT_PAGE: u32 = 4096;

/// What a status transition does besides recording the new value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    /// Nothing more.
    Record,
    /// FEATURES_OK: accept the driver's features, or refuse by leaving the bit clear.
    CheckFeatures,
    /// DRIVER_OK: the device goes live.
    Activate,
}

/// One legal move of the driver status (the driver's bits; DEVICE_NEEDS_RESET is
/// the device's and FAILED is handled apart).
#[derive(Debug, Clone, Copy)]
struct Transition {
    from: u8,
    to: u8,
    action: Action,
    legacy_only: bool,
}

const ACK: u8 = status::ACKNOWLEDGE;
const ACK_DRV: u8 = status::ACKNOWLEDGE | status::DRIVER;
const FEAT_OK: u8 = ACK_DRV | status::FEATURES_OK;

/// The driver-status state machine (§3.1.1; §3.1.2 for legacy drivers).
const TRANSITIONS: &[Transition] = &[
    Transition { from: 0, to: ACK, action: Action::Record, legacy_only: false },
    Transition { from: 0, to: ACK_DRV, action: Action::Record, legacy_only: false },
    Transition { from: ACK, to: ACK_DRV, action: Action::Record, legacy_only: false },
    Transition { from: ACK_DRV, to: FEAT_OK, action: Action::CheckFeatures, legacy_only: false },
    Transition {
        from: FEAT_OK,
        to: FEAT_OK | status::DRIVER_OK,
        action: Action::Activate,
        legacy_only: false,
    },
    Transition {
        from: ACK_DRV,
        to: ACK_DRV | status::DRIVER_OK,
        action: Action::Activate,
        legacy_only: true,
    },
];

/// Legacy per-queue registers.
#[derive(Debug, Clone, Copy)]
struct LegacyQueue {
    align: u32,
    pfn: u32,
}

impl LegacyQueue {
    const RESET: Self = Self { align: LEGACY_DEFAULT_PAGE, pfn: 0 };
}

/// One virtio-mmio slot: the transport's registers over a device backend.
pub struct VirtioMmio {
    backend: Box<dyn VirtioBackend>,
    memory: GuestMemory,
    legacy: bool,
    queues: Vec<Queue>,
    legacy_queues: Vec<LegacyQueue>,
    /// The driver's status bits, plus DEVICE_NEEDS_RESET.
    status: u8,
    device_features_sel: u32,
    driver_features_sel: u32,
    driver_features: u64,
    queue_sel: u32,
    interrupt_status: u32,
    config_generation: u32,
    guest_page_size: u32,
    shm_sel: u32,
    /// Queues (a bit each) whose backend ran out of its budget with work left.
    backlog: u32,
    /// Of those, the ones whose work waits for something outside the device.
    waiting: u32,
}

impl core::fmt::Debug for VirtioMmio {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("VirtioMmio")
            .field("backend", &self.backend.name())
            .field("legacy", &self.legacy)
            .field("status", &self.status)
            .field("interrupt_status", &self.interrupt_status)
            .finish_non_exhaustive()
    }
}

impl VirtioMmio {
    /// A device in its reset state: `backend` behind a modern transport (a legacy one
    /// if `legacy`), reaching the VM's RAM through `memory` (a view of it; see
    /// [`GuestMemory`]'s `Clone`). Every queue offers [`MAX_QUEUE_SIZE`] entries.
    pub fn new(backend: Box<dyn VirtioBackend>, memory: GuestMemory, legacy: bool) -> Self {
        let count = backend.queue_count();
        debug_assert_eq!(backend.features() & transport_features::RESERVED, 0);
        Self {
            backend,
            memory,
            legacy,
            queues: (0..count).map(|_| Queue::new(MAX_QUEUE_SIZE)).collect(),
            legacy_queues: alloc::vec![LegacyQueue::RESET; count],
            status: 0,
            device_features_sel: 0,
            driver_features_sel: 0,
            driver_features: 0,
            queue_sel: 0,
            interrupt_status: 0,
            config_generation: 0,
            guest_page_size: LEGACY_DEFAULT_PAGE,
            shm_sel: 0,
            backlog: 0,
            waiting: 0,
        }
    }

    /// Whether a queue has work its budget cut short ([`Self::work_on_backlog`]).
    pub fn has_backlog(&self) -> bool {
        self.backlog != 0
    }

    /// Whether all of that work waits for something outside the device (the VM's
    /// share of the console), so there is no point coming back at once.
    pub fn backlog_waits(&self) -> bool {
        self.backlog & !self.waiting == 0
    }

    /// Goes on with the queues whose work the budget cut short, one budget each, in
    /// the order the driver queued it; forgets the work of a queue the driver took
    /// down, and all of it if the device is no longer live.
    pub fn work_on_backlog(&mut self) {
        if !self.live() {
            (self.backlog, self.waiting) = (0, 0);
            return;
        }
        for index in 0..self.queues.len() {
            let bit = 1 << index;
            if self.backlog & bit == 0 {
                continue;
            }
            if self.queues[index].ready() {
                self.run_queue(index);
            } else {
                (self.backlog, self.waiting) = (self.backlog & !bit, self.waiting & !bit);
            }
        }
    }

    /// Has the backend work on queue `index` (ready, device live) for one budget.
    fn run_queue(&mut self, index: usize) {
        let result = self.backend.process_queue(index, &mut self.queues, &self.memory);
        let bit = 1 << index;
        match result {
            Ok(Progress::More) => (self.backlog, self.waiting) = (self.backlog | bit, self.waiting & !bit),
            Ok(Progress::Waiting) => (self.backlog, self.waiting) = (self.backlog | bit, self.waiting | bit),
            Ok(Progress::Done) | Err(_) => {
                (self.backlog, self.waiting) = (self.backlog & !bit, self.waiting & !bit)
            }
        }
        self.after_backend(result.map(|_| ()));
    }

    /// Whether the slot's interrupt line is asserted (InterruptStatus != 0); see
    /// `devices::Wired`, which drives the VM's SPI from it.
    pub fn interrupt_level(&self) -> bool {
        self.interrupt_status != 0
    }

    /// The device status register (the driver's bits and DEVICE_NEEDS_RESET).
    pub fn status(&self) -> u8 {
        self.status
    }

    /// Whether this is the legacy (Version 1) interface.
    pub fn is_legacy(&self) -> bool {
        self.legacy
    }

    /// The backend.
    pub fn backend(&self) -> &dyn VirtioBackend {
        self.backend.as_ref()
    }

    /// Host-side input for the device (console keystrokes): the backend takes what it
    /// can (a console holds a bounded amount until the driver posts buffers) and, if
    /// the device is live, fills posted buffers at once and raises the used-buffer
    /// interrupt as the driver asked. Returns how many bytes were taken.
    pub fn input(&mut self, bytes: &[u8]) -> usize {
        let taken = self.backend.input(bytes);
        if self.live() {
            let result = self.backend.poll(&mut self.queues, &self.memory);
            self.after_backend(result);
        }
        taken
    }

    /// The host device behind the backend interrupted: the backend moves what it
    /// can, and the guest's interrupt follows its used rings.
    pub fn host_interrupt(&mut self) {
        let live = self.live();
        let result = self.backend.host_interrupt(&mut self.queues, &self.memory, live);
        if live {
            self.after_backend(result);
        }
    }

    /// For a transfer over a channel (`channel::pass_between`): this device's
    /// queues, memory and port state, if it is a live channel end.
    pub fn port(&mut self) -> Option<super::channel::Port<'_>> {
        if !self.live() {
            return None;
        }
        let state = self.backend.port()?;
        Some(super::channel::Port { queues: &mut self.queues, mem: &self.memory, state })
    }

    /// After a transfer worked on [`Self::port`]: a driver error, or the interrupts
    /// the queues ask for.
    pub fn after_port(&mut self, result: Result<(), QueueError>) {
        self.after_backend(result);
    }

    /// The device's configuration changed: bump ConfigGeneration and raise the
    /// configuration-change interrupt (§2.5.1, §4.2.2).
    pub fn config_changed(&mut self) {
        self.config_generation = self.config_generation.wrapping_add(1);
        self.interrupt_status |= interrupt::CONFIG_CHANGE;
    }

    /// Writing 0 to Status (§2.4): queues, features, selectors, interrupt state and
    /// the backend back to their reset state.
    pub fn reset(&mut self) {
        // First the backend, which may have to wait for its host device to let go of
        // the guest's buffers, while the queues still say where they are.
        self.backend.reset();
        self.status = 0;
        self.device_features_sel = 0;
        self.driver_features_sel = 0;
        self.driver_features = 0;
        self.queue_sel = 0;
        self.interrupt_status = 0;
        self.shm_sel = 0;
        (self.backlog, self.waiting) = (0, 0);
        self.queues.iter_mut().for_each(Queue::reset);
        self.legacy_queues.fill(LegacyQueue::RESET);
    }

    /// Everything offered: the backend's features and the transport's.
    fn offered_features(&self) -> u64 {
        let ring = transport_features::RING_EVENT_IDX | transport_features::RING_INDIRECT_DESC;
        let version = if self.legacy { 0 } else { transport_features::VERSION_1 };
        self.backend.features() | ring | version
    }

    /// DRIVER_OK set, and neither FAILED nor DEVICE_NEEDS_RESET.
    fn live(&self) -> bool {
        self.status & (status::DRIVER_OK | status::FAILED | status::DEVICE_NEEDS_RESET) == status::DRIVER_OK
    }

    /// The device cannot go on: DEVICE_NEEDS_RESET and a configuration interrupt.
    fn needs_reset(&mut self, error: QueueError) {
        guest_log!(Kind::Virtio, Warn, "{}: {error}; the device needs a reset", self.backend.name());
        self.status |= status::DEVICE_NEEDS_RESET;
        self.interrupt_status |= interrupt::CONFIG_CHANGE;
    }

    /// After the backend ran: a queue error, or the interrupts the queues ask for.
    fn after_backend(&mut self, result: Result<(), QueueError>) {
        if let Err(e) = result {
            self.needs_reset(e);
            return;
        }
        for q in &mut self.queues {
            if q.needs_interrupt(&self.memory) {
                self.interrupt_status |= interrupt::USED_BUFFER;
            }
        }
    }

    /// The selected queue if the driver may still set it up (exists, not ready).
    fn configurable_queue(&mut self, register: &str) -> Option<&mut Queue> {
        let (sel, name) = (self.queue_sel, self.backend.name());
        match self.queues.get_mut(sel as usize) {
            Some(q) if !q.ready() => Some(q),
            Some(_) => {
                guest_log!(
                    Kind::Virtio,
                    Debug,
                    "{name}: {register} write to queue {sel} while it is ready ignored"
                );
                None
            }
            None => {
                guest_log!(
                    Kind::Virtio,
                    Debug,
                    "{name}: {register} write to nonexistent queue {sel} ignored"
                );
                None
            }
        }
    }

    fn write_status(&mut self, value: u32) {
        if value == 0 {
            self.reset();
            return;
        }
        let name = self.backend.name();
        let (Ok(value), current) = (u8::try_from(value), self.status & !status::DEVICE_NEEDS_RESET) else {
            guest_log!(Kind::Virtio, Debug, "{name}: status {value:#x} ignored");
            return;
        };
        let requested = value & !status::DEVICE_NEEDS_RESET;
        if requested == current {
            return;
        }
        if current & status::FAILED != 0 {
            guest_log!(Kind::Virtio, Debug, "{name}: status {value:#x} after FAILED ignored; reset first");
            return;
        }
        if requested == current | status::FAILED {
            guest_log!(Kind::Virtio, Debug, "{name}: the driver set FAILED");
            self.status |= status::FAILED;
            return;
        }
        if self.status & status::DEVICE_NEEDS_RESET != 0 {
            guest_log!(Kind::Virtio, Debug, "{name}: status {value:#x} ignored; the device needs a reset");
            return;
        }
        let legacy = self.legacy;
        let Some(t) =
            TRANSITIONS.iter().find(|t| t.from == current && t.to == requested && (legacy || !t.legacy_only))
        else {
            guest_log!(
                Kind::Virtio,
                Debug,
                "{name}: status {current:#x} -> {requested:#x} is not a legal step; ignored"
            );
            return;
        };
        match t.action {
            Action::Record => {}
            Action::CheckFeatures => {
                let unknown = self.driver_features & !self.offered_features();
                if unknown != 0 {
                    guest_log!(
                        Kind::Virtio,
                        Debug,
                        "{name}: FEATURES_OK refused: features {unknown:#x} were not offered"
                    );
                    return;
                }
                if !legacy && self.driver_features & transport_features::VERSION_1 == 0 {
                    guest_log!(Kind::Virtio, Debug, "{name}: FEATURES_OK refused: VERSION_1 not accepted");
                    return;
                }
            }
            Action::Activate => self.activate(),
        }
        self.status = requested | (self.status & status::DEVICE_NEEDS_RESET);
        if t.action == Action::Activate {
            // Work that waited for DRIVER_OK (held input) may go now.
            let result = self.backend.poll(&mut self.queues, &self.memory);
            self.after_backend(result);
        }
    }

    fn activate(&mut self) {
        // A legacy driver may skip FEATURES_OK: keep only what was offered.
        let features = self.driver_features & self.offered_features();
        self.driver_features = features;
        let event_idx = features & transport_features::RING_EVENT_IDX != 0;
        let indirect = features & transport_features::RING_INDIRECT_DESC != 0;
        for q in &mut self.queues {
            q.set_features(event_idx, indirect);
        }
        self.backend.activate(features);
    }

    fn notify(&mut self, value: u32) {
        let name = self.backend.name();
        if !self.live() {
            guest_log!(
                Kind::Virtio,
                Debug,
                "{name}: notify of queue {value} while not live (status {:#x}) ignored",
                self.status
            );
            return;
        }
        let index = value as usize;
        if !self.queues.get(index).is_some_and(Queue::ready) {
            guest_log!(Kind::Virtio, Debug, "{name}: notify of queue {value}, which is not ready, ignored");
            return;
        }
        trace::point(Stage::BackendStart);
        self.run_queue(index);
        trace::point(Stage::BackendEnd);
    }

    /// QueueReady (modern): checks the layout before the queue may be used.
    fn write_queue_ready(&mut self, value: u32) {
        let memory = &self.memory;
        let Some(q) = self.queues.get_mut(self.queue_sel as usize) else {
            guest_log!(
                Kind::Virtio,
                Debug,
                "{}: QueueReady for nonexistent queue {} ignored",
                self.backend.name(),
                self.queue_sel
            );
            return;
        };
        if value & 1 == 0 {
            q.set_ready(false);
        } else if !q.ready() {
            match q.check_layout(memory) {
                Ok(()) => q.set_ready(true),
                Err(e) => self.needs_reset(e),
            }
        }
    }

    /// QueuePFN (legacy): places the three areas from the page number (§4.2.4,
    /// §2.7's legacy layout) and checks them; 0 stops the queue.
    fn write_queue_pfn(&mut self, pfn: u32) {
        let (memory, page) = (&self.memory, u64::from(self.guest_page_size));
        let sel = self.queue_sel as usize;
        let (Some(q), Some(lq)) = (self.queues.get_mut(sel), self.legacy_queues.get_mut(sel)) else {
            guest_log!(
                Kind::Virtio,
                Debug,
                "{}: QueuePFN for nonexistent queue {sel} ignored",
                self.backend.name()
            );
            return;
        };
        lq.pfn = pfn;
        if pfn == 0 {
            q.set_ready(false);
            return;
        }
        let size = u64::from(q.size());
        let desc = u64::from(pfn) * page;
        let avail = desc + 16 * size;
        let used = (avail + 6 + 2 * size).next_multiple_of(u64::from(lq.align));
        q.set_addresses(desc, avail, used);
        match q.check_layout(memory) {
            Ok(()) => q.set_ready(true),
            Err(e) => {
                q.set_ready(false);
                lq.pfn = 0;
                self.needs_reset(e);
            }
        }
    }

    /// Sets the low or high half of a ring address of the selected queue.
    fn write_ring_address(&mut self, offset: u64, value: u32) {
        let Some(q) = self.configurable_queue("ring address") else { return };
        let mut addrs = [q.desc_addr(), q.avail_addr(), q.used_addr()];
        let (which, high) = ring_register(offset);
        let old = addrs[which];
        addrs[which] = if high {
            (old & 0xffff_ffff) | (u64::from(value) << 32)
        } else {
            (old & !0xffff_ffff) | u64::from(value)
        };
        q.set_addresses(addrs[0], addrs[1], addrs[2]);
    }

    /// A ring address register of the selected queue reads back what was written.
    fn ring_address(&self, offset: u64) -> u32 {
        let Some(q) = self.queues.get(self.queue_sel as usize) else { return 0 };
        let (which, high) = ring_register(offset);
        let addr = [q.desc_addr(), q.avail_addr(), q.used_addr()][which];
        if high {
            (addr >> 32) as u32
        } else {
            addr as u32
        }
    }

    fn read_register(&mut self, offset: u64) -> u32 {
        let legacy = self.legacy;
        match offset {
            reg::MAGIC => MAGIC,
            reg::VERSION => {
                if legacy {
                    1
                } else {
                    2
                }
            }
            reg::DEVICE_ID => self.backend.device_id(),
            reg::VENDOR_ID => VENDOR_ID,
            reg::DEVICE_FEATURES => match self.device_features_sel {
                0 => self.offered_features() as u32,
                1 => (self.offered_features() >> 32) as u32,
                _ => 0,
            },
            reg::DRIVER_FEATURES => match self.driver_features_sel {
                0 => self.driver_features as u32,
                1 => (self.driver_features >> 32) as u32,
                _ => 0,
            },
            reg::GUEST_PAGE_SIZE if legacy => self.guest_page_size,
            reg::QUEUE_NUM_MAX => self.queues.get(self.queue_sel as usize).map_or(0, |q| q.max_size().into()),
            reg::QUEUE_NUM => self.queues.get(self.queue_sel as usize).map_or(0, |q| q.size().into()),
            reg::QUEUE_ALIGN if legacy => {
                self.legacy_queues.get(self.queue_sel as usize).map_or(0, |q| q.align)
            }
            reg::QUEUE_PFN if legacy => self.legacy_queues.get(self.queue_sel as usize).map_or(0, |q| q.pfn),
            reg::QUEUE_READY if !legacy => {
                self.queues.get(self.queue_sel as usize).map_or(0, |q| q.ready().into())
            }
            reg::INTERRUPT_STATUS => self.interrupt_status,
            reg::STATUS => self.status.into(),
            ring_registers!() if !legacy => self.ring_address(offset),
            // No shared memory regions: every one has length -1 (§4.2.2).
            reg::SHM_LEN_LOW | reg::SHM_LEN_HIGH if !legacy => u32::MAX,
            reg::SHM_BASE_LOW | reg::SHM_BASE_HIGH if !legacy => u32::MAX,
            // VIRTIO_F_RING_RESET is not offered.
            reg::QUEUE_RESET if !legacy => 0,
            reg::CONFIG_GENERATION if !legacy => self.config_generation,
            _ => {
                guest_log!(
                    Kind::Virtio,
                    Debug,
                    "{}: read of write-only or unknown register {offset:#x}",
                    self.backend.name()
                );
                0
            }
        }
    }

    fn write_register(&mut self, offset: u64, value: u32) {
        let legacy = self.legacy;
        let name = self.backend.name();
        match offset {
            reg::DEVICE_FEATURES_SEL => self.device_features_sel = value,
            reg::DRIVER_FEATURES => {
                if self.status & (status::FEATURES_OK | status::DRIVER_OK) != 0 {
                    guest_log!(Kind::Virtio, Debug, "{name}: DriverFeatures write after negotiation ignored");
                    return;
                }
                match self.driver_features_sel {
                    0 => self.driver_features = (self.driver_features & !0xffff_ffff) | u64::from(value),
                    1 => {
                        self.driver_features = (self.driver_features & 0xffff_ffff) | (u64::from(value) << 32)
                    }
                    sel if value != 0 => {
                        guest_log!(
                            Kind::Virtio,
                            Debug,
                            "{name}: driver features {value:#x} in word {sel} (none offered) ignored"
                        )
                    }
                    _ => {}
                }
            }
            reg::DRIVER_FEATURES_SEL => self.driver_features_sel = value,
            reg::GUEST_PAGE_SIZE if legacy => {
                if value.is_power_of_two() {
                    self.guest_page_size = value;
                } else {
                    guest_log!(
                        Kind::Virtio,
                        Debug,
                        "{name}: GuestPageSize {value:#x} is not a power of two; ignored"
                    );
                }
            }
            reg::QUEUE_SEL => self.queue_sel = value,
            reg::QUEUE_NUM => {
                if self.configurable_queue("QueueNum").is_some_and(|q| !q.set_size(value)) {
                    let name = self.backend.name();
                    guest_log!(
                        Kind::Virtio,
                        Debug,
                        "{name}: QueueNum {value} refused (a power of two up to {MAX_QUEUE_SIZE})"
                    );
                }
            }
            reg::QUEUE_ALIGN if legacy => {
                let sel = self.queue_sel as usize;
                let pfn_set = self.legacy_queues.get(sel).is_some_and(|q| q.pfn != 0);
                match self.legacy_queues.get_mut(sel) {
                    Some(q) if value.is_power_of_two() && !pfn_set => q.align = value,
                    _ => guest_log!(
                        Kind::Virtio,
                        Debug,
                        "{name}: QueueAlign {value:#x} for queue {sel} ignored"
                    ),
                }
            }
            reg::QUEUE_PFN if legacy => self.write_queue_pfn(value),
            reg::QUEUE_READY if !legacy => self.write_queue_ready(value),
            reg::QUEUE_NOTIFY => self.notify(value),
            reg::INTERRUPT_ACK => self.interrupt_status &= !value,
            reg::STATUS => self.write_status(value),
            ring_registers!() if !legacy => self.write_ring_address(offset, value),
            reg::SHM_SEL if !legacy => self.shm_sel = value,
            reg::QUEUE_RESET if !legacy => {
                guest_log!(Kind::Virtio, Debug, "{name}: QueueReset without VIRTIO_F_RING_RESET ignored")
            }
            _ => guest_log!(
                Kind::Virtio,
                Debug,
                "{name}: write of {value:#x} to read-only or unknown register {offset:#x} ignored"
            ),
        }
    }

    fn read_config(&self, offset: u64, width: AccessWidth) -> u64 {
        let mut bytes = [0u8; 8];
        let n = width.bytes() as usize;
        self.backend.read_config(offset - reg::CONFIG, &mut bytes[..n]);
        u64::from_le_bytes(bytes)
    }

    fn write_config(&mut self, offset: u64, width: AccessWidth, value: u64) {
        let n = width.bytes() as usize;
        self.backend.write_config(offset - reg::CONFIG, &value.to_le_bytes()[..n]);
    }
}

impl MmioDevice for VirtioMmio {
    fn name(&self) -> &str {
        self.backend.name()
    }

    fn read(&mut self, offset: u64, width: AccessWidth) -> u64 {
        if offset >= reg::CONFIG {
            return self.read_config(offset, width);
        }
        if width != AccessWidth::Word || !offset.is_multiple_of(4) {
            guest_log!(
                Kind::Virtio,
                Debug,
                "{}: {width:?} read at register offset {offset:#x} ignored",
                self.backend.name()
            );
            return 0;
        }
        self.read_register(offset).into()
    }

    fn write(&mut self, offset: u64, width: AccessWidth, value: u64) {
        if offset >= reg::CONFIG {
            self.write_config(offset, width, value);
            return;
        }
        if width != AccessWidth::Word || !offset.is_multiple_of(4) {
            guest_log!(
                Kind::Virtio,
                Debug,
                "{}: {width:?} write at register offset {offset:#x} ignored",
                self.backend.name()
            );
            return;
        }
        self.write_register(offset, value as u32);
    }

    fn interrupt_level(&self) -> bool {
        VirtioMmio::interrupt_level(self)
    }

    fn reset(&mut self) {
        VirtioMmio::reset(self);
    }
}

#[cfg(test)]
mod tests;
