//! The builder against a device of our own: a split-virtqueue walker written from
//! virtio 1.2 §2.7 (not from Sluice's code), over a fake RAM that refuses writes the
//! guest has not lent and remembers which bytes this operation wrote.

use super::*;
use crate::fuzz::space::{DeviceKind, Space, INDIRECT_SLOT};

const RAM: Region = Region::new(0x4000_0000, 32 << 20);

fn space() -> Space {
    let image = Region::new(0x4020_0000, 0x3_0000);
    let dtb = Region::new(0x41e0_0000, 0x2000);
    Space::new(&[RAM], image, &[dtb], &[DeviceKind::Blk, DeviceKind::Console]).unwrap()
}

/// RAM as a byte array, remembering the ranges written since [`Fake::fresh_op`].
struct Fake<'a> {
    space: &'a Space,
    device: usize,
    bytes: Vec<u8>,
    fresh: Vec<(u64, u64)>,
}

impl<'a> Fake<'a> {
    fn new(space: &'a Space) -> Self {
        Self { space, device: 0, bytes: vec![0; RAM.size as usize], fresh: Vec::new() }
    }

    fn fresh_op(&mut self, device: usize) {
        self.device = device;
        self.fresh.clear();
    }

    fn offset(&self, addr: u64, len: u64) -> usize {
        assert!(RAM.contains_range(addr, len), "[{addr:#x}, +{len:#x}) is not RAM");
        (addr - RAM.base) as usize
    }

    fn read(&self, addr: u64, out: &mut [u8]) {
        let at = self.offset(addr, out.len() as u64);
        out.copy_from_slice(&self.bytes[at..at + out.len()]);
    }

    fn u16(&self, addr: u64) -> u16 {
        let mut b = [0; 2];
        self.read(addr, &mut b);
        u16::from_le_bytes(b)
    }

    /// Whether every byte of the range was written in this operation.
    fn is_fresh(&self, addr: u64, len: u64) -> bool {
        (addr..addr + len).all(|a| self.fresh.iter().any(|&(start, end)| (start..end).contains(&a)))
    }
}

impl Memory for Fake<'_> {
    fn write(&mut self, addr: u64, bytes: &[u8]) {
        assert!(
            self.space.is_lent(self.device, addr, bytes.len() as u64),
            "a write of {} bytes at {addr:#x}, which device {} was not lent",
            bytes.len(),
            self.device
        );
        let at = self.offset(addr, bytes.len() as u64);
        self.bytes[at..at + bytes.len()].copy_from_slice(bytes);
        self.fresh.push((addr, addr + bytes.len() as u64));
    }
}

/// What the device made of one operation.
#[derive(Debug, Default)]
struct Walked {
    /// Chains completed.
    chains: usize,
    /// Bytes of readable buffers in them.
    readable: u64,
    /// Whether a chain or the index was refused (the device then needs a reset).
    error: bool,
    /// Chains that went through an indirect table.
    indirect: usize,
}

/// Walks what the driver made available since `queue.avail_idx`, as a device
/// would, checking every buffer and table against the guest's promises.
fn walk(space: &Space, device: usize, queue: &Queue, mem: &Fake<'_>) -> Walked {
    let size = queue.size;
    let mut out = Walked::default();
    let idx = mem.u16(queue.avail + 2);
    let pending = idx.wrapping_sub(queue.avail_idx);
    if pending > size {
        out.error = true;
        return out;
    }
    let tables = [
        Region::new(queue.desc, DESC_SIZE * u64::from(size)),
        Region::new(space.area(device).indirect(0).base, 2 * INDIRECT_SLOT),
    ];
    for k in 0..pending {
        let slot = queue.avail_idx.wrapping_add(k) % size;
        let head = mem.u16(queue.avail + 4 + 2 * u64::from(slot));
        match walk_chain(space, device, queue, mem, head, &tables) {
            Some((readable, indirect)) => {
                out.chains += 1;
                out.readable += readable;
                out.indirect += usize::from(indirect);
            }
            None => {
                out.error = true;
                return out;
            }
        }
    }
    out
}

/// One chain: `Some((readable bytes, went through an indirect table))`, or `None`
/// for a chain the device must refuse.
fn walk_chain(
    space: &Space,
    device: usize,
    queue: &Queue,
    mem: &Fake<'_>,
    head: u16,
    tables: &[Region],
) -> Option<(u64, bool)> {
    if head >= queue.size {
        return None;
    }
    let (mut table, mut entries, mut index) = (queue.desc, queue.size, head);
    let (mut visited, mut buffers, mut readable, mut seen_writable, mut indirect) =
        (0u16, 0u16, 0u64, false, false);
    loop {
        if visited >= entries {
            return None;
        }
        visited += 1;
        let at = table + DESC_SIZE * u64::from(index);
        assert!(mem.is_fresh(at, DESC_SIZE), "descriptor at {at:#x} was not written by this operation");
        let mut raw = [0u8; 16];
        mem.read(at, &mut raw);
        let d = Desc::from_bytes(&raw);
        if d.flags & flags::INDIRECT != 0 {
            if indirect || !queue.indirect || d.flags & flags::NEXT != 0 {
                return None;
            }
            let len = u64::from(d.len);
            if len == 0
                || !len.is_multiple_of(DESC_SIZE)
                || len / DESC_SIZE > u64::from(queue.size)
                || !space.in_ram(d.addr, len)
            {
                return None;
            }
            assert!(space.is_lent(device, d.addr, len), "indirect table at {:#x}", d.addr);
            (table, entries, index, visited, indirect) = (d.addr, (len / DESC_SIZE) as u16, 0, 0, true);
            continue;
        }
        let len = u64::from(d.len);
        if len != 0 && !space.in_ram(d.addr, len) {
            return None;
        }
        let writable = d.flags & flags::WRITE != 0;
        if !writable && seen_writable {
            return None;
        }
        seen_writable |= writable;
        buffers += 1;
        if buffers > queue.size {
            return None;
        }
        if len != 0 {
            assert!(space.is_lent(device, d.addr, len), "buffer [{:#x}, +{len:#x})", d.addr);
            if writable {
                let r = Region::new(d.addr, len);
                assert!(!tables.iter().any(|t| t.overlaps(&r)), "a writable buffer {r:x?} overlaps a table");
            } else {
                readable += len;
                if queue.index == 1 && space.kind(device) == DeviceKind::Console {
                    // What the console will print: nothing that spells a word.
                    let mut bytes = vec![0; len as usize];
                    mem.read(d.addr, &mut bytes);
                    assert!(!bytes.iter().any(u8::is_ascii_alphabetic), "letters at {:#x}", d.addr);
                }
            }
        }
        if d.flags & flags::NEXT == 0 {
            return Some((readable, indirect));
        }
        if d.next >= entries {
            return None;
        }
        index = d.next;
    }
}

/// Runs `ops` operations of `traffic` on `device`, setting the queue up again after
/// every refusal, and returns the totals.
fn run(device: usize, queue_index: u32, traffic: Traffic, seed: u64, ops: usize) -> (Walked, u64) {
    let space = space();
    let mut mem = Fake::new(&space);
    let mut rng = Rng::new(seed);
    let mut total = Walked::default();
    let mut most_read = 0;
    let mut queue = None;
    for _ in 0..ops {
        let q = *queue.get_or_insert_with(|| {
            let size = rng.pick(&[1u16, 2, 4, 8, 16, 64, 128, 256]);
            let (desc, avail, used) = layout(&mut rng, &space, device, size);
            let rings =
                [Region::new(desc, DESC_SIZE * u64::from(size)), Region::new(used, 6 + 8 * u64::from(size))];
            assert!(!rings[0].overlaps(&rings[1]), "the used ring overlaps the table");
            assert!(
                space.is_lent(device, desc, rings[0].size)
                    && space.is_lent(device, avail, 6 + 2 * u64::from(size))
            );
            assert!(space.is_lent(device, used, rings[1].size));
            assert!(desc.is_multiple_of(16) && avail.is_multiple_of(2) && used.is_multiple_of(4));
            Queue { index: queue_index, size, desc, avail, used, indirect: rng.chance(3, 4), avail_idx: 0 }
        });
        mem.fresh_op(device);
        let published = build(&mut rng, &space, device, q, traffic, &mut mem);
        assert_eq!(mem.u16(q.avail + 2), published.idx);
        let walked = walk(&space, device, &q, &mem);
        if traffic == Traffic::ConsoleTx {
            assert!(walked.readable <= CONSOLE_BUDGET, "{} bytes read in one operation", walked.readable);
            assert!(u64::from(published.taken.max(1)) * published.table_bytes <= CONSOLE_BUDGET);
        }
        most_read = most_read.max(walked.readable);
        total.chains += walked.chains;
        total.readable += walked.readable;
        total.indirect += walked.indirect;
        if walked.error {
            total.error = true;
            queue = None;
        } else if let Some(q) = queue.as_mut() {
            q.avail_idx = published.idx;
            if q.avail_idx > 0x3000 {
                queue = None;
            }
        }
    }
    (total, most_read)
}

#[test]
fn descriptors_round_trip() {
    let d = Desc { addr: 0x1122_3344_5566_7788, len: 0x99aa_bbcc, flags: 0xddee, next: 0xff00 };
    assert_eq!(Desc::from_bytes(&d.to_bytes()), d);
    assert_eq!(d.to_bytes()[..2], [0x88, 0x77]);
}

#[test]
fn blk_requests_stay_in_the_lent_ram() {
    for seed in 0..4 {
        let (walked, _) = run(0, 0, Traffic::Blk { capacity: 2048 }, seed, 3000);
        assert!(walked.chains > 1000, "{walked:?}");
        assert!(walked.indirect > 50, "{walked:?}");
        assert!(walked.error);
    }
}

#[test]
fn console_transmits_read_at_most_the_budget() {
    for seed in 0..4 {
        let (walked, most) = run(1, 1, Traffic::ConsoleTx, seed, 3000);
        assert!(walked.chains > 1000 && walked.readable > 10_000, "{walked:?}");
        assert!(most > CONSOLE_BUDGET / 4, "the budget is used: at most {most} bytes");
    }
}

#[test]
fn console_receive_buffers_stay_in_the_lent_ram() {
    let (walked, _) = run(1, 0, Traffic::ConsoleRx, 9, 3000);
    assert!(walked.chains > 1000, "{walked:?}");
}

#[test]
fn bad_layouts_are_bad() {
    let space = space();
    let mut rng = Rng::new(2);
    for _ in 0..2000 {
        let size = rng.pick(&[1u16, 16, 256]);
        let (desc, avail, used) = bad_layout(&mut rng, &space, 0, size);
        let size = u64::from(size);
        let ok = |addr: u64, len: u64, align: u64| addr.is_multiple_of(align) && space.in_ram(addr, len);
        assert!(
            !(ok(desc, 16 * size, 16) && ok(avail, 6 + 2 * size, 2) && ok(used, 6 + 8 * size, 4)),
            "{desc:#x} {avail:#x} {used:#x}"
        );
        for (addr, len) in [(desc, 16 * size), (avail, 6 + 2 * size), (used, 6 + 8 * size)] {
            assert!(space.is_lent(0, addr, len), "{addr:#x}");
        }
    }
}
