//! What a driver can get wrong in a virtqueue: the error a queue, its chains and
//! the backends that read them return.

use core::fmt;

use crate::mm::guest_memory::GuestMemoryError;

/// One of the three areas of a split virtqueue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ring {
    /// The descriptor table (16-byte aligned, 16 bytes per entry).
    Descriptors,
    /// The driver area, the available ring (2-byte aligned, 6 + 2 per entry).
    Available,
    /// The device area, the used ring (4-byte aligned, 6 + 8 per entry).
    Used,
}

/// A driver error in a virtqueue that the device cannot go on from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueError {
    /// A ring area is not aligned as §2.7 requires.
    RingMisaligned {
        /// Which area.
        ring: Ring,
        /// Its guest-physical address.
        addr: u64,
    },
    /// A ring area is not all RAM.
    RingOutOfRange {
        /// Which area.
        ring: Ring,
        /// Its guest-physical address.
        addr: u64,
        /// Its length.
        len: u64,
    },
    /// `avail.idx` moved by more than the queue size past the device's cursor.
    AvailIndexJump {
        /// The index the driver published.
        avail: u16,
        /// The next entry the device would have read.
        next: u16,
    },
    /// An available-ring entry names a descriptor past the table.
    HeadOutOfRange {
        /// The head index.
        head: u16,
    },
    /// A descriptor's `next` is past its table.
    NextOutOfRange {
        /// The chain's head.
        head: u16,
        /// The bad index.
        next: u16,
    },
    /// The chain has more descriptors than the queue size, or loops.
    ChainTooLong {
        /// The chain's head.
        head: u16,
    },
    /// A device-readable buffer follows a device-writable one.
    ReadableAfterWritable {
        /// The chain's head.
        head: u16,
    },
    /// An indirect descriptor when VIRTIO_F_RING_INDIRECT_DESC was not negotiated.
    IndirectNotNegotiated {
        /// The chain's head.
        head: u16,
    },
    /// An indirect descriptor with NEXT set (§2.7.5.3.1).
    IndirectWithNext {
        /// The chain's head.
        head: u16,
    },
    /// An indirect descriptor inside an indirect table (§2.7.5.3.1).
    NestedIndirect {
        /// The chain's head.
        head: u16,
    },
    /// An indirect table whose length is zero, not a multiple of 16, or more
    /// entries than the queue size.
    IndirectTableLength {
        /// The chain's head.
        head: u16,
        /// The length in bytes.
        len: u32,
    },
    /// A buffer or indirect table is not all RAM.
    BufferOutOfRange {
        /// The chain's head.
        head: u16,
        /// Its guest-physical address.
        addr: u64,
        /// Its length.
        len: u32,
    },
    /// A used-ring completion names a descriptor past the table.
    UsedHeadOutOfRange {
        /// The id given.
        head: u16,
    },
    /// Guest memory refused an access the checks above should have allowed.
    Memory(GuestMemoryError),
}

impl From<GuestMemoryError> for QueueError {
    fn from(e: GuestMemoryError) -> Self {
        Self::Memory(e)
    }
}

impl fmt::Display for QueueError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::RingMisaligned { ring, addr } => write!(f, "{ring:?} ring at {addr:#x} is misaligned"),
            Self::RingOutOfRange { ring, addr, len } => {
                write!(f, "{ring:?} ring at {addr:#x} ({len:#x} bytes) is not guest RAM")
            }
            Self::AvailIndexJump { avail, next } => {
                write!(f, "available index {avail} is more than the queue size past {next}")
            }
            Self::HeadOutOfRange { head } => {
                write!(f, "available entry names descriptor {head}, past the table")
            }
            Self::NextOutOfRange { head, next } => {
                write!(f, "chain {head}: next descriptor {next} is past the table")
            }
            Self::ChainTooLong { head } => write!(f, "chain {head} is longer than the queue (or loops)"),
            Self::ReadableAfterWritable { head } => {
                write!(f, "chain {head}: a device-readable buffer follows a writable one")
            }
            Self::IndirectNotNegotiated { head } => {
                write!(f, "chain {head}: indirect descriptor without RING_INDIRECT_DESC")
            }
            Self::IndirectWithNext { head } => write!(f, "chain {head}: indirect descriptor with NEXT"),
            Self::NestedIndirect { head } => write!(f, "chain {head}: nested indirect table"),
            Self::IndirectTableLength { head, len } => {
                write!(f, "chain {head}: indirect table of {len} bytes")
            }
            Self::BufferOutOfRange { head, addr, len } => {
                write!(f, "chain {head}: buffer at {addr:#x} ({len:#x} bytes) is not guest RAM")
            }
            Self::UsedHeadOutOfRange { head } => write!(f, "used id {head} is past the table"),
            Self::Memory(e) => write!(f, "ring access: {e}"),
        }
    }
}
