//! Sluice's own log lines and guest console output, on the host UART.
//!
//! One lock serialises the UART so a log line and guest output never interleave
//! mid-line. Log lines read `sluice: message` (with the level for warnings and
//! errors); the level is chosen at run time.

use crate::console::ConsoleOutput;
use crate::drivers::pl011::Uart;
use core::fmt::{self, Write};
use log::{Level, LevelFilter, Log, Metadata, Record};
use spin::Mutex;

/// The host UART, once the boot path has found it.
static UART: Mutex<Option<Uart>> = Mutex::new(None);

/// Hands the host UART to the console.
pub fn init(uart: Uart, level: LevelFilter) {
    *UART.lock() = Some(uart);
    // set_logger fails only if called twice; the first logger stays.
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(level);
}

/// Parses a level name ("error" .. "trace", "off").
pub fn parse_level(name: &str) -> Option<LevelFilter> {
    name.parse().ok()
}

struct UartWriter<'a>(&'a mut Uart);

impl Write for UartWriter<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for b in s.bytes() {
            if b == b'\n' {
                self.0.put(b'\r');
            }
            self.0.put(b);
        }
        Ok(())
    }
}

/// Prints to the host UART (for the banner and reports); does nothing before `init`.
pub fn print(args: fmt::Arguments<'_>) {
    if let Some(uart) = UART.lock().as_mut() {
        let _ = UartWriter(uart).write_fmt(args);
    }
}

/// Prints to the host UART even if another context holds the lock: only for a
/// hypervisor that is dying, where mixed output beats none.
#[allow(unsafe_code)]
pub fn print_emergency(args: fmt::Arguments<'_>) {
    if UART.is_locked() {
        // SAFETY: the lock protects no invariant beyond byte order on the wire, and the
        // machine powers off right after this.
        unsafe { UART.force_unlock() };
    }
    print(args);
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
        print(format_args!("sluice: {tag}{}\n", record.args()));
    }

    fn flush(&self) {}
}

/// A guest's console output, straight to the host UART.
pub struct HostConsole;

impl ConsoleOutput for HostConsole {
    fn write(&mut self, bytes: &[u8]) {
        if let Some(uart) = UART.lock().as_mut() {
            for &b in bytes {
                uart.put(b);
            }
        }
    }
}
