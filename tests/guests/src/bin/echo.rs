//! `echo`: reads lines typed on its console (UART receive interrupts) and says what
//! it got, until the line `quit`.
//!
//! Bootargs: `name=NAME` (optional: tells two echo VMs apart). CR or LF ends a line;
//! empty lines are skipped, backspace edits, bytes that are not printable ASCII are
//! shown as `\xNN`. The CPU sleeps in `wfi` while nothing arrives. Its lines (the
//! contract of `tests/scenarios/console-input.toml`):
//!
//! ```text
//! echo: NAME ready
//! echo: NAME got "LINE"
//! echo: NAME bye
//! ```
//!
//! Without a name the lines read `echo: ready`. A failed check prints
//! `echo: NAME FAIL ...` and powers off.
#![cfg_attr(bare_metal, no_std, no_main)]
#![deny(unsafe_code)]

#[cfg(not(bare_metal))]
fn main() {
    eprintln!("echo is a bare-metal guest: build it with --target aarch64-unknown-none");
}

#[cfg(bare_metal)]
mod guest {
    use core::fmt;

    use test_guests::bootargs::{self, NamePrefix};
    use test_guests::dtb::BootInfo;
    use test_guests::line::{Escaped, LineBuffer};
    use test_guests::{gic, irq, println, psci, uart_rx};

    /// The line that ends the guest.
    const QUIT: &[u8] = b"quit";

    test_guests::entry!(main);

    fn main(dtb: usize) -> ! {
        let info = BootInfo::read(dtb)
            .unwrap_or_else(|e| fail(NamePrefix(None), format_args!("cannot read the DTB at {dtb:#x}: {e}")));
        let name = bootargs::name_prefix(info.bootargs.unwrap_or(""));

        gic::init_distributor().unwrap_or_else(|e| fail(name, format_args!("gic: {e}")));
        gic::init_cpu().unwrap_or_else(|e| fail(name, format_args!("gic: {e}")));
        uart_rx::enable();
        irq::enable();
        println!("echo: {name}ready");

        let mut line = LineBuffer::new();
        loop {
            irq::wait_unless(uart_rx::has_input);
            while let Some(byte) = uart_rx::read_byte() {
                let Some(got) = line.push(byte) else {
                    continue;
                };
                if got.overflow > 0 {
                    println!("echo: {name}got \"{}\" (and {} more bytes)", Escaped(got.bytes), got.overflow);
                } else {
                    println!("echo: {name}got \"{}\"", Escaped(got.bytes));
                }
                if got.bytes == QUIT && got.overflow == 0 {
                    let dropped = uart_rx::dropped();
                    if dropped > 0 {
                        println!("echo: {name}dropped {dropped} bytes");
                    }
                    println!("echo: {name}bye");
                    psci::system_off();
                }
            }
        }
    }

    /// Reports a failed check and powers off.
    fn fail(name: NamePrefix<'_>, what: fmt::Arguments<'_>) -> ! {
        println!("echo: {name}FAIL {what}");
        psci::system_off()
    }
}
