//! The boot CPU's path from the loader to the first guest, and the trap entry's Rust
//! side: which VM a CPU runs, and what happens when a VM stops.

use crate::arch::aarch64::el2::{self, power, El1Cpu};
use crate::arch::aarch64::stacks::{STACK_SIZE, TRAP_STACKS};
use crate::arch::aarch64::vectors::{enter_guest, kind};
use crate::drivers::pl011::Uart;
use crate::host::{bootarg, read_host_dtb, HostInfo};
use crate::logger::{self, HostConsole};
use crate::mm::frames::{subtract, RamAllocator};
use crate::mm::guest_memory::{GuestMemory, RamChunk};
use crate::vm::config::{parse_bundle, ExitMode, VmConfig};
use crate::vm::stats::ExitReason;
use crate::vm::trap::{handle_exit, ExitAction, Syndrome};
use crate::vm::vcpu::TrapFrame;
use crate::vm::Vm;
use alloc::boxed::Box;
use alloc::vec::Vec;
use core::fmt::Write;
use core::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use log::{error, info, LevelFilter};
use platform::bundle::MAX_VMS;
use platform::exit::{self, VmEnd, HYPERVISOR_PANIC};
use platform::{qemu_virt, Region};
use spin::{Mutex, Once};

/// Everything the trap path needs, set up once by the boot CPU.
struct Machine {
    /// The VMs by index; `None` for a VM that was refused.
    vms: Vec<Option<Mutex<Vm>>>,
    exit: ExitMode,
    counter_hz: u64,
}

static MACHINE: Once<Machine> = Once::new();

/// How each VM ended: 0 running or not started, 1 clean, 2 failed.
static ENDS: [AtomicU8; MAX_VMS] = [const { AtomicU8::new(0) }; MAX_VMS];
const RUNNING: u8 = 0;
const CLEAN: u8 = 1;
const FAILED: u8 = 2;

/// Set when the machine is on its way off, so a fault on the way doesn't recurse.
static POWERING_OFF: AtomicBool = AtomicBool::new(false);

#[allow(unsafe_code)]
unsafe extern "C" {
    /// First byte of the image (linker script).
    safe static __image_start: u8;
    /// One past the image's .bss (linker script).
    safe static __image_end: u8;
}

/// The host DTB at `addr`, whose header gives its size.
#[allow(unsafe_code)]
fn host_dtb(addr: usize) -> &'static [u8] {
    // SAFETY: the boot protocol puts a DTB at x0; its header's second word (big-endian)
    // is its total size, and the loader keeps that memory for us.
    unsafe {
        let header = core::slice::from_raw_parts(addr as *const u8, 8);
        let size = u32::from_be_bytes([header[4], header[5], header[6], header[7]]) as usize;
        core::slice::from_raw_parts(addr as *const u8, size)
    }
}

/// The hypervisor image's range in RAM.
fn image_region() -> Region {
    let (start, end) = (
        core::ptr::addr_of!(__image_start) as u64,
        core::ptr::addr_of!(__image_end) as u64,
    );
    Region::new(start, end - start)
}

/// The boot CPU's Rust entry, on the boot stack, with the host DTB's address.
#[allow(unsafe_code)]
pub fn primary_main(dtb_addr: usize) -> ! {
    crate::mm::heap::init();
    let dtb = host_dtb(dtb_addr);
    let Ok(host) = read_host_dtb(dtb) else {
        // Without a DTB there is no UART to complain on.
        power::park()
    };
    // SAFETY: the DTB names this PL011; the hypervisor is its only driver.
    let uart = unsafe { Uart::new(host.uart.base as usize) };
    logger::init(uart, LevelFilter::Info);
    if let Err(e) = el2::enable_mmu(&host.ram) {
        fatal(format_args!("cannot map RAM at EL2: {e:?}"));
    }
    banner(&host);
    let Some(bundle_region) = host.bundle else {
        fatal(format_args!(
            "no boot bundle: pass one with QEMU's -initrd (`cargo xtask run` does)"
        ));
    };
    // SAFETY: the loader put the bundle there and the region is reserved below, never
    // handed to a guest or the heap.
    let blob: &'static [u8] = unsafe {
        core::slice::from_raw_parts(bundle_region.base as *const u8, bundle_region.size as usize)
    };
    let bundle = match parse_bundle(blob, host.cpus.len()) {
        Ok(b) => b,
        Err(e) => fatal(format_args!("{e}")),
    };
    let level = host
        .bootargs
        .and_then(|args| bootarg(args, "sluice.log"))
        .or(bundle.log_level)
        .and_then(logger::parse_level)
        .unwrap_or(LevelFilter::Info);
    log::set_max_level(level);
    el2::init_cpu();

    let pinned: Vec<Region> = bundle
        .vms
        .iter()
        .filter_map(|vm| vm.as_ref().ok())
        .filter_map(|vm| vm.host_base.map(|base| Region::new(base, vm.memory_size)))
        .collect();
    let mut reserved = Vec::from([
        image_region(),
        Region::new(dtb_addr as u64, dtb.len() as u64),
        bundle_region,
    ]);
    let free = subtract(&host.ram, &reserved);
    reserved.extend(pinned.iter().copied());
    let mut ram = RamAllocator::new(&subtract(&host.ram, &reserved));

    let mut vms = Vec::new();
    let mut boot_vm = None;
    for (index, config) in bundle.vms.into_iter().enumerate() {
        let built = config
            .map_err(|e| alloc::format!("{e}"))
            .and_then(|config| build_vm(index, config, &free, &pinned, &mut ram));
        match built {
            Ok((vm, frame)) => {
                info!(
                    "vm \"{}\": {} MiB of RAM, CPU {:?}, entry {:#x}",
                    vm.name(),
                    vm.config.memory_size >> 20,
                    vm.config.cpus,
                    vm.config.entry
                );
                if vm.config.cpus[0] == 0 && boot_vm.is_none() {
                    boot_vm = Some((index, frame));
                }
                vms.push(Some(Mutex::new(vm)));
            }
            Err(why) => {
                error!("vm[{index}] refused: {why}");
                ENDS[index].store(FAILED, Ordering::SeqCst);
                vms.push(None);
            }
        }
    }
    let machine = MACHINE.call_once(|| Machine {
        vms,
        exit: bundle.exit,
        counter_hz: el2::counter_hz(),
    });
    let Some((index, frame)) = boot_vm else {
        error!("no VM to run on CPU 0");
        power_off_if_done();
        power::park()
    };
    let vm = machine.vms[index].as_ref().expect("built").lock();
    el2::reset_el1_state();
    el2::switch_to_vm(vm.stage2_root(), vm.vmid, 0);
    CURRENT_VM.store(index as u8, Ordering::SeqCst);
    drop(vm);
    // SAFETY: CPU 0's trap stack is unused until now; EL2 is set up for the VM above.
    unsafe {
        let top = core::ptr::addr_of!(TRAP_STACKS[0]) as usize + STACK_SIZE;
        enter_guest(top, &frame)
    }
}

/// The VM CPU 0 runs (only the boot CPU runs guests until secondaries are started).
static CURRENT_VM: AtomicU8 = AtomicU8::new(0);

/// Allocates a VM's RAM, builds it and loads its images.
#[allow(unsafe_code)]
fn build_vm(
    index: usize,
    config: VmConfig<'static>,
    free: &[Region],
    pinned: &[Region],
    ram: &mut RamAllocator,
) -> Result<(Vm, TrapFrame), alloc::string::String> {
    if config.cpus.len() > 1 || config.cpus[0] != 0 {
        return Err(alloc::format!(
            "it asks for CPUs {:?}, but only CPU 0 runs guests until secondary CPU start-up lands",
            config.cpus
        ));
    }
    let chunks = match config.host_base {
        Some(base) => {
            let region = Region::new(base, config.memory_size);
            if !free
                .iter()
                .any(|f| f.contains_range(base, config.memory_size))
            {
                return Err(alloc::format!(
                    "host_base: [{base:#x}, {:#x}) is not free RAM",
                    base + config.memory_size
                ));
            }
            if pinned.iter().filter(|p| p.overlaps(&region)).count() > 1 {
                return Err("host_base: overlaps another VM's pinned RAM".into());
            }
            Vec::from([(base, config.memory_size)])
        }
        None => ram.alloc(config.memory_size).ok_or_else(|| {
            alloc::format!("not enough free RAM for {} MiB", config.memory_size >> 20)
        })?,
    };
    let mut ipa = qemu_virt::RAM_BASE;
    let chunks: Vec<RamChunk> = chunks
        .into_iter()
        .map(|(pa, size)| {
            let chunk = RamChunk {
                ipa,
                pa,
                host: pa as usize,
                size,
            };
            ipa += size;
            chunk
        })
        .collect();
    // SAFETY: the chunks are free RAM (allocated or checked free above), identity-mapped
    // at EL2 and given to this VM alone.
    let memory = unsafe { GuestMemory::new(chunks) };
    let mut vm =
        Vm::new(index, config, memory, Box::new(HostConsole)).map_err(|e| alloc::format!("{e}"))?;
    let frame = vm.load().map_err(|e| alloc::format!("{e}"))?;
    Ok((vm, frame))
}

fn banner(host: &HostInfo) {
    let ram: u64 = host.ram.iter().map(|r| r.size).sum();
    logger::print(format_args!(
        "\nSluice {} - AArch64 hypervisor at EL2\nsluice: host: {} CPU(s), {} MiB RAM at {:#x}, GICv3 distributor at {:#x}, UART at {:#x}, PSCI via {}\n",
        env!("CARGO_PKG_VERSION"),
        host.cpus.len(),
        ram >> 20,
        host.ram[0].base,
        host.gicd.map_or(0, |g| g.base),
        host.uart.base,
        host.psci_method.unwrap_or("nothing"),
    ));
}

/// Handles a trap from the guest running on this CPU.
pub fn trap_from_guest(frame: &mut TrapFrame, trap_kind: u64) {
    let start = el2::counter();
    let machine = MACHINE.get().expect("a guest runs only after boot");
    let index = CURRENT_VM.load(Ordering::Relaxed) as usize;
    let mut vm = machine.vms[index]
        .as_ref()
        .expect("the running VM exists")
        .lock();
    let (reason, action) = match trap_kind {
        kind::SYNC => {
            let (esr, far, hpfar) = el2::syndrome();
            handle_exit(&mut vm, frame, &mut El1Cpu, Syndrome { esr, far, hpfar })
        }
        kind::SERROR => {
            error!(
                "vm \"{}\" stopped: SError (asynchronous abort) at pc {:#x}",
                vm.name(),
                frame.elr
            );
            (ExitReason::Other, ExitAction::Fault)
        }
        // No interrupt is routed to guests yet.
        _ => (ExitReason::Irq, ExitAction::Resume),
    };
    vm.stats.record(reason, el2::counter() - start);
    match action {
        ExitAction::Resume => {}
        ExitAction::Reset => {
            info!("vm \"{}\": system reset", vm.name());
            match vm.load() {
                Ok(fresh) => {
                    el2::reset_el1_state();
                    el2::switch_to_vm(vm.stage2_root(), vm.vmid, 0);
                    *frame = fresh;
                }
                Err(e) => {
                    error!("vm \"{}\" stopped: reloading it failed: {e}", vm.name());
                    stop(vm, FAILED, machine.counter_hz);
                }
            }
        }
        ExitAction::PowerOff => stop(vm, CLEAN, machine.counter_hz),
        ExitAction::Fault => stop(vm, FAILED, machine.counter_hz),
    }
}

/// A `fmt::Write` onto the host console.
struct ConsoleWriter;

impl Write for ConsoleWriter {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        logger::print(format_args!("{s}"));
        Ok(())
    }
}

/// Stops the VM this CPU runs: reports, records how it ended, powers off if it was
/// the last one, and otherwise parks the CPU.
fn stop(vm: spin::MutexGuard<'_, Vm>, end: u8, counter_hz: u64) -> ! {
    if end == CLEAN {
        info!("vm \"{}\" powered off", vm.name());
    }
    let _ = vm
        .stats
        .write_report(&mut ConsoleWriter, vm.name(), counter_hz);
    ENDS[vm.index].store(end, Ordering::SeqCst);
    drop(vm);
    power_off_if_done();
    power::park()
}

/// Powers the machine off once no VM runs, with a status that says how each ended.
fn power_off_if_done() {
    let Some(machine) = MACHINE.get() else { return };
    let ends: Vec<u8> = (0..machine.vms.len())
        .map(|i| ENDS[i].load(Ordering::SeqCst))
        .collect();
    if ends.contains(&RUNNING) {
        return;
    }
    let status = exit::status(ends.iter().map(|&e| {
        if e == CLEAN {
            VmEnd::Clean
        } else {
            VmEnd::Failed
        }
    }));
    if status == 0 {
        info!("every VM stopped cleanly; powering off");
    } else {
        error!(
            "powering off; VMs that failed: {:?}",
            (0..ends.len())
                .filter(|&i| exit::vm_failed(status, i))
                .collect::<Vec<_>>()
        );
    }
    power_off(status, machine.exit);
}

fn power_off(status: u8, mode: ExitMode) -> ! {
    POWERING_OFF.store(true, Ordering::SeqCst);
    match mode {
        ExitMode::Semihosting => power::semihosting_exit(status),
        ExitMode::Psci => power::psci_system_off(),
    }
}

/// Stops the machine because the hypervisor cannot go on.
pub fn fatal(args: core::fmt::Arguments<'_>) -> ! {
    if POWERING_OFF.swap(true, Ordering::SeqCst) {
        power::park();
    }
    logger::print_emergency(format_args!("sluice: fatal: {args}\n"));
    let mode = MACHINE.get().map_or(ExitMode::Semihosting, |m| m.exit);
    match mode {
        ExitMode::Semihosting => power::semihosting_exit(HYPERVISOR_PANIC),
        ExitMode::Psci => power::psci_system_off(),
    }
}

/// An exception taken at EL2 itself: a hypervisor bug.
pub fn hypervisor_fault(frame: &mut TrapFrame, trap_kind: u64) {
    let (esr, far, _) = el2::syndrome();
    fatal(format_args!(
        "exception at EL2 (kind {trap_kind}): ESR {esr:#x}, ELR {:#x}, FAR {far:#x}",
        frame.elr
    ));
}
