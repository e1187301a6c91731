//! The host console: Sluice's log lines, every guest's console output and the
//! keyboard, on the one host UART, through the console multiplexer.
//!
//! One lock covers the UART and the multiplexer, so lines never interleave mid-line;
//! each guest line is tagged `[name] `. Sluice's lines read `sluice: message` (with
//! the level for warnings and errors); the level is chosen at run time. The last line
//! of all is Sluice's exit status ([`close`]). Lock order: a device's lock (the
//! PL011, a virtio-console) may be held when taking this one, never the other way
//! round.

use crate::console::mux::{ConsoleMux, InputAction};
use crate::console::ConsoleOutput;
use crate::drivers::pl011::Uart;
use core::fmt;
use core::sync::atomic::{AtomicBool, Ordering};
use log::{Level, LevelFilter, Log, Metadata, Record};
use platform::bundle::MAX_VMS;
use spin::mutex::TicketMutex;

use crate::arch::aarch64::el2::{self, Yield};

/// The host UART and the multiplexer in front of it.
struct HostConsole {
    uart: Uart,
    mux: ConsoleMux,
}

/// The console; a CPU that waits for it yields (see [`Yield`]). A ticket lock, so
/// CPUs take it in the order they asked: a VM writing its share as fast as it can
/// (a 256-byte chunk at a time) cannot keep another VM's line waiting for more than
/// one chunk.
static CONSOLE: TicketMutex<Option<HostConsole>, Yield> = TicketMutex::new(None);

/// Hands the host UART to the console; no VM outputs yet.
pub fn init(uart: Uart, level: LevelFilter) {
    *CONSOLE.lock() = Some(HostConsole { uart, mux: ConsoleMux::new(&[]) });
    // set_logger fails only if called twice; the first logger stays.
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(level);
}

/// Names the VMs (index = VM index) whose output the console multiplexes, each with
/// its share of the UART (`console::share`) starting now.
pub fn set_vms(names: &[&str]) {
    if let Some(console) = CONSOLE.lock().as_mut() {
        console.mux = ConsoleMux::new(names);
        console.mux.start_shares(el2::counter(), el2::counter_hz());
        QUEUED.iter().for_each(|queued| queued.store(false, Ordering::Release));
    }
}

/// Parses a level name ("error" .. "trace", "off").
pub fn parse_level(name: &str) -> Option<LevelFilter> {
    name.parse().ok()
}

/// Runs `f` with the console, if it is up.
fn with_console(f: impl FnOnce(&mut ConsoleMux, &mut dyn FnMut(&[u8]))) {
    if let Some(HostConsole { uart, mux }) = CONSOLE.lock().as_mut() {
        f(mux, &mut |bytes: &[u8]| bytes.iter().for_each(|&b| uart.put(b)));
    }
}

/// Prints text that is not a log line (the banner, reports); `\n` becomes `\r\n`.
pub fn print(args: fmt::Arguments<'_>) {
    with_console(|mux, mut emit| mux.print(args, &mut emit));
}

/// Prints even if the console seems stuck: only for a hypervisor that is dying. It
/// waits a moment for whoever holds the console, then breaks the lock (the holder may
/// be this very CPU, which panicked while printing), where mixed output beats none.
#[allow(unsafe_code)]
pub fn print_emergency(args: fmt::Arguments<'_>) {
    for _ in 0..1_000_000 {
        if !CONSOLE.is_locked() {
            break;
        }
        core::hint::spin_loop();
    }
    if CONSOLE.is_locked() {
        // SAFETY: whoever holds the lock has not let go for a million spins: it is this
        // CPU, stopped inside a print, or a CPU that will never let go. The machine
        // powers off right after this, so nothing relies on the console's state again.
        unsafe { CONSOLE.force_unlock() };
    }
    print(args);
}

/// Closes the console for good: sends what the VMs still hold, shuts them out, and
/// prints Sluice's last line, `sluice: exit status N`, which the tools read and no
/// guest can write; returns once the UART has sent it.
pub fn close(status: u8) {
    if let Some(HostConsole { uart, mux }) = CONSOLE.lock().as_mut() {
        mux.close(platform::exit::StatusLine(status), &mut |bytes: &[u8]| {
            bytes.iter().for_each(|&b| uart.put(b))
        });
        uart.wait_until_sent();
    }
}

/// Drains the bytes the host UART has received into `buf`; returns how many.
pub fn receive(buf: &mut [u8]) -> usize {
    let mut guard = CONSOLE.lock();
    let Some(console) = guard.as_mut() else { return 0 };
    let mut n = 0;
    while n < buf.len() {
        match console.uart.get() {
            Some(b) => {
                buf[n] = b;
                n += 1;
            }
            None => break,
        }
    }
    n
}

/// Has the host UART interrupt when bytes arrive.
pub fn enable_receive_interrupt() {
    if let Some(console) = CONSOLE.lock().as_mut() {
        console.uart.enable_receive_interrupt();
    }
}

/// What one typed byte means (escape keys are handled here: focus changes and help
/// are printed).
pub fn route_input(byte: u8) -> InputAction {
    let mut action = InputAction::None;
    with_console(|mux, mut emit| {
        action = mux.input(byte);
        match action {
            InputAction::Switch { vm } => {
                let name = alloc::string::String::from(mux.name(vm));
                mux.log_line(format_args!("console input now goes to vm \"{name}\""), &mut emit)
            }
            InputAction::Help => {
                let help = alloc::format!("{}", mux.help_text());
                mux.log_line(format_args!("{help}"), &mut emit);
            }
            _ => {}
        }
    });
    action
}

/// Sends what VM `vm` holds back of an unfinished line (it went idle or stopped:
/// a prompt, or a last line without a newline).
pub fn flush_vm_output(vm: usize) {
    with_console(|mux, mut emit| {
        if mux.has_partial_line(vm) {
            mux.flush(vm, &mut emit);
        }
    });
}

/// Whether the multiplexer holds input for each VM: a copy kept beside the lock, so
/// the trap path can ask on every MMIO exit without taking the console.
static QUEUED: [AtomicBool; MAX_VMS] = [const { AtomicBool::new(false) }; MAX_VMS];

/// Queues `byte` for VM `vm`, whose UART can't take it now.
pub fn queue_input(vm: usize, byte: u8) {
    with_console(|mux, _| {
        mux.queue_input(vm, byte);
        QUEUED[vm].store(mux.queued(vm) > 0, Ordering::Release);
    });
}

/// Whether bytes wait for VM `vm` (new input must queue behind them).
pub fn has_queued_input(vm: usize) -> bool {
    QUEUED.get(vm).is_some_and(|queued| queued.load(Ordering::Acquire))
}

/// Takes the oldest bytes queued for VM `vm`, as many as `buf` holds; returns how
/// many.
pub fn take_input(vm: usize, buf: &mut [u8]) -> usize {
    let mut n = 0;
    with_console(|mux, _| {
        for slot in buf.iter_mut() {
            let Some(byte) = mux.pop_input(vm) else { break };
            *slot = byte;
            n += 1;
        }
        QUEUED[vm].store(mux.queued(vm) > 0, Ordering::Release);
    });
    n
}

struct Logger;

static LOGGER: Logger = Logger;

impl Log for Logger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let tag = match record.level() {
            Level::Error => "error: ",
            Level::Warn => "warning: ",
            Level::Info => "",
            Level::Debug => "debug: ",
            Level::Trace => "trace: ",
        };
        with_console(|mux, mut emit| mux.log_line(format_args!("{tag}{}", record.args()), &mut emit));
    }

    fn flush(&self) {}
}

/// One VM's console output, through the multiplexer.
pub struct VmConsole {
    /// The VM's index.
    pub vm: usize,
}

impl ConsoleOutput for VmConsole {
    fn write(&mut self, bytes: &[u8]) {
        with_console(|mux, mut emit| mux.output_at(self.vm, bytes, el2::counter(), &mut emit));
    }

    fn offer(&mut self, bytes: &[u8]) -> usize {
        let mut taken = 0;
        with_console(|mux, mut emit| taken = mux.offer_at(self.vm, bytes, el2::counter(), &mut emit));
        taken
    }
}
