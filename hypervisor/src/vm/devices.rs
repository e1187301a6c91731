//! A VM's emulated devices: each behind a lock of its own, all registered once on
//! the VM's bus, which resolves a trapped access to a [`DeviceId`].
//!
//! An access locks only the device it reaches (and, for a change of an interrupt
//! line or a GIC register, the vGIC through the exit's [`VgicSession`]), so vCPUs
//! using different devices don't wait for each other, and nothing here waits for
//! the VM's power state. Locks are taken device first, then vGIC.

use crate::arch::aarch64::virtual_interface::VirtualInterface;
use crate::bits::ones;
use crate::console::mux::INPUT_QUEUE_LEN;
use crate::console::BoxedConsole;
use crate::devices::pl011::Pl011;
use crate::devices::pl031::{BoardClock, Pl031};
use crate::devices::virtio::{device_id, status, VirtioBackend, VirtioMmio};
use crate::devices::{AccessWidth, BusError, MmioBus, Wired};
use crate::mm::guest_memory::GuestMemory;
use crate::sync::Lock;
use crate::trace::{self, Stage};
use crate::vgic::{Vgic, VgicSession, FIRST_SPI};
use alloc::boxed::Box;
use alloc::vec::Vec;
use core::fmt;
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use platform::{qemu_virt, Region};

/// What a guest-physical address on a VM's bus belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceId {
    /// The vGIC's distributor.
    Gicd,
    /// The vGIC's redistributors, a frame per vCPU.
    Gicr,
    /// The PL011.
    Uart,
    /// The PL031.
    Rtc,
    /// The virtio-mmio device in this slot.
    Virtio(u8),
    /// The virtio-mmio slots with no device.
    EmptyVirtio,
}

impl fmt::Display for DeviceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Gicd => f.write_str("gic distributor"),
            Self::Gicr => f.write_str("gic redistributors"),
            Self::Uart => f.write_str("pl011"),
            Self::Rtc => f.write_str("pl031"),
            Self::Virtio(slot) => write!(f, "virtio-mmio slot {slot}"),
            Self::EmptyVirtio => f.write_str("empty virtio-mmio slots"),
        }
    }
}

/// One trapped access, as the devices see it.
#[derive(Clone, Copy, Debug)]
pub struct Access {
    /// Guest-physical address.
    pub ipa: u64,
    /// Its width.
    pub width: AccessWidth,
    /// What a store stores; `None` for a load.
    pub store: Option<u64>,
}

/// A VM's devices.
pub struct Devices {
    bus: MmioBus<DeviceId>,
    vgic: Lock<Vgic>,
    uart: Lock<Wired<Pl011>>,
    rtc: Lock<Wired<Pl031>>,
    /// The counter value at which the PL031's alarm is due; 0 when none is armed
    /// (read on every exit without the device's lock).
    rtc_due: AtomicU64,
    virtio: Vec<Lock<Wired<VirtioMmio>>>,
    /// Virtio slots (a bit each) whose device has work its budget cut short (see
    /// `devices::virtio::budget`).
    backlog: AtomicU32,
    /// Those of them whose work does not wait for the VM's share of the console.
    backlog_ready: AtomicU32,
}

impl Devices {
    /// The devices of a VM with `vcpus` vCPUs: its vGIC, its PL011 writing to
    /// `console`, its PL031 over the board's `clock`, and a virtio-mmio transport over `memory` for each backend, in
    /// slot order (`legacy` says which use the Version 1 interface); every one on
    /// the bus.
    ///
    /// # Errors
    ///
    /// [`BusError`] if two of them would overlap (the bundle check keeps vCPUs and
    /// devices within what QEMU virt's map has room for, so this is the bus's own
    /// guard).
    pub fn new(
        vcpus: usize,
        console: BoxedConsole,
        clock: &'static dyn BoardClock,
        memory: &GuestMemory,
        backends: Vec<(Box<dyn VirtioBackend>, bool)>,
    ) -> Result<Self, BusError> {
        let slots = backends.len();
        let mut bus = MmioBus::new();
        bus.insert(qemu_virt::GICD, DeviceId::Gicd)?;
        bus.insert(
            Region::new(qemu_virt::GICR_BASE, vcpus as u64 * qemu_virt::GICR_FRAME_SIZE),
            DeviceId::Gicr,
        )?;
        bus.insert(qemu_virt::UART, DeviceId::Uart)?;
        bus.insert(qemu_virt::RTC, DeviceId::Rtc)?;
        for slot in 0..slots {
            bus.insert(qemu_virt::virtio_mmio_slot(slot as u32), DeviceId::Virtio(slot as u8))?;
        }
        let all = u64::from(qemu_virt::VIRTIO_MMIO_SLOTS) * qemu_virt::VIRTIO_MMIO_SLOT_SIZE;
        let used = slots as u64 * qemu_virt::VIRTIO_MMIO_SLOT_SIZE;
        if used < all {
            bus.insert(Region::new(qemu_virt::VIRTIO_MMIO_BASE + used, all - used), DeviceId::EmptyVirtio)?;
        }
        let virtio = backends
            .into_iter()
            .enumerate()
            .map(|(slot, (backend, legacy))| {
                let device = VirtioMmio::new(backend, memory.clone(), legacy);
                Lock::new(Wired::new(device, virtio_intid(slot)))
            })
            .collect();
        Ok(Self {
            bus,
            vgic: Lock::new(Vgic::new(vcpus)),
            uart: Lock::new(Wired::new(Pl011::new(console), FIRST_SPI + qemu_virt::UART_SPI)),
            rtc: Lock::new(Wired::new(Pl031::new(clock), FIRST_SPI + qemu_virt::RTC_SPI)),
            rtc_due: AtomicU64::new(0),
            virtio,
            backlog: AtomicU32::new(0),
            backlog_ready: AtomicU32::new(0),
        })
    }

    /// The vGIC.
    pub fn vgic(&self) -> &Lock<Vgic> {
        &self.vgic
    }

    /// Emulates `access`; returns what a load reads (0 for a store), or `None`
    /// if no device covers it.
    #[inline]
    pub fn access<I: VirtualInterface>(&self, access: Access, gic: &mut VgicSession<'_, I>) -> Option<u64> {
        let (device, offset) = self.bus.resolve(access.ipa, access.width)?;
        trace::point(Stage::Dispatched);
        let width = access.width;
        Some(match (device, access.store) {
            (DeviceId::Gicd, None) if Vgic::distributor_read_shows_lrs(offset) => {
                gic.lock().distributor_read(offset, width)
            }
            (DeviceId::Gicd, None) => gic.peek().distributor_read(offset, width),
            (DeviceId::Gicd, Some(value)) => {
                gic.update(|v| v.distributor_write(offset, width, value));
                0
            }
            (DeviceId::Gicr, None) if Vgic::redistributor_read_shows_lrs(offset) => {
                gic.lock().redistributor_read(offset, width)
            }
            (DeviceId::Gicr, None) => gic.peek().redistributor_read(offset, width),
            (DeviceId::Gicr, Some(value)) => {
                gic.update(|v| v.redistributor_write(offset, width, value));
                0
            }
            (DeviceId::Uart, None) => self.uart.lock().read(offset, width, gic),
            (DeviceId::Uart, Some(value)) => {
                self.uart.lock().write(offset, width, value, gic);
                0
            }
            (DeviceId::Rtc, None) => self.rtc.lock().read(offset, width, gic),
            (DeviceId::Rtc, Some(value)) => {
                let mut rtc = self.rtc.lock();
                rtc.write(offset, width, value, gic);
                self.note_rtc_alarm(rtc.device());
                0
            }
            (DeviceId::Virtio(slot), None) => self.virtio[usize::from(slot)].lock().read(offset, width, gic),
            (DeviceId::Virtio(slot), Some(value)) => {
                let slot = usize::from(slot);
                let mut device = self.virtio[slot].lock();
                device.write(offset, width, value, gic);
                self.note_backlog(slot, device.device());
                0
            }
            (DeviceId::EmptyVirtio, None) => empty_virtio_slot(offset % qemu_virt::VIRTIO_MMIO_SLOT_SIZE),
            (DeviceId::EmptyVirtio, Some(_)) => 0,
        })
    }

    /// The counter value at which the PL031's alarm is due, if one is armed.
    #[inline]
    pub fn rtc_alarm_due(&self) -> Option<u64> {
        Some(self.rtc_due.load(Ordering::Relaxed)).filter(|&due| due != 0)
    }

    /// Fires the PL031's alarm if its time has come (see [`Pl031::fire_alarm`]).
    pub fn fire_rtc_alarm<I: VirtualInterface>(&self, gic: &mut VgicSession<'_, I>) {
        let mut rtc = self.rtc.lock();
        rtc.update(gic, Pl031::fire_alarm);
        self.note_rtc_alarm(rtc.device());
    }

    /// Records when the PL031's alarm is due, for [`Self::rtc_alarm_due`].
    fn note_rtc_alarm(&self, rtc: &Pl031) {
        self.rtc_due.store(rtc.alarm_due().map_or(0, |due| due.max(1)), Ordering::Relaxed);
    }

    /// Whether a virtio device has work its budget cut short.
    #[inline]
    pub fn has_backlog(&self) -> bool {
        self.backlog.load(Ordering::Relaxed) != 0
    }

    /// Whether all of that work waits for the VM's share of the console.
    pub fn backlog_waits(&self) -> bool {
        self.backlog_ready.load(Ordering::Relaxed) == 0
    }

    /// Goes on with the virtio work that budgets cut short, one budget per device.
    pub fn work_on_backlog<I: VirtualInterface>(&self, gic: &mut VgicSession<'_, I>) {
        for slot in ones(self.backlog.load(Ordering::Relaxed).into()) {
            let slot = slot as usize;
            let mut device = self.virtio[slot].lock();
            device.update(gic, VirtioMmio::work_on_backlog);
            self.note_backlog(slot, device.device());
        }
    }

    /// Records whether the device in `slot` has work left, and whether it waits.
    fn note_backlog(&self, slot: usize, device: &VirtioMmio) {
        let has = device.has_backlog();
        set_bit(&self.backlog, slot, has);
        set_bit(&self.backlog_ready, slot, has && !device.backlog_waits());
    }

    /// The slot of the VM's virtio-console, if its driver has it running.
    fn live_virtio_console(&self) -> Option<usize> {
        self.virtio.iter().position(|d| {
            let d = d.lock();
            let backend = d.device().backend();
            backend.device_id() == device_id::CONSOLE
                && !backend.is_channel()
                && d.device().status() & status::DRIVER_OK != 0
        })
    }

    /// Gives typed console input to the VM's virtio-console, if its driver has it
    /// running: `take` fills a buffer with all of it (the console holds, or drops
    /// and counts, what its driver hasn't taken yet). False, `take` not called, when
    /// there is none (use the PL011).
    pub fn virtio_console_input<I: VirtualInterface>(
        &self,
        gic: &mut VgicSession<'_, I>,
        take: impl FnOnce(&mut [u8]) -> usize,
    ) -> bool {
        let Some(slot) = self.live_virtio_console() else { return false };
        let mut typed = [0u8; INPUT_QUEUE_LEN];
        let n = take(&mut typed);
        self.virtio[slot].lock().update(gic, |d| d.input(&typed[..n]));
        true
    }

    /// The host disk behind the virtio device in `slot` interrupted.
    pub fn host_interrupt<I: VirtualInterface>(&self, slot: usize, gic: &mut VgicSession<'_, I>) {
        let Some(device) = self.virtio.get(slot) else { return };
        let mut device = device.lock();
        device.update(gic, VirtioMmio::host_interrupt);
        self.note_backlog(slot, device.device());
    }

    /// The virtio device in `slot`, for a transfer over a channel (which locks the
    /// devices of both its ends, in the link's order).
    pub fn virtio_device(&self, slot: usize) -> Option<&Lock<Wired<VirtioMmio>>> {
        self.virtio.get(slot)
    }

    /// The PL011, for console input: `feed` is given it while it has room for a
    /// byte, and says whether it gave one.
    pub fn uart_input<I: VirtualInterface>(
        &self,
        gic: &mut VgicSession<'_, I>,
        mut feed: impl FnMut() -> Option<u8>,
    ) {
        let mut uart = self.uart.lock();
        uart.update(gic, |uart| {
            while uart.can_take_input() {
                let Some(byte) = feed() else { break };
                uart.push_input(byte);
            }
        });
    }

    /// Returns every device to its reset state; what they emulate (a disk's
    /// contents) stays. Only with no vCPU in the guest.
    pub fn reset(&self) {
        // The vGIC first: a device that changes its line between the two (console
        // input) then either still matches what its `Wired` remembers or tells the
        // fresh vGIC, and its own reset lowers both together.
        self.vgic.lock().reset();
        self.uart.lock().reset();
        self.rtc.lock().reset();
        self.rtc_due.store(0, Ordering::Relaxed);
        for device in &self.virtio {
            device.lock().reset();
        }
        self.backlog.store(0, Ordering::Relaxed);
        self.backlog_ready.store(0, Ordering::Relaxed);
    }
}

/// Sets or clears bit `bit` of `set` (writing only when it changes, so the common
/// case, nothing changed, leaves the cache line alone).
fn set_bit(set: &AtomicU32, bit: usize, on: bool) {
    let mask = 1 << bit;
    if (set.load(Ordering::Relaxed) & mask != 0) != on {
        if on {
            set.fetch_or(mask, Ordering::Relaxed);
        } else {
            set.fetch_and(!mask, Ordering::Relaxed);
        }
    }
}

/// The interrupt of virtio-mmio slot `slot`, as QEMU virt wires it.
fn virtio_intid(slot: usize) -> u32 {
    FIRST_SPI + qemu_virt::VIRTIO_MMIO_FIRST_SPI + slot as u32
}

/// A virtio-mmio slot with no device, as QEMU virt's empty transports answer: the
/// magic value, version 2 and DeviceID 0 ("no device"); everything else reads as zero
/// and ignores writes (virtio 1.2 §4.2.2).
fn empty_virtio_slot(offset: u64) -> u64 {
    match offset {
        0x000 => 0x7472_6976,
        0x004 => 2,
        0x00c => u64::from(crate::devices::virtio::VENDOR_ID),
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arch::aarch64::virtual_interface::NoListRegisters;
    use crate::console::ConsoleOutput;
    use crate::devices::pl031::BoardClock;
    use crate::devices::pl031::StoppedClock;
    use crate::devices::virtio::console::Console;
    use crate::devices::virtio::testing::ram;
    use crate::devices::virtio::VENDOR_ID;
    use alloc::sync::Arc;
    use alloc::vec;
    use std::sync::Mutex;

    /// What the PL011 sends.
    #[derive(Clone, Default)]
    struct Sent(Arc<Mutex<Vec<u8>>>);

    impl ConsoleOutput for Sent {
        fn write(&mut self, bytes: &[u8]) {
            self.0.lock().unwrap().extend_from_slice(bytes);
        }
    }

    /// Devices of a 2-vCPU VM with one virtio-console in slot 0.
    fn devices(sent: &Sent) -> Devices {
        let console: Box<dyn VirtioBackend> = Box::new(Console::new(Box::new(Sent::default())));
        Devices::new(2, Box::new(sent.clone()), &StoppedClock, &ram(), vec![(console, false)]).unwrap()
    }

    fn load(devices: &Devices, ipa: u64) -> Option<u64> {
        let mut gic = VgicSession::local(devices.vgic(), 0, NoListRegisters);
        devices.access(Access { ipa, width: AccessWidth::Word, store: None }, &mut gic)
    }

    fn store(devices: &Devices, ipa: u64, value: u64) -> Option<u64> {
        let mut gic = VgicSession::local(devices.vgic(), 0, NoListRegisters);
        devices.access(Access { ipa, width: AccessWidth::Word, store: Some(value) }, &mut gic)
    }

    #[test]
    fn every_device_answers_at_its_address() {
        let devices = devices(&Sent::default());
        // GICD_IIDR, vCPU 1's GICR_TYPER (its affinity), the PL011's and the PL031's
        // PeriphID0, the PL031's time (the stopped test clock's).
        assert_eq!(load(&devices, qemu_virt::GICD.base + 0x8), Some(0x5300_043b));
        assert_eq!(load(&devices, qemu_virt::GICR_BASE + qemu_virt::GICR_FRAME_SIZE + 0xc), Some(1));
        assert_eq!(load(&devices, qemu_virt::UART.base + 0xfe0), Some(0x11));
        assert_eq!(load(&devices, qemu_virt::RTC.base + 0xfe0), Some(0x31));
        assert_eq!(load(&devices, qemu_virt::RTC.base), Some(u64::from(StoppedClock.seconds())));
        // The virtio-console in slot 0 (DeviceID 3); slot 1 and the last are empty.
        let slot = |n: u64| qemu_virt::VIRTIO_MMIO_BASE + n * qemu_virt::VIRTIO_MMIO_SLOT_SIZE;
        assert_eq!(load(&devices, slot(0) + 0x8), Some(3));
        for n in [1, 31] {
            assert_eq!(load(&devices, slot(n)), Some(0x7472_6976));
            assert_eq!(load(&devices, slot(n) + 0x8), Some(0));
            assert_eq!(load(&devices, slot(n) + 0xc), Some(u64::from(VENDOR_ID)));
            assert_eq!(store(&devices, slot(n) + 0x70, 1), Some(0), "a store to an empty slot does nothing");
        }
    }

    #[test]
    fn addresses_without_a_device_are_refused() {
        let devices = devices(&Sent::default());
        let past_gicr = qemu_virt::GICR_BASE + 2 * qemu_virt::GICR_FRAME_SIZE;
        let past_slots = qemu_virt::VIRTIO_MMIO_BASE + 32 * qemu_virt::VIRTIO_MMIO_SLOT_SIZE;
        for ipa in [0, qemu_virt::GICD.base - 4, past_gicr, qemu_virt::UART.end().unwrap(), past_slots] {
            assert_eq!(load(&devices, ipa), None, "{ipa:#x}");
        }
    }

    #[test]
    fn a_device_interrupt_reaches_the_vgic_when_its_line_moves() {
        let sent = Sent::default();
        let devices = devices(&sent);
        let uart_spi = FIRST_SPI + qemu_virt::UART_SPI;
        // Group 1, level-sensitive and enabled at the distributor; the TX
        // interrupt unmasked.
        store(&devices, qemu_virt::GICD.base, 2);
        store(&devices, qemu_virt::GICD.base + 0xc08, 0);
        store(&devices, qemu_virt::GICD.base + 0x84, 1 << (uart_spi - 32));
        store(&devices, qemu_virt::GICD.base + 0x104, 1 << (uart_spi - 32));
        store(&devices, qemu_virt::UART.base + 0x38, 1 << 5);
        assert!(!devices.vgic().lock().has_pending(0));
        // A byte sent raises TXRIS: the line goes high, and the SPI is pending on
        // vCPU 0 (where it is routed).
        store(&devices, qemu_virt::UART.base, u64::from(b'x'));
        assert_eq!(*sent.0.lock().unwrap(), b"x");
        assert!(devices.vgic().lock().has_pending(0));
        assert!(!devices.vgic().lock().has_pending(1));
        // UARTICR clears it: the line drops, and so does the pending state.
        store(&devices, qemu_virt::UART.base + 0x44, 1 << 5);
        assert!(!devices.vgic().lock().has_pending(0));
    }

    #[test]
    fn the_rtc_alarm_is_due_when_armed_and_its_line_reaches_the_vgic() {
        let devices = devices(&Sent::default());
        let rtc_spi = FIRST_SPI + qemu_virt::RTC_SPI;
        assert_eq!(devices.rtc_alarm_due(), None);
        // The distributor on, the SPI enabled (Group 1, level).
        store(&devices, qemu_virt::GICD.base, 2);
        store(&devices, qemu_virt::GICD.base + 0xc08, 0);
        store(&devices, qemu_virt::GICD.base + 0x84, 1 << (rtc_spi - 32));
        store(&devices, qemu_virt::GICD.base + 0x104, 1 << (rtc_spi - 32));
        store(&devices, qemu_virt::RTC.base + 0x10, 1);
        // A match one second ahead: due at counter 1 (the test clock runs at 1 Hz).
        store(&devices, qemu_virt::RTC.base + 0x4, u64::from(StoppedClock.seconds()) + 1);
        assert_eq!(devices.rtc_alarm_due(), Some(1));
        assert!(!devices.vgic().lock().has_pending(0));
        // A match equal to the time raises it at once; the alarm is no longer due.
        store(&devices, qemu_virt::RTC.base + 0x4, u64::from(StoppedClock.seconds()));
        assert_eq!(devices.rtc_alarm_due(), None);
        assert!(devices.vgic().lock().has_pending(0));
        // Cleared, the line drops; a reset forgets an armed alarm.
        store(&devices, qemu_virt::RTC.base + 0x1c, 1);
        assert!(!devices.vgic().lock().has_pending(0));
        store(&devices, qemu_virt::RTC.base + 0x4, u64::from(StoppedClock.seconds()) + 5);
        assert!(devices.rtc_alarm_due().is_some());
        devices.reset();
        assert_eq!(devices.rtc_alarm_due(), None);
    }
}
