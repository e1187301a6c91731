//! The device-side queue against rings laid out by the test driver.

use super::*;
use crate::devices::virtio::testing::{ram, DriverQueue, RAM_BASE, RAM_SIZE};

const R: bool = false;
const W: bool = true;

/// A ready queue of `size` entries and the matching driver view.
fn queue(mem: &GuestMemory, size: u16) -> (Queue, DriverQueue) {
    let dq = DriverQueue::new(mem, size, RAM_BASE);
    let mut q = Queue::new(256);
    assert!(q.set_size(u32::from(size)));
    q.set_addresses(dq.desc, dq.avail, dq.used);
    q.check_layout(mem).unwrap();
    q.set_ready(true);
    (q, dq)
}

fn buf(n: u64) -> u64 {
    RAM_BASE + 0x8_0000 + n * 0x1000
}

#[test]
fn pops_a_plain_chain_and_completes_it() {
    let mem = ram();
    let (mut q, mut dq) = queue(&mem, 8);
    assert!(q.pop(&mem).unwrap().is_none());
    let head = dq.add(&mem, &[(buf(0), 16, R), (buf(1), 0, R), (buf(2), 512, W), (buf(3), 1, W)]);
    let c = q.pop(&mem).unwrap().unwrap();
    assert_eq!(c.head(), head);
    assert_eq!(c.readable(), &[Buffer { addr: buf(0), len: 16 }, Buffer { addr: buf(1), len: 0 }]);
    assert_eq!(c.writable().len(), 2);
    assert!(q.pop(&mem).unwrap().is_none());
    q.push_used(&mem, c.head(), 513).unwrap();
    assert_eq!(dq.take_used(&mem), Some((u32::from(head), 513)));
    assert!(q.needs_interrupt(&mem));
    assert!(!q.needs_interrupt(&mem), "nothing new was pushed");
}

#[test]
fn not_ready_queue_yields_nothing() {
    let mem = ram();
    let (mut q, mut dq) = queue(&mem, 8);
    dq.add(&mem, &[(buf(0), 1, W)]);
    q.set_ready(false);
    assert!(q.pop(&mem).unwrap().is_none());
    assert!(!q.needs_interrupt(&mem));
}

#[test]
fn zero_length_buffers_anywhere_are_fine() {
    let mem = ram();
    let (mut q, mut dq) = queue(&mem, 4);
    dq.add(&mem, &[(0xdead_0000_0000, 0, R), (buf(0), 4, W)]);
    let c = q.pop(&mem).unwrap().unwrap();
    assert_eq!(c.readable_len(), 0);
    assert_eq!(c.writable_len(), 4);
}

#[test]
fn descriptor_outside_ram_is_an_error() {
    let mem = ram();
    let (mut q, mut dq) = queue(&mem, 4);
    let head = dq.add(&mem, &[(RAM_BASE + RAM_SIZE - 8, 16, W)]);
    assert_eq!(
        q.pop(&mem).unwrap_err(),
        QueueError::BufferOutOfRange { head, addr: RAM_BASE + RAM_SIZE - 8, len: 16 }
    );
}

#[test]
fn looping_chain_is_an_error() {
    let mem = ram();
    let (mut q, mut dq) = queue(&mem, 8);
    // 0 -> 1 -> 0 -> ...
    dq.write_desc(&mem, 0, buf(0), 1, desc_flags::NEXT, 1);
    dq.write_desc(&mem, 1, buf(1), 1, desc_flags::NEXT, 0);
    dq.publish(&mem, 0);
    assert_eq!(q.pop(&mem).unwrap_err(), QueueError::ChainTooLong { head: 0 });
}

#[test]
fn chain_longer_than_the_queue_is_an_error() {
    let mem = ram();
    let (mut q, mut dq) = queue(&mem, 4);
    // Four descriptors chained in a table of four is the longest legal chain.
    let bufs: [(u64, u32, bool); 4] = core::array::from_fn(|i| (buf(i as u64), 8, R));
    dq.add(&mem, &bufs);
    assert_eq!(q.pop(&mem).unwrap().unwrap().readable().len(), 4);
    // An indirect table of four plus a direct descriptor before it makes five.
    q.set_features(false, true);
    let table = buf(10);
    for i in 0..4u16 {
        let flags = if i < 3 { desc_flags::NEXT } else { 0 };
        dq.write_table_desc(&mem, table, i, buf(u64::from(i)), 8, flags, i + 1);
    }
    dq.write_desc(&mem, 0, buf(0), 8, desc_flags::NEXT, 1);
    dq.write_desc(&mem, 1, table, 64, desc_flags::INDIRECT, 0);
    dq.publish(&mem, 0);
    assert_eq!(q.pop(&mem).unwrap_err(), QueueError::ChainTooLong { head: 0 });
}

#[test]
fn bad_indices_are_errors() {
    let mem = ram();
    let (mut q, mut dq) = queue(&mem, 4);
    dq.publish(&mem, 4);
    assert_eq!(q.pop(&mem).unwrap_err(), QueueError::HeadOutOfRange { head: 4 });
    dq.write_desc(&mem, 0, buf(0), 1, desc_flags::NEXT, 9);
    dq.publish(&mem, 0);
    assert_eq!(q.pop(&mem).unwrap_err(), QueueError::NextOutOfRange { head: 0, next: 9 });
    dq.write_desc(&mem, 0, buf(0), 1, desc_flags::NEXT | desc_flags::WRITE, 1);
    dq.write_desc(&mem, 1, buf(1), 1, 0, 0);
    dq.publish(&mem, 0);
    assert_eq!(q.pop(&mem).unwrap_err(), QueueError::ReadableAfterWritable { head: 0 });
    assert_eq!(q.push_used(&mem, 4, 0), Err(QueueError::UsedHeadOutOfRange { head: 4 }));
}

#[test]
fn avail_index_jump_is_an_error() {
    let mem = ram();
    let (mut q, dq) = queue(&mem, 8);
    mem.write_u16(dq.avail + 2, 9).unwrap();
    assert_eq!(q.pop(&mem).unwrap_err(), QueueError::AvailIndexJump { avail: 9, next: 0 });
    // Exactly the queue size is fine (a full ring).
    mem.write_u16(dq.avail + 2, 8).unwrap();
    assert!(q.pop(&mem).is_ok());
    // Moving backwards looks like a jump of almost 2^16.
    mem.write_u16(dq.avail + 2, 0).unwrap();
    assert_eq!(q.pop(&mem).unwrap_err(), QueueError::AvailIndexJump { avail: 0, next: 1 });
}

#[test]
fn indirect_tables() {
    let mem = ram();
    let (mut q, mut dq) = queue(&mem, 8);
    let table = buf(20);
    dq.write_table_desc(&mem, table, 0, buf(0), 16, desc_flags::NEXT, 2);
    dq.write_table_desc(&mem, table, 2, buf(1), 100, desc_flags::NEXT | desc_flags::WRITE, 1);
    dq.write_table_desc(&mem, table, 1, buf(2), 1, desc_flags::WRITE, 0);
    // A direct readable descriptor first, then the table (its WRITE flag ignored).
    dq.write_desc(&mem, 5, buf(3), 4, desc_flags::NEXT, 6);
    dq.write_desc(&mem, 6, table, 48, desc_flags::INDIRECT | desc_flags::WRITE, 0);
    dq.publish(&mem, 5);
    assert_eq!(q.pop(&mem).unwrap_err(), QueueError::IndirectNotNegotiated { head: 5 });

    q.set_features(false, true);
    dq.publish(&mem, 5);
    let c = q.pop(&mem).unwrap().unwrap();
    assert_eq!(c.head(), 5);
    assert_eq!(c.readable(), &[Buffer { addr: buf(3), len: 4 }, Buffer { addr: buf(0), len: 16 }]);
    assert_eq!(c.writable(), &[Buffer { addr: buf(1), len: 100 }, Buffer { addr: buf(2), len: 1 }]);
}

#[test]
fn malformed_indirect_tables() {
    let mem = ram();
    let (mut q, mut dq) = queue(&mem, 4);
    q.set_features(false, true);
    let table = buf(20);
    let cases: [(u32, u16, QueueError); 5] = [
        (0, desc_flags::INDIRECT, QueueError::IndirectTableLength { head: 0, len: 0 }),
        (24, desc_flags::INDIRECT, QueueError::IndirectTableLength { head: 0, len: 24 }),
        (80, desc_flags::INDIRECT, QueueError::IndirectTableLength { head: 0, len: 80 }),
        (32, desc_flags::INDIRECT | desc_flags::NEXT, QueueError::IndirectWithNext { head: 0 }),
        (32, desc_flags::INDIRECT, QueueError::NestedIndirect { head: 0 }),
    ];
    dq.write_table_desc(&mem, table, 0, buf(0), 1, desc_flags::NEXT, 1);
    dq.write_table_desc(&mem, table, 1, table, 32, desc_flags::INDIRECT, 0);
    for (len, flags, err) in cases {
        dq.write_desc(&mem, 0, table, len, flags, 1);
        dq.publish(&mem, 0);
        assert_eq!(q.pop(&mem).unwrap_err(), err);
    }
    // A table outside RAM, and a looping table.
    dq.write_desc(&mem, 0, RAM_BASE + RAM_SIZE - 16, 32, desc_flags::INDIRECT, 0);
    dq.publish(&mem, 0);
    assert!(matches!(q.pop(&mem).unwrap_err(), QueueError::BufferOutOfRange { .. }));
    dq.write_table_desc(&mem, table, 0, buf(0), 1, desc_flags::NEXT, 1);
    dq.write_table_desc(&mem, table, 1, buf(0), 1, desc_flags::NEXT, 0);
    dq.write_desc(&mem, 0, table, 32, desc_flags::INDIRECT, 0);
    dq.publish(&mem, 0);
    assert_eq!(q.pop(&mem).unwrap_err(), QueueError::ChainTooLong { head: 0 });
}

#[test]
fn ring_layout_checks() {
    let mem = ram();
    let mut q = Queue::new(256);
    assert!(q.set_size(16));
    let ok = (RAM_BASE, RAM_BASE + 0x1000, RAM_BASE + 0x2000);
    q.set_addresses(ok.0, ok.1, ok.2);
    q.check_layout(&mem).unwrap();
    let cases = [
        ((ok.0 + 8, ok.1, ok.2), QueueError::RingMisaligned { ring: Ring::Descriptors, addr: ok.0 + 8 }),
        ((ok.0, ok.1 + 1, ok.2), QueueError::RingMisaligned { ring: Ring::Available, addr: ok.1 + 1 }),
        ((ok.0, ok.1, ok.2 + 2), QueueError::RingMisaligned { ring: Ring::Used, addr: ok.2 + 2 }),
        (
            (RAM_BASE - 0x1000, ok.1, ok.2),
            QueueError::RingOutOfRange { ring: Ring::Descriptors, addr: RAM_BASE - 0x1000, len: 256 },
        ),
        (
            (ok.0, RAM_BASE + RAM_SIZE - 32, ok.2),
            QueueError::RingOutOfRange { ring: Ring::Available, addr: RAM_BASE + RAM_SIZE - 32, len: 38 },
        ),
        (
            (ok.0, ok.1, RAM_BASE + RAM_SIZE - 132),
            QueueError::RingOutOfRange { ring: Ring::Used, addr: RAM_BASE + RAM_SIZE - 132, len: 134 },
        ),
    ];
    for ((d, a, u), err) in cases {
        q.set_addresses(d, a, u);
        assert_eq!(q.check_layout(&mem), Err(err));
    }
    assert!(!q.set_size(0));
    assert!(!q.set_size(12));
    assert!(!q.set_size(512));
    assert!(!q.set_size(0x1_0010));
    assert_eq!(q.size(), 16);
}

#[test]
fn indices_wrap_past_65535() {
    let mem = ram();
    let (mut q, mut dq) = queue(&mem, 4);
    let mut interrupts = 0;
    for i in 0..70_000u32 {
        // Two in flight at a time, completed in reverse order.
        let a = dq.add(&mem, &[(buf(0), 4, W)]);
        let b = dq.add(&mem, &[(buf(1), 4, W)]);
        let ca = q.pop(&mem).unwrap().unwrap();
        let cb = q.pop(&mem).unwrap().unwrap();
        assert_eq!((ca.head(), cb.head()), (a, b), "round {i}");
        assert!(q.pop(&mem).unwrap().is_none());
        q.push_used(&mem, cb.head(), 2).unwrap();
        q.push_used(&mem, ca.head(), 1).unwrap();
        interrupts += u32::from(q.needs_interrupt(&mem));
        assert_eq!(dq.take_used(&mem), Some((u32::from(b), 2)));
        assert_eq!(dq.take_used(&mem), Some((u32::from(a), 1)));
    }
    assert_eq!(interrupts, 70_000);
    assert_eq!(mem.read_u16(dq.used + 2).unwrap(), (140_000u32 % 65_536) as u16);
}

#[test]
fn no_interrupt_flag_without_event_idx() {
    let mem = ram();
    let (mut q, mut dq) = queue(&mem, 4);
    dq.set_avail_flags(&mem, AVAIL_F_NO_INTERRUPT);
    dq.add(&mem, &[(buf(0), 4, W)]);
    let c = q.pop(&mem).unwrap().unwrap();
    q.push_used(&mem, c.head(), 0).unwrap();
    assert!(!q.needs_interrupt(&mem));
    dq.set_avail_flags(&mem, 0);
    dq.add(&mem, &[(buf(0), 4, W)]);
    let c = q.pop(&mem).unwrap().unwrap();
    q.push_used(&mem, c.head(), 0).unwrap();
    assert!(q.needs_interrupt(&mem));
    // No avail_event is written without EVENT_IDX.
    assert_eq!(mem.read_u16(dq.used + 4 + 8 * 4).unwrap(), 0);
}

#[test]
fn event_idx_both_ways() {
    let mem = ram();
    let (mut q, mut dq) = queue(&mem, 8);
    q.set_features(true, false);
    let avail_event = dq.used + 4 + 8 * 8;
    // The flags field is ignored with EVENT_IDX.
    dq.set_avail_flags(&mem, AVAIL_F_NO_INTERRUPT);
    // Finding the ring empty asks for a notify at the next entry.
    mem.write_u16(avail_event, 0xffff).unwrap();
    assert!(q.pop(&mem).unwrap().is_none());
    assert_eq!(mem.read_u16(avail_event).unwrap(), 0);
    for _ in 0..3 {
        dq.add(&mem, &[(buf(0), 4, W)]);
    }
    while let Some(c) = q.pop(&mem).unwrap() {
        q.push_used(&mem, c.head(), 0).unwrap();
    }
    assert_eq!(mem.read_u16(avail_event).unwrap(), 3);

    // used_event = 1: the driver wants an interrupt once entry 1 is used; three
    // completions (0 -> 3) pass it.
    dq.set_used_event(&mem, 1);
    assert!(q.needs_interrupt(&mem));
    // used_event = 5: completions 3 -> 5 don't pass it (5 is not yet used).
    dq.set_used_event(&mem, 5);
    for _ in 0..2 {
        dq.add(&mem, &[(buf(0), 4, W)]);
        let c = q.pop(&mem).unwrap().unwrap();
        q.push_used(&mem, c.head(), 0).unwrap();
    }
    assert!(!q.needs_interrupt(&mem));
    // One more (5 -> 6) passes it.
    dq.add(&mem, &[(buf(0), 4, W)]);
    let c = q.pop(&mem).unwrap().unwrap();
    q.push_used(&mem, c.head(), 0).unwrap();
    assert!(q.needs_interrupt(&mem));
}

#[test]
fn event_idx_across_the_wrap() {
    assert!(need_event(0xffff, 0x0001, 0xfffe));
    assert!(need_event(0x0000, 0x0001, 0xffff));
    assert!(!need_event(0x0001, 0x0001, 0xffff));
    assert!(!need_event(0xfffd, 0x0001, 0xfffe));
    assert!(need_event(0, 1, 0));
    assert!(!need_event(1, 1, 0));
}

#[test]
fn reset_forgets_everything() {
    let mem = ram();
    let (mut q, mut dq) = queue(&mem, 8);
    q.set_features(true, true);
    dq.add(&mem, &[(buf(0), 4, W)]);
    q.pop(&mem).unwrap().unwrap();
    q.reset();
    assert!(!q.ready());
    assert_eq!((q.size(), q.desc_addr(), q.avail_addr(), q.used_addr()), (256, 0, 0, 0));
    assert!(q.pop(&mem).unwrap().is_none());
}
