//! A [`Transport`] that keeps a device's register state in memory shared with the
//! test, with the status rules of a strict device (FEATURES_OK refused for features
//! it did not offer, or on request), and an optional hook run on each notify, the
//! way Sluice runs a device's backend on the trapping CPU.

use std::boxed::Box;
use std::sync::{Arc, Mutex, MutexGuard};
use std::vec;
use std::vec::Vec;

use crate::error::{Error, Result};
use crate::features;
use crate::hal::PhysAddr;
use crate::transport::{DeviceStatus, Transport};

/// What the device does on a notify: gets the state and the queue index.
pub type NotifyHook = Box<dyn FnMut(&mut FakeState, u16) + Send>;

/// One queue's registers.
#[derive(Debug, Clone, Default)]
pub struct FakeQueueState {
    /// QueueNumMax (0: no such queue).
    pub max_size: u16,
    /// QueueNum.
    pub size: u16,
    /// Descriptor table address.
    pub desc: PhysAddr,
    /// Driver (available) area address.
    pub driver: PhysAddr,
    /// Device (used) area address.
    pub device: PhysAddr,
    /// QueueReady.
    pub ready: bool,
}

/// The device's side of the registers.
pub struct FakeState {
    /// DeviceID.
    pub device_id: u32,
    /// Whether the device is legacy (virtio-mmio version 1).
    pub legacy: bool,
    /// Offered features.
    pub device_features: u64,
    /// Features the driver wrote.
    pub driver_features: u64,
    /// Device status.
    pub status: u32,
    /// Every value written to the status register, in order.
    pub status_log: Vec<u32>,
    /// Refuse FEATURES_OK whatever the driver asks.
    pub refuse_features: bool,
    /// The queues.
    pub queues: Vec<FakeQueueState>,
    /// QueueSel.
    pub queue_sel: u16,
    /// Every notify, in order.
    pub notifications: Vec<u16>,
    /// InterruptStatus.
    pub interrupt_status: u32,
    /// Device configuration space.
    pub config: Vec<u8>,
    /// ConfigGeneration.
    pub config_generation: u32,
    /// Every configuration write (offset, value), in order.
    pub config_writes: Vec<(usize, u32)>,
    /// Run on every notify.
    pub on_notify: Option<NotifyHook>,
}

impl FakeState {
    fn selected(&mut self) -> Option<&mut FakeQueueState> {
        self.queues.get_mut(usize::from(self.queue_sel))
    }

    fn reset(&mut self) {
        self.status = 0;
        self.driver_features = 0;
        self.interrupt_status = 0;
        for q in &mut self.queues {
            *q = FakeQueueState { max_size: q.max_size, ..FakeQueueState::default() };
        }
    }

    /// Whether the driver's features are acceptable to a strict device.
    fn features_acceptable(&self) -> bool {
        !self.refuse_features
            && self.driver_features & !self.device_features == 0
            && (self.legacy || self.driver_features & features::VERSION_1 != 0)
    }
}

/// A fake device's registers, shared between the driver (which owns a clone) and
/// the test.
#[derive(Clone)]
pub struct FakeTransport {
    /// The register state.
    pub state: Arc<Mutex<FakeState>>,
}

impl FakeTransport {
    /// A modern device of type `device_id` offering `device_features`, with one
    /// queue per entry of `queue_max_sizes` and `config_size` bytes of zeroed
    /// configuration space.
    pub fn new(device_id: u32, device_features: u64, queue_max_sizes: &[u16], config_size: usize) -> Self {
        let queues = queue_max_sizes
            .iter()
            .map(|&max_size| FakeQueueState { max_size, ..Default::default() })
            .collect();
        let state = FakeState {
            device_id,
            legacy: false,
            device_features,
            driver_features: 0,
            status: 0,
            status_log: Vec::new(),
            refuse_features: false,
            queues,
            queue_sel: 0,
            notifications: Vec::new(),
            interrupt_status: 0,
            config: vec![0; config_size],
            config_generation: 0,
            config_writes: Vec::new(),
            on_notify: None,
        };
        Self { state: Arc::new(Mutex::new(state)) }
    }

    /// The register state, locked.
    pub fn state(&self) -> MutexGuard<'_, FakeState> {
        self.state.lock().expect("fake transport lock")
    }

    /// Runs `hook` on every notify from now on.
    pub fn set_notify_hook(&self, hook: impl FnMut(&mut FakeState, u16) + Send + 'static) {
        self.state().on_notify = Some(Box::new(hook));
    }

    /// Writes `bytes` into the configuration space at `offset`.
    pub fn set_config(&self, offset: usize, bytes: &[u8]) {
        self.state().config[offset..offset + bytes.len()].copy_from_slice(bytes);
    }
}

impl Transport for FakeTransport {
    fn device_id(&self) -> u32 {
        self.state().device_id
    }

    fn is_legacy(&self) -> bool {
        self.state().legacy
    }

    fn read_device_features(&mut self) -> u64 {
        let s = self.state();
        if s.legacy {
            s.device_features & u64::from(u32::MAX)
        } else {
            s.device_features
        }
    }

    fn write_driver_features(&mut self, features: u64) {
        self.state().driver_features = features;
    }

    fn status(&self) -> DeviceStatus {
        DeviceStatus(self.state().status)
    }

    fn set_status(&mut self, status: DeviceStatus) {
        let mut s = self.state();
        s.status_log.push(status.0);
        if status.0 == 0 {
            s.reset();
            return;
        }
        let mut value = status.0;
        let asks_features_ok = value & DeviceStatus::FEATURES_OK.0 != 0;
        if asks_features_ok && s.status & DeviceStatus::FEATURES_OK.0 == 0 && !s.features_acceptable() {
            value &= !DeviceStatus::FEATURES_OK.0;
        }
        s.status = value;
    }

    fn queue_select(&mut self, queue: u16) {
        self.state().queue_sel = queue;
    }

    fn queue_max_size(&self) -> u16 {
        self.state().selected().map_or(0, |q| q.max_size)
    }

    fn queue_set_size(&mut self, size: u16) {
        if let Some(q) = self.state().selected() {
            q.size = size;
        }
    }

    fn queue_set_addresses(&mut self, desc: PhysAddr, driver: PhysAddr, device: PhysAddr) -> Result {
        let mut s = self.state();
        let q = s.selected().ok_or(Error::QueueUnavailable)?;
        q.desc = desc;
        q.driver = driver;
        q.device = device;
        Ok(())
    }

    fn queue_set_ready(&mut self, ready: bool) {
        if let Some(q) = self.state().selected() {
            q.ready = ready;
        }
    }

    fn queue_ready(&self) -> bool {
        self.state().selected().is_some_and(|q| q.ready)
    }

    fn notify(&mut self, queue: u16) {
        let mut s = self.state();
        s.notifications.push(queue);
        if let Some(mut hook) = s.on_notify.take() {
            hook(&mut s, queue);
            s.on_notify = Some(hook);
        }
    }

    fn interrupt_status(&self) -> u32 {
        self.state().interrupt_status
    }

    fn ack_interrupt(&mut self, bits: u32) {
        self.state().interrupt_status &= !bits;
    }

    fn config_generation(&self) -> u32 {
        self.state().config_generation
    }

    fn read_config_u8(&self, offset: usize) -> u8 {
        self.state().config[offset]
    }

    fn read_config_u16(&self, offset: usize) -> u16 {
        let s = self.state();
        u16::from_le_bytes([s.config[offset], s.config[offset + 1]])
    }

    fn read_config_u32(&self, offset: usize) -> u32 {
        let s = self.state();
        u32::from_le_bytes(s.config[offset..offset + 4].try_into().expect("4 bytes"))
    }

    fn write_config_u8(&mut self, offset: usize, value: u8) {
        let mut s = self.state();
        s.config[offset] = value;
        s.config_writes.push((offset, value.into()));
    }

    fn write_config_u16(&mut self, offset: usize, value: u16) {
        let mut s = self.state();
        s.config[offset..offset + 2].copy_from_slice(&value.to_le_bytes());
        s.config_writes.push((offset, value.into()));
    }

    fn write_config_u32(&mut self, offset: usize, value: u32) {
        let mut s = self.state();
        s.config[offset..offset + 4].copy_from_slice(&value.to_le_bytes());
        s.config_writes.push((offset, value));
    }
}
