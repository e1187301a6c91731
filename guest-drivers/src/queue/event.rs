//! The event-index test (virtio 1.2 §2.7.7.2, §2.7.10.2).

/// Whether a side that moved its index from `old` to `new` must signal the other,
/// which asked to hear when the index passes `event`: true when `event` lies in
/// `[old, new)`, in wrapping 16-bit arithmetic.
///
/// The driver uses it with the device's `avail_event` to decide whether to notify;
/// the device uses it with the driver's `used_event` to decide whether to interrupt.
pub const fn vring_need_event(event: u16, new: u16, old: u16) -> bool {
    new.wrapping_sub(event).wrapping_sub(1) < new.wrapping_sub(old)
}

#[cfg(test)]
mod tests {
    use super::vring_need_event;

    #[test]
    fn event_inside_the_moved_range_fires() {
        assert!(vring_need_event(0, 1, 0));
        assert!(!vring_need_event(1, 1, 0));
        assert!(vring_need_event(5, 10, 3));
        assert!(!vring_need_event(2, 10, 3));
        assert!(!vring_need_event(10, 10, 3));
        // Nothing moved: never.
        assert!(!vring_need_event(7, 7, 7));
    }

    #[test]
    fn wraps_past_65535() {
        assert!(vring_need_event(0xffff, 2, 0xfffe));
        assert!(vring_need_event(0, 2, 0xfffe));
        assert!(vring_need_event(1, 2, 0xfffe));
        assert!(!vring_need_event(2, 2, 0xfffe));
        assert!(!vring_need_event(0xfffd, 2, 0xfffe));
    }
}
