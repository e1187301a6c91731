//! One virtio-mmio slot: a device model ([`VirtioMmio`]) reached only the way a
//! trapped guest access reaches it, `read(offset, width)` / `write(offset, width,
//! value)`, with the accesses counted.
//!
//! [`SlotRegisters`] is the `RegisterAccess` that guest-drivers' `MmioTransport`
//! drives: each of its loads and stores becomes one such access, as Sluice's trap
//! handler would make it. A QueueNotify runs the device at once, on the caller's
//! thread, as under Sluice; or, when the test holds notifications
//! ([`Slot::hold_notifies`]), later, like a device that runs on another CPU.
//!
//! Under Sluice a notify does one budget of work and the rest goes on a budget per
//! exit and per timer slice while the guest runs (`devices::virtio::budget`); here
//! the rest is done before the access returns, which a driver polling its used ring
//! cannot tell from Sluice's except in time. The budget itself is tested with the
//! device models.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;

use guest_drivers::transport::mmio::{reg, RegisterAccess};
use hypervisor::devices::virtio::{VirtioBackend, VirtioMmio};
use hypervisor::devices::{AccessWidth, MmioDevice};
use hypervisor::mm::guest_memory::GuestMemory;

use crate::region::SharedRegion;

/// Offset of the device configuration space: registers below it are 32-bit only.
const CONFIG: u64 = 0x100;
/// Loads in a row, with no store between them, after which a driver is taken to be
/// spinning on a device that will never answer: the test fails instead of hanging.
const SPIN_LIMIT: u32 = 20_000;

/// What a slot saw.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TrapStats {
    /// Loads (each a trap under Sluice).
    pub reads: u64,
    /// Stores (each a trap), notifications included.
    pub writes: u64,
    /// QueueNotify stores.
    pub notifies: u64,
    /// Accesses to the control registers (below 0x100) that were not aligned 32-bit
    /// ones: a conforming driver makes none.
    pub bad_control_accesses: u64,
}

impl TrapStats {
    /// Every access.
    pub fn traps(&self) -> u64 {
        self.reads + self.writes
    }

    /// What happened between `earlier` and `self`.
    pub fn since(&self, earlier: &TrapStats) -> TrapStats {
        TrapStats {
            reads: self.reads - earlier.reads,
            writes: self.writes - earlier.writes,
            notifies: self.notifies - earlier.notifies,
            bad_control_accesses: self.bad_control_accesses - earlier.bad_control_accesses,
        }
    }
}

struct Inner {
    // Declared before `_region`, so dropped first: the device's guest-memory view
    // must not outlive the region.
    mmio: RefCell<VirtioMmio>,
    stats: Cell<TrapStats>,
    /// Loads since the last store.
    quiet_reads: Cell<u32>,
    hold: Cell<bool>,
    held: RefCell<Vec<u32>>,
    /// Held notifications run at the next load (the driver polling a device that
    /// works on its own time).
    release_on_read: Cell<bool>,
    _regions: Vec<Arc<SharedRegion>>,
}

/// A device model in a slot, shared by the test and the transports that drive it.
#[derive(Clone)]
pub struct Slot(Rc<Inner>);

impl std::fmt::Debug for Slot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Slot").field("mmio", &self.0.mmio.borrow()).finish_non_exhaustive()
    }
}

impl Slot {
    /// `backend` behind a virtio-mmio transport (legacy if `legacy`) whose guest RAM
    /// is `region`.
    pub fn new(backend: Box<dyn VirtioBackend>, region: &Arc<SharedRegion>, legacy: bool) -> Self {
        Self::with_memory(backend, region.device_view(), vec![region.clone()], legacy)
    }

    /// `backend` behind a virtio-mmio transport whose guest RAM is `memory`, a view
    /// into `regions` (kept alive as long as the slot).
    pub fn with_memory(
        backend: Box<dyn VirtioBackend>,
        memory: GuestMemory,
        regions: Vec<Arc<SharedRegion>>,
        legacy: bool,
    ) -> Self {
        let mmio = VirtioMmio::new(backend, memory, legacy);
        Self(Rc::new(Inner {
            mmio: RefCell::new(mmio),
            stats: Cell::new(TrapStats::default()),
            quiet_reads: Cell::new(0),
            hold: Cell::new(false),
            held: RefCell::new(Vec::new()),
            release_on_read: Cell::new(false),
            _regions: regions,
        }))
    }

    /// A trapped load of `width` bytes at `offset`.
    ///
    /// # Panics
    ///
    /// After [`SPIN_LIMIT`] loads in a row with no store: a driver waiting for a
    /// device that makes no progress.
    pub fn read(&self, offset: u64, width: AccessWidth) -> u64 {
        self.count(offset, width, false);
        let quiet = self.0.quiet_reads.get() + 1;
        self.0.quiet_reads.set(quiet);
        assert!(quiet < SPIN_LIMIT, "the driver spins on register {offset:#x}: the device makes no progress");
        if self.0.release_on_read.get() {
            self.release_notifies();
        }
        self.0.mmio.borrow_mut().read(offset, width)
    }

    /// A trapped store. A QueueNotify runs the device before this returns, unless
    /// notifications are held.
    pub fn write(&self, offset: u64, width: AccessWidth, value: u64) {
        self.count(offset, width, true);
        self.0.quiet_reads.set(0);
        if offset == reg::QUEUE_NOTIFY as u64 && self.0.hold.get() {
            self.0.held.borrow_mut().push(value as u32);
            return;
        }
        self.0.mmio.borrow_mut().write(offset, width, value);
        self.finish_backlog();
    }

    /// Does the work the notify's budget left, as Sluice's later exits would.
    fn finish_backlog(&self) {
        let mut mmio = self.0.mmio.borrow_mut();
        while mmio.has_backlog() {
            mmio.work_on_backlog();
        }
    }

    /// A 32-bit register load.
    pub fn read32(&self, offset: usize) -> u32 {
        self.read(offset as u64, AccessWidth::Word) as u32
    }

    /// A 32-bit register store.
    pub fn write32(&self, offset: usize, value: u32) {
        self.write(offset as u64, AccessWidth::Word, value.into());
    }

    fn count(&self, offset: u64, width: AccessWidth, write: bool) {
        let mut s = self.0.stats.get();
        if write {
            s.writes += 1;
            if offset == reg::QUEUE_NOTIFY as u64 {
                s.notifies += 1;
            }
        } else {
            s.reads += 1;
        }
        if offset < CONFIG && (width != AccessWidth::Word || !offset.is_multiple_of(4)) {
            s.bad_control_accesses += 1;
        }
        self.0.stats.set(s);
    }

    /// The accesses so far.
    pub fn stats(&self) -> TrapStats {
        self.0.stats.get()
    }

    /// Runs `f` on the device model itself (the host side: input, status, backend).
    pub fn with<R>(&self, f: impl FnOnce(&mut VirtioMmio) -> R) -> R {
        f(&mut self.0.mmio.borrow_mut())
    }

    /// The device status (the driver's bits and DEVICE_NEEDS_RESET).
    pub fn status(&self) -> u8 {
        self.with(|m| m.status())
    }

    /// InterruptStatus, read as the host side sees it (not counted as a trap).
    pub fn interrupt_status(&self) -> u32 {
        self.with(|m| m.read(reg::INTERRUPT_STATUS as u64, AccessWidth::Word) as u32)
    }

    /// Whether the slot's interrupt line is up.
    pub fn interrupt_level(&self) -> bool {
        self.with(|m| m.interrupt_level())
    }

    /// Host-side input (console keystrokes); returns how many bytes the device took.
    pub fn input(&self, bytes: &[u8]) -> usize {
        self.with(|m| m.input(bytes))
    }

    /// From now on, keep QueueNotify stores instead of running the device (`true`),
    /// or run it at once again (`false`, which does not release what is held).
    pub fn hold_notifies(&self, hold: bool) {
        self.0.hold.set(hold);
    }

    /// Held notifications (see [`hold_notifies`](Self::hold_notifies)) run at the
    /// next load of a register, when `on`: a device that works on its own time, but
    /// does work while its driver waits.
    pub fn release_held_on_read(&self, on: bool) {
        self.0.release_on_read.set(on);
    }

    /// Delivers the held notifications, in order; returns how many there were.
    pub fn release_notifies(&self) -> usize {
        let held = std::mem::take(&mut *self.0.held.borrow_mut());
        for &queue in &held {
            self.0.mmio.borrow_mut().write(reg::QUEUE_NOTIFY as u64, AccessWidth::Word, queue.into());
            self.finish_backlog();
        }
        held.len()
    }

    /// The notifications held and not yet released.
    pub fn held_notifies(&self) -> usize {
        self.0.held.borrow().len()
    }

    /// The registers, for `MmioTransport::from_registers`.
    pub fn registers(&self) -> SlotRegisters {
        SlotRegisters(self.clone())
    }
}

/// guest-drivers' register access, as traps into a [`Slot`].
#[derive(Debug, Clone)]
pub struct SlotRegisters(Slot);

impl RegisterAccess for SlotRegisters {
    fn read32(&self, offset: usize) -> u32 {
        self.0.read(offset as u64, AccessWidth::Word) as u32
    }

    fn write32(&mut self, offset: usize, value: u32) {
        self.0.write(offset as u64, AccessWidth::Word, value.into());
    }

    fn read16(&self, offset: usize) -> u16 {
        self.0.read(offset as u64, AccessWidth::Half) as u16
    }

    fn write16(&mut self, offset: usize, value: u16) {
        self.0.write(offset as u64, AccessWidth::Half, value.into());
    }

    fn read8(&self, offset: usize) -> u8 {
        self.0.read(offset as u64, AccessWidth::Byte) as u8
    }

    fn write8(&mut self, offset: usize, value: u8) {
        self.0.write(offset as u64, AccessWidth::Byte, value.into());
    }
}
