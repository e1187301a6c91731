//! The virtual GICv3 of a VM with 1 to 8 vCPUs: guest reads and writes of the
//! distributor and redistributors at any offset, width and value, interleaved with
//! what the CPU loop does (flush the list registers before entry, sync them after
//! exit), what the guest does to the list registers meanwhile (acknowledge,
//! deactivate), SGIs, device SPI lines, edges and hardware-linked timer PPIs, and
//! VM resets.
//!
//! Invariants: nothing panics; a kick names only vCPUs that exist; a flush fills
//! the first `lrs_in_use` list registers with valid entries and clears the rest,
//! each with an INTID below 128, no INTID twice, a hardware link only for a PPI
//! with pINTID = vINTID and never pending and active; an SPI sits in the list
//! registers of one vCPU at a time; a flush that delivers nothing leaves nothing
//! deliverable behind (`has_pending` is false); NPIE is asked for only while an
//! entry is in the Pending state (else it fires for ever); a flushed entry agrees
//! with its interrupt's registers (priority, group, pending only if enabled with
//! its group enabled, then reading pending; active only if reading active); only
//! PPIs need a physical deactivation; reads fit their width; the identification
//! registers read as documented; priorities read back as written.
#![no_main]

use hypervisor::devices::AccessWidth;
use hypervisor::vgic::{Kick, ListReg, LrState, Vgic, GICR_FRAME_SIZE, GICR_SGI_BASE};
use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use sluice_fuzz::Width;

/// The list registers a CPU may have (ICH_VTR_EL2.ListRegs + 1 is 1 to 16).
const MAX_LRS: usize = 16;
/// INTIDs the vGIC implements.
const NR_INTIDS: u32 = 128;
/// GICD_TYPER as documented in `vgic/distributor.rs`.
const GICD_TYPER: u64 = 3 | 9 << 19 | 1 << 24;

/// What the guest does to one list register while it runs.
#[derive(Debug, Clone, Copy, Arbitrary)]
enum GuestAction {
    /// Acknowledge: pending becomes active.
    Acknowledge,
    /// Deactivate (after EOI): active becomes invalid, pending and active pending.
    Deactivate,
    /// Acknowledge, then deactivate at once.
    Complete,
    /// Any state (hardware only makes the moves above; the vGIC must not break on others).
    State(u8),
    /// Any value at all, vINTID included (kept as flushed, the vGIC promises).
    Raw(u64),
}

/// Which of the per-INTID registers shared by the distributor and the redistributors.
#[derive(Debug, Clone, Copy, Arbitrary)]
enum BankReg {
    Group,
    SetEnable,
    ClearEnable,
    SetPending,
    ClearPending,
    SetActive,
    ClearActive,
    Priority,
    Config,
}

#[derive(Debug, Arbitrary)]
enum Op {
    DistRead {
        offset: u16,
        width: Width,
    },
    DistWrite {
        offset: u16,
        width: Width,
        value: u64,
    },
    RedistRead {
        offset: u32,
        width: Width,
    },
    RedistWrite {
        offset: u32,
        width: Width,
        value: u64,
    },
    /// A word write (a byte for priorities) of a per-INTID register, at the right
    /// block and offset for `intid` as seen from `vcpu`.
    Bank {
        vcpu: u8,
        reg: BankReg,
        intid: u8,
        value: u32,
    },
    /// GICD_CTLR.
    Ctlr {
        value: u8,
    },
    /// GICD_IROUTER<intid>, 64 bits.
    Route {
        intid: u8,
        value: u64,
    },
    /// The CPU loop enters the guest on `vcpu`; with `check`, the list registers
    /// are compared with what the registers say of their interrupts (reading them
    /// counts as a change for the vGIC, so not always).
    Enter {
        vcpu: u8,
        check: bool,
    },
    /// `vcpu` exits.
    Exit {
        vcpu: u8,
    },
    Guest {
        vcpu: u8,
        slot: u8,
        action: GuestAction,
    },
    Sgi {
        vcpu: u8,
        value: u64,
        group0: bool,
    },
    SpiLevel {
        intid: u8,
        level: bool,
    },
    Edge {
        vcpu: u8,
        intid: u8,
    },
    HwPpi {
        vcpu: u8,
        intid: u8,
    },
    TakeHwDeactivations {
        vcpu: u8,
    },
    HasPending {
        vcpu: u8,
    },
    Reset,
}

#[derive(Debug, Arbitrary)]
struct Input {
    vcpus: u8,
    lrs: u8,
    ops: Vec<Op>,
}

/// One vCPU as the CPU loop sees it.
#[derive(Clone, Default)]
struct Cpu {
    /// ICH_LR<n>_EL2 as the hardware holds them.
    lrs: [u64; MAX_LRS],
    /// Between a flush and a sync.
    in_guest: bool,
    /// The guest changed a list register since the flush.
    touched: bool,
    /// The vINTIDs of the last flush, while in the guest.
    held: Vec<u32>,
}

struct Harness {
    gic: Vgic,
    vcpus: usize,
    nr_lrs: usize,
    cpus: Vec<Cpu>,
}

fuzz_target!(|input: Input| {
    sluice_fuzz::init_logging();
    let vcpus = usize::from(input.vcpus % 8) + 1;
    let mut h = Harness {
        gic: Vgic::new(vcpus),
        vcpus,
        nr_lrs: usize::from(input.lrs) % (MAX_LRS + 1),
        cpus: vec![Cpu::default(); vcpus],
    };
    assert_eq!(h.gic.vcpu_count(), vcpus);
    for op in &input.ops {
        h.apply(op);
        h.check_spis_held_once();
    }
});

impl Harness {
    /// A vCPU index from the input: every one of the VM's, and now and then one past.
    fn vcpu(&self, raw: u8) -> usize {
        usize::from(raw) % (self.vcpus + 1)
    }

    fn kick(&self, kick: Kick, what: &str) {
        assert_eq!(kick.0 >> self.vcpus, 0, "{what} kicked {kick:?}, beyond the VM's {} vCPUs", self.vcpus);
    }

    fn apply(&mut self, op: &Op) {
        match *op {
            Op::DistRead { offset, width } => {
                let (offset, width) = (u64::from(offset), width.get());
                let value = self.gic.distributor_read(offset, width);
                assert!(value <= width.mask(), "GICD {offset:#x} read {value:#x} as {width:?}");
                match (offset, width) {
                    (0x4, AccessWidth::Word) => assert_eq!(value, GICD_TYPER),
                    (0x0, AccessWidth::Word) => assert_eq!(value & 0x50, 0x50, "GICD_CTLR: ARE and DS"),
                    _ => {}
                }
            }
            Op::DistWrite { offset, width, value } => {
                let kick = self.gic.distributor_write(u64::from(offset), width.get(), value);
                self.kick(kick, "a GICD write");
            }
            Op::RedistRead { offset, width } => {
                let offset = u64::from(offset) % ((self.vcpus as u64 + 1) * GICR_FRAME_SIZE);
                let width = width.get();
                let value = self.gic.redistributor_read(offset, width);
                assert!(value <= width.mask(), "GICR {offset:#x} read {value:#x} as {width:?}");
                let vcpu = offset / GICR_FRAME_SIZE;
                if offset % GICR_FRAME_SIZE == 8 && width == AccessWidth::Double {
                    let expected = if (vcpu as usize) < self.vcpus {
                        let last = if vcpu as usize + 1 == self.vcpus { 1 << 4 } else { 0 };
                        vcpu << 32 | vcpu << 8 | last
                    } else {
                        0
                    };
                    assert_eq!(value, expected, "GICR_TYPER of frame {vcpu}");
                }
            }
            Op::RedistWrite { offset, width, value } => {
                let offset = u64::from(offset) % ((self.vcpus as u64 + 1) * GICR_FRAME_SIZE);
                let kick = self.gic.redistributor_write(offset, width.get(), value);
                self.kick(kick, "a GICR write");
            }
            Op::Bank { vcpu, reg, intid, value } => self.bank(vcpu, reg, intid, value),
            Op::Ctlr { value } => {
                let kick = self.gic.distributor_write(0, AccessWidth::Word, u64::from(value));
                self.kick(kick, "GICD_CTLR");
                let ctlr = self.gic.distributor_read(0, AccessWidth::Word);
                assert_eq!(ctlr, 0x50 | u64::from(value & 3), "GICD_CTLR after writing {value:#x}");
            }
            Op::Route { intid, value } => {
                let offset = 0x6000 + 8 * u64::from(intid % 128);
                let kick = self.gic.distributor_write(offset, AccessWidth::Double, value);
                self.kick(kick, "GICD_IROUTER");
                let back = self.gic.distributor_read(offset, AccessWidth::Double);
                let expected = if intid % 128 >= 32 { value & 0x0000_00ff_80ff_ffff } else { 0 };
                assert_eq!(back, expected, "GICD_IROUTER{} after writing {value:#x}", intid % 128);
            }
            Op::Enter { vcpu, check } => {
                let vcpu = self.vcpu(vcpu);
                self.enter(vcpu);
                if check && vcpu < self.vcpus {
                    self.check_lrs(vcpu);
                }
            }
            Op::Exit { vcpu } => self.exit(self.vcpu(vcpu)),
            Op::Guest { vcpu, slot, action } => self.guest(self.vcpu(vcpu), usize::from(slot), action),
            Op::Sgi { vcpu, value, group0 } => {
                let vcpu = self.vcpu(vcpu);
                let kick =
                    if group0 { self.gic.send_sgi0(vcpu, value) } else { self.gic.send_sgi(vcpu, value) };
                self.kick(kick, "an SGI");
            }
            Op::SpiLevel { intid, level } => {
                let kick = self.gic.set_spi_level(u32::from(intid), level);
                self.kick(kick, "an SPI line");
            }
            Op::Edge { vcpu, intid } => {
                let kick = self.gic.raise_edge(self.vcpu(vcpu), u32::from(intid));
                self.kick(kick, "an edge");
            }
            Op::HwPpi { vcpu, intid } => {
                let kick = self.gic.raise_hw(self.vcpu(vcpu), u32::from(intid % 64));
                self.kick(kick, "a hardware-linked PPI");
            }
            Op::TakeHwDeactivations { vcpu } => {
                let vcpu = self.vcpu(vcpu);
                let ppis = self.gic.take_hw_deactivations(vcpu);
                assert_eq!(ppis & 0xffff, 0, "vCPU {vcpu} must deactivate non-PPIs {ppis:#x}");
                assert_eq!(self.gic.take_hw_deactivations(vcpu), 0, "taken twice");
            }
            Op::HasPending { vcpu } => {
                let vcpu = self.vcpu(vcpu);
                let pending = self.gic.has_pending(vcpu);
                assert!(vcpu < self.vcpus || !pending);
            }
            Op::Reset => {
                // A VM reset happens with every vCPU out of the guest; what their list
                // registers held is dropped, not synced.
                self.gic.reset();
                for cpu in &mut self.cpus {
                    *cpu = Cpu::default();
                }
                for vcpu in 0..self.vcpus {
                    assert!(!self.gic.has_pending(vcpu), "vCPU {vcpu} has a pending interrupt after a reset");
                    assert_eq!(self.gic.lrs_in_use(vcpu), 0);
                }
            }
        }
    }

    /// A per-INTID register write through the block that has `intid`, and the
    /// priority read back.
    fn bank(&mut self, vcpu: u8, reg: BankReg, intid: u8, value: u32) {
        let vcpu = self.vcpu(vcpu);
        let intid = u32::from(intid) % NR_INTIDS;
        let (base, per_word) = match reg {
            BankReg::Group => (0x080, 32),
            BankReg::SetEnable => (0x100, 32),
            BankReg::ClearEnable => (0x180, 32),
            BankReg::SetPending => (0x200, 32),
            BankReg::ClearPending => (0x280, 32),
            BankReg::SetActive => (0x300, 32),
            BankReg::ClearActive => (0x380, 32),
            BankReg::Priority => (0x400, 1),
            BankReg::Config => (0xc00, 16),
        };
        let offset = base + u64::from(intid / per_word) * if per_word == 1 { 1 } else { 4 };
        let width = if per_word == 1 { AccessWidth::Byte } else { AccessWidth::Word };
        let value = u64::from(value) & width.mask();
        let private = intid < 32;
        let frame = vcpu as u64 * GICR_FRAME_SIZE + GICR_SGI_BASE;
        let kick = if private {
            self.gic.redistributor_write(frame + offset, width, value)
        } else {
            self.gic.distributor_write(offset, width, value)
        };
        self.kick(kick, "a per-INTID register write");
        if let BankReg::Priority = reg {
            let back = if private {
                self.gic.redistributor_read(frame + offset, width)
            } else {
                self.gic.distributor_read(offset, width)
            };
            let expected = if vcpu < self.vcpus || !private { value } else { 0 };
            assert_eq!(back, expected, "priority of INTID {intid} (vCPU {vcpu})");
        }
    }

    fn enter(&mut self, vcpu: usize) {
        let nr = self.nr_lrs;
        // A second flush without a sync means the guest did not run; the CPU loop
        // syncs first when it did.
        if self.cpus.get(vcpu).is_some_and(|c| c.in_guest && c.touched) {
            self.exit(vcpu);
        }
        let mut lrs = [0xdead_beef_u64; MAX_LRS];
        let more = self.gic.flush(vcpu, &mut lrs[..nr]);
        if vcpu >= self.vcpus {
            assert!(!more && lrs[..nr].iter().all(|&lr| lr == 0), "a flush for a vCPU that does not exist");
            return;
        }
        let used = self.gic.lrs_in_use(vcpu);
        assert!(used <= nr.min(MAX_LRS), "{used} list registers in use of {nr}");
        let mut seen = Vec::new();
        for (slot, &value) in lrs[..nr].iter().enumerate() {
            if slot >= used {
                assert_eq!(value, 0, "LR{slot} of vCPU {vcpu} past the {used} in use is {value:#x}");
                continue;
            }
            let lr = ListReg::decode(value);
            assert_eq!(lr.encode(), value, "LR{slot} of vCPU {vcpu}: {value:#x} has stray bits");
            assert_ne!(lr.state, LrState::Invalid, "LR{slot} of vCPU {vcpu} in use but invalid");
            assert!(lr.vintid < NR_INTIDS, "LR{slot} of vCPU {vcpu}: vINTID {}", lr.vintid);
            assert!(!seen.contains(&lr.vintid), "vINTID {} twice in vCPU {vcpu}'s LRs", lr.vintid);
            seen.push(lr.vintid);
            if let Some(pintid) = lr.pintid {
                assert!((16..32).contains(&lr.vintid), "hardware link on INTID {}", lr.vintid);
                assert_eq!(pintid, lr.vintid);
                assert_ne!(
                    lr.state,
                    LrState::PendingActive,
                    "hardware-linked INTID {} pending and active",
                    lr.vintid
                );
                assert!(!lr.eoi);
            }
        }
        if more {
            assert_eq!(used, nr.min(MAX_LRS), "interrupts left over with free list registers");
            // NPIE fires while no entry is in the Pending state (IHI 0069H,
            // ICH_HCR_EL2.NPIE): pending and active does not count.
            let any_pending = lrs[..used].iter().any(|&v| ListReg::decode(v).state == LrState::Pending);
            assert!(any_pending, "NPIE asked for with no entry in the Pending state: it would fire for ever");
        }
        if used == 0 && nr > 0 {
            assert!(
                !self.gic.has_pending(vcpu),
                "vCPU {vcpu}: the flush delivered nothing, yet an interrupt is deliverable"
            );
        }
        let cpu = &mut self.cpus[vcpu];
        cpu.lrs = lrs;
        cpu.in_guest = true;
        cpu.touched = false;
        cpu.held = seen;
    }

    /// Each list register just filled against the registers of its interrupt: its
    /// priority and group; written pending only if enabled and its group enabled,
    /// and then the interrupt reads pending; written active only if it reads active.
    fn check_lrs(&mut self, vcpu: usize) {
        let ctlr = self.gic.distributor_read(0, AccessWidth::Word);
        let lrs = self.cpus[vcpu].lrs;
        for &value in &lrs[..self.gic.lrs_in_use(vcpu)] {
            let lr = ListReg::decode(value);
            let intid = lr.vintid;
            let (word, bit) = (u64::from(intid / 32) * 4, intid % 32);
            let frame = vcpu as u64 * GICR_FRAME_SIZE + GICR_SGI_BASE;
            let read = |offset: u64, width| {
                if intid < 32 {
                    self.gic.redistributor_read(frame + offset, width)
                } else {
                    self.gic.distributor_read(offset, width)
                }
            };
            let bit_of = |value: u64| value >> bit & 1 == 1;
            let enabled = bit_of(read(0x100 + word, AccessWidth::Word));
            let pending = bit_of(read(0x200 + word, AccessWidth::Word));
            let active = bit_of(read(0x300 + word, AccessWidth::Word));
            let group1 = bit_of(read(0x080 + word, AccessWidth::Word));
            let priority = read(0x400 + u64::from(intid), AccessWidth::Byte);
            let what = format!("vCPU {vcpu} LR {value:#x} (INTID {intid})");
            assert_eq!(u64::from(lr.priority), priority, "{what}: priority");
            assert_eq!(lr.group1, group1, "{what}: group");
            if lr.state.pending() {
                let group_enabled = ctlr >> u32::from(group1) & 1 == 1;
                assert!(enabled && group_enabled, "{what}: pending, but disabled or its group is");
                assert!(pending, "{what}: pending in the LR, not in ISPENDR");
            }
            if lr.state.active() {
                assert!(active, "{what}: active in the LR, not in ISACTIVER");
            }
        }
    }

    fn exit(&mut self, vcpu: usize) {
        let nr = self.nr_lrs;
        let lrs = self.cpus.get(vcpu).map_or([0; MAX_LRS], |c| c.lrs);
        let kick = self.gic.sync(vcpu, &lrs[..nr]);
        self.kick(kick, "a sync");
        if let Some(cpu) = self.cpus.get_mut(vcpu) {
            cpu.in_guest = false;
            cpu.touched = false;
            cpu.held.clear();
        }
        assert_eq!(self.gic.lrs_in_use(vcpu), 0, "vCPU {vcpu}: list registers in use after a sync");
    }

    fn guest(&mut self, vcpu: usize, slot: usize, action: GuestAction) {
        let nr = self.nr_lrs;
        let Some(cpu) = self.cpus.get_mut(vcpu).filter(|c| c.in_guest && nr > 0) else { return };
        let slot = slot % nr;
        let value = cpu.lrs[slot];
        let state = value >> 62;
        let with_state = |s: u64| value & !(3 << 62) | s << 62;
        cpu.lrs[slot] = match action {
            GuestAction::Acknowledge if state == 1 => with_state(2),
            GuestAction::Deactivate if state >= 2 => with_state(state - 2),
            GuestAction::Complete if state == 1 => with_state(0),
            GuestAction::State(s) => with_state(u64::from(s & 3)),
            GuestAction::Raw(raw) => raw,
            _ => value,
        };
        cpu.touched = true;
    }

    /// An SPI is delivered to one vCPU at a time.
    fn check_spis_held_once(&self) {
        let mut holders = [usize::MAX; NR_INTIDS as usize];
        for (vcpu, cpu) in self.cpus.iter().enumerate().filter(|(_, c)| c.in_guest) {
            for &intid in cpu.held.iter().filter(|&&i| i >= 32) {
                let holder = &mut holders[intid as usize];
                assert!(*holder == usize::MAX, "SPI {intid} is in the LRs of vCPUs {} and {vcpu}", *holder);
                *holder = vcpu;
            }
        }
    }
}
