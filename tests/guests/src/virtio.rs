//! virtio-mmio devices as a test guest finds them: the `virtio,mmio` nodes of its
//! DTB (Linux `Documentation/devicetree/bindings/virtio/mmio.yaml`) with their
//! registers and interrupt, and, on the bare machine, the transports of those slots
//! and DMA memory for the `guest-drivers` front-ends.
//!
//! The DTB, not a probe of all 32 of QEMU virt's slots, says where to look: plain
//! QEMU lists every transport it has (an empty one reads DeviceID 0 and is skipped,
//! and QEMU fills the slots from the highest down), while Sluice lists only the slots
//! it emulates (from the lowest up), and an access to any other slot faults there.
//! Which slot a device sits in is never assumed.

use core::fmt;

use fdt::Fdt;
use platform::qemu_virt::{
    VIRTIO_MMIO_BASE, VIRTIO_MMIO_FIRST_SPI, VIRTIO_MMIO_SLOTS, VIRTIO_MMIO_SLOT_SIZE,
};

use crate::gic::{Trigger, FIRST_SPI};

/// Most `virtio,mmio` nodes kept (QEMU virt has 32).
pub const MAX_SLOTS: usize = VIRTIO_MMIO_SLOTS as usize;

/// An interrupt as the GIC sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Interrupt {
    /// The INTID.
    pub intid: u32,
    /// How the line signals.
    pub trigger: Trigger,
}

impl fmt::Display for Interrupt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let trigger = match self.trigger {
            Trigger::Edge => "edge",
            Trigger::Level => "level",
        };
        write!(f, "INTID {} {trigger}", self.intid)
    }
}

/// Decodes a GIC interrupt specifier, three big-endian cells: the type (0 SPI, 1
/// PPI), the number within the type, and the flags, whose bits \[3:0\] give the
/// trigger (1 and 2 edge, 4 and 8 level). Linux
/// `Documentation/devicetree/bindings/interrupt-controller/arm,gic-v3.yaml`.
/// `None` for another length or an unknown type.
pub fn decode_interrupt(cells: &[u8]) -> Option<Interrupt> {
    let cell = |i: usize| -> Option<u32> {
        let bytes = cells.get(4 * i..4 * i + 4)?;
        Some(u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
    };
    if cells.len() != 12 {
        return None;
    }
    let (kind, number, flags) = (cell(0)?, cell(1)?, cell(2)?);
    let intid = match kind {
        0 => FIRST_SPI.checked_add(number)?,
        1 => 16u32.checked_add(number).filter(|&i| i < FIRST_SPI)?,
        _ => return None,
    };
    let trigger = if flags & 0b11 != 0 { Trigger::Edge } else { Trigger::Level };
    Some(Interrupt { intid, trigger })
}

/// One virtio-mmio transport the DTB names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slot {
    /// The register block's address.
    pub base: u64,
    /// Its interrupt, as the node's `interrupts` gives it.
    pub interrupt: Option<Interrupt>,
}

impl Slot {
    /// The slot's index in QEMU virt's virtio-mmio window (`0x0a00_0000 + n *
    /// 0x200`), if it is one of those.
    pub fn index(&self) -> Option<u32> {
        let offset = self.base.checked_sub(VIRTIO_MMIO_BASE)?;
        let n = offset / VIRTIO_MMIO_SLOT_SIZE;
        (offset.is_multiple_of(VIRTIO_MMIO_SLOT_SIZE) && n < u64::from(VIRTIO_MMIO_SLOTS)).then_some(n as u32)
    }

    /// The interrupt from the DTB, or else QEMU virt's wiring (SPI 16 + n, level:
    /// the transport holds its line up while InterruptStatus is not 0).
    pub fn interrupt_or_default(&self) -> Option<Interrupt> {
        self.interrupt.or_else(|| {
            let n = self.index()?;
            Some(Interrupt { intid: FIRST_SPI + VIRTIO_MMIO_FIRST_SPI + n, trigger: Trigger::Level })
        })
    }
}

/// The `virtio,mmio` nodes of a DTB, by address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slots {
    slots: [Slot; MAX_SLOTS],
    count: usize,
}

impl Slots {
    /// Every node compatible with `virtio,mmio` that has a `reg` (the first
    /// [`MAX_SLOTS`] of them), sorted by address.
    pub fn from_fdt(fdt: &Fdt<'_>) -> Self {
        let mut slots = [Slot { base: 0, interrupt: None }; MAX_SLOTS];
        let mut count = 0;
        let nodes =
            fdt.all_nodes().filter(|n| n.compatible().is_some_and(|c| c.all().any(|s| s == "virtio,mmio")));
        for node in nodes {
            let Some(base) = node.reg().and_then(|mut r| r.next()).map(|r| r.starting_address as u64) else {
                continue;
            };
            let interrupt = node.property("interrupts").and_then(|p| decode_interrupt(p.value));
            if count < MAX_SLOTS {
                slots[count] = Slot { base, interrupt };
                count += 1;
            }
        }
        slots[..count].sort_unstable_by_key(|s| s.base);
        Self { slots, count }
    }

    /// The slots, lowest address first.
    pub fn iter(&self) -> impl Iterator<Item = &Slot> {
        self.slots[..self.count].iter()
    }

    /// How many there are.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }
}

#[cfg(bare_metal)]
pub use self::hw::{claim, claim_first, read_slots, take_dma_hal, ClaimError, DMA_POOL_BYTES};

#[cfg(bare_metal)]
#[allow(unsafe_code)]
mod hw {
    use core::cell::UnsafeCell;
    use core::fmt;
    use core::mem::MaybeUninit;
    use core::sync::atomic::{AtomicBool, AtomicU32, Ordering};

    use fdt::{Fdt, FdtError};
    use guest_drivers::hal::BumpHal;
    use guest_drivers::transport::mmio::MmioTransport;

    use super::{Slot, Slots};

    /// Bytes of the DMA pool: rings, request headers and receive buffers for a few
    /// devices (a virtio-blk takes 9 pages, a virtio-console 5).
    pub const DMA_POOL_BYTES: usize = 64 * 4096;

    /// The pool, in .bss, page aligned.
    #[repr(C, align(4096))]
    struct Pool(UnsafeCell<[u8; DMA_POOL_BYTES]>);

    /// The HAL over the pool, made by the one successful `take_dma_hal`.
    struct HalCell(UnsafeCell<MaybeUninit<BumpHal>>);

    // SAFETY: the pool is reached only through the one `BumpHal`, which hands each
    // page out once; the cell is written once, by the caller that won `TAKEN`, before
    // any reference to it exists.
    unsafe impl Sync for Pool {}
    // SAFETY: as above; after its one write the cell is only read (`BumpHal` is Sync).
    unsafe impl Sync for HalCell {}

    static POOL: Pool = Pool(UnsafeCell::new([0; DMA_POOL_BYTES]));
    static HAL: HalCell = HalCell(UnsafeCell::new(MaybeUninit::uninit()));
    static TAKEN: AtomicBool = AtomicBool::new(false);
    /// Slots whose transport was handed out (bit n: slot n).
    static CLAIMED: AtomicU32 = AtomicU32::new(0);

    /// The DMA memory for the drivers: an identity [`BumpHal`] over a static pool
    /// of [`DMA_POOL_BYTES`]. `None` after the first call: the pool has one owner,
    /// who shares the `&'static` reference among its drivers.
    pub fn take_dma_hal() -> Option<&'static BumpHal> {
        if TAKEN.swap(true, Ordering::AcqRel) {
            return None;
        }
        let start = POOL.0.get() as usize;
        // SAFETY: the pool is RAM used for nothing else, and the guests run with the
        // MMU off, so the CPU and the devices see it at the same addresses; so are
        // the buffers the guests hand the drivers (their stack and statics).
        let hal = unsafe { BumpHal::new(start, DMA_POOL_BYTES) };
        // SAFETY: only the caller that turned `TAKEN` on gets here, once; no
        // reference to the cell exists before this write.
        unsafe { (*HAL.0.get()).write(hal) };
        // SAFETY: written just above, never written again.
        Some(unsafe { (*HAL.0.get()).assume_init_ref() })
    }

    /// The `virtio,mmio` slots of the DTB the loader passed at `address` (the boot
    /// `x0`).
    ///
    /// # Errors
    ///
    /// When there is no DTB there.
    pub fn read_slots(address: usize) -> Result<Slots, FdtError> {
        // SAFETY: the boot protocol puts a DTB at `address` in this guest's RAM, which
        // stays mapped and which the guest never writes; a null address is refused by
        // `from_ptr` before any access.
        let fdt = unsafe { Fdt::from_ptr(address as *const u8) }?;
        Ok(Slots::from_fdt(&fdt))
    }

    /// Why a slot's transport could not be had.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum ClaimError {
        /// The address is not one of QEMU virt's virtio-mmio slots.
        NotASlot(u64),
        /// The slot's transport was handed out before.
        Taken(u64),
        /// Probing it failed (`NoDevice`: an empty slot).
        Probe(guest_drivers::Error),
    }

    impl fmt::Display for ClaimError {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            match self {
                Self::NotASlot(base) => write!(f, "{base:#x} is not a virtio-mmio slot of QEMU virt"),
                Self::Taken(base) => write!(f, "the transport at {base:#x} is taken already"),
                Self::Probe(e) => write!(f, "{e}"),
            }
        }
    }

    /// The transport of `slot`, probed (magic, version, DeviceID); each slot's once.
    ///
    /// # Errors
    ///
    /// [`ClaimError::Probe`] with `NoDevice` for an empty slot, and the other probe
    /// errors; [`ClaimError::NotASlot`], [`ClaimError::Taken`].
    pub fn claim(slot: &Slot) -> Result<MmioTransport, ClaimError> {
        let n = slot.index().ok_or(ClaimError::NotASlot(slot.base))?;
        if CLAIMED.fetch_or(1 << n, Ordering::AcqRel) & (1 << n) != 0 {
            return Err(ClaimError::Taken(slot.base));
        }
        // SAFETY: the DTB names a virtio-mmio register block at this address, which is
        // one of QEMU virt's slots (checked above): aligned, device memory, mapped
        // (the MMU is off). This is its only transport: `CLAIMED` hands each slot out
        // once.
        unsafe { MmioTransport::new(slot.base as usize) }.map_err(ClaimError::Probe)
    }

    /// For each DeviceID in `ids`, the first slot that has that device, with its
    /// transport (`None` if no slot has it). Empty slots are skipped.
    ///
    /// # Errors
    ///
    /// The first slot that cannot be claimed for another reason, with why.
    #[allow(clippy::type_complexity)]
    pub fn claim_first<const N: usize>(
        slots: &Slots,
        ids: [u32; N],
    ) -> Result<[Option<(Slot, MmioTransport)>; N], (Slot, ClaimError)> {
        use guest_drivers::transport::Transport;
        let mut found: [Option<(Slot, MmioTransport)>; N] = core::array::from_fn(|_| None);
        for slot in slots.iter() {
            let transport = match claim(slot) {
                Ok(t) => t,
                Err(ClaimError::Probe(guest_drivers::Error::NoDevice)) => continue,
                Err(e) => return Err((*slot, e)),
            };
            let wanted =
                ids.iter().zip(&found).position(|(&id, f)| id == transport.device_id() && f.is_none());
            if let Some(i) = wanted {
                found[i] = Some((*slot, transport));
            }
        }
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vm_fdt::FdtWriter;

    /// A DTB with a `virtio,mmio` node per `(slot, flags)`, in that order, shaped
    /// like QEMU virt's and Sluice's (`interrupts = <0 16+n flags>`).
    fn dtb(slots: &[(u32, u32)]) -> Vec<u8> {
        let mut w = FdtWriter::new().unwrap();
        let root = w.begin_node("").unwrap();
        w.property_u32("#address-cells", 2).unwrap();
        w.property_u32("#size-cells", 2).unwrap();
        for &(n, flags) in slots {
            let base = VIRTIO_MMIO_BASE + u64::from(n) * VIRTIO_MMIO_SLOT_SIZE;
            let node = w.begin_node(&format!("virtio_mmio@{base:x}")).unwrap();
            w.property_null("dma-coherent").unwrap();
            w.property_array_u32("interrupts", &[0, 16 + n, flags]).unwrap();
            w.property_array_u64("reg", &[base, VIRTIO_MMIO_SLOT_SIZE]).unwrap();
            w.property_string("compatible", "virtio,mmio").unwrap();
            w.end_node(node).unwrap();
        }
        let uart = w.begin_node("pl011@9000000").unwrap();
        w.property_string_list("compatible", vec!["arm,pl011".into(), "arm,primecell".into()]).unwrap();
        w.property_array_u64("reg", &[0x0900_0000, 0x1000]).unwrap();
        w.end_node(uart).unwrap();
        w.end_node(root).unwrap();
        w.finish().unwrap()
    }

    #[test]
    fn decodes_gic_specifiers() {
        let spec = |cells: [u32; 3]| cells.iter().flat_map(|c| c.to_be_bytes()).collect::<Vec<u8>>();
        assert_eq!(
            decode_interrupt(&spec([0, 16, 1])),
            Some(Interrupt { intid: 48, trigger: Trigger::Edge })
        );
        assert_eq!(
            decode_interrupt(&spec([0, 47, 4])),
            Some(Interrupt { intid: 79, trigger: Trigger::Level })
        );
        assert_eq!(
            decode_interrupt(&spec([1, 11, 0xf04])),
            Some(Interrupt { intid: 27, trigger: Trigger::Level })
        );
        assert_eq!(decode_interrupt(&spec([1, 16, 4])), None, "no such PPI");
        assert_eq!(decode_interrupt(&spec([2, 0, 4])), None, "no such type");
        assert_eq!(decode_interrupt(&spec([0, 16, 1])[..8]), None, "two cells");
    }

    #[test]
    fn finds_qemus_slots_highest_first_in_the_tree_sorted_by_address() {
        // QEMU writes its 32 nodes from the top slot down, edge-triggered.
        let blob = dtb(&(0..32).rev().map(|n| (n, 1)).collect::<Vec<_>>());
        let fdt = Fdt::new(&blob).unwrap();
        let slots = Slots::from_fdt(&fdt);
        assert_eq!(slots.len(), 32);
        let first = slots.iter().next().unwrap();
        assert_eq!(first.base, 0x0a00_0000);
        assert_eq!(first.index(), Some(0));
        assert_eq!(first.interrupt, Some(Interrupt { intid: 48, trigger: Trigger::Edge }));
        let last = slots.iter().last().unwrap();
        assert_eq!((last.base, last.index()), (0x0a00_3e00, Some(31)));
        assert_eq!(last.interrupt.unwrap().intid, 79);
    }

    #[test]
    fn finds_sluices_slots_level_triggered() {
        let blob = dtb(&[(0, 4), (1, 4)]);
        let fdt = Fdt::new(&blob).unwrap();
        let slots = Slots::from_fdt(&fdt);
        let found: Vec<_> = slots.iter().map(|s| (s.base, s.interrupt.unwrap())).collect();
        assert_eq!(
            found,
            [
                (0x0a00_0000, Interrupt { intid: 48, trigger: Trigger::Level }),
                (0x0a00_0200, Interrupt { intid: 49, trigger: Trigger::Level }),
            ]
        );
        assert!(!slots.is_empty());
        assert!(Slots::from_fdt(&Fdt::new(&dtb(&[])).unwrap()).is_empty());
    }

    #[test]
    fn slot_indices_and_default_interrupts() {
        let slot = |base| Slot { base, interrupt: None };
        assert_eq!(slot(0x0a00_0400).index(), Some(2));
        assert_eq!(slot(0x0a00_0410).index(), None, "not at a slot's start");
        assert_eq!(slot(0x0a00_4000).index(), None, "past the window");
        assert_eq!(slot(0x0900_0000).index(), None, "below it");
        assert_eq!(
            slot(0x0a00_3e00).interrupt_or_default(),
            Some(Interrupt { intid: 79, trigger: Trigger::Level })
        );
        assert_eq!(slot(0x1000).interrupt_or_default(), None);
        let given = Interrupt { intid: 60, trigger: Trigger::Edge };
        assert_eq!(Slot { base: 0x0a00_0000, interrupt: Some(given) }.interrupt_or_default(), Some(given));
        assert_eq!(given.to_string(), "INTID 60 edge");
    }
}
