//! From the loader to the guests: the boot CPU reads the host DTB and the bundle,
//! builds the VMs and starts the secondary CPUs; every CPU then runs its vCPU
//! (`crate::run`).

use crate::arch::aarch64::boot::secondary_entry_point;
use crate::arch::aarch64::el2;
use crate::arch::aarch64::features::{self, GuestFeatures, Pmu};
use crate::arch::aarch64::stacks::MAX_CPUS;
use crate::devices::virtio::blk::host::HostBlk;
use crate::devices::virtio::blk::Blk;
use crate::devices::virtio::channel::{ChannelPort, Link};
use crate::devices::virtio::console::Console;
use crate::devices::virtio::VirtioBackend;
use crate::drivers::board_clock::HostClock;
use crate::drivers::dma::HeapDma;
use crate::drivers::gicv3::Gic;
use crate::drivers::host_disks::HostDisks;
use crate::drivers::pl011::Uart;
use crate::guest_log::{self, GuestLog};
use crate::host::{bootarg, read_host_dtb, HostInfo};
use crate::logger::{self, VmConsole};
use crate::mm::frames::{subtract, RamAllocator};
use crate::mm::guest_memory::{GuestMemory, RamChunk};
use crate::run::{self, HostCpu, Machine, FAILED};
use crate::trace;
use crate::vm::admission;
use crate::vm::channels;
use crate::vm::config::{parse_bundle, Bundle, VmConfig};
use crate::vm::refusal::Refusal;
use crate::vm::Vm;
use alloc::boxed::Box;
use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec;
use alloc::vec::Vec;
use core::sync::atomic::Ordering;
use log::{error, info, LevelFilter};
use platform::bundle::spec::{DeviceKind, Medium};
use platform::{qemu_virt, Region};
use spin::Once;

#[allow(unsafe_code)]
unsafe extern "C" {
    /// First byte of the image (linker script).
    safe static __image_start: u8;
    /// One past the image's .bss (linker script).
    safe static __image_end: u8;
}

/// Most bytes a DTB may take under the arm64 boot protocol.
const MAX_HOST_DTB_SIZE: usize = 2 * 1024 * 1024;

/// The host DTB at `addr`, whose header gives its size (at most the boot protocol's
/// 2 MiB: a header that says more is refused when the DTB is checked).
#[allow(unsafe_code)]
fn host_dtb(addr: usize) -> &'static [u8] {
    // SAFETY: the boot protocol puts a DTB of at most 2 MiB at x0, in memory the
    // loader keeps for us; its header's second word (big-endian) is its total size.
    unsafe {
        let header = core::slice::from_raw_parts(addr as *const u8, 8);
        let size = u32::from_be_bytes([header[4], header[5], header[6], header[7]]) as usize;
        core::slice::from_raw_parts(addr as *const u8, size.min(MAX_HOST_DTB_SIZE))
    }
}

/// The hypervisor image's range in RAM.
fn image_region() -> Region {
    let (start, end) = (core::ptr::addr_of!(__image_start) as u64, core::ptr::addr_of!(__image_end) as u64);
    Region::new(start, end - start)
}

/// The boot CPU's Rust entry, on its boot stack, with the host DTB's address: the
/// entry code (`arch::aarch64::boot`) calls it by this name.
#[allow(unsafe_code)]
// SAFETY (no_mangle): the name is Sluice's alone, and only the entry code calls it.
#[no_mangle]
pub extern "C" fn sluice_primary_main(dtb_addr: usize) -> ! {
    crate::mm::heap::init();
    let dtb = host_dtb(dtb_addr);
    let Ok(host) = read_host_dtb(dtb) else {
        // Without a DTB there is no UART to complain on: power off, and the tools
        // report a console without Sluice's status line.
        el2::power::psci_system_off()
    };
    // SAFETY: the DTB names this PL011; the hypervisor is its only driver.
    let uart = unsafe { Uart::new(host.uart.base as usize) };
    logger::init(uart, LevelFilter::Info);
    if let Err(e) = el2::enable_mmu(&host.ram) {
        run::fatal(format_args!("cannot map RAM at EL2: {e:?}"));
    }
    banner(&host);
    let features = features::install(GuestFeatures::decide(el2::cpu_ids(host.pmu_ppi), qemu_virt::PMU_PPI));
    report_features(features);
    // SAFETY: the DTB names this PL031; EL2 maps the device space below RAM as
    // device memory; Sluice only reads it.
    let clock: &'static HostClock =
        HOST_CLOCK.call_once(|| unsafe { HostClock::new(host.rtc.map(|r| r.base)) });
    if host.cpus.len() > MAX_CPUS {
        run::fatal(format_args!("{} CPUs; Sluice drives at most {MAX_CPUS}", host.cpus.len()));
    }
    let (Some(gicd), Some(gicr)) = (host.gicd, host.gicr) else {
        run::fatal(format_args!("no GICv3 in the host DTB"));
    };
    // SAFETY: the DTB names this GICv3; EL2 maps it as device memory; only Sluice drives it.
    let gic = unsafe { Gic::new(gicd.base as usize, gicr.base as usize) };
    gic.init_distributor();

    let Some(bundle_region) = host.bundle else {
        run::fatal(format_args!("no boot bundle: pass one with QEMU's -initrd (`cargo xtask run` does)"));
    };
    // SAFETY: the loader put the bundle there and the region is reserved below, never
    // handed to a guest or the heap.
    let blob: &'static [u8] =
        unsafe { core::slice::from_raw_parts(bundle_region.base as *const u8, bundle_region.size as usize) };
    let mut bundle = match parse_bundle(blob, host.cpus.len()) {
        Ok(b) => b,
        Err(e) => run::fatal(format_args!("{e}")),
    };
    let host_ram: u64 = host.ram.iter().map(|r| r.size).sum();
    if let Err(e) = admission::admit(&mut bundle, host_ram, blob.len() as u64) {
        run::fatal(format_args!("{e}"));
    }
    let level = host
        .bootargs
        .and_then(|args| bootarg(args, "sluice.log"))
        .or(bundle.log_level)
        .and_then(logger::parse_level)
        .unwrap_or(LevelFilter::Info);
    log::set_max_level(level);
    let detailed = match host.bootargs.and_then(|args| bootarg(args, "sluice.trace")) {
        Some(value) => value != "off",
        None => bundle.trace,
    };
    let tracer = trace::install(host.cpus.len(), detailed, el2::counter, el2::cpu_index);
    report_trace_cost(detailed);

    let pinned: Vec<Region> = bundle
        .vms
        .iter()
        .filter_map(|vm| vm.as_ref().ok())
        .filter_map(|vm| vm.spec.host_base.map(|base| Region::new(base, vm.spec.memory_size)))
        .collect();
    let mut reserved =
        Vec::from([image_region(), Region::new(dtb_addr as u64, dtb.len() as u64), bundle_region]);
    let free = subtract(&host.ram, &reserved);
    check_reserve(&free, host_ram, blob.len() as u64);
    reserved.extend(pinned.iter().copied());
    let mut ram = RamAllocator::new(&subtract(&host.ram, &reserved));

    let mut host_disks = HostDisks::probe(if wants_host_disks(&bundle) { &host.virtio_mmio } else { &[] });
    let (links, unjoined) = channels::join(&bundle.vms.iter().map(|c| c.as_ref().ok()).collect::<Vec<_>>());
    let mut vms = Vec::new();
    let mut cpu_slot = vec![None; host.cpus.len()];
    for (index, config) in bundle.vms.into_iter().enumerate() {
        let mut media = Media {
            free: &free,
            pinned: &pinned,
            ram: &mut ram,
            host_disks: &mut host_disks,
            clock,
            links: &links,
        };
        let unjoined = unjoined.iter().find(|u| u.vm == index).map(|u| Refusal::Channel {
            slot: u.slot,
            name: String::from(u.name),
            ends_in: u.ends_in.clone(),
        });
        let built = match (config, unjoined) {
            (Err(e), _) => Err(Refusal::from(e)),
            (Ok(_), Some(refusal)) => Err(refusal),
            (Ok(config), None) => build_vm(index, config, &mut media),
        };
        match built {
            Ok(vm) => {
                info!(
                    "vm \"{}\": {} MiB of RAM, CPU{} {:?}, entry {:#x}",
                    vm.name(),
                    vm.config.spec.memory_size >> 20,
                    if vm.config.spec.cpus.len() > 1 { "s" } else { "" },
                    vm.config.spec.cpus,
                    vm.config.spec.entry
                );
                for (vcpu, &cpu) in vm.config.spec.cpus.iter().enumerate() {
                    cpu_slot[cpu as usize] = Some((index, vcpu));
                }
                vms.push(Some(vm));
            }
            Err(why) => {
                error!("vm[{index}] refused: {why}");
                run::ENDS[index].store(FAILED, Ordering::SeqCst);
                vms.push(None);
            }
        }
    }

    let names: Vec<String> = vms
        .iter()
        .enumerate()
        .map(|(i, vm)| vm.as_ref().map_or(alloc::format!("vm{i}"), |vm| String::from(vm.name())))
        .collect();
    logger::set_vms(&names.iter().map(String::as_str).collect::<Vec<_>>());
    let machine = run::MACHINE.call_once(|| Machine {
        vms,
        counter_hz: el2::counter_hz(),
        cpus: host
            .cpus
            .iter()
            .zip(cpu_slot)
            .enumerate()
            .map(|(i, (&mpidr, slot))| HostCpu {
                mpidr,
                slot,
                trace: tracer.cpu(i).expect("the tracer has every host CPU"),
            })
            .collect(),
        detailed_trace: detailed,
        gic,
        list_registers: el2::list_register_count(),
        uart_intid: host.uart_intid,
        host_disk_irqs: host_disks.into_irqs(),
    });
    guest_log::install(GuestLog::new(names, machine.counter_hz, el2::counter, run::current_vm));
    if let Some(intid) = host.uart_intid {
        machine.gic.enable_spi(intid, host.cpus[0]);
        logger::enable_receive_interrupt();
    }
    for irq in &machine.host_disk_irqs {
        let first_cpu = machine.vms[irq.vm].as_ref().map(|vm| vm.config.spec.cpus[0]);
        if let Some(cpu) = first_cpu {
            machine.gic.enable_spi(irq.intid, host.cpus[cpu as usize]);
        }
    }
    for (cpu, host_cpu) in machine.cpus.iter().enumerate().skip(1) {
        let Some((vm, _)) = host_cpu.slot else { continue };
        let status = el2::host_cpu_on(host.cpus[cpu], secondary_entry_point(), cpu as u64);
        if status != 0 {
            error!("host CPU {cpu} did not start (PSCI CPU_ON returned {status})");
            run::ENDS[vm].store(FAILED, Ordering::SeqCst);
        }
    }
    // Every VM refused (or its CPUs failed to start): nothing will ever stop one.
    run::power_off_if_done();
    run::cpu_main(0)
}

/// Says so if the hypervisor's image, the host DTB and the bundle left less RAM in
/// whole 2 MiB blocks than `platform::admission` promises the VMs: then a VM the
/// rule (and the tools) admitted could still fail to get its RAM, a Sluice bug.
fn check_reserve(free: &[Region], host_ram: u64, bundle_len: u64) {
    let granule = platform::bundle::MEMORY_GRANULE;
    let blocks: u64 = free
        .iter()
        .map(|r| (r.end().unwrap_or(u64::MAX) / granule).saturating_sub(r.base.div_ceil(granule)) * granule)
        .sum();
    let promised = platform::admission::Ledger::new(host_ram, bundle_len).map_or(0, |l| l.left());
    if blocks < promised {
        error!(
            "only {} MiB of RAM are free for VMs, less than the {} MiB the admission rule promises",
            blocks >> 20,
            promised >> 20
        );
    }
}

/// Prints what one tracepoint costs on this machine, as a JSON log line.
fn report_trace_cost(detailed: bool) {
    const POINTS: u32 = 1000;
    let Some(ticks) = trace::measure_point_cost(POINTS) else { return };
    info!(
        "{{\"trace\":\"cost\",\"detailed\":{detailed},\"points\":{POINTS},\"ns_per_point\":{}}}",
        platform::counter::ticks_to_ns(ticks, el2::counter_hz())
    );
}

/// A secondary CPU's Rust entry, on its own boot stack: the entry code calls it by
/// this name.
#[allow(unsafe_code)]
// SAFETY (no_mangle): the name is Sluice's alone, and only the entry code calls it.
#[no_mangle]
pub extern "C" fn sluice_secondary_main(cpu: usize) -> ! {
    el2::mmu_on();
    run::cpu_main(cpu)
}

/// Where a VM's RAM and disks come from.
struct Media<'a> {
    /// Free host RAM (for checking pinned RAM).
    free: &'a [Region],
    /// The VMs' pinned RAM.
    pinned: &'a [Region],
    /// The allocator of the rest.
    ram: &'a mut RamAllocator,
    /// The machine's disks, for file-backed disks.
    host_disks: &'a mut HostDisks,
    /// The board's time, for the VMs' clocks.
    clock: &'static HostClock,
    /// The channels between VMs' consoles, by name.
    links: &'a BTreeMap<&'static str, Arc<Link>>,
}

/// Whether any VM of the bundle has a disk on a host device (only then are the
/// machine's virtio devices set up).
fn wants_host_disks(bundle: &Bundle<'_>) -> bool {
    bundle.vms.iter().flatten().flat_map(|vm| &vm.devices).any(|device| {
        matches!(&device.kind, DeviceKind::Blk(disk) if matches!(disk.medium, Medium::HostDevice { .. }))
    })
}

/// Allocates a VM's RAM, builds it and loads its images.
#[allow(unsafe_code)]
fn build_vm(index: usize, config: VmConfig<'static>, media: &mut Media<'_>) -> Result<Vm, Refusal> {
    let spec = &config.spec;
    let chunks = match spec.host_base {
        Some(base) => {
            let region = Region::new(base, spec.memory_size);
            if !media.free.iter().any(|f| f.contains_range(base, spec.memory_size)) {
                return Err(Refusal::HostBaseNotFree { base, end: base + spec.memory_size });
            }
            if media.pinned.iter().filter(|p| p.overlaps(&region)).count() > 1 {
                return Err(Refusal::HostBaseOverlapsPinned);
            }
            Vec::from([(base, spec.memory_size)])
        }
        None => media.ram.alloc(spec.memory_size).ok_or(Refusal::NoRam { bytes: spec.memory_size })?,
    };
    let chunks = laid_out_from(qemu_virt::RAM_BASE, chunks);
    // SAFETY: the chunks are free RAM (allocated or checked free above), identity-mapped
    // at EL2 and given to this VM alone.
    let memory = unsafe { GuestMemory::new(chunks) };
    let mut backends = Vec::new();
    let mut channels = Vec::new();
    for (slot, device) in config.devices.iter().enumerate() {
        let backend: Box<dyn VirtioBackend> = match &device.kind {
            DeviceKind::Blk(disk) => {
                let serial = disk.serial.unwrap_or("").as_bytes();
                match disk.medium {
                    Medium::Ram { size, image } => {
                        let ram = alloc_disk(slot, size, image, media.ram)?;
                        Box::new(Blk::new(ram.prefix(size), disk.read_only, serial))
                    }
                    Medium::HostDevice { id } => {
                        let driver = media
                            .host_disks
                            .claim(id, index, slot)
                            .ok_or(Refusal::NoHostDisk { slot, id: String::from(id) })?;
                        Box::new(HostBlk::new(driver, HeapDma, disk.read_only, serial))
                    }
                }
            }
            DeviceKind::Console => Box::new(Console::new(Box::new(VmConsole { vm: index }))),
            DeviceKind::Channel(name) => {
                let link = media.links.get(name).expect("channels::join made every end's link");
                channels.push(link.clone());
                Box::new(ChannelPort::new(link.clone()))
            }
        };
        backends.push(backend);
    }
    let vm = Vm::new(index, config, memory, Box::new(VmConsole { vm: index }), media.clock, backends)?
        .with_channels(channels);
    vm.load(&mut vm.power().lock())?;
    Ok(vm)
}

/// Host RAM chunks `(physical address, length)`, identity-mapped at EL2, placed one
/// after the other from address `base` of the space they make up (guest-physical
/// RAM, or a disk's byte offsets).
fn laid_out_from(base: u64, chunks: Vec<(u64, u64)>) -> Vec<RamChunk> {
    let mut at = base;
    chunks
        .into_iter()
        .map(|(pa, size)| {
            let chunk = RamChunk { ipa: at, pa, host: pa as usize, size };
            at += size;
            chunk
        })
        .collect()
}

/// Host RAM for the RAM disk of virtio slot `slot`, `size` bytes holding `image` at
/// its start: a [`GuestMemory`] whose addresses are byte offsets into the disk.
/// Disks live as long as the machine, so they keep their contents across a VM's
/// reset.
#[allow(unsafe_code)]
fn alloc_disk(
    slot: usize,
    size: u64,
    image: Option<&[u8]>,
    ram: &mut RamAllocator,
) -> Result<GuestMemory, Refusal> {
    let rounded = size.next_multiple_of(platform::bundle::MEMORY_GRANULE);
    let chunks = ram.alloc(rounded).ok_or(Refusal::NoDiskRam { slot, bytes: rounded })?;
    let chunks = laid_out_from(0, chunks);
    // SAFETY: freshly allocated free RAM, identity-mapped at EL2, owned by this disk alone.
    let disk = unsafe { GuestMemory::new(chunks) };
    let filled = disk.zero(0, rounded).and_then(|()| image.map_or(Ok(()), |image| disk.write(0, image)));
    filled.map_err(|error| Refusal::Disk { slot, error })?;
    Ok(disk)
}

/// The board's time, which every VM's clock reads.
static HOST_CLOCK: Once<HostClock> = Once::new();

/// Says what guests get of their CPUs (`arch::aarch64::features`).
fn report_features(features: &GuestFeatures) {
    let pmu = match features.pmu {
        Pmu::Hidden => String::from("hidden"),
        Pmu::PassedThrough { counters, pmcr_trapped, .. } => alloc::format!(
            "{counters} counters and the cycle counter{}",
            if pmcr_trapped { ", PMCR_EL0 trapped" } else { "" }
        ),
    };
    info!(
        "guests own their CPUs' PMU ({pmu}), {} breakpoints, {} watchpoints; MTE {}",
        features.breakpoints,
        features.watchpoints,
        if features.mte { "with tag storage" } else { "hidden" }
    );
}

fn banner(host: &HostInfo) {
    let ram: u64 = host.ram.iter().map(|r| r.size).sum();
    logger::print(format_args!(
        "Sluice {} - AArch64 hypervisor at EL2\nhost: {} CPU(s), {} MiB RAM at {:#x}, GICv3 distributor at {:#x}, UART at {:#x}, PSCI via {}\n",
        env!("CARGO_PKG_VERSION"),
        host.cpus.len(),
        ram >> 20,
        host.ram[0].base,
        host.gicd.map_or(0, |g| g.base),
        host.uart.base,
        host.psci_method.unwrap_or("nothing"),
    ));
}
