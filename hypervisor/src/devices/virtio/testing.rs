//! A tiny hand-written virtio driver for the device models' host tests: fake guest
//! RAM, the driver's side of a split virtqueue laid out in it, and register helpers
//! that bring a [`VirtioMmio`] up the way §3.1.1 says a driver does.
//!
//! It is deliberately naive (descriptors handed out round-robin, no free list): it
//! exists to put exact bytes where the device will look, including wrong ones.

use alloc::boxed::Box;
use alloc::vec;

use super::{status, VirtioMmio};
use crate::devices::{AccessWidth, MmioDevice};
use crate::mm::guest_memory::GuestMemory;

/// Where the fake RAM starts (QEMU virt's RAM base).
pub const RAM_BASE: u64 = 0x4000_0000;
/// How much fake RAM there is.
pub const RAM_SIZE: u64 = 0x10_0000;

/// 1 MiB of zeroed fake guest RAM at [`RAM_BASE`] (leaked: tests are short).
pub fn ram() -> GuestMemory {
    GuestMemory::from_static(RAM_BASE, Box::leak(vec![0u8; RAM_SIZE as usize].into_boxed_slice()))
}

/// The driver's view of one split virtqueue in fake RAM.
#[derive(Debug, Clone)]
pub struct DriverQueue {
    /// Queue size.
    pub size: u16,
    /// Descriptor table address.
    pub desc: u64,
    /// Available ring address.
    pub avail: u64,
    /// Used ring address.
    pub used: u64,
    next_desc: u16,
    avail_idx: u16,
    last_used: u16,
}

impl DriverQueue {
    /// Lays out a queue of `size` at `base` (zeroing its rings): descriptors, then the
    /// available ring, then the used ring at the next 4-byte boundary.
    pub fn new(mem: &GuestMemory, size: u16, base: u64) -> Self {
        let desc = base;
        let avail = desc + 16 * u64::from(size);
        let used = (avail + 6 + 2 * u64::from(size) + 3) & !3;
        mem.zero(base, used + 6 + 8 * u64::from(size) - base).unwrap();
        Self { size, desc, avail, used, next_desc: 0, avail_idx: 0, last_used: 0 }
    }

    /// Writes descriptor `index` of the queue's table.
    pub fn write_desc(&self, mem: &GuestMemory, index: u16, addr: u64, len: u32, flags: u16, next: u16) {
        self.write_table_desc(mem, self.desc, index, addr, len, flags, next);
    }

    /// Writes entry `index` of a descriptor table at `table`.
    #[allow(clippy::too_many_arguments)]
    pub fn write_table_desc(
        &self,
        mem: &GuestMemory,
        table: u64,
        index: u16,
        addr: u64,
        len: u32,
        flags: u16,
        next: u16,
    ) {
        let at = table + 16 * u64::from(index);
        mem.write_u64(at, addr).unwrap();
        mem.write_u32(at + 8, len).unwrap();
        mem.write_u16(at + 12, flags).unwrap();
        mem.write_u16(at + 14, next).unwrap();
    }

    /// Puts `bufs` (address, length, device-writable) in the next free descriptors as
    /// one chain and makes it available; returns its head.
    pub fn add(&mut self, mem: &GuestMemory, bufs: &[(u64, u32, bool)]) -> u16 {
        let head = self.next_desc;
        for (i, &(addr, len, writable)) in bufs.iter().enumerate() {
            let index = self.next_desc;
            self.next_desc = (self.next_desc + 1) % self.size;
            let last = i + 1 == bufs.len();
            let flags = u16::from(!last) | if writable { 2 } else { 0 };
            self.write_desc(mem, index, addr, len, flags, self.next_desc);
        }
        self.publish(mem, head);
        head
    }

    /// Makes the chain at `head` available (ring entry, then the index).
    pub fn publish(&mut self, mem: &GuestMemory, head: u16) {
        let slot = u64::from(self.avail_idx % self.size);
        mem.write_u16(self.avail + 4 + 2 * slot, head).unwrap();
        self.avail_idx = self.avail_idx.wrapping_add(1);
        mem.write_u16(self.avail + 2, self.avail_idx).unwrap();
    }

    /// The next used element `(id, len)`, if the device published one. Like a driver
    /// with callbacks enabled, it then sets `used_event` to the next entry it waits for
    /// (ignored by the device unless EVENT_IDX was negotiated).
    pub fn take_used(&mut self, mem: &GuestMemory) -> Option<(u32, u32)> {
        if mem.read_u16(self.used + 2).unwrap() == self.last_used {
            return None;
        }
        let at = self.used + 4 + 8 * u64::from(self.last_used % self.size);
        self.last_used = self.last_used.wrapping_add(1);
        self.set_used_event(mem, self.last_used);
        Some((mem.read_u32(at).unwrap(), mem.read_u32(at + 4).unwrap()))
    }

    /// Sets the available ring's flags.
    pub fn set_avail_flags(&self, mem: &GuestMemory, flags: u16) {
        mem.write_u16(self.avail, flags).unwrap();
    }

    /// Sets `used_event`.
    pub fn set_used_event(&self, mem: &GuestMemory, value: u16) {
        mem.write_u16(self.avail + 4 + 2 * u64::from(self.size), value).unwrap();
    }

    /// Reads `avail_event`.
    pub fn avail_event(&self, mem: &GuestMemory) -> u16 {
        mem.read_u16(self.used + 4 + 8 * u64::from(self.size)).unwrap()
    }
}

/// A 32-bit register read.
pub fn r(dev: &mut VirtioMmio, offset: u64) -> u32 {
    dev.read(offset, AccessWidth::Word) as u32
}

/// A 32-bit register write.
pub fn w(dev: &mut VirtioMmio, offset: u64, value: u32) {
    dev.write(offset, AccessWidth::Word, u64::from(value));
}

/// Brings a modern device up (§3.1.1): reset, ACKNOWLEDGE, DRIVER, features,
/// FEATURES_OK (checked), queues, DRIVER_OK.
pub fn bring_up(dev: &mut VirtioMmio, features: u64, queues: &[&DriverQueue]) {
    w(dev, 0x70, 0);
    w(dev, 0x70, u32::from(status::ACKNOWLEDGE));
    w(dev, 0x70, u32::from(status::ACKNOWLEDGE | status::DRIVER));
    w(dev, 0x24, 0);
    w(dev, 0x20, features as u32);
    w(dev, 0x24, 1);
    w(dev, 0x20, (features >> 32) as u32);
    let s = status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK;
    w(dev, 0x70, u32::from(s));
    assert_eq!(r(dev, 0x70), u32::from(s), "device refused features {features:#x}");
    for (i, q) in queues.iter().enumerate() {
        w(dev, 0x30, i as u32);
        w(dev, 0x38, u32::from(q.size));
        for (offset, addr) in [(0x80, q.desc), (0x90, q.avail), (0xa0, q.used)] {
            w(dev, offset, addr as u32);
            w(dev, offset + 4, (addr >> 32) as u32);
        }
        w(dev, 0x44, 1);
        assert_eq!(r(dev, 0x44), 1, "queue {i} refused");
    }
    w(dev, 0x70, u32::from(s | status::DRIVER_OK));
    assert_eq!(r(dev, 0x70), u32::from(s | status::DRIVER_OK));
}

/// What a [`FakeBackend`] saw.
#[derive(Debug, Default)]
pub struct FakeLog {
    /// Features given at the last activation.
    pub activated: Option<u64>,
    /// Resets seen.
    pub resets: u32,
    /// Queues notified, in order.
    pub notified: std::vec::Vec<usize>,
    /// Polls seen.
    pub polls: u32,
    /// Input taken.
    pub input: std::vec::Vec<u8>,
}

/// A device type for transport tests: 16 bytes of writable configuration space,
/// features bits 0, 5 and 50, and queues whose chains it completes at once with
/// `used.len` = the chain's writable length. With `fail` set, processing a queue is
/// a queue error (resets leave `fail` alone).
pub struct FakeBackend {
    /// Shared with the test.
    pub log: std::sync::Arc<std::sync::Mutex<FakeLog>>,
    /// Configuration space.
    pub config: [u8; 16],
    /// Number of queues.
    pub queues: usize,
    /// Make the next processing call fail.
    pub fail: bool,
}

/// Device ID of the [`FakeBackend`].
pub const FAKE_DEVICE_ID: u32 = 0x2a;
/// Features of the [`FakeBackend`].
pub const FAKE_FEATURES: u64 = 1 | 1 << 5 | 1 << 50;

impl FakeBackend {
    /// A fake with `queues` queues and its log.
    pub fn new(queues: usize) -> (Box<Self>, std::sync::Arc<std::sync::Mutex<FakeLog>>) {
        let log = std::sync::Arc::new(std::sync::Mutex::new(FakeLog::default()));
        let config = core::array::from_fn(|i| 0x10 + i as u8);
        (Box::new(Self { log: log.clone(), config, queues, fail: false }), log)
    }
}

impl super::VirtioBackend for FakeBackend {
    fn name(&self) -> &str {
        "fake"
    }
    fn device_id(&self) -> u32 {
        FAKE_DEVICE_ID
    }
    fn features(&self) -> u64 {
        FAKE_FEATURES
    }
    fn queue_count(&self) -> usize {
        self.queues
    }
    fn read_config(&self, offset: u64, data: &mut [u8]) {
        super::read_config_image(&self.config, offset, data);
    }
    fn write_config(&mut self, offset: u64, data: &[u8]) {
        for (i, &b) in data.iter().enumerate() {
            if let Some(slot) = self.config.get_mut(offset as usize + i) {
                *slot = b;
            }
        }
    }
    fn activate(&mut self, features: u64) {
        self.log.lock().unwrap().activated = Some(features);
    }
    fn reset(&mut self) {
        self.log.lock().unwrap().resets += 1;
    }
    fn process_queue(
        &mut self,
        index: usize,
        queues: &mut [super::Queue],
        mem: &GuestMemory,
    ) -> Result<super::Progress, super::QueueError> {
        self.log.lock().unwrap().notified.push(index);
        if self.fail {
            return Err(super::QueueError::HeadOutOfRange { head: 0xffff });
        }
        let q = &mut queues[index];
        while let Some(c) = q.pop(mem)? {
            q.push_used(mem, c.head(), c.writable_len() as u32)?;
        }
        Ok(super::Progress::Done)
    }
    fn poll(&mut self, _queues: &mut [super::Queue], _mem: &GuestMemory) -> Result<(), super::QueueError> {
        self.log.lock().unwrap().polls += 1;
        Ok(())
    }
    fn input(&mut self, bytes: &[u8]) -> usize {
        let take = bytes.len().min(4);
        self.log.lock().unwrap().input.extend_from_slice(&bytes[..take]);
        take
    }
}
