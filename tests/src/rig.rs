//! Builders for the device slots the tests use, and the variants they run in.

use std::sync::Arc;

use guest_drivers::features::{RING_EVENT_IDX, RING_INDIRECT_DESC};
use guest_drivers::transport::mmio::MmioTransport;
use hypervisor::devices::virtio::blk::Blk;
use hypervisor::devices::virtio::console::Console;

use crate::console_sink::ConsoleSink;
use crate::disk::Disk;
use crate::filter::FeatureFilter;
use crate::region::SharedRegion;
use crate::slot::{Slot, SlotRegisters};

/// The serial number the blk slots answer GET_ID with.
pub const SERIAL: &[u8] = b"sluice-disk-0";

/// A virtio-blk model over `disk`.
pub fn blk_slot(region: &Arc<SharedRegion>, disk: &Disk, legacy: bool, read_only: bool) -> Slot {
    Slot::new(Box::new(Blk::new(disk.memory(), read_only, SERIAL)), region, legacy)
}

/// A virtio-console model, and the sink its output goes to.
pub fn console_slot(region: &Arc<SharedRegion>, legacy: bool) -> (Slot, ConsoleSink) {
    let sink = ConsoleSink::new();
    (Slot::new(Box::new(Console::new(sink.output())), region, legacy), sink)
}

/// One way of running a device: the transport version, and which ring features the
/// driver gets to see (guest-drivers accepts whatever is offered, so a feature is
/// turned off by hiding it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Variant {
    /// virtio-mmio version 1 instead of 2.
    pub legacy: bool,
    /// VIRTIO_F_RING_EVENT_IDX offered.
    pub event_idx: bool,
    /// VIRTIO_F_RING_INDIRECT_DESC offered.
    pub indirect: bool,
}

impl Variant {
    /// Modern, with both ring features.
    pub const MODERN: Variant = Variant { legacy: false, event_idx: true, indirect: true };
    /// Legacy, with both ring features.
    pub const LEGACY: Variant = Variant { legacy: true, event_idx: true, indirect: true };

    /// All eight combinations.
    pub fn all() -> impl Iterator<Item = Variant> {
        (0..8).map(|i| Variant { legacy: i & 4 != 0, event_idx: i & 2 != 0, indirect: i & 1 != 0 })
    }

    /// The feature bits the driver must not see.
    pub fn hidden(&self) -> u64 {
        let event = if self.event_idx { 0 } else { RING_EVENT_IDX };
        let indirect = if self.indirect { 0 } else { RING_INDIRECT_DESC };
        event | indirect
    }
}

/// The transport guest-drivers uses in these tests.
pub type TestTransport = MmioTransport<FeatureFilter<SlotRegisters>>;

/// A guest-drivers MMIO transport over `slot`, showing the features of `variant`.
///
/// # Panics
///
/// If the slot does not probe as a virtio-mmio device.
pub fn transport(slot: &Slot, variant: Variant) -> TestTransport {
    filtered_transport(slot, variant.hidden(), 0)
}

/// A transport over `slot` that hides the feature bits `hide` and shows the bits
/// `add` as offered.
///
/// # Panics
///
/// If the slot does not probe as a virtio-mmio device.
pub fn filtered_transport(slot: &Slot, hide: u64, add: u64) -> TestTransport {
    MmioTransport::from_registers(FeatureFilter::new(slot.registers(), hide, add)).expect("virtio-mmio probe")
}
