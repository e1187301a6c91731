//! Where each part of a split virtqueue lies in its memory (virtio 1.2 §2.7).
//!
//! The driver lays every queue out as the legacy interface requires (§2.7.2 legacy
//! note): descriptor table at 0, available ring right after it, used ring at the
//! next [`RingLayout::LEGACY_ALIGN`] boundary. That one layout satisfies the modern
//! alignment rules too (16, 2 and 4 bytes, §2.7), so legacy and modern transports
//! share it.

/// Descriptor flag: the chain continues at `next` (§2.7.5).
pub const DESC_F_NEXT: u16 = 1;
/// Descriptor flag: the buffer is device-writable (§2.7.5).
pub const DESC_F_WRITE: u16 = 2;
/// Descriptor flag: the buffer is a table of descriptors (§2.7.5.3).
pub const DESC_F_INDIRECT: u16 = 4;
/// Available ring flag: the driver asks not to be interrupted (§2.7.7).
pub const AVAIL_F_NO_INTERRUPT: u16 = 1;
/// Used ring flag: the device asks not to be notified (§2.7.10).
pub const USED_F_NO_NOTIFY: u16 = 1;

/// Bytes of one descriptor: addr u64, len u32, flags u16, next u16.
pub const DESC_SIZE: usize = 16;
/// Bytes of one used element: id u32, len u32.
pub const USED_ELEM_SIZE: usize = 8;

/// Offsets of the parts of a queue of `size` entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RingLayout {
    size: u16,
}

impl RingLayout {
    /// The alignment of the used ring (QueueAlign) and of the whole queue.
    pub const LEGACY_ALIGN: usize = 4096;

    /// The layout of a queue of `size` entries.
    pub const fn new(size: u16) -> Self {
        Self { size }
    }

    /// The queue size.
    pub const fn size(&self) -> u16 {
        self.size
    }

    /// Offset of descriptor `i`.
    pub const fn desc(&self, i: u16) -> usize {
        i as usize * DESC_SIZE
    }

    /// Offset of the available ring (`flags`, `idx`, `ring[size]`, `used_event`).
    pub const fn avail_offset(&self) -> usize {
        self.size as usize * DESC_SIZE
    }

    /// Offset of `avail.flags`.
    pub const fn avail_flags(&self) -> usize {
        self.avail_offset()
    }

    /// Offset of `avail.idx`.
    pub const fn avail_idx(&self) -> usize {
        self.avail_offset() + 2
    }

    /// Offset of `avail.ring[slot]`.
    pub const fn avail_ring(&self, slot: u16) -> usize {
        self.avail_offset() + 4 + 2 * slot as usize
    }

    /// Offset of `used_event`, after the available ring (§2.7.7, EVENT_IDX).
    pub const fn used_event(&self) -> usize {
        self.avail_ring(self.size)
    }

    /// Offset of the used ring (`flags`, `idx`, `ring[size]`, `avail_event`).
    pub const fn used_offset(&self) -> usize {
        (self.used_event() + 2).next_multiple_of(Self::LEGACY_ALIGN)
    }

    /// Offset of `used.flags`.
    pub const fn used_flags(&self) -> usize {
        self.used_offset()
    }

    /// Offset of `used.idx`.
    pub const fn used_idx(&self) -> usize {
        self.used_offset() + 2
    }

    /// Offset of `used.ring[slot]`.
    pub const fn used_elem(&self, slot: u16) -> usize {
        self.used_offset() + 4 + USED_ELEM_SIZE * slot as usize
    }

    /// Offset of `avail_event`, after the used ring (§2.7.10, EVENT_IDX).
    pub const fn avail_event(&self) -> usize {
        self.used_elem(self.size)
    }

    /// Bytes the whole queue needs, a whole number of [`Self::LEGACY_ALIGN`] units.
    pub const fn total(&self) -> usize {
        (self.avail_event() + 2).next_multiple_of(Self::LEGACY_ALIGN)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_spec_formulas() {
        // §2.7.2 (legacy): desc 16*n, avail 6+2n, used aligned, 6+8n.
        let l = RingLayout::new(256);
        assert_eq!(l.avail_offset(), 4096);
        assert_eq!(l.used_event(), 4096 + 4 + 512);
        assert_eq!(l.used_offset(), 8192);
        assert_eq!(l.avail_event(), 8192 + 4 + 8 * 256);
        assert_eq!(l.total(), 3 * 4096);
        let l = RingLayout::new(8);
        assert_eq!(l.avail_offset(), 128);
        assert_eq!(l.used_offset(), 4096);
        assert_eq!(l.total(), 8192);
    }
}
