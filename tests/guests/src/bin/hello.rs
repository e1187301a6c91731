//! `hello`: the well-behaved guest.
//!
//! Reports what its DTB says, calls PSCI through both conduits, checks that RAM ends
//! where the DTB says (the byte past it faults), tests its free RAM and powers off.
//! Its lines are the contract of `tests/scenarios/hello.toml`:
//!
//! ```text
//! hello: running at EL1
//! hello: memory 0x40000000..0x44000000 (64 MiB)
//! hello: 1 cpu(s), bootargs "hello from the config"
//! hello: psci 1.1 via hvc
//! hello: psci via smc: 1.1
//! hello: read at 0x44000000 faulted into the guest (ESR 0x96000010, FAR 0x44000000)
//! hello: memory test ok (15335 pages)
//! hello: done
//! ```
//!
//! A check that fails prints `hello: FAIL ...` and powers off.
#![cfg_attr(bare_metal, no_std, no_main)]
#![deny(unsafe_code)]

#[cfg(not(bare_metal))]
fn main() {
    eprintln!("hello is a bare-metal guest: build it with --target aarch64-unknown-none");
}

#[cfg(bare_metal)]
mod guest {
    use core::fmt;

    use test_guests::dtb::BootInfo;
    use test_guests::exceptions::expect_fault;
    use test_guests::psci::{self, Conduit, Version, PSCI_VERSION, SYSTEM_OFF};
    use test_guests::{cpu, image, memtest, println, smccc};

    test_guests::entry!(main);

    fn main(dtb: usize) -> ! {
        println!("hello: running at EL{}", cpu::current_el());

        let info = BootInfo::read(dtb)
            .unwrap_or_else(|e| fail(format_args!("cannot read the DTB at {dtb:#x}: {e}")));
        let Some(ram) = info.ram_holding(image::start()) else {
            fail(format_args!("no /memory range holds the image at {:#x}", image::start()))
        };
        let ram_end = ram.base + ram.size;
        println!("hello: memory {:#x}..{:#x} ({} MiB)", ram.base, ram_end, ram.size >> 20);
        println!("hello: {} cpu(s), bootargs \"{}\"", info.cpus, info.bootargs.unwrap_or(""));

        let conduit = psci::conduit();
        match psci::version(conduit) {
            Ok(version) => println!("hello: psci {version} via {conduit}"),
            Err(ret) => fail(format_args!("PSCI_VERSION via {conduit} returned {ret}")),
        }
        let off = psci::features(SYSTEM_OFF);
        if off < 0 {
            fail(format_args!("PSCI_FEATURES(SYSTEM_OFF) returned {off}"));
        }
        // Sluice traps a guest's `smc` and serves PSCI the same way as `hvc`.
        if conduit == Conduit::Hvc {
            let mut ret = 0;
            match expect_fault(|| ret = psci::call(Conduit::Smc, PSCI_VERSION, 0, 0, 0)) {
                None => match Version::from_ret(ret) {
                    Some(version) => println!("hello: psci via smc: {version}"),
                    None => println!("hello: psci via smc: returned {}", smccc::Ret(ret)),
                },
                Some(fault) => {
                    println!("hello: psci via smc: smc is undefined here (ESR {:#010x})", fault.esr)
                }
            }
        }

        match expect_fault(|| {
            test_guests::probe::load_u8(ram_end);
        }) {
            Some(fault) => println!(
                "hello: read at {ram_end:#x} faulted into the guest (ESR {:#010x}, FAR {:#x})",
                fault.esr, fault.far
            ),
            None => fail(format_args!("read outside RAM did not fault")),
        }

        match memtest::test_free_ram(&info) {
            Ok(pages) => println!("hello: memory test ok ({pages} pages)"),
            Err(m) => {
                fail(format_args!("memory test: {:#x} read {:#x}, wrote {:#x}", m.addr, m.found, m.expected))
            }
        }

        println!("hello: done");
        psci::system_off()
    }

    /// Reports a failed check and powers off.
    fn fail(what: fmt::Arguments<'_>) -> ! {
        println!("hello: FAIL {what}");
        psci::system_off()
    }
}
