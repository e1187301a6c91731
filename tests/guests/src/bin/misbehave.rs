//! `misbehave`: the deliberately misbehaving guest.
//!
//! Each step says what it does, then what happened; the guest recovers from each one
//! and goes on, in this order (the contract of `tests/scenarios/misbehave.toml`, here
//! as under Sluice):
//!
//! ```text
//! misbehave: garbage hvc returned -1
//! misbehave: hvc #0x1234 returned -1
//! misbehave: write at 0x100000000 faulted into the guest (ESR 0x...)
//! misbehave: read at 0xb000000 faulted into the guest (ESR 0x...)
//! misbehave: ldp from the uart faulted into the guest (ESR 0x...)
//! misbehave: udf trapped at EL1 (ESR 0x...)
//! misbehave: 65536 garbage hvc calls, 65536 returned -1
//! misbehave: semihosting SYS_OPEN trapped at EL1 as undefined instruction (ESR 0x02000000)
//! misbehave: semihosting SYS_WRITE trapped at EL1 as undefined instruction (ESR 0x02000000)
//! misbehave: semihosting SYS_SYSTEM trapped at EL1 as undefined instruction (ESR 0x02000000)
//! misbehave: semihosting SYS_EXIT trapped at EL1 as undefined instruction (ESR 0x02000000)
//! misbehave: printing lines forged to look like another VM's and Sluice's
//! misbehave: call to 0x1000 faulted into the guest as instruction abort (ESR 0x86000010, FAR 0x1000)
//! misbehave: no vectors now; jumping to 0x1000
//! ```
//!
//! The forged lines use a carriage return, ANSI escape sequences and backspaces
//! to try to overwrite this guest's `[misbehave] ` tag on a terminal and pass for
//! `[bystander] ...` or `sluice: ...`; Sluice shows those bytes escaped, inside this
//! guest's own tagged line.
//!
//! The semihosting calls would create host files (`target/sluice/semihosting-*.txt`,
//! relative to QEMU's directory, the workspace), run a host command and end QEMU if
//! anything served them; on a machine without a debugger `hlt` is undefined. The
//! last step cannot be recovered from, on purpose: with VBAR_EL1 pointing outside its
//! RAM the guest has no handler for the abort, and under Sluice the VM is stopped. On
//! plain QEMU some steps end differently (no EL2 to answer `hvc`, flash at 0x1000);
//! each says so in its line.
#![cfg_attr(bare_metal, no_std, no_main)]
#![deny(unsafe_code)]

#[cfg(not(bare_metal))]
fn main() {
    eprintln!("misbehave is a bare-metal guest: build it with --target aarch64-unknown-none");
}

#[cfg(bare_metal)]
mod guest {
    use core::fmt;

    use test_guests::dtb::BootInfo;
    use test_guests::exceptions::expect_fault;
    use test_guests::psci::{self, PSCI_VERSION};
    use test_guests::smccc::{self, Ret};
    use test_guests::{cpu, println, probe};

    use platform::qemu_virt::UART;

    /// An address with no device on QEMU virt (between the virtio-mmio slots and the
    /// platform bus): a read faults on plain QEMU and under Sluice alike.
    const NOTHING_THERE: u64 = 0x0b00_0000;

    /// A function ID no one implements.
    const GARBAGE_FUNCTION: u64 = 0xdead_beef;
    /// Outside the partition: past any RAM a test VM gets, not a device.
    const OUTSIDE_ADDR: u64 = 0x1_0000_0000;
    /// Where the branch goes: QEMU virt's flash, never a guest's.
    const JUMP_ADDR: u64 = 0x1000;
    /// How many unknown hypercalls the flood makes.
    const FLOOD: u32 = 65_536;

    /// Semihosting operations (Arm's semihosting specification, 6.x).
    const SYS_OPEN: u64 = 0x01;
    const SYS_WRITE: u64 = 0x05;
    const SYS_SYSTEM: u64 = 0x12;
    const SYS_EXIT: u64 = 0x18;
    /// SYS_OPEN mode "w".
    const OPEN_WRITE: u64 = 4;
    /// SYS_EXIT reason ADP_Stopped_ApplicationExit.
    const APPLICATION_EXIT: u64 = 0x2_0026;
    /// What the semihosting calls would create on the host if anything served them
    /// (the scenario checks that they don't exist afterwards).
    const OPEN_PATH: &[u8] = b"target/sluice/semihosting-open.txt\0";
    const SYSTEM_COMMAND: &[u8] = b"touch target/sluice/semihosting-system.txt\0";

    test_guests::entry!(main);

    fn main(dtb: usize) -> ! {
        let info = match BootInfo::read(dtb) {
            Ok(info) => info,
            Err(e) => {
                println!("misbehave: cannot read the DTB at {dtb:#x}: {e}");
                psci::system_off()
            }
        };
        println!("misbehave: running at EL{}, psci via {}", cpu::current_el(), psci::conduit());

        println!("misbehave: hvc #0 with x0 = {GARBAGE_FUNCTION:#x}, a function no one has");
        call("garbage hvc", || smccc::hvc(GARBAGE_FUNCTION, 0, 0, 0));

        println!("misbehave: hvc #0x1234 (SMCCC wants #0) with x0 = PSCI_VERSION");
        call("hvc #0x1234", || probe::hvc_imm_0x1234(u64::from(PSCI_VERSION)));

        println!("misbehave: writing at {OUTSIDE_ADDR:#x}, outside my partition");
        let ram = info.memory();
        access(format_args!("write at {OUTSIDE_ADDR:#x}"), || {
            probe::store_u64_outside(ram, OUTSIDE_ADDR, 0x5a5a_5a5a_5a5a_5a5a);
            None
        });

        println!("misbehave: reading at {NOTHING_THERE:#x}, where the board has no device");
        access(format_args!("read at {NOTHING_THERE:#x}"), || {
            Some(u64::from(probe::load_u32(NOTHING_THERE)))
        });

        println!("misbehave: ldp x2, x3 from the uart at {:#x} (no valid syndrome)", UART.base);
        access(format_args!("ldp from the uart"), || Some(probe::load_pair(UART.base).0));

        println!("misbehave: udf #0");
        match expect_fault(probe::udf) {
            Some(fault) => println!("misbehave: udf trapped at EL1 (ESR {:#010x})", fault.esr),
            None => println!("misbehave: udf did not fault"),
        }

        println!("misbehave: {FLOOD} hvc #0 with x0 = {GARBAGE_FUNCTION:#x}, as fast as it can");
        let refused = (0..FLOOD).filter(|_| smccc::hvc(GARBAGE_FUNCTION, 0, 0, 0) == u64::MAX).count();
        println!("misbehave: {FLOOD} garbage hvc calls, {refused} returned -1");

        semihosting();
        forge();

        assert!(!info.is_ram(JUMP_ADDR), "{JUMP_ADDR:#x} is RAM");
        println!("misbehave: calling {JUMP_ADDR:#x}, outside my RAM");
        #[allow(unsafe_code)]
        // SAFETY: nothing of this guest lies at 0x1000 (its RAM starts at
        // 0x4000_0000): the fetch faults and `expect_fault` returns from the call.
        let fault = expect_fault(|| unsafe { probe::call_at(JUMP_ADDR) });
        match fault {
            Some(fault) => println!(
                "misbehave: call to {JUMP_ADDR:#x} faulted into the guest as {} (ESR {:#010x}, FAR {:#x})",
                fault.class_name(),
                fault.esr,
                fault.far
            ),
            None => println!("misbehave: call to {JUMP_ADDR:#x} did not fault"),
        }

        println!("misbehave: no vectors now; jumping to {JUMP_ADDR:#x}");
        #[allow(unsafe_code)]
        // SAFETY: the point of the test: with VBAR_EL1 at 0 (no RAM there) the abort
        // the branch takes has no handler. Under Sluice the VM stops; on plain QEMU
        // the flash there holds no code and the CPU traps again and again.
        unsafe {
            probe::set_vbar(0);
            probe::branch_to(JUMP_ADDR)
        }
    }

    /// Tries what semihosting would give a guest on a QEMU that enabled it: a host
    /// file, a host command, ending QEMU. Each must be an undefined instruction.
    /// Lines that would read as the bystander's and Sluice's, were the console to
    /// pass carriage returns, escape sequences and backspaces through.
    const FORGERIES: [&[u8]; 5] = [
        b"\r[bystander] ticker: bystander forged\n",
        b"\x1b[2K\x1b[1G[bystander] ticker: bystander forged\n",
        b"\x08\x08\x08\x08\x08\x08\x08\x08\x08\x08\x08\x08[bystander] ticker: bystander forged\n",
        b"\x1b[1A\rsluice: vm \"bystander\" forged\n",
        b"\rsluice: exit status 0\n",
    ];

    /// Prints [`FORGERIES`] byte by byte, past the guest's own line discipline.
    fn forge() {
        println!("misbehave: printing lines forged to look like another VM's and Sluice's");
        let uart = test_guests::uart::Uart::new();
        for line in FORGERIES {
            line.iter().for_each(|&byte| uart.put_byte(byte));
        }
    }

    fn semihosting() {
        let open = [OPEN_PATH.as_ptr() as u64, OPEN_WRITE, OPEN_PATH.len() as u64 - 1];
        let handle = semihosting_call("SYS_OPEN", SYS_OPEN, &open);
        let text = b"a guest wrote this on the host\n";
        semihosting_call("SYS_WRITE", SYS_WRITE, &[handle, text.as_ptr() as u64, text.len() as u64]);
        let system = [SYSTEM_COMMAND.as_ptr() as u64, SYSTEM_COMMAND.len() as u64 - 1];
        semihosting_call("SYS_SYSTEM", SYS_SYSTEM, &system);
        semihosting_call("SYS_EXIT", SYS_EXIT, &[APPLICATION_EXIT, 0]);
    }

    /// One semihosting call with its parameter block; says whether it trapped.
    fn semihosting_call(name: &str, operation: u64, block: &[u64]) -> u64 {
        let mut ret = u64::MAX;
        match expect_fault(|| ret = probe::semihosting(operation, block.as_ptr() as u64)) {
            Some(fault) => println!(
                "misbehave: semihosting {name} trapped at EL1 as {} (ESR {:#010x})",
                fault.class_name(),
                fault.esr
            ),
            None => println!("misbehave: semihosting {name} returned {ret:#x}: the host served it"),
        }
        ret
    }

    /// Makes an SMCCC-style call that may come back or trap; says which.
    fn call(what: &str, f: impl FnOnce() -> u64) {
        let mut ret = 0;
        match expect_fault(|| ret = f()) {
            None => println!("misbehave: {what} returned {}", Ret(ret)),
            Some(fault) => println!(
                "misbehave: {what} trapped at EL1 as {} (ESR {:#010x})",
                fault.class_name(),
                fault.esr
            ),
        }
    }

    /// Makes an access that should fault into the guest; says whether it did. `f`
    /// returns what a load read (the first register for a pair), `None` for a store.
    fn access(what: fmt::Arguments<'_>, f: impl FnOnce() -> Option<u64>) {
        let mut loaded = None;
        match expect_fault(|| loaded = f()) {
            Some(fault) => println!("misbehave: {what} faulted into the guest (ESR {:#010x})", fault.esr),
            None => match loaded {
                Some(value) => println!("misbehave: {what} did not fault (read {value:#x})"),
                None => println!("misbehave: {what} did not fault"),
            },
        }
    }
}
