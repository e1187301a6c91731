//! Register accesses of the register fuzzer: where (the virtio-mmio slots, the GIC
//! distributor and redistributors, the PL011, and just past each), how wide
//! (1, 2, 4 or 8 bytes, sometimes misaligned), and what value a write writes.
//!
//! Register offsets: virtio 1.2 §4.2.2 (virtio-mmio), the GICv3 architecture
//! specification (Arm IHI 0069, GICD_* and GICR_* register maps), and the PL011 TRM
//! (Arm DDI 0183, 3.2).
//!
//! The one thing a virtio write may not do is make a device walk memory the guest
//! did not prepare for it: a write to QueueNotify names only queues the device
//! doesn't have, a write to a ring address's low half (or QueuePFN) is a whole
//! aligned 32- or 64-bit write of a value from [`Space::ring_low`], and every other
//! write that would touch those bytes is made a read instead ([`shape_virtio_write`]).
//! Bytes that may reach the console (virtio-console configuration space, PL011) are
//! passed through [`sanitize_value`].

use platform::qemu_virt::{
    GICD, GICR_BASE, GICR_FRAME_SIZE, UART, VIRTIO_MMIO_BASE, VIRTIO_MMIO_SLOTS, VIRTIO_MMIO_SLOT_SIZE,
};

use super::space::{DeviceKind, Space};
use super::{sanitize_value, Width};
use crate::prng::Rng;

/// One access: where, how wide, and for a write the value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Access {
    /// The guest-physical address.
    pub addr: u64,
    /// Its width.
    pub width: Width,
    /// `Some(value)` for a store, `None` for a load.
    pub write: Option<u64>,
}

/// virtio-mmio register offsets (virtio 1.2 §4.2.2 and §4.2.4), as the drivers in
/// `guest_drivers` name them, widened to the addresses this module computes with.
pub mod virtio {
    use guest_drivers::transport::mmio::{reg, CONFIG_OFFSET};

    /// DeviceFeaturesSel.
    pub const DEVICE_FEATURES_SEL: u64 = reg::DEVICE_FEATURES_SEL as u64;
    /// DriverFeatures.
    pub const DRIVER_FEATURES: u64 = reg::DRIVER_FEATURES as u64;
    /// DriverFeaturesSel.
    pub const DRIVER_FEATURES_SEL: u64 = reg::DRIVER_FEATURES_SEL as u64;
    /// GuestPageSize (legacy).
    pub const GUEST_PAGE_SIZE: u64 = reg::LEGACY_GUEST_PAGE_SIZE as u64;
    /// QueueSel.
    pub const QUEUE_SEL: u64 = reg::QUEUE_SEL as u64;
    /// QueueNum.
    pub const QUEUE_NUM: u64 = reg::QUEUE_NUM as u64;
    /// QueuePFN (legacy).
    pub const QUEUE_PFN: u64 = reg::LEGACY_QUEUE_PFN as u64;
    /// QueueReady.
    pub const QUEUE_READY: u64 = reg::QUEUE_READY as u64;
    /// QueueNotify.
    pub const QUEUE_NOTIFY: u64 = reg::QUEUE_NOTIFY as u64;
    /// InterruptACK.
    pub const INTERRUPT_ACK: u64 = reg::INTERRUPT_ACK as u64;
    /// Status.
    pub const STATUS: u64 = reg::STATUS as u64;
    /// QueueDescLow; its high half is 4 bytes on.
    pub const QUEUE_DESC_LOW: u64 = reg::QUEUE_DESC_LOW as u64;
    /// QueueDriverLow.
    pub const QUEUE_DRIVER_LOW: u64 = reg::QUEUE_DRIVER_LOW as u64;
    /// QueueDeviceLow.
    pub const QUEUE_DEVICE_LOW: u64 = reg::QUEUE_DEVICE_LOW as u64;
    /// The configuration space.
    pub const CONFIG: u64 = CONFIG_OFFSET as u64;
    /// Every register (and the first configuration words), plus the few offsets
    /// between them that the specification reserves.
    pub const ALL: [u64; 35] = [
        0x000, 0x004, 0x008, 0x00c, 0x010, 0x014, 0x020, 0x024, 0x028, 0x030, 0x034, 0x038, 0x03c, 0x040,
        0x044, 0x050, 0x060, 0x064, 0x070, 0x080, 0x084, 0x090, 0x094, 0x0a0, 0x0a4, 0x0ac, 0x0b0, 0x0b4,
        0x0b8, 0x0bc, 0x0c0, 0x0fc, 0x100, 0x108, 0x110,
    ];
}

/// The bytes a narrow or misaligned write must not touch: QueuePFN, QueueNotify and
/// the ring addresses' low halves.
const GUARDED: [u64; 5] = [
    virtio::QUEUE_PFN,
    virtio::QUEUE_NOTIFY,
    virtio::QUEUE_DESC_LOW,
    virtio::QUEUE_DRIVER_LOW,
    virtio::QUEUE_DEVICE_LOW,
];

/// A width: mostly 32 bits, the registers' own.
fn width(rng: &mut Rng) -> Width {
    match rng.below(10) {
        0 => Width::B1,
        1 => Width::B2,
        2 | 3 => Width::B8,
        _ => Width::B4,
    }
}

/// `offset` for an access of `width`: aligned to it, or (sometimes) not.
fn placed(rng: &mut Rng, offset: u64, width: Width) -> u64 {
    let aligned = offset & !(width.bytes() - 1);
    if rng.chance(1, 8) {
        aligned + rng.range(1, width.bytes().max(2))
    } else {
        aligned
    }
}

/// A value: an interesting one or random.
fn value(rng: &mut Rng) -> u64 {
    match rng.below(8) {
        0 => 0,
        1 => u64::MAX,
        2 => 0xffff_ffff,
        3 => 1 << rng.below(64),
        4 => rng.below(0x100),
        5 => u64::from(rng.next_u32()),
        _ => rng.next_u64(),
    }
}

/// Where a virtio access goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VirtioTarget {
    /// One of the guest's devices: its index in the [`Space`] and its slot's base.
    Device {
        /// Device index.
        index: usize,
        /// Slot base.
        base: u64,
    },
    /// A slot without a device, or the window's end: nothing there to drive.
    Nothing(u64),
}

/// Picks a slot: mostly one of `devices` (index, slot base), sometimes the slot after
/// the last one, or just past the window.
pub fn virtio_target(rng: &mut Rng, devices: &[(usize, u64)]) -> VirtioTarget {
    let last =
        devices.iter().map(|&(_, base)| base).max().unwrap_or(VIRTIO_MMIO_BASE - VIRTIO_MMIO_SLOT_SIZE);
    match rng.below(16) {
        0 => VirtioTarget::Nothing(last + VIRTIO_MMIO_SLOT_SIZE),
        1 => VirtioTarget::Nothing(VIRTIO_MMIO_BASE + u64::from(VIRTIO_MMIO_SLOTS) * VIRTIO_MMIO_SLOT_SIZE),
        _ if devices.is_empty() => VirtioTarget::Nothing(VIRTIO_MMIO_BASE),
        _ => {
            let (index, base) = rng.pick(devices);
            VirtioTarget::Device { index, base }
        }
    }
}

/// A value for a write at virtio register `offset` of device `index` (of `kind`):
/// one the register means something with, or garbage.
fn virtio_value(rng: &mut Rng, space: &Space, index: usize, kind: DeviceKind, offset: u64) -> u64 {
    let queues = u64::from(kind.queues());
    let (v, bit) = (value(rng), 1 << rng.below(32));
    match offset {
        virtio::STATUS => rng.pick(&[0, 0, 1, 3, 0xb, 0xf, 0x7, 0x4, 0x8, 0x80, 0x40, 0x4f, v & 0xff, v]),
        virtio::DEVICE_FEATURES_SEL | virtio::DRIVER_FEATURES_SEL | virtio::QUEUE_SEL => {
            rng.pick(&[0, 1, 2, 3, queues, 0xffff, 0xffff_ffff, v])
        }
        virtio::DRIVER_FEATURES => rng.pick(&[0, 1, 0xffff_ffff, 0x3000_0000, 0x7fff_ffff, v]),
        virtio::QUEUE_NUM => rng.pick(&[0, 1, 2, 3, 16, 255, 256, 257, 512, 0x1_0000, 0xffff_ffff, bit, v]),
        virtio::QUEUE_READY => rng.pick(&[0, 1, 1, 2, 0xffff_ffff]),
        virtio::QUEUE_NOTIFY => queues + rng.pick(&[0, 1, 2, 0xfff0, u64::from(u32::MAX) - queues]),
        virtio::QUEUE_PFN => 0,
        virtio::INTERRUPT_ACK => rng.pick(&[1, 2, 3, 0xffff_ffff, v]),
        virtio::GUEST_PAGE_SIZE => rng.pick(&[0, 3, 4096, 1 << 16, v]),
        virtio::QUEUE_DESC_LOW | virtio::QUEUE_DRIVER_LOW | virtio::QUEUE_DEVICE_LOW => {
            u64::from(space.ring_low(index, rng)) | u64::from(space.ring_high(rng)) << 32
        }
        o if o >= virtio::CONFIG && kind == DeviceKind::Console => sanitize_value(v),
        _ => v,
    }
}

/// Makes a virtio write safe (see the module's documentation): a write that touches
/// a guarded register's bytes keeps them only as a whole aligned 32- or 64-bit write
/// at the register, with the register's bytes of the value taken from `safe` (what
/// [`virtio_value`] gives for that register); any other such write becomes a read.
pub fn shape_virtio_write(
    offset: u64,
    width: Width,
    value: u64,
    safe: impl FnOnce(u64) -> u64,
) -> Option<u64> {
    let end = offset + width.bytes();
    let Some(&guarded) = GUARDED.iter().find(|&&g| offset < g + 4 && g < end) else {
        return Some(value);
    };
    if offset != guarded || width.bytes() < 4 {
        return None;
    }
    let low = safe(guarded) & 0xffff_ffff;
    Some(match width {
        Width::B8 => (value & !0xffff_ffff) | low,
        _ => low,
    })
}

/// A virtio-mmio access at `target`; for a device, `kind` is what it is.
pub fn virtio_access(rng: &mut Rng, space: &Space, target: VirtioTarget) -> Access {
    let w = width(rng);
    let (base, device) = match target {
        VirtioTarget::Device { index, base } => (base, Some(index)),
        VirtioTarget::Nothing(base) => (base, None),
    };
    let offset = if rng.chance(3, 4) { rng.pick(&virtio::ALL) } else { rng.below(VIRTIO_MMIO_SLOT_SIZE) };
    let offset = placed(rng, offset, w).min(VIRTIO_MMIO_SLOT_SIZE - w.bytes());
    let write = if rng.coin() {
        None
    } else {
        match device {
            None => Some(value(rng)),
            Some(index) => {
                let kind = space.kind(index);
                let v = virtio_value(rng, space, index, kind, offset & !3);
                // A 64-bit write sets the next register too (a ring address's high
                // half, for its low half: `virtio_value` gave both).
                let v = if w == Width::B8 && !GUARDED.contains(&offset) { v | value(rng) << 32 } else { v };
                let to_config = offset + w.bytes() > virtio::CONFIG;
                let v = if to_config && kind == DeviceKind::Console { sanitize_value(v) } else { v };
                shape_virtio_write(offset, w, v, |register| virtio_value(rng, space, index, kind, register))
            }
        }
    };
    Access { addr: base + offset, width: w, write }
}

/// GIC distributor offsets (IHI 0069, the GICD_* register map): the control and
/// ID registers, a word of each one-bit, two-bit and eight-bit per-INTID register,
/// and the routing registers.
fn gicd_offset(rng: &mut Rng) -> u64 {
    let word = 4 * rng.below(32);
    match rng.below(16) {
        0 => rng.pick(&[0x0000, 0x0004, 0x0008, 0x000c, 0x0010, 0x0040, 0x0048, 0x0050, 0x0058]),
        1 => rng.pick(&[0x0080, 0x0100, 0x0180, 0x0200, 0x0280, 0x0300, 0x0380]) + word,
        2 => 0x0400 + rng.below(0x400),
        3 => 0x0800 + rng.below(0x400),
        4 => 0x0c00 + 4 * rng.below(64),
        5 => rng.pick(&[0x0d00, 0x0e00]) + word,
        6 => rng.pick(&[0x0f00, 0x0f10, 0x0f20]) + 4 * rng.below(4),
        7 | 8 => 0x6000 + 8 * rng.below(1020),
        9 => 0xffd0 + 4 * rng.below(12),
        _ => rng.below(GICD.size),
    }
}

/// Redistributor offsets (IHI 0069, the GICR_* register map) in one vCPU's pair of
/// frames: RD_base, then SGI_base 64 KiB on.
fn gicr_offset(rng: &mut Rng) -> u64 {
    const SGI: u64 = 0x1_0000;
    match rng.below(12) {
        0 | 1 => rng.pick(&[
            0x0000, 0x0004, 0x0008, 0x000c, 0x0010, 0x0014, 0x0040, 0x0048, 0x0070, 0x0078, 0x00a0, 0x00b0,
            0x00c0,
        ]),
        2 => 0xffd0 + 4 * rng.below(12),
        3..=5 => {
            SGI + rng.pick(&[
                0x0080, 0x0100, 0x0180, 0x0200, 0x0280, 0x0300, 0x0380, 0x0c00, 0x0c04, 0x0d00, 0x0e00,
            ])
        }
        6 => SGI + 0x0400 + rng.below(0x20),
        _ => rng.below(GICR_FRAME_SIZE),
    }
}

/// A GIC access: the distributor, the redistributors of the VM's `vcpus` CPUs, or
/// just past either (or in the ITS, which the VM doesn't have).
pub fn gic_access(rng: &mut Rng, vcpus: u64) -> Access {
    let w = width(rng);
    let gicr_end = GICR_BASE + vcpus * GICR_FRAME_SIZE;
    let addr = match rng.below(16) {
        0..=6 => {
            let offset = gicd_offset(rng);
            GICD.base + placed(rng, offset, w)
        }
        7..=13 => {
            let (frame, offset) = (rng.below(vcpus.max(1)), gicr_offset(rng));
            GICR_BASE + frame * GICR_FRAME_SIZE + placed(rng, offset, w)
        }
        14 => rng.pick(&[GICD.base + GICD.size, gicr_end, 0x0808_0000]) + rng.below(0x100),
        _ => GICD.base + GICD.size - rng.range(1, 8),
    };
    let write = rng.coin().then(|| match rng.below(6) {
        // GICD_IROUTER and GICD_CTLR-like values, or priorities.
        0 => rng.pick(&[0, 1, 0x8000_0000, 0x8000_0001, 0xff_00ff_ffff, vcpus]),
        1 => rng.pick(&[0x10, 0x12, 0x13, 0x37]),
        2 => u64::from(rng.next_u8()) * 0x0101_0101,
        _ => value(rng),
    });
    Access { addr, width: w, write }
}

/// A PL011 access: its registers, anywhere in its 4 KiB, or just past it.
pub fn uart_access(rng: &mut Rng) -> Access {
    let w = width(rng);
    let offset = match rng.below(8) {
        0..=4 => rng.pick(&[
            0x000, 0x004, 0x018, 0x020, 0x024, 0x028, 0x02c, 0x030, 0x034, 0x038, 0x03c, 0x040, 0x044, 0x048,
            0xfe0, 0xfec, 0xff0, 0xffc,
        ]),
        5 | 6 => rng.below(UART.size),
        _ => UART.size + rng.below(UART.size),
    };
    let addr = UART.base + placed(rng, offset, w);
    let write = rng.coin().then(|| match rng.below(4) {
        // IMSC and ICR masks, CR enables.
        0 => rng.pick(&[0x7ff, 0x10, 0x20, 0x30, 0x301, 0x300, 0]),
        _ => sanitize_value(value(rng)),
    });
    Access { addr, width: w, write }
}

#[cfg(test)]
mod tests {
    use super::*;
    use platform::Region;

    fn space() -> Space {
        let ram = Region::new(0x4000_0000, 32 << 20);
        Space::new(&[ram], Region::new(0x4020_0000, 0x3_0000), &[], &[DeviceKind::Blk, DeviceKind::Console])
            .unwrap()
    }

    #[test]
    fn guarded_bytes_take_only_whole_safe_writes() {
        let safe = |_| 0x1234_5678_4023_0000;
        assert_eq!(shape_virtio_write(0x070, Width::B4, 7, safe), Some(7), "not guarded");
        assert_eq!(shape_virtio_write(0x080, Width::B4, 7, safe), Some(0x4023_0000));
        assert_eq!(
            shape_virtio_write(0x080, Width::B8, 0xaaaa_bbbb_cccc_dddd, safe),
            Some(0xaaaa_bbbb_4023_0000)
        );
        assert_eq!(shape_virtio_write(0x081, Width::B1, 7, safe), None, "part of a low half");
        assert_eq!(shape_virtio_write(0x082, Width::B2, 7, safe), None);
        assert_eq!(shape_virtio_write(0x07c, Width::B8, 7, safe), None, "reaches into it");
        assert_eq!(shape_virtio_write(0x04c, Width::B8, 7, safe), None, "reaches into QueueNotify");
        assert_eq!(shape_virtio_write(0x084, Width::B4, 7, safe), Some(7), "a high half is free");
        assert_eq!(shape_virtio_write(0x050, Width::B2, 7, safe), None);
    }

    /// The value the guarded register at `offset` gets from `access` (a whole write
    /// at it), if any.
    fn guarded_write(a: &Access, base: u64) -> Option<(u64, u64)> {
        let offset = a.addr - base;
        let value = a.write?;
        let end = offset + a.width.bytes();
        let g = *GUARDED.iter().find(|&&g| offset < g + 4 && g < end)?;
        assert_eq!(offset, g, "only whole writes at a guarded register: {a:x?}");
        assert!(a.width.bytes() >= 4, "{a:x?}");
        Some((g, value & 0xffff_ffff))
    }

    #[test]
    fn virtio_writes_never_notify_a_queue_or_aim_a_ring_at_the_guest() {
        let s = space();
        let mut rng = Rng::new(3);
        let devices = [(0, 0x0a00_0000), (1, 0x0a00_0200)];
        let (mut notifies, mut rings) = (0, 0);
        for _ in 0..100_000 {
            let target = virtio_target(&mut rng, &devices);
            let a = virtio_access(&mut rng, &s, target);
            let VirtioTarget::Device { index, base } = target else { continue };
            assert!(a.addr - base + a.width.bytes() <= VIRTIO_MMIO_SLOT_SIZE);
            let Some((register, low)) = guarded_write(&a, base) else { continue };
            match register {
                virtio::QUEUE_NOTIFY => {
                    assert!(low >= u64::from(s.kind(index).queues()), "notify {low}");
                    notifies += 1;
                }
                virtio::QUEUE_PFN => assert_eq!(low, 0),
                _ => {
                    assert!(s.is_lent(index, low, crate::fuzz::space::RING_SLACK), "{low:#x}");
                    rings += 1;
                }
            }
        }
        assert!(notifies > 100 && rings > 1000, "{notifies} notifies, {rings} ring writes");
    }

    #[test]
    fn console_bytes_are_sanitized() {
        let s = space();
        let mut rng = Rng::new(4);
        for _ in 0..20_000 {
            let a = virtio_access(&mut rng, &s, VirtioTarget::Device { index: 1, base: 0x0a00_0200 });
            if let (Some(v), true) = (a.write, a.addr - 0x0a00_0200 + a.width.bytes() > virtio::CONFIG) {
                assert_eq!(v, sanitize_value(v), "{a:x?}");
            }
            let a = uart_access(&mut rng);
            assert!(a.addr >= UART.base && a.addr < UART.base + 2 * UART.size);
            if let Some(v) = a.write {
                assert!(v.to_le_bytes().iter().all(|b| !b.is_ascii_alphabetic()), "{v:#x}");
            }
        }
    }

    #[test]
    fn gic_accesses_stay_near_the_gic() {
        let mut rng = Rng::new(5);
        let (mut gicd, mut gicr, mut past) = (0, 0, 0);
        for _ in 0..20_000 {
            let a = gic_access(&mut rng, 2);
            if GICD.contains(a.addr) {
                gicd += 1;
            } else if (GICR_BASE..GICR_BASE + 2 * GICR_FRAME_SIZE).contains(&a.addr) {
                gicr += 1;
            } else {
                past += 1;
                assert!(a.addr >= GICD.base && a.addr < GICR_BASE + 3 * GICR_FRAME_SIZE, "{:#x}", a.addr);
            }
        }
        assert!(gicd > 5000 && gicr > 5000 && past > 500, "{gicd} {gicr} {past}");
    }
}
