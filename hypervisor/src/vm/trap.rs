//! What Sluice does with each exit from a guest.
//!
//! After the registers are saved, the trap path decodes the syndrome ([`decode`])
//! and acts on it (emulates an MMIO access, answers a PSCI call, injects an
//! exception), saying how to continue: [`handle_on_cpu`] for the exits that need
//! only the trapping vCPU, [`handle_with_vm`] (or [`mmio`]) for the rest. The few
//! things it needs from the CPU come through [`GuestCpu`], so the path runs
//! unchanged in host tests.

use super::devices::Access;
use super::hypercall::Answer;
use super::psci::{self, PsciOutcome, VcpuView};
use super::{Power, Vm};
use crate::arch::aarch64::esr::{decode_trap, DecodeError, MmioAccess, SysReg, SysRegAccess, Trap, WfxKind};
use crate::arch::aarch64::features::guest_features;
use crate::arch::aarch64::guest_cpu::GuestCpu;
use crate::arch::aarch64::insn;
use crate::arch::aarch64::sysreg::{self, SysRegOutcome};
use crate::arch::aarch64::trap_frame::TrapFrame;
use crate::arch::aarch64::virtual_interface::VirtualInterface;
use crate::arch::inject::{inject, GuestException};
use crate::guest_log;
use crate::guest_log::Kind;
use crate::trace::stats::ExitReason;
use crate::vgic::VgicSession;
use crate::vm::vcpu::VcpuPower;
use log::error;

/// The syndrome registers of one trap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Syndrome {
    /// ESR_EL2.
    pub esr: u64,
    /// FAR_EL2.
    pub far: u64,
    /// HPFAR_EL2.
    pub hpfar: u64,
}

/// How the vCPU goes on after an exit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitAction {
    /// Return to the guest.
    Resume,
    /// The guest powered off (or turned its last vCPU off): stop the VM cleanly.
    PowerOff,
    /// The guest asked for `SYSTEM_RESET`: reload and restart the VM.
    Reset,
    /// The guest did something it cannot continue from: stop the VM as failed.
    Fault,
    /// The vCPU waits for an interrupt (WFI with nothing pending): sleep the physical
    /// CPU, without holding the VM, until one may be pending.
    WaitForInterrupt,
    /// The vCPU called PSCI `CPU_OFF` (and another still runs): idle until `CPU_ON`.
    VcpuOff,
    /// The guest asked for its trace (Sluice's `TRACE_DUMP`): print up to `exits`
    /// recent exits of each of its CPUs, then return to it.
    DumpTrace {
        /// Exits per CPU, at most `platform::hypercall::MAX_DUMPED_EXITS`.
        exits: u16,
    },
}

/// ICC_SGI1R_EL1, ICC_ASGI1R_EL1 and ICC_SGI0R_EL1: writes trap to EL2 whenever
/// HCR_EL2.IMO is set (GICv3 spec, 12.1.7), and Sluice delivers the SGIs.
fn is_sgi_register(reg: SysReg) -> bool {
    reg.op0 == 3 && reg.op1 == 0 && reg.crn == 12 && reg.crm == 11 && matches!(reg.op2, 5..=7)
}

/// Decodes a trap's syndrome.
#[inline]
pub fn decode(syndrome: Syndrome) -> Trap {
    decode_trap(syndrome.esr, syndrome.far, syndrome.hpfar)
}

/// Handles the exits that need nothing but the trapping vCPU's own registers: the
/// hypercalls whose answer depends on no VM state (Sluice's own, SMCCC and PSCI
/// queries, unknown functions), system register traps other than SGIs, WFE, and
/// unknown exception classes. `None` for every other exit, untouched: it needs the
/// VM ([`handle_with_vm`]). This is the trap floor: no lock, no list registers.
/// (Inlined into the trap path, so the decoded trap never goes through memory; the
/// longer cases are functions of their own.)
#[inline(always)]
pub fn handle_on_cpu(
    trap: &Trap,
    frame: &mut TrapFrame,
    cpu: &mut impl GuestCpu,
) -> Option<(ExitReason, ExitAction)> {
    match *trap {
        Trap::Hvc { imm } => Some((ExitReason::Hvc, hypercall_on_cpu(frame, imm, "hvc")?)),
        Trap::Smc { imm } => {
            let action = hypercall_on_cpu(frame, imm, "smc")?;
            // A trapped SMC returns to the SMC itself (Arm ARM D1.11.2); step past it.
            frame.skip_instruction();
            Some((ExitReason::Smc, action))
        }
        Trap::Wfx(WfxKind::Wfe | WfxKind::Wfet) => {
            // Never sleeps the physical CPU: an event may come from anywhere.
            frame.skip_instruction();
            Some((ExitReason::Wfi, ExitAction::Resume))
        }
        Trap::SysReg(access) if !is_sgi_register(access.reg) || access.read => {
            sysreg_on_cpu(access, frame, cpu);
            Some((ExitReason::SysReg, ExitAction::Resume))
        }
        Trap::Other { ec } => {
            unknown_exception(ec, frame, cpu);
            Some((ExitReason::Other, ExitAction::Resume))
        }
        _ => None,
    }
}

/// A system register access other than an SGI: an ID register read gets its
/// sanitised value, what Sluice ignores is stepped past, the rest is undefined.
#[inline(never)]
fn sysreg_on_cpu(access: SysRegAccess, frame: &mut TrapFrame, cpu: &mut impl GuestCpu) {
    let features = guest_features();
    match sysreg::emulate(access, frame.reg(access.rt), &features, |reg| cpu.read_register(reg)) {
        SysRegOutcome::Read(value) => {
            frame.set_reg(access.rt, value);
            frame.skip_instruction();
        }
        SysRegOutcome::Write(value) => {
            cpu.write_pmcr(value);
            frame.skip_instruction();
        }
        SysRegOutcome::Ignored => frame.skip_instruction(),
        SysRegOutcome::Undefined => {
            guest_log!(
                Kind::Fault,
                Debug,
                "{} of {} at pc {:#x} is undefined",
                if access.read { "read" } else { "write" },
                access.reg,
                frame.elr
            );
            deliver(frame, cpu, GuestException::Undefined);
        }
    }
}

/// An exception class Sluice does not expect: an undefined instruction for the guest.
#[inline(never)]
fn unknown_exception(ec: u8, frame: &mut TrapFrame, cpu: &mut impl GuestCpu) {
    guest_log!(
        Kind::Fault,
        Warn,
        "unexpected trap (exception class {ec:#x}) at pc {:#x}; injecting an undefined instruction",
        frame.elr
    );
    deliver(frame, cpu, GuestException::Undefined);
}

/// Handles an exit [`handle_on_cpu`] left: one that reads or changes the VM (its
/// memory, devices, vGIC or vCPUs' power states), through `gic` for the vGIC. An
/// `hvc` or `smc` here must be one [`handle_on_cpu`] turned down (a PSCI call about
/// the VM's vCPUs or power).
pub fn handle_with_vm<I: VirtualInterface>(
    vm: &Vm,
    vcpu: usize,
    frame: &mut TrapFrame,
    cpu: &mut impl GuestCpu,
    trap: Trap,
    syndrome: Syndrome,
    gic: &mut VgicSession<'_, I>,
) -> (ExitReason, ExitAction) {
    match trap {
        Trap::DataAbort(Ok(access)) => (ExitReason::Mmio, mmio(vm, frame, cpu, access, syndrome.far, gic)),
        Trap::DataAbort(Err(e)) => (ExitReason::Mmio, refused_data_abort(vm, frame, cpu, e, syndrome.far)),
        Trap::InstructionAbort { far, ipa, fsc } => {
            (ExitReason::InstructionAbort, prefetch_abort(vm, frame, cpu, far, ipa, fsc))
        }
        Trap::Hvc { .. } => (ExitReason::Hvc, psci_with_vm(vm, vcpu, frame, gic)),
        Trap::Smc { .. } => {
            frame.skip_instruction();
            (ExitReason::Smc, psci_with_vm(vm, vcpu, frame, gic))
        }
        Trap::Wfx(kind) => {
            frame.skip_instruction();
            let idle = matches!(kind, WfxKind::Wfi | WfxKind::Wfit) && !gic.lock().has_pending(vcpu);
            (ExitReason::Wfi, if idle { ExitAction::WaitForInterrupt } else { ExitAction::Resume })
        }
        Trap::SysReg(access) if is_sgi_register(access.reg) && !access.read => {
            // ICC_SGI0R_EL1 (op2 7) raises Group 0 SGIs; the other two, any group.
            let value = frame.reg(access.rt);
            if access.reg.op2 == 7 {
                gic.update(|v| v.send_sgi0(vcpu, value));
            } else {
                gic.update(|v| v.send_sgi(vcpu, value));
            }
            frame.skip_instruction();
            (ExitReason::SysReg, ExitAction::Resume)
        }
        // Other system registers and unknown classes: handle_on_cpu takes every one,
        // and a caller that skipped it gets the same.
        Trap::SysReg(_) | Trap::Other { .. } => {
            handle_on_cpu(&trap, frame, cpu).unwrap_or((ExitReason::Other, ExitAction::Resume))
        }
    }
}

/// Emulates a decoded access on the device that owns its address (locking that
/// device alone), or refuses it with an abort when nothing is there.
#[inline]
pub fn mmio<I: VirtualInterface>(
    vm: &Vm,
    frame: &mut TrapFrame,
    cpu: &mut impl GuestCpu,
    access: MmioAccess,
    far: u64,
    gic: &mut VgicSession<'_, I>,
) -> ExitAction {
    let store = access.write.then(|| access.store_value(frame.reg(access.reg)));
    match vm.devices.access(Access { ipa: access.ipa, width: access.width, store }, gic) {
        Some(raw) => {
            if !access.write {
                frame.set_reg(access.reg, access.load_result(raw));
            }
            frame.skip_instruction();
        }
        None => unmapped_access(frame, cpu, access, far),
    }
    ExitAction::Resume
}

/// An access no device answers: the guest gets an abort.
#[inline(never)]
fn unmapped_access(frame: &mut TrapFrame, cpu: &mut impl GuestCpu, access: MmioAccess, far: u64) {
    guest_log!(
        Kind::Mmio,
        Warn,
        "{}-byte {} at {:#x} (pc {:#x}) is outside its memory and devices; injecting an abort",
        access.width.bytes(),
        if access.write { "write" } else { "read" },
        access.ipa,
        frame.elr
    );
    deliver(frame, cpu, GuestException::DataAbort { far, write: access.write });
}

/// An instruction fetch from a guest-physical address without RAM: the guest gets an
/// instruction abort (synchronous external abort) at its EL1 vector, as KVM and real
/// hardware give it. A fetch that faults at the very vector the abort would go to
/// means the guest has no handler there: it would take the same abort forever, so
/// the VM is stopped as failed instead.
fn prefetch_abort(
    vm: &Vm,
    frame: &mut TrapFrame,
    cpu: &mut impl GuestCpu,
    far: u64,
    ipa: Option<u64>,
    fsc: u8,
) -> ExitAction {
    let exception = GuestException::InstructionAbort { far };
    let injection = inject(exception, frame.elr, frame.spsr, cpu.vbar_el1(), cpu.sctlr_el1());
    let ipa = ipa.map_or("unknown".into(), |ipa| alloc::format!("{ipa:#x}"));
    if injection.pc == far {
        error!(
            "vm \"{}\" stopped: instruction fetch at its own exception vector {far:#x} (guest-physical {ipa}) is outside its memory: it has no handler for the abort",
            vm.name()
        );
        return ExitAction::Fault;
    }
    guest_log!(
        Kind::Fault,
        Warn,
        "instruction fetch at {far:#x} (guest-physical {ipa}, fault status {fsc:#x}) is outside its memory; injecting an instruction abort"
    );
    cpu.set_exception_registers(&injection);
    frame.elr = injection.pc;
    frame.spsr = injection.pstate;
    ExitAction::Resume
}

/// A data abort that is not a decodable MMIO access: the guest gets an abort.
fn refused_data_abort(
    vm: &Vm,
    frame: &mut TrapFrame,
    cpu: &mut impl GuestCpu,
    error: DecodeError,
    far: u64,
) -> ExitAction {
    let pc = frame.elr;
    match error {
        DecodeError::CacheMaintenance { ipa } => {
            // Cleaning or invalidating an address without RAM has no effect.
            guest_log!(Kind::Mmio, Debug, "cache maintenance at {ipa:#x} (pc {pc:#x}) ignored");
            frame.skip_instruction();
            return ExitAction::Resume;
        }
        DecodeError::NoSyndrome { ipa, write } => {
            let word = cpu.guest_va_to_ipa(pc).and_then(|at| vm.memory.read_u32(at).ok());
            match word {
                Some(word) => guest_log!(
                    Kind::Mmio,
                    Warn,
                    "{} at pc {pc:#x} (instruction {word:#010x}) accessed {ipa:#x}, which Sluice can only emulate for single-register loads and stores (ISV=0); injecting an abort",
                    insn::describe(word)
                ),
                None => guest_log!(
                    Kind::Mmio,
                    Warn,
                    "an unreadable instruction at pc {pc:#x} accessed {ipa:#x} with no syndrome (ISV=0); injecting an abort"
                ),
            }
            deliver(frame, cpu, GuestException::DataAbort { far, write });
        }
        DecodeError::TableWalk { ipa } => {
            guest_log!(
                Kind::Mmio,
                Warn,
                "its page table walk touched {ipa:#x}, outside its memory (pc {pc:#x}); injecting an abort"
            );
            deliver(frame, cpu, GuestException::DataAbort { far, write: false });
        }
        DecodeError::Unexpected { dfsc, far: fault_address } => {
            guest_log!(
                Kind::Mmio,
                Warn,
                "data abort with fault status {dfsc:#x} at {fault_address:#x?} (pc {pc:#x}); injecting an abort"
            );
            deliver(frame, cpu, GuestException::DataAbort { far, write: false });
        }
    }
    ExitAction::Resume
}

/// An HVC or trapped SMC (SMCCC wants `#0`) answered without the VM: Sluice's own
/// calls and the SMCCC and PSCI calls whose answer is fixed. `None`, with the frame
/// untouched, for a PSCI call about the VM's vCPUs or power ([`psci_with_vm`]).
#[inline]
fn hypercall_on_cpu(frame: &mut TrapFrame, imm: u16, conduit: &str) -> Option<ExitAction> {
    if imm == 0 {
        // Sluice's own calls first: the null call is the trap floor.
        match super::hypercall::handle([frame.x[0], frame.x[1]]) {
            Some(Answer::Return(value)) => {
                frame.x[0] = value as u64;
                return Some(ExitAction::Resume);
            }
            Some(Answer::DumpTrace { exits }) => {
                frame.x[0] = psci::ret::SUCCESS as u64;
                return Some(ExitAction::DumpTrace { exits });
            }
            None => {}
        }
    }
    smccc_on_cpu(frame, imm, conduit)
}

/// The rest of [`hypercall_on_cpu`]: SMCCC and PSCI calls, and calls that are not
/// SMCCC at all. Kept apart so the null call's path stays short.
#[inline(never)]
fn smccc_on_cpu(frame: &mut TrapFrame, imm: u16, conduit: &str) -> Option<ExitAction> {
    if imm != 0 {
        guest_log!(
            Kind::Hypercall,
            Warn,
            "{conduit} #{imm:#x} at pc {:#x} is not an SMCCC call; returning NOT_SUPPORTED",
            frame.elr
        );
        frame.x[0] = psci::ret::NOT_SUPPORTED as u64;
        return Some(ExitAction::Resume);
    }
    let call = psci::decode([frame.x[0], frame.x[1], frame.x[2], frame.x[3]]);
    let value = psci::answer(call)?;
    if let psci::PsciCall::Unknown(function) = call {
        if psci::is_well_formed(function) {
            // A real service Sluice doesn't offer (Linux probes TRNG, vendor UIDs...).
            guest_log!(
                Kind::Hypercall,
                Debug,
                "{conduit} function {function:#x} not offered; returning NOT_SUPPORTED"
            );
        } else {
            guest_log!(
                Kind::Hypercall,
                Warn,
                "unknown {conduit} function {function:#x} at pc {:#x}; returning NOT_SUPPORTED",
                frame.elr
            );
        }
    }
    frame.x[0] = value as u64;
    Some(ExitAction::Resume)
}

/// A PSCI call about the VM's vCPUs or power (`CPU_ON`, `CPU_OFF`,
/// `AFFINITY_INFO`, `SYSTEM_OFF`, `SYSTEM_RESET`); a vCPU it starts is kicked
/// through `gic`.
fn psci_with_vm<I: VirtualInterface>(
    vm: &Vm,
    vcpu: usize,
    frame: &mut TrapFrame,
    gic: &mut VgicSession<'_, I>,
) -> ExitAction {
    let call = psci::decode([frame.x[0], frame.x[1], frame.x[2], frame.x[3]]);
    let mut power = vm.power().lock();
    if power.vcpus[vcpu] != VcpuPower::On {
        // Told to stop since the exit began (another vCPU resets or stops the VM):
        // the call is moot; the kick that said so makes it leave.
        return ExitAction::Resume;
    }
    let outcome = psci::handle(call, &*power);
    if let (psci::PsciCall::CpuOn { target, .. }, PsciOutcome::Return(code)) = (call, outcome) {
        guest_log!(Kind::Psci, Debug, "CPU_ON of MPIDR {target:#x} refused (PSCI error {code})");
    }
    match outcome {
        PsciOutcome::Return(value) => {
            frame.x[0] = value as u64;
            ExitAction::Resume
        }
        PsciOutcome::SystemOff => ExitAction::PowerOff,
        PsciOutcome::SystemReset => ExitAction::Reset,
        PsciOutcome::CpuOff => {
            let others_on = power.vcpus.iter().enumerate().any(|(i, p)| i != vcpu && p.is_on());
            // The last vCPU going off leaves nothing to run: that is a power-off.
            if others_on {
                ExitAction::VcpuOff
            } else {
                ExitAction::PowerOff
            }
        }
        PsciOutcome::CpuOn { vcpu: target, entry, context } => {
            if vm.memory.contains(entry, 4) {
                power.vcpus[target] = VcpuPower::StartPending { entry, context };
                gic.kick(1 << target);
                frame.x[0] = psci::ret::SUCCESS as u64;
            } else {
                guest_log!(
                    Kind::Psci,
                    Warn,
                    "CPU_ON of vCPU {target} at {entry:#x}, outside its RAM: INVALID_ADDRESS"
                );
                frame.x[0] = psci::ret::INVALID_ADDRESS as u64;
            }
            ExitAction::Resume
        }
    }
}

impl VcpuView for Power {
    fn vcpu_count(&self) -> usize {
        self.vcpus.len()
    }
    fn is_on(&self, index: usize) -> bool {
        self.vcpus[index].is_on()
    }
}

/// Redirects the guest to its exception vector for `exception`.
fn deliver(frame: &mut TrapFrame, cpu: &mut impl GuestCpu, exception: GuestException) {
    let injection = inject(exception, frame.elr, frame.spsr, cpu.vbar_el1(), cpu.sctlr_el1());
    cpu.set_exception_registers(&injection);
    frame.elr = injection.pc;
    frame.spsr = injection.pstate;
}

#[cfg(test)]
#[allow(unsafe_code)]
mod tests {
    use super::*;
    use crate::arch::aarch64::virtual_interface::NoListRegisters;
    use crate::arch::inject::Injection;
    use crate::console::ConsoleOutput;
    use crate::devices::pl031::StoppedClock;
    use crate::mm::guest_memory::{GuestMemory, RamChunk};
    use crate::vm::config::VmConfig;
    use alloc::sync::Arc;
    use alloc::vec;
    use alloc::vec::Vec;
    use platform::bundle::spec::{CpuList, VmSpec};
    use std::sync::Mutex;

    const RAM: u64 = 0x4000_0000;
    const RAM_SIZE: u64 = 2 << 20;

    /// Collects what the guest's UART sends.
    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<u8>>>);

    impl ConsoleOutput for Sink {
        fn write(&mut self, bytes: &[u8]) {
            self.0.lock().unwrap().extend_from_slice(bytes);
        }
    }

    /// A vCPU whose EL1 registers are plain fields.
    #[derive(Default)]
    struct FakeCpu {
        injected: Option<Injection>,
    }

    impl GuestCpu for FakeCpu {
        fn vbar_el1(&self) -> u64 {
            RAM + 0x1000
        }
        fn sctlr_el1(&self) -> u64 {
            0x30d0_0800
        }
        fn set_exception_registers(&mut self, injection: &Injection) {
            self.injected = Some(*injection);
        }
        fn read_register(&self, _reg: SysReg) -> u64 {
            0x1111
        }
        fn write_pmcr(&mut self, _value: u64) {}
        fn guest_va_to_ipa(&self, va: u64) -> Option<u64> {
            Some(va)
        }
    }

    /// A VM with 2 MiB of RAM backed by `backing`, its UART output going to `sink`.
    fn vm(backing: &mut Vec<u64>, sink: &Sink) -> Vm {
        static KERNEL: [u8; 8] = [0x1f, 0x20, 0x03, 0xd5, 0, 0, 0, 0];
        let spec = VmSpec {
            name: "test",
            cpus: CpuList::new(&[0]).unwrap(),
            memory_size: RAM_SIZE,
            host_base: None,
            kernel: &KERNEL,
            kernel_addr: RAM,
            entry: RAM,
            dtb_addr: RAM + 0x10_0000,
            initrd: None,
            bootargs: None,
        };
        let config = VmConfig { spec, devices: Vec::new() };
        let chunk =
            RamChunk { ipa: RAM, pa: 0x8000_0000, host: backing.as_mut_ptr() as usize, size: RAM_SIZE };
        // SAFETY: `backing` outlives the VM in every test and is touched only through it.
        let memory = unsafe { GuestMemory::new(vec![chunk]) };
        let vm = Vm::new(0, config, memory, Box::new(sink.clone()), &StoppedClock, Vec::new()).unwrap();
        let mut power = vm.power().lock();
        vm.load(&mut power).unwrap();
        // vCPU 0 is running, as the CPU loop leaves it when it enters the guest.
        power.vcpus[0] = VcpuPower::On;
        drop(power);
        vm
    }

    fn backing() -> Vec<u64> {
        vec![0; (RAM_SIZE / 8) as usize]
    }

    fn hpfar(ipa: u64) -> u64 {
        (ipa >> 12) << 4
    }

    /// `str w1, [x0]` / `ldr w1, [x0]` style syndromes: EC 0x24, IL, ISV, SAS=2, SRT=1.
    fn word_access(write: bool) -> u64 {
        0x9381_0006 | ((write as u64) << 6)
    }

    fn run(
        vm: &Vm,
        frame: &mut TrapFrame,
        cpu: &mut FakeCpu,
        esr: u64,
        far: u64,
        hpfar: u64,
    ) -> (ExitReason, ExitAction) {
        // What the CPU loop does: the vCPU alone if it can, else with the VM.
        let syndrome = Syndrome { esr, far, hpfar };
        let trap = decode(syndrome);
        let mut gic = VgicSession::local(vm.devices.vgic(), 0, NoListRegisters);
        let out = handle_on_cpu(&trap, frame, cpu)
            .unwrap_or_else(|| handle_with_vm(vm, 0, frame, cpu, trap, syndrome, &mut gic));
        gic.finish();
        out
    }

    #[test]
    fn an_mmio_store_reaches_the_uart_and_steps_past() {
        let (mut mem, sink) = (backing(), Sink::default());
        let vm = vm(&mut mem, &sink);
        let mut frame = TrapFrame::boot(RAM, 0);
        frame.x[1] = b'A' as u64;
        let out =
            run(&vm, &mut frame, &mut FakeCpu::default(), word_access(true), 0x0900_0000, hpfar(0x0900_0000));
        assert_eq!(out, (ExitReason::Mmio, ExitAction::Resume));
        assert_eq!(frame.elr, RAM + 4);
        assert_eq!(*sink.0.lock().unwrap(), b"A");
    }

    #[test]
    fn an_mmio_load_fills_the_register() {
        let (mut mem, sink) = (backing(), Sink::default());
        let vm = vm(&mut mem, &sink);
        let mut frame = TrapFrame::boot(RAM, 0);
        frame.x[1] = u64::MAX;
        // PL011 PeriphID0 at 0xfe0 reads 0x11.
        run(&vm, &mut frame, &mut FakeCpu::default(), word_access(false), 0xfe0, hpfar(0x0900_0000));
        assert_eq!(frame.x[1], 0x11);
    }

    #[test]
    fn an_access_to_nothing_injects_an_abort() {
        let (mut mem, sink) = (backing(), Sink::default());
        let vm = vm(&mut mem, &sink);
        let mut frame = TrapFrame::boot(RAM + 0x100, 0);
        let mut cpu = FakeCpu::default();
        let out = run(&vm, &mut frame, &mut cpu, word_access(false), 0x5000_0000, hpfar(0x5000_0000));
        assert_eq!(out, (ExitReason::Mmio, ExitAction::Resume));
        let injected = cpu.injected.unwrap();
        assert_eq!(injected.elr_el1, RAM + 0x100);
        assert_eq!(injected.esr_el1, 0x9600_0010);
        assert_eq!(injected.far_el1, Some(0x5000_0000));
        assert_eq!(frame.elr, RAM + 0x1000 + 0x200);
        assert_eq!(frame.spsr & 0x3c0, 0x3c0, "the handler runs with interrupts masked");
    }

    #[test]
    fn isv0_is_refused_with_an_abort() {
        let (mut mem, sink) = (backing(), Sink::default());
        let vm = vm(&mut mem, &sink);
        let mut frame = TrapFrame::boot(RAM, 0);
        let mut cpu = FakeCpu::default();
        // EC 0x24, IL, no ISV: an ldp at the UART.
        run(&vm, &mut frame, &mut cpu, 0x9200_0006, 0x0900_0000, hpfar(0x0900_0000));
        assert!(cpu.injected.is_some());
        assert!(sink.0.lock().unwrap().is_empty());
    }

    #[test]
    fn psci_calls_over_hvc_and_smc() {
        let (mut mem, sink) = (backing(), Sink::default());
        let vm = vm(&mut mem, &sink);
        let mut cpu = FakeCpu::default();
        let mut frame = TrapFrame::boot(RAM + 8, 0);
        frame.x[0] = 0x8400_0000;
        // HVC #0: ELR already points past it.
        assert_eq!(run(&vm, &mut frame, &mut cpu, 0x5a00_0000, 0, 0), (ExitReason::Hvc, ExitAction::Resume));
        assert_eq!((frame.x[0], frame.elr), (0x1_0001, RAM + 8));
        // SMC #0: trapped at the SMC, so the PC steps past it.
        frame.x[0] = 0x8400_0000;
        assert_eq!(run(&vm, &mut frame, &mut cpu, 0x5e00_0000, 0, 0), (ExitReason::Smc, ExitAction::Resume));
        assert_eq!((frame.x[0], frame.elr), (0x1_0001, RAM + 12));
        frame.x[0] = 0xdead_beef;
        run(&vm, &mut frame, &mut cpu, 0x5a00_0000, 0, 0);
        assert_eq!(frame.x[0], u64::MAX, "NOT_SUPPORTED is -1");
        frame.x[0] = 0x8400_0000;
        run(&vm, &mut frame, &mut cpu, 0x5a00_1234, 0, 0);
        assert_eq!(frame.x[0], u64::MAX, "a non-zero immediate is not an SMCCC call");
        frame.x[0] = 0x8400_0009;
        assert_eq!(run(&vm, &mut frame, &mut cpu, 0x5a00_0000, 0, 0).1, ExitAction::Reset);
        frame.x[0] = 0x8400_0008;
        assert_eq!(run(&vm, &mut frame, &mut cpu, 0x5a00_0000, 0, 0).1, ExitAction::PowerOff);
    }

    #[test]
    fn sluice_hypercalls() {
        use platform::hypercall::{NULL, TRACE_DUMP, TRACE_PHASE};
        let (mut mem, sink) = (backing(), Sink::default());
        let vm = vm(&mut mem, &sink);
        let mut cpu = FakeCpu::default();
        let mut frame = TrapFrame::boot(RAM + 8, 0);
        let mut call = |vm: &Vm, function: u32, arg: u64| {
            frame.x[0] = u64::from(function);
            frame.x[1] = arg;
            let (reason, action) = run(vm, &mut frame, &mut cpu, 0x5a00_0000, 0, 0);
            assert_eq!(reason, ExitReason::Hvc);
            (frame.x[0] as i64, action)
        };
        let resumed = |value: i64| (value, ExitAction::Resume);
        assert_eq!(call(&vm, NULL, 0), resumed(0));
        assert_eq!(call(&vm, TRACE_PHASE, 31), resumed(0));
        assert_eq!(call(&vm, TRACE_PHASE, 32), resumed(-2), "phases are 0 to 31");
        assert_eq!(call(&vm, TRACE_PHASE, 1 << 32), resumed(0), "SMC32: only the low half counts");
        assert_eq!(call(&vm, TRACE_DUMP, 5), (0, ExitAction::DumpTrace { exits: 5 }));
        assert_eq!(
            call(&vm, TRACE_DUMP, 1 << 20),
            (0, ExitAction::DumpTrace { exits: 1024 }),
            "the dump is capped"
        );
        assert_eq!(call(&vm, NULL + 3, 0), resumed(-1), "unknown vendor calls are NOT_SUPPORTED");
    }

    #[test]
    fn an_empty_virtio_slot_reads_like_qemus() {
        let (mut mem, sink) = (backing(), Sink::default());
        let vm = vm(&mut mem, &sink);
        let mut frame = TrapFrame::boot(RAM, 0);
        let mut cpu = FakeCpu::default();
        for (offset, expected) in [(0x000, 0x7472_6976), (0x004, 2), (0x008, 0), (0x070, 0)] {
            frame.x[1] = u64::MAX;
            let out = run(&vm, &mut frame, &mut cpu, word_access(false), offset, hpfar(0x0a00_3e00));
            assert_eq!(out, (ExitReason::Mmio, ExitAction::Resume));
            assert_eq!(frame.x[1], expected, "offset {offset:#x}");
        }
        assert!(cpu.injected.is_none());
    }

    #[test]
    fn a_fetch_outside_ram_is_an_instruction_abort_in_the_guest() {
        let (mut mem, sink) = (backing(), Sink::default());
        let vm = vm(&mut mem, &sink);
        let mut frame = TrapFrame::boot(0x1000, 0);
        let mut cpu = FakeCpu::default();
        // EC 0x20 (instruction abort from EL1, seen at EL2), IL, IFSC 0x05 (translation, level 1).
        let out = run(&vm, &mut frame, &mut cpu, 0x8200_0005, 0x1000, hpfar(0x1000));
        assert_eq!(out, (ExitReason::InstructionAbort, ExitAction::Resume));
        let injected = cpu.injected.unwrap();
        // Taken at EL1 from EL1: EC 0x21, IL, synchronous external abort.
        assert_eq!(injected.esr_el1, 0x8600_0010);
        assert_eq!((injected.elr_el1, injected.far_el1), (0x1000, Some(0x1000)));
        assert_eq!(frame.elr, RAM + 0x1000 + 0x200, "the current-EL, SP_ELx synchronous vector");
    }

    #[test]
    fn a_fetch_fault_at_the_guests_own_vector_stops_the_vm() {
        let (mut mem, sink) = (backing(), Sink::default());
        let vm = vm(&mut mem, &sink);
        let vector = RAM + 0x1000 + 0x200;
        let mut frame = TrapFrame::boot(vector, 0);
        let mut cpu = FakeCpu::default();
        let out = run(&vm, &mut frame, &mut cpu, 0x8200_0005, vector, hpfar(vector));
        assert_eq!(out, (ExitReason::InstructionAbort, ExitAction::Fault));
        assert!(cpu.injected.is_none());
    }

    #[test]
    fn wfi_waits_and_steps_past() {
        let (mut mem, sink) = (backing(), Sink::default());
        let vm = vm(&mut mem, &sink);
        let mut frame = TrapFrame::boot(RAM, 0);
        let mut cpu = FakeCpu::default();
        let wfi = run(&vm, &mut frame, &mut cpu, 0x0600_0000, 0, 0);
        assert_eq!(wfi, (ExitReason::Wfi, ExitAction::WaitForInterrupt));
        assert_eq!(frame.elr, RAM + 4);
        // WFE never sleeps the physical CPU.
        let wfe = run(&vm, &mut frame, &mut cpu, 0x0600_0001, 0, 0);
        assert_eq!(wfe, (ExitReason::Wfi, ExitAction::Resume));
    }

    #[test]
    fn sysreg_traps_read_sanitised_values_or_inject_undef() {
        let (mut mem, sink) = (backing(), Sink::default());
        let vm = vm(&mut mem, &sink);
        let mut frame = TrapFrame::boot(RAM, 0);
        let mut cpu = FakeCpu::default();
        // mrs x3, id_aa64isar0_el1 (S3_0_C0_C6_0).
        let iss = (3 << 20) | (3 << 5) | (6 << 1) | 1;
        let esr = (0x18 << 26) | (1 << 25) | iss;
        assert_eq!(run(&vm, &mut frame, &mut cpu, esr, 0, 0), (ExitReason::SysReg, ExitAction::Resume));
        assert_eq!((frame.x[3], frame.elr), (0x1111, RAM + 4));
        // An implementation-defined register: undefined in the guest.
        let iss = (3 << 20) | (15 << 10) | (2 << 1) | 1;
        run(&vm, &mut frame, &mut cpu, (0x18 << 26) | (1 << 25) | iss, 0, 0);
        assert_eq!(cpu.injected.unwrap().esr_el1, 0x0200_0000);
    }

    #[test]
    fn unknown_exception_classes_become_undefined_instructions() {
        let (mut mem, sink) = (backing(), Sink::default());
        let vm = vm(&mut mem, &sink);
        let mut frame = TrapFrame::boot(RAM, 0);
        let mut cpu = FakeCpu::default();
        assert_eq!(run(&vm, &mut frame, &mut cpu, 0x3c << 26, 0, 0), (ExitReason::Other, ExitAction::Resume));
        assert_eq!(cpu.injected.unwrap().esr_el1, 0x0200_0000);
    }
}
