//! The queue against a hand-written device loop over the same memory.

use std::vec;
use std::vec::Vec;

use super::*;
use crate::fake::{FakeHal, FakeQueueDevice, FakeTransport};
use crate::features::{RING_EVENT_IDX, RING_INDIRECT_DESC};

type Queue = VirtQueue<FakeHal, u32, 16>;

/// A queue of at most 16 entries on a device offering `max` entries, with the ring
/// features in `features` negotiated, and the device's side of it.
fn setup(max: u16, features: u64, indirect_max: u16) -> (FakeTransport, Queue, FakeQueueDevice, FakeHal) {
    let transport = FakeTransport::new(1, features, &[max], 0);
    transport.state().driver_features = features;
    let hal = FakeHal::new();
    let options = QueueOptions::from_features(features, indirect_max);
    // SAFETY: test queues are dropped while the fake device is idle.
    let queue = unsafe { Queue::new(&mut transport.clone(), hal.clone(), 0, options) }.unwrap();
    let device = FakeQueueDevice::attach(&transport, 0);
    (transport, queue, device, hal)
}

/// Adds one readable buffer of `len` bytes with `token`.
fn add_one(queue: &mut Queue, buf: &[u8], token: u32) -> Result<u16> {
    // SAFETY: every test buffer outlives the queue's use of it.
    unsafe { queue.add_buf(&[buf], &mut [], token) }
}

#[test]
fn a_chain_goes_to_the_device_and_comes_back_with_its_token() {
    let (_t, mut queue, mut device, _hal) = setup(16, 0, 0);
    let out = *b"hello";
    let mut inp = [0u8; 8];
    // SAFETY: `out` and `inp` outlive the round trip.
    let head = unsafe { queue.add_buf(&[&out], &mut [&mut inp], 42) }.unwrap();
    assert_eq!(queue.num_free(), 14);
    assert_eq!(queue.in_flight(), 1);
    assert_eq!(queue.get_buf(), Ok(None));

    let chain = device.pop().unwrap();
    assert_eq!(chain.head, head);
    assert!(!chain.indirect);
    assert_eq!(chain.descs.len(), 2);
    assert_eq!(chain.readable(), b"hello");
    assert_eq!(chain.writable_len(), 8);
    let written = chain.write(b"world");
    device.push_used(chain.head, written);

    assert_eq!(queue.get_buf(), Ok(Some(Used { token: 42, len: 5, head })));
    assert_eq!(&inp[..5], b"world");
    assert_eq!(queue.num_free(), 16);
    assert_eq!(queue.get_buf(), Ok(None));
}

#[test]
fn the_size_is_the_largest_power_of_two_both_sides_allow() {
    assert_eq!(setup(100, 0, 0).1.size(), 16);
    assert_eq!(setup(12, 0, 0).1.size(), 8);
    assert_eq!(setup(1, 0, 0).1.size(), 1);
}

#[test]
fn a_missing_or_live_queue_is_unavailable() {
    let mut transport = FakeTransport::new(1, 0, &[0, 8], 0);
    // SAFETY: never handed to a device.
    let q = unsafe { Queue::new(&mut transport, FakeHal::new(), 0, QueueOptions::default()) };
    assert!(matches!(q, Err(Error::QueueUnavailable)));
    // SAFETY: never handed to a device.
    let q = unsafe { Queue::new(&mut transport, FakeHal::new(), 5, QueueOptions::default()) };
    assert!(matches!(q, Err(Error::QueueUnavailable)));
    transport.state().queues[1].ready = true;
    // SAFETY: never handed to a device.
    let q = unsafe { Queue::new(&mut transport, FakeHal::new(), 1, QueueOptions::default()) };
    assert!(matches!(q, Err(Error::QueueUnavailable)));
}

#[test]
fn running_out_of_dma_memory_is_an_error_and_leaks_nothing() {
    let mut transport = FakeTransport::new(1, RING_INDIRECT_DESC, &[8], 0);
    let hal = FakeHal::failing_after(1);
    let options = QueueOptions::from_features(RING_INDIRECT_DESC, 4);
    // SAFETY: never handed to a device.
    let q = unsafe { Queue::new(&mut transport, hal.clone(), 0, options) };
    assert!(matches!(q, Err(Error::NoMemory)));
    assert_eq!(hal.live_pages(), 0);
    assert!(!transport.state().queues[0].ready);
}

#[test]
fn completions_in_any_order_return_the_right_tokens_and_free_every_descriptor() {
    let (_t, mut queue, mut device, _hal) = setup(8, 0, 0);
    let bufs: Vec<[u8; 4]> = (0..4u8).map(|i| [i; 4]).collect();
    for (i, buf) in bufs.iter().enumerate() {
        // Chains of 2 descriptors each: 4 chains fill the 8-entry ring.
        // SAFETY: `bufs` outlives the queue's use of it.
        unsafe { queue.add_buf(&[&buf[..2], &buf[2..]], &mut [], i as u32) }.unwrap();
    }
    assert_eq!(queue.num_free(), 0);
    assert_eq!(add_one(&mut queue, &bufs[0], 9), Err(Error::QueueFull));
    let chains: Vec<_> = core::iter::from_fn(|| device.pop()).collect();
    assert_eq!(chains.len(), 4);
    for (i, c) in chains.iter().enumerate() {
        assert_eq!(c.readable(), vec![i as u8; 4]);
    }
    for &i in &[2usize, 0, 3, 1] {
        device.push_used(chains[i].head, 0);
    }
    let tokens: Vec<u32> = core::iter::from_fn(|| queue.get_buf().unwrap()).map(|u| u.token).collect();
    assert_eq!(tokens, [2, 0, 3, 1]);
    assert_eq!(queue.num_free(), 8);
    assert_eq!(queue.in_flight(), 0);

    // The free list survived the shuffle: 8 one-descriptor chains fit again, all
    // on distinct descriptors.
    let one = [7u8];
    for i in 0..8 {
        add_one(&mut queue, &one, i).unwrap();
    }
    assert_eq!(add_one(&mut queue, &one, 8), Err(Error::QueueFull));
    let mut heads: Vec<u16> = core::iter::from_fn(|| device.pop()).map(|c| c.head).collect();
    heads.sort_unstable();
    assert_eq!(heads, (0..8).collect::<Vec<u16>>());
}

#[test]
fn indices_wrap_past_65535_with_several_chains_in_flight() {
    for features in [0, RING_EVENT_IDX] {
        let (transport, mut queue, mut device, _hal) = setup(4, features, 0);
        let data = [1u8, 2, 3];
        let mut notified = 0usize;
        for round in 0..25_000u32 {
            for k in 0..3 {
                add_one(&mut queue, &data, round * 3 + k).unwrap();
            }
            if features != 0 {
                // The device asks to hear about the first of this batch.
                device.set_avail_event(device.last_avail);
            }
            if queue.kick(&mut transport.clone()) {
                notified += 1;
            }
            // Complete in reverse order of arrival.
            let chains: Vec<_> = core::iter::from_fn(|| device.pop()).collect();
            for c in chains.iter().rev() {
                assert_eq!(c.readable(), data);
                device.push_used(c.head, 0);
            }
            for k in (0..3).rev() {
                assert_eq!(queue.get_buf().unwrap().unwrap().token, round * 3 + k);
            }
        }
        assert_eq!(notified, 25_000);
        // 75,000 chains: both indices went past 65535 and round again.
        assert_eq!(device.avail_idx(), (75_000u32 % 65_536) as u16);
        assert_eq!(queue.last_used_idx, (75_000u32 % 65_536) as u16);
        assert_eq!(queue.num_free(), 4);
    }
}

#[test]
fn no_notify_suppresses_kicks_without_event_idx() {
    let (transport, mut queue, device, _hal) = setup(8, 0, 0);
    let mut t = transport.clone();
    let b = [0u8];
    assert!(!queue.kick(&mut t), "nothing added: no kick");
    add_one(&mut queue, &b, 0).unwrap();
    assert!(queue.kick(&mut t));
    device.set_no_notify(true);
    add_one(&mut queue, &b, 1).unwrap();
    assert!(!queue.kick(&mut t));
    device.set_no_notify(false);
    add_one(&mut queue, &b, 2).unwrap();
    assert!(queue.kick(&mut t));
    assert_eq!(transport.state().notifications, [0, 0]);
}

#[test]
fn event_idx_notifies_only_when_avail_event_is_crossed() {
    let (transport, mut queue, device, _hal) = setup(16, RING_EVENT_IDX, 0);
    let mut t = transport.clone();
    let b = [0u8];
    // The device wants to hear when entry 5 is made available.
    device.set_avail_event(5);
    add_one(&mut queue, &b, 0).unwrap(); // 0 -> 1
    assert!(!queue.kick(&mut t));
    for i in 1..4 {
        add_one(&mut queue, &b, i).unwrap(); // 1 -> 4
    }
    assert!(!queue.kick(&mut t));
    for i in 4..7 {
        add_one(&mut queue, &b, i).unwrap(); // 4 -> 7 covers 5
    }
    assert!(queue.kick(&mut t));
    add_one(&mut queue, &b, 7).unwrap(); // 7 -> 8: 5 is behind
    assert!(!queue.kick(&mut t));
    // NO_NOTIFY means nothing with EVENT_IDX.
    device.set_no_notify(true);
    device.set_avail_event(8);
    add_one(&mut queue, &b, 8).unwrap();
    assert!(queue.kick(&mut t));
    assert_eq!(transport.state().notifications.len(), 2);
}

#[test]
fn enable_cb_reports_buffers_that_arrived_first() {
    for features in [0, RING_EVENT_IDX] {
        let (_t, mut queue, mut device, _hal) = setup(8, features, 0);
        let b = [0u8];
        add_one(&mut queue, &b, 1).unwrap();
        add_one(&mut queue, &b, 2).unwrap();
        queue.disable_cb();
        let first = device.pop().unwrap();
        let second = device.pop().unwrap();
        // Interrupts are off: the device need not interrupt.
        assert!(!device.push_used(first.head, 0));
        assert_eq!(queue.get_buf().unwrap().unwrap().token, 1);
        // The race: the second completes after the last get_buf, before enable_cb.
        assert!(!device.push_used(second.head, 0));
        assert!(!queue.enable_cb(), "a buffer is waiting: the caller must poll");
        assert_eq!(queue.get_buf().unwrap().unwrap().token, 2);
        assert!(queue.enable_cb(), "nothing waiting: safe to sleep");
        if features != 0 {
            assert_eq!(device.used_event(), 2);
        } else {
            assert_eq!(device.avail_flags(), 0);
        }
        // And the next completion interrupts.
        add_one(&mut queue, &b, 3).unwrap();
        let third = device.pop().unwrap();
        assert!(device.push_used(third.head, 0));
    }
}

#[test]
fn disable_cb_uses_the_flag_or_the_event_index() {
    let (_t, mut queue, device, _hal) = setup(8, 0, 0);
    queue.disable_cb();
    assert_eq!(device.avail_flags(), AVAIL_F_NO_INTERRUPT);
    let (_t, mut queue, device, _hal) = setup(8, RING_EVENT_IDX, 0);
    queue.disable_cb();
    assert_eq!(device.avail_flags(), 0, "flags stay 0 with EVENT_IDX");
    assert_eq!(device.used_event(), 0xffff);
}

#[test]
fn get_buf_keeps_used_event_one_ahead_with_callbacks_on() {
    let (_t, mut queue, mut device, _hal) = setup(8, RING_EVENT_IDX, 0);
    let b = [0u8];
    for i in 0..3 {
        add_one(&mut queue, &b, i).unwrap();
    }
    assert!(queue.enable_cb());
    for _ in 0..3 {
        let c = device.pop().unwrap();
        // Each completion interrupts, since the driver takes each one.
        assert!(device.push_used(c.head, 0));
        queue.get_buf().unwrap().unwrap();
    }
    assert_eq!(device.used_event(), 3);
}

#[test]
fn enable_cb_delayed_asks_for_an_interrupt_after_three_quarters() {
    let (_t, mut queue, mut device, _hal) = setup(8, RING_EVENT_IDX, 0);
    let b = [0u8];
    for i in 0..8 {
        add_one(&mut queue, &b, i).unwrap();
    }
    queue.disable_cb();
    assert!(queue.enable_cb_delayed());
    assert_eq!(device.used_event(), 6);
    let chains: Vec<_> = core::iter::from_fn(|| device.pop()).collect();
    let interrupts: Vec<bool> = chains.iter().map(|c| device.push_used(c.head, 0)).collect();
    assert_eq!(interrupts, [false, false, false, false, false, false, true, false]);
    // All 8 are in: more than the 6 asked for, so a second call says "poll".
    assert!(!queue.enable_cb_delayed());
}

#[test]
fn indirect_tables_carry_multi_buffer_chains_in_one_descriptor() {
    let (_t, mut queue, mut device, _hal) = setup(8, RING_INDIRECT_DESC, 4);
    let (a, b) = ([1u8; 3], [2u8; 5]);
    let mut c = [0u8; 7];
    // SAFETY: the buffers outlive the round trip.
    let head = unsafe { queue.add_buf(&[&a, &b], &mut [&mut c], 5) }.unwrap();
    assert_eq!(queue.num_free(), 7, "one ring descriptor");
    let chain = device.pop().unwrap();
    assert!(chain.indirect);
    assert_eq!(chain.head, head);
    assert_eq!(chain.descs.len(), 3);
    assert_eq!(chain.readable(), [1, 1, 1, 2, 2, 2, 2, 2]);
    chain.write(b"indirec");
    device.push_used(head, 7);
    assert_eq!(queue.get_buf().unwrap().unwrap().token, 5);
    assert_eq!(&c, b"indirec");
    assert_eq!(queue.num_free(), 8);

    // One buffer, or more than a table holds: direct descriptors.
    add_one(&mut queue, &a, 6).unwrap();
    assert!(!device.pop().unwrap().indirect);
    let five: [&[u8]; 5] = [&a, &a, &b, &b, &a];
    // SAFETY: as above.
    unsafe { queue.add_buf(&five, &mut [], 7) }.unwrap();
    let chain = device.pop().unwrap();
    assert!(!chain.indirect);
    assert_eq!(chain.descs.len(), 5);
    assert_eq!(queue.num_free(), 2);

    // With the table per head, a full ring of indirect chains fits.
    let (_t, mut queue, mut device, _hal) = setup(8, RING_INDIRECT_DESC, 4);
    for i in 0..8 {
        // SAFETY: as above.
        unsafe { queue.add_buf(&[&a, &b], &mut [], i) }.unwrap();
    }
    let chains: Vec<_> = core::iter::from_fn(|| device.pop()).collect();
    assert!(chains.iter().all(|c| c.indirect && c.readable() == [1, 1, 1, 2, 2, 2, 2, 2]));
}

#[test]
fn bad_chains_are_refused() {
    let (_t, mut queue, _device, _hal) = setup(4, 0, 0);
    let b = [0u8; 2];
    // SAFETY: nothing reaches the device.
    unsafe {
        assert_eq!(queue.add_buf(&[], &mut [], 0), Err(Error::InvalidParam));
        assert_eq!(queue.add_buf(&[&b, &[]], &mut [], 0), Err(Error::InvalidParam));
        assert_eq!(queue.add_buf(&[&b, &b, &b, &b, &b], &mut [], 0), Err(Error::InvalidParam));
    }
    assert_eq!(queue.num_free(), 4);
}

#[test]
fn a_used_id_that_is_not_an_outstanding_head_breaks_the_queue() {
    let (_t, mut queue, mut device, _hal) = setup(8, 0, 0);
    let b = [0u8; 2];
    // SAFETY: the buffer outlives the queue.
    let head = unsafe { queue.add_buf(&[&b, &b], &mut [], 1) }.unwrap();
    let _ = device.pop().unwrap();
    // Descriptor head+1 is the chain's second, not a head.
    device.push_used_raw(u32::from(head) + 1, 0);
    assert_eq!(queue.get_buf(), Err(Error::BadUsedId(u32::from(head) + 1)));
    assert_eq!(queue.get_buf(), Err(Error::Broken));
    assert!(queue.is_broken());
    assert_eq!(add_one(&mut queue, &b, 2), Err(Error::Broken));
    assert!(!queue.enable_cb());

    for bogus in [8, 1000, u32::MAX] {
        let (_t, mut queue, mut device, _hal) = setup(8, 0, 0);
        add_one(&mut queue, &b, 1).unwrap();
        let _ = device.pop().unwrap();
        device.push_used_raw(bogus, 0);
        assert_eq!(queue.get_buf(), Err(Error::BadUsedId(bogus)));
    }
}

#[test]
fn a_chain_returned_twice_or_an_index_jump_breaks_the_queue() {
    let (_t, mut queue, mut device, _hal) = setup(8, 0, 0);
    let b = [0u8; 2];
    add_one(&mut queue, &b, 1).unwrap();
    add_one(&mut queue, &b, 2).unwrap();
    let c = device.pop().unwrap();
    device.push_used(c.head, 0);
    device.push_used(c.head, 0);
    assert_eq!(queue.get_buf().unwrap().unwrap().token, 1);
    assert_eq!(queue.get_buf(), Err(Error::BadUsedId(u32::from(c.head))));

    let (_t, mut queue, mut device, _hal) = setup(8, 0, 0);
    add_one(&mut queue, &b, 1).unwrap();
    device.used_idx = 5;
    device.publish_used_idx();
    assert_eq!(queue.get_buf(), Err(Error::BadUsedIndex(5)));
    assert_eq!(queue.get_buf(), Err(Error::Broken));
}

#[test]
fn dropping_the_queue_frees_its_memory() {
    let (transport, queue, _device, hal) = setup(16, RING_INDIRECT_DESC | RING_EVENT_IDX, 4);
    assert!(hal.live_pages() > 0);
    drop(queue);
    drop(transport);
    assert_eq!(hal.live_pages(), 0);
}
