//! Feature bits that belong to no one device type (virtio 1.2 §6).

/// The driver can use indirect descriptor tables (§2.7.5.3).
pub const RING_INDIRECT_DESC: u64 = 1 << 28;
/// The `used_event` / `avail_event` fields are in use (§2.7.7, §2.7.10).
pub const RING_EVENT_IDX: u64 = 1 << 29;
/// The device complies with virtio 1.x; a modern device must offer it and a modern
/// driver must accept it.
pub const VERSION_1: u64 = 1 << 32;
/// The device is behind an IOMMU or similar (not supported here).
pub const ACCESS_PLATFORM: u64 = 1 << 33;
/// The packed ring layout (not supported here: this crate drives split queues).
pub const RING_PACKED: u64 = 1 << 34;
