//! The host's GICv3, which Sluice owns (Arm IHI 0069, GICv3 architecture spec).
//!
//! Sluice uses it for its own interrupts only: the kick SGI between physical CPUs,
//! the vGIC maintenance interrupt (PPI 9, INTID 25), the guests' timers (INTIDs 27
//! and 30, forwarded hardware-linked), and the host UART's receive interrupt. All
//! are Group 1; the CPU interface runs with EOImode = 1, so priority drop (EOIR) and
//! deactivation (DIR) are separate and a forwarded timer interrupt stays active
//! until the guest deactivates its virtual twin.
#![allow(unsafe_code)]

use tock_registers::interfaces::{Readable, Writeable};
use tock_registers::register_structs;
use tock_registers::registers::{ReadOnly, ReadWrite};

register_structs! {
    /// GICD: the registers Sluice uses.
    Distributor {
        (0x0000 => ctlr: ReadWrite<u32>),
        (0x0004 => typer: ReadOnly<u32>),
        (0x0008 => _reserved0),
        (0x0080 => igroupr: [ReadWrite<u32>; 32]),
        (0x0100 => isenabler: [ReadWrite<u32>; 32]),
        (0x0180 => icenabler: [ReadWrite<u32>; 32]),
        (0x0200 => _reserved1),
        (0x0400 => ipriorityr: [ReadWrite<u8>; 1024]),
        (0x0800 => _reserved2),
        (0x6000 => irouter: [ReadWrite<u64>; 1020]),
        (0x7fe0 => @END),
    }
}

register_structs! {
    /// One redistributor: RD_base then SGI_base.
    Redistributor {
        (0x0000 => ctlr: ReadWrite<u32>),
        (0x0004 => iidr: ReadOnly<u32>),
        (0x0008 => typer: ReadOnly<u64>),
        (0x0010 => statusr: ReadWrite<u32>),
        (0x0014 => waker: ReadWrite<u32>),
        (0x0018 => _reserved0),
        (0x10080 => igroupr0: ReadWrite<u32>),
        (0x10084 => _reserved1),
        (0x10100 => isenabler0: ReadWrite<u32>),
        (0x10104 => _reserved2),
        (0x10180 => icenabler0: ReadWrite<u32>),
        (0x10184 => _reserved3),
        (0x10280 => icpendr0: ReadWrite<u32>),
        (0x10284 => _reserved5),
        (0x10380 => icactiver0: ReadWrite<u32>),
        (0x10384 => _reserved4),
        (0x10400 => ipriorityr: [ReadWrite<u8>; 32]),
        (0x10420 => @END),
    }
}

/// GICD_CTLR: Affinity Routing Enable and Group 1 enable (single security state view).
const GICD_CTLR_ARE: u32 = 1 << 4;
const GICD_CTLR_ENABLE_GRP1: u32 = 1 << 1;
const GICD_CTLR_RWP: u32 = 1 << 31;
/// GICR_WAKER.ProcessorSleep and ChildrenAsleep.
const WAKER_PROCESSOR_SLEEP: u32 = 1 << 1;
const WAKER_CHILDREN_ASLEEP: u32 = 1 << 2;
/// GICR_TYPER.Last.
const TYPER_LAST: u64 = 1 << 4;
/// Size of one redistributor (RD_base + SGI_base).
const REDIST_STRIDE: usize = 0x2_0000;
/// Priority Sluice gives its own interrupts.
const PRIORITY: u8 = 0x80;

/// The host GIC.
pub struct Gic {
    gicd: &'static Distributor,
    gicr_base: usize,
}

impl Gic {
    /// The GIC with its distributor at `gicd` and redistributor region at `gicr`.
    ///
    /// # Safety
    ///
    /// The addresses must be the host GICv3's, mapped as device memory for the life of
    /// the value; only Sluice may drive the GIC.
    pub unsafe fn new(gicd: usize, gicr: usize) -> Self {
        // SAFETY: the caller vouches for a mapped GICv3 distributor at `gicd`.
        let gicd = unsafe { &*(gicd as *const Distributor) };
        Self { gicd, gicr_base: gicr }
    }

    /// Turns the distributor on with affinity routing; run once, on the boot CPU.
    pub fn init_distributor(&self) {
        self.gicd.ctlr.set(0);
        self.wait_for_distributor();
        self.gicd.ctlr.set(GICD_CTLR_ARE | GICD_CTLR_ENABLE_GRP1);
        self.wait_for_distributor();
    }

    fn wait_for_distributor(&self) {
        while self.gicd.ctlr.get() & GICD_CTLR_RWP != 0 {
            core::hint::spin_loop();
        }
    }

    /// Routes SPI `intid` to the CPU with affinity `mpidr`, as a Group 1 interrupt, and
    /// enables it.
    pub fn enable_spi(&self, intid: u32, mpidr: u64) {
        let (word, bit) = ((intid / 32) as usize, 1 << (intid % 32));
        self.gicd.igroupr[word].set(self.gicd.igroupr[word].get() | bit);
        self.gicd.ipriorityr[intid as usize].set(PRIORITY);
        self.gicd.irouter[intid as usize].set(mpidr & 0xff_00ff_ffff);
        self.gicd.isenabler[word].set(bit);
    }

    /// The redistributor whose GICR_TYPER affinity matches `mpidr`.
    fn redistributor(&self, mpidr: u64) -> Option<&'static Redistributor> {
        let affinity = mpidr & 0xff_00ff_ffff;
        let packed = (affinity & 0xff_ffff) | ((affinity >> 32) << 24);
        let mut base = self.gicr_base;
        loop {
            // SAFETY: the redistributor region is mapped (`new`'s contract) and we stop
            // at the frame marked Last.
            let frame = unsafe { &*(base as *const Redistributor) };
            let typer = frame.typer.get();
            if typer >> 32 == packed {
                return Some(frame);
            }
            if typer & TYPER_LAST != 0 {
                return None;
            }
            base += REDIST_STRIDE;
        }
    }

    /// Wakes this CPU's redistributor, makes `ppis_and_sgis` (a bit per INTID 0..32)
    /// Group 1 and enabled, and turns on the CPU interface at EL2.
    ///
    /// Returns `None` if no redistributor has this CPU's affinity.
    pub fn init_cpu(&self, mpidr: u64, ppis_and_sgis: u32) -> Option<()> {
        let gicr = self.redistributor(mpidr)?;
        gicr.waker.set(gicr.waker.get() & !WAKER_PROCESSOR_SLEEP);
        while gicr.waker.get() & WAKER_CHILDREN_ASLEEP != 0 {
            core::hint::spin_loop();
        }
        gicr.icenabler0.set(u32::MAX);
        gicr.icactiver0.set(u32::MAX);
        gicr.igroupr0.set(u32::MAX);
        for p in gicr.ipriorityr.iter() {
            p.set(PRIORITY);
        }
        gicr.isenabler0.set(ppis_and_sgis);
        crate::arch::aarch64::el2::gic_cpu_interface_on();
        Some(())
    }

    /// Deactivates this CPU's PPIs in `mask` (a forwarded timer left active when a vCPU
    /// stopped).
    pub fn deactivate_ppis(&self, mpidr: u64, mask: u32) {
        if let Some(gicr) = self.redistributor(mpidr) {
            gicr.icactiver0.set(mask);
        }
    }

    /// Makes the SGIs and PPIs in `mask` (a bit per INTID) neither pending nor active
    /// on the CPU with affinity `mpidr`. A level-sensitive source still asserting
    /// makes its interrupt pending again: turn the source off first.
    pub fn clear_ppis(&self, mpidr: u64, mask: u32) {
        if let Some(gicr) = self.redistributor(mpidr) {
            gicr.icpendr0.set(mask);
            gicr.icactiver0.set(mask);
        }
    }
}

// SAFETY: the GIC's registers are designed for concurrent use by all CPUs; each CPU
// touches only its own redistributor, and the distributor is set up before others run.
unsafe impl Sync for Gic {}
// SAFETY: as above.
unsafe impl Send for Gic {}
