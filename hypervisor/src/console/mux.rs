//! The console multiplexer: every VM's console and Sluice's own lines on one UART.
//!
//! Output: every line on the UART says whose it is. A VM's lines start with its tag,
//! `[name] `, added by the multiplexer; Sluice's own lines start with `sluice: `.
//! A guest can't print a line that passes for another's or for Sluice's:
//!
//! - each line a VM prints is held until it is complete (or [`LINE_LEN`] bytes long,
//!   or its VM goes idle and the owner calls [`ConsoleMux::flush`], which is how a
//!   prompt without a newline gets out), so lines of two VMs printing at once never
//!   mix. When VM B prints while a partial line of VM A is out, the multiplexer ends
//!   A's line with `"\r\n"` first, and A's next bytes start a new tagged line (a line
//!   break A then sends to finish the interrupted line is dropped, as the multiplexer
//!   already ended it);
//! - a guest's bytes are shown, never obeyed ([`escape`]): printable ASCII and tab
//!   pass; `"\r\n"` and `"\n"` end the line (the multiplexer sends `"\r\n"`); a
//!   backspace passes only over what the VM printed on the line itself, never into
//!   its tag; every other control character, a `"\r"` not followed by `"\n"` and
//!   every byte above 0x7e are shown escaped (`^[`, `^M`, `\xe2`), so no escape
//!   sequence, carriage return or cursor movement reaches the terminal;
//! - each VM has its share of the UART ([`share`]): what it sends beyond that is
//!   dropped and counted ([`ConsoleMux::output_at`]), so a flooder cannot slow the
//!   console for the others;
//! - once Sluice is powering off, [`ConsoleMux::close`] sends what the VMs hold,
//!   then Sluice's last line (the exit status), and shuts everyone out, Sluice's own
//!   lines included, so that line is the console's last.
//!
//! Input: bytes typed on the UART go to the VM in focus (VM 0 at first). Ctrl-A is
//! the escape key, as in QEMU and `screen`; the key after it is a command:
//!
//! | keys | action |
//! | --- | --- |
//! | Ctrl-A `0`..`9` | focus that VM (if it exists) |
//! | Ctrl-A `n` | focus the next VM (wrapping) |
//! | Ctrl-A `h` or `?` | show the help |
//! | Ctrl-A `x` | power the machine off |
//! | Ctrl-A Ctrl-A | send one Ctrl-A to the VM in focus |
//!
//! Any other key after Ctrl-A is dropped. Letters are taken in either case.
//!
//! The multiplexer is pure: it hands the bytes for the UART to an `emit` callback
//! and says what to do with an input byte ([`InputAction`]); its owner does the I/O
//! and the locking. Nothing on the output and input paths allocates: tags and input
//! queues are made by [`ConsoleMux::new`].

use super::escape;
use super::ring::ByteRing;
use super::share::{self, Share};
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt::{self, Display, Write};

/// The escape key, Ctrl-A.
pub const ESCAPE: u8 = 0x01;
/// Bytes queued per VM while its UART's receive FIFO is full.
pub const INPUT_QUEUE_LEN: usize = 256;
/// What starts every line Sluice itself prints.
pub const LOG_PREFIX: &str = platform::exit::SLUICE_PREFIX;

/// Longest line held back per VM before it is sent unfinished.
pub const LINE_LEN: usize = 256;

/// Line end the multiplexer writes (a serial terminal wants both).
const CRLF: &[u8] = b"\r\n";

/// What to do with one byte typed on the UART.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputAction {
    /// Give `byte` to VM `vm` (its UART's receive FIFO, or [`ConsoleMux::queue_input`]).
    Deliver {
        /// The VM in focus.
        vm: usize,
        /// The byte.
        byte: u8,
    },
    /// Input now goes to VM `vm` (it may already have had the focus).
    Switch {
        /// The VM now in focus.
        vm: usize,
    },
    /// Show [`ConsoleMux::help_text`].
    Help,
    /// Power the whole machine off.
    PowerOff,
    /// Nothing: the byte started an escape, or was a key without a meaning.
    None,
}

/// Who the unfinished line on the UART belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Owner {
    /// Nobody: the UART is at the start of a line.
    Nobody,
    /// A VM, by index.
    Vm(usize),
    /// Sluice itself ([`ConsoleMux::print`]).
    Sluice,
}

/// One VM's side of the multiplexer.
struct Port {
    name: String,
    /// `[name] `, with the name's own control characters escaped.
    tag: String,
    input: ByteRing<INPUT_QUEUE_LEN>,
    dropped: u64,
    /// The multiplexer ended this VM's unfinished line; the line break the VM sends
    /// next to end it is dropped.
    broken: bool,
    /// The VM sent `\r` as its last byte: a line end if `\n` follows, else shown.
    carriage_return: bool,
    /// The line being held back.
    line: [u8; LINE_LEN],
    line_len: usize,
    /// Its share of the UART.
    share: Share,
}

/// Multiplexes the VMs' consoles and Sluice's log lines onto one UART.
pub struct ConsoleMux {
    ports: Vec<Port>,
    open: Owner,
    /// Columns the VM that owns the open line has filled on it: how far its
    /// backspaces may go.
    column: usize,
    focus: usize,
    /// The last input byte was Ctrl-A.
    escape: bool,
    /// Sluice is powering off: VM output is dropped.
    closed: bool,
    /// The counter frequency that [`ConsoleMux::output_at`]'s times are in.
    counter_hz: u64,
}

impl ConsoleMux {
    /// A multiplexer for VMs with these names (index = VM index).
    pub fn new(names: &[&str]) -> Self {
        let ports = names
            .iter()
            .map(|&name| {
                let mut tag = String::with_capacity(name.len() + 3);
                tag.push('[');
                name.bytes().for_each(|b| escape::push_visible(&mut tag, b));
                tag.push_str("] ");
                Port {
                    name: name.into(),
                    tag,
                    input: ByteRing::new(),
                    dropped: 0,
                    broken: false,
                    carriage_return: false,
                    line: [0; LINE_LEN],
                    line_len: 0,
                    share: Share::new(0),
                }
            })
            .collect();
        Self { ports, open: Owner::Nobody, column: 0, focus: 0, escape: false, closed: false, counter_hz: 1 }
    }

    /// Starts every VM's share of the UART with a full bucket at counter time `now`,
    /// for [`ConsoleMux::output_at`] calls with a counter at `counter_hz`.
    pub fn start_shares(&mut self, now: u64, counter_hz: u64) {
        self.counter_hz = counter_hz.max(1);
        self.ports.iter_mut().for_each(|port| port.share = Share::new(now));
    }

    /// VM `vm` wrote `bytes` at counter time `now`: what its [`share`] of the UART
    /// allows goes to [`ConsoleMux::output`], the rest is dropped and counted. The
    /// count is said (`sluice: vm "name": N bytes of console output dropped ...`)
    /// when the VM may send again.
    pub fn output_at(&mut self, vm: usize, bytes: &[u8], now: u64, emit: &mut impl FnMut(&[u8])) {
        if self.closed || vm >= self.ports.len() {
            return;
        }
        let allowed = self.ports[vm].share.admit(bytes, now, self.counter_hz);
        if let Some(dropped) = self.ports[vm].share.take_dropped(now, self.counter_hz, false) {
            self.say_dropped(vm, dropped, emit);
        }
        self.output(vm, &bytes[..allowed], emit);
    }

    /// VM `vm` offers `bytes` at counter time `now`: what its [`share`] of the UART
    /// allows now goes to [`ConsoleMux::output`]; returns how many bytes that was
    /// (a prefix). The caller holds the rest and offers it again later (a
    /// virtio-console keeps the guest's buffer until all of it went).
    pub fn offer_at(&mut self, vm: usize, bytes: &[u8], now: u64, emit: &mut impl FnMut(&[u8])) -> usize {
        if self.closed || vm >= self.ports.len() {
            return bytes.len();
        }
        let allowed = self.ports[vm].share.take(bytes, now, self.counter_hz);
        self.output(vm, &bytes[..allowed], emit);
        allowed
    }

    fn say_dropped(&mut self, vm: usize, dropped: u64, emit: &mut impl FnMut(&[u8])) {
        let name = core::mem::take(&mut self.ports[vm].name);
        self.log_line(
            format_args!(
                "vm \"{name}\": {dropped} bytes of console output dropped (over its share of the console: {} KiB at once, {} KiB/s)",
                share::BURST / 1024,
                share::RATE / 1024
            ),
            emit,
        );
        self.ports[vm].name = name;
    }

    /// The number of VMs.
    pub fn vm_count(&self) -> usize {
        self.ports.len()
    }

    /// VM `vm`'s name.
    ///
    /// # Panics
    ///
    /// If `vm` is not one of this multiplexer's VMs (a hypervisor bug).
    pub fn name(&self, vm: usize) -> &str {
        &self.ports[vm].name
    }

    /// The VM that typed input goes to.
    pub fn focus(&self) -> usize {
        self.focus
    }

    /// VM `vm` wrote `bytes`; `emit` receives what goes to the UART, in order. After
    /// [`ConsoleMux::close`], or for a VM the multiplexer doesn't know, nothing.
    pub fn output(&mut self, vm: usize, bytes: &[u8], emit: &mut impl FnMut(&[u8])) {
        if self.closed || vm >= self.ports.len() {
            return;
        }
        let mut rest = bytes;
        while !rest.is_empty() {
            let port = &mut self.ports[vm];
            let room = &mut port.line[port.line_len..];
            let fits = rest.len().min(room.len());
            let (taken, line_ends) = match rest[..fits].iter().position(|&b| b == b'\n') {
                Some(newline) => (newline + 1, true),
                None => (fits, false),
            };
            room[..taken].copy_from_slice(&rest[..taken]);
            port.line_len += taken;
            rest = &rest[taken..];
            if line_ends || port.line_len == LINE_LEN {
                self.flush(vm, emit);
            }
        }
    }

    /// Sends what VM `vm` holds of an unfinished line (call it when the VM goes idle,
    /// so a prompt shows).
    ///
    /// # Panics
    ///
    /// If `vm` is not one of this multiplexer's VMs (a hypervisor bug).
    pub fn flush(&mut self, vm: usize, emit: &mut impl FnMut(&[u8])) {
        let port = &mut self.ports[vm];
        let (line, len) = (port.line, port.line_len);
        port.line_len = 0;
        self.stream(vm, &line[..len], emit);
    }

    /// Whether VM `vm` holds back part of a line.
    pub fn has_partial_line(&self, vm: usize) -> bool {
        self.ports.get(vm).is_some_and(|p| p.line_len > 0)
    }

    /// Sends what every VM holds, then Sluice's `last` line, and closes the console
    /// for good: nothing follows that line, not a VM's output, not another of
    /// Sluice's lines (another CPU may be in the middle of a report), not typed
    /// input. Called once the machine is powering off; a second call does nothing.
    pub fn close(&mut self, last: impl Display, emit: &mut impl FnMut(&[u8])) {
        if self.closed {
            return;
        }
        for vm in 0..self.ports.len() {
            self.flush(vm, emit);
            if let Some(dropped) = self.ports[vm].share.take_dropped(0, self.counter_hz, true) {
                self.say_dropped(vm, dropped, emit);
            }
        }
        self.log_line(last, emit);
        self.closed = true;
    }

    /// Sends VM `vm`'s bytes, tagged, escaped and with lines broken as the module says.
    fn stream(&mut self, vm: usize, bytes: &[u8], emit: &mut impl FnMut(&[u8])) {
        let mut rest = bytes;
        while let Some(&byte) = rest.first() {
            let port = &self.ports[vm];
            if port.broken || port.carriage_return || !escape::is_plain(byte) {
                self.stream_byte(vm, byte, emit);
                rest = &rest[1..];
                continue;
            }
            // A run of plain bytes goes out as it is, in one piece.
            let run = rest.iter().position(|&b| !escape::is_plain(b)).unwrap_or(rest.len());
            self.open_line(vm, emit);
            emit(&rest[..run]);
            self.column += run;
            rest = &rest[run..];
        }
    }

    /// Sends one byte of VM `vm`: the line ends, carriage returns, backspaces and
    /// escapes of [`ConsoleMux::stream`].
    fn stream_byte(&mut self, vm: usize, byte: u8, emit: &mut impl FnMut(&[u8])) {
        let port = &mut self.ports[vm];
        if port.broken {
            port.broken = false;
            match byte {
                b'\r' => {
                    port.broken = true;
                    return;
                }
                b'\n' => return,
                _ => {}
            }
        }
        let carriage_return = core::mem::replace(&mut port.carriage_return, byte == b'\r');
        if carriage_return && byte != b'\n' {
            self.show(vm, b'\r', emit);
        }
        match byte {
            b'\n' => {
                self.open_line(vm, emit);
                emit(CRLF);
                self.open = Owner::Nobody;
            }
            b'\r' => {}
            _ => self.show(vm, byte, emit),
        }
    }

    /// Shows one byte of VM `vm` on its line, as [`escape`] says.
    fn show(&mut self, vm: usize, byte: u8, emit: &mut impl FnMut(&[u8])) {
        self.open_line(vm, emit);
        if byte == escape::BACKSPACE && self.column > 0 {
            self.column -= 1;
            emit(&[byte]);
            return;
        }
        let mut shown = [0; escape::MAX_LEN];
        let shown = escape::visible(byte, &mut shown);
        self.column += shown.len();
        emit(shown);
    }

    /// Makes the UART's open line VM `vm`'s, ending another's and tagging it first.
    fn open_line(&mut self, vm: usize, emit: &mut impl FnMut(&[u8])) {
        if self.open != Owner::Vm(vm) {
            self.end_open_line(emit);
            emit(self.ports[vm].tag.as_bytes());
            self.open = Owner::Vm(vm);
            self.column = 0;
        }
    }

    /// Sluice logs `line` (one line, without its newline): `sluice: line` on a line of
    /// its own, after ending any unfinished line. A `\n` inside `line` starts another
    /// `sluice: ` line.
    pub fn log_line(&mut self, line: impl Display, emit: &mut impl FnMut(&[u8])) {
        if self.closed {
            return;
        }
        self.end_open_line(emit);
        self.print(format_args!("{line}\n"), emit);
    }

    /// Sluice prints `text` (a banner, a report), every line of it starting with
    /// `sluice: ` and `\n` sent as `\r\n`, after ending any VM's unfinished line. Text
    /// without a final newline leaves a line that the next print continues, and that
    /// VM output or a log line ends first.
    pub fn print(&mut self, text: impl Display, emit: &mut impl FnMut(&[u8])) {
        if self.closed {
            return;
        }
        if matches!(self.open, Owner::Vm(_)) {
            self.end_open_line(emit);
        }
        let mut writer = SluiceLines { emit, at_line_start: self.open != Owner::Sluice };
        let _ = write!(writer, "{text}");
        self.open = if writer.at_line_start { Owner::Nobody } else { Owner::Sluice };
    }

    /// One byte typed on the UART: what to do with it.
    pub fn input(&mut self, byte: u8) -> InputAction {
        if self.closed {
            return InputAction::None;
        }
        if !self.escape {
            if byte == ESCAPE {
                self.escape = true;
                return InputAction::None;
            }
            return self.deliver(byte);
        }
        self.escape = false;
        match byte {
            ESCAPE => self.deliver(ESCAPE),
            b'0'..=b'9' => self.switch(usize::from(byte - b'0')),
            b'n' | b'N' => self.switch((self.focus + 1) % self.ports.len().max(1)),
            b'h' | b'H' | b'?' => InputAction::Help,
            b'x' | b'X' => InputAction::PowerOff,
            _ => InputAction::None,
        }
    }

    /// The escape keys and the VMs, on one line:
    /// `Ctrl-A 0: hello, Ctrl-A 1: ticker, Ctrl-A n: next, Ctrl-A x: quit, Ctrl-A Ctrl-A: send Ctrl-A`.
    pub fn help_text(&self) -> impl Display + '_ {
        Help(self)
    }

    /// Queues `byte` for VM `vm`, whose UART's receive FIFO is full; when the queue
    /// ([`INPUT_QUEUE_LEN`] bytes) is full too, the byte is dropped and counted. While
    /// bytes are queued, new input for the VM must be queued behind them, to keep the
    /// order.
    ///
    /// # Panics
    ///
    /// If `vm` is not one of this multiplexer's VMs (a hypervisor bug).
    pub fn queue_input(&mut self, vm: usize, byte: u8) {
        let port = &mut self.ports[vm];
        if !port.input.push(byte) {
            port.dropped += 1;
        }
    }

    /// The oldest byte queued for VM `vm`, to move into its UART's receive FIFO.
    ///
    /// # Panics
    ///
    /// If `vm` is not one of this multiplexer's VMs (a hypervisor bug).
    pub fn pop_input(&mut self, vm: usize) -> Option<u8> {
        self.ports[vm].input.pop()
    }

    /// How many bytes are queued for VM `vm`.
    ///
    /// # Panics
    ///
    /// If `vm` is not one of this multiplexer's VMs (a hypervisor bug).
    pub fn queued(&self, vm: usize) -> usize {
        self.ports[vm].input.len()
    }

    /// How many input bytes for VM `vm` were dropped because its queue was full.
    ///
    /// # Panics
    ///
    /// If `vm` is not one of this multiplexer's VMs (a hypervisor bug).
    pub fn dropped(&self, vm: usize) -> u64 {
        self.ports[vm].dropped
    }

    fn deliver(&self, byte: u8) -> InputAction {
        if self.ports.is_empty() {
            return InputAction::None;
        }
        InputAction::Deliver { vm: self.focus, byte }
    }

    fn switch(&mut self, vm: usize) -> InputAction {
        if vm >= self.ports.len() {
            return InputAction::None;
        }
        self.focus = vm;
        InputAction::Switch { vm }
    }

    /// Ends the unfinished line on the UART, if there is one.
    fn end_open_line(&mut self, emit: &mut impl FnMut(&[u8])) {
        match self.open {
            Owner::Nobody => return,
            Owner::Vm(vm) => {
                let port = &mut self.ports[vm];
                port.broken = true;
                port.carriage_return = false;
            }
            Owner::Sluice => {}
        }
        emit(CRLF);
        self.open = Owner::Nobody;
    }
}

/// A `fmt::Write` onto `emit` for Sluice's own text: `sluice: ` at the start of every
/// line, `\n` sent as `\r\n`, control characters escaped like a guest's.
struct SluiceLines<'e, E: FnMut(&[u8])> {
    emit: &'e mut E,
    /// The next byte starts a line.
    at_line_start: bool,
}

impl<E: FnMut(&[u8])> Write for SluiceLines<'_, E> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for piece in s.split_inclusive('\n') {
            let (text, newline) = match piece.strip_suffix('\n') {
                Some(text) => (text, true),
                None => (piece, false),
            };
            if self.at_line_start && (newline || !text.is_empty()) {
                (self.emit)(LOG_PREFIX.as_bytes());
                self.at_line_start = false;
            }
            let mut shown = [0; escape::MAX_LEN];
            for run in text.as_bytes().split_inclusive(|&b| !escape::is_plain(b)) {
                match run.split_last() {
                    Some((&last, head)) if !escape::is_plain(last) => {
                        (self.emit)(head);
                        (self.emit)(escape::visible(last, &mut shown));
                    }
                    _ => (self.emit)(run),
                }
            }
            if newline {
                (self.emit)(CRLF);
                self.at_line_start = true;
            }
        }
        Ok(())
    }
}

/// [`ConsoleMux::help_text`].
struct Help<'m>(&'m ConsoleMux);

impl Display for Help<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (vm, port) in self.0.ports.iter().enumerate().take(10) {
            write!(f, "Ctrl-A {vm}: {}, ", port.name)?;
        }
        f.write_str("Ctrl-A n: next, Ctrl-A x: quit, Ctrl-A Ctrl-A: send Ctrl-A")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    /// A multiplexer and everything it sent to the UART.
    struct Uart {
        mux: ConsoleMux,
        wire: Vec<u8>,
    }

    impl Uart {
        fn new(names: &[&str]) -> Self {
            Self { mux: ConsoleMux::new(names), wire: Vec::new() }
        }

        fn out(&mut self, vm: usize, bytes: &str) -> &mut Self {
            let wire = &mut self.wire;
            self.mux.output(vm, bytes.as_bytes(), &mut |b| wire.extend_from_slice(b));
            self
        }

        fn flush(&mut self, vm: usize) -> &mut Self {
            let wire = &mut self.wire;
            self.mux.flush(vm, &mut |b| wire.extend_from_slice(b));
            self
        }

        fn log(&mut self, line: &str) -> &mut Self {
            let wire = &mut self.wire;
            self.mux.log_line(line, &mut |b| wire.extend_from_slice(b));
            self
        }

        fn print(&mut self, text: &str) -> &mut Self {
            let wire = &mut self.wire;
            self.mux.print(text, &mut |b| wire.extend_from_slice(b));
            self
        }

        fn text(&self) -> &str {
            core::str::from_utf8(&self.wire).unwrap()
        }
    }

    fn inputs(mux: &mut ConsoleMux, bytes: &[u8]) -> Vec<InputAction> {
        bytes.iter().map(|&b| mux.input(b)).collect()
    }

    fn deliver(vm: usize, byte: u8) -> InputAction {
        InputAction::Deliver { vm, byte }
    }

    #[test]
    fn several_vms_tag_every_line() {
        let mut uart = Uart::new(&["hello", "ticker"]);
        uart.out(0, "one\r\ntwo\r\n").out(1, "tick\r\n").out(0, "three\r\n");
        assert_eq!(uart.text(), "[hello] one\r\n[hello] two\r\n[ticker] tick\r\n[hello] three\r\n");
    }

    #[test]
    fn one_vm_is_tagged_too() {
        let mut uart = Uart::new(&["solo"]);
        uart.out(0, "boot\r\nsluice: exit status 0\r\n");
        assert_eq!(uart.text(), "[solo] boot\r\n[solo] sluice: exit status 0\r\n");
    }

    #[test]
    fn a_line_written_a_byte_at_a_time_gets_one_tag() {
        let mut uart = Uart::new(&["a", "b"]);
        for c in "hi\r\nyo\r\n".chars() {
            uart.out(1, c.encode_utf8(&mut [0; 4]));
        }
        assert_eq!(uart.text(), "[b] hi\r\n[b] yo\r\n");
    }

    #[test]
    fn bare_newlines_end_lines_and_empty_lines_are_tagged() {
        let mut uart = Uart::new(&["a", "b"]);
        uart.out(0, "x\n\ny\n");
        assert_eq!(uart.text(), "[a] x\r\n[a] \r\n[a] y\r\n");
    }

    #[test]
    fn lines_of_two_vms_printing_at_once_never_mix() {
        let mut uart = Uart::new(&["hello", "ticker"]);
        uart.out(0, "count: 1").out(1, "tick").out(0, "23\r\n");
        assert_eq!(uart.text(), "[hello] count: 123\r\n");
        uart.out(1, "\r\n");
        assert_eq!(uart.text(), "[hello] count: 123\r\n[ticker] tick\r\n");
    }

    #[test]
    fn a_flushed_partial_line_is_ended_and_retagged_when_another_vm_prints() {
        let mut uart = Uart::new(&["hello", "ticker"]);
        uart.out(0, "$ ").flush(0).out(1, "tick\r\n").out(0, "ls\r\n");
        assert_eq!(uart.text(), "[hello] $ \r\n[ticker] tick\r\n[hello] ls\r\n");
        assert!(!uart.mux.has_partial_line(0));
    }

    #[test]
    fn a_long_line_goes_out_in_pieces() {
        let mut uart = Uart::new(&["a", "b"]);
        let long = "x".repeat(LINE_LEN + 10);
        uart.out(0, &long);
        assert_eq!(uart.text().len(), "[a] ".len() + LINE_LEN);
        assert!(uart.mux.has_partial_line(0));
    }

    #[test]
    fn the_line_end_of_an_interrupted_line_is_not_repeated() {
        let mut uart = Uart::new(&["a", "b"]);
        uart.out(0, "abc").flush(0).out(1, "x\r\n").out(0, "\r").out(0, "\nnext\r\n");
        assert_eq!(uart.text(), "[a] abc\r\n[b] x\r\n[a] next\r\n");
        // Only one line end is dropped: a blank line after it stays.
        uart.wire.clear();
        uart.out(0, "p").flush(0).out(1, "q\r\n").out(0, "\r\n\r\n");
        assert_eq!(uart.text(), "[a] p\r\n[b] q\r\n[a] \r\n");
        // Other bytes after the interruption start the new line at once.
        uart.wire.clear();
        uart.out(0, "p").flush(0).out(1, "q\r\n").out(0, "\rr\r\n");
        assert_eq!(uart.text(), "[a] p\r\n[b] q\r\n[a] r\r\n");
    }

    #[test]
    fn control_characters_are_shown_not_obeyed() {
        let mut uart = Uart::new(&["vm"]);
        uart.out(0, "\x1b[2K\x1b[1Gbold\x07\x00\x7f\r\n");
        assert_eq!(uart.text(), "[vm] ^[[2K^[[1Gbold^G^@^?\r\n");
    }

    #[test]
    fn a_carriage_return_cannot_overwrite_the_tag() {
        let mut uart = Uart::new(&["evil", "good"]);
        uart.out(0, "padding\rsluice: exit status 0\r\n").out(0, "\r\r\n");
        assert_eq!(uart.text(), "[evil] padding^Msluice: exit status 0\r\n[evil] ^M\r\n");
        // A \r held at a flush still decides by the byte after it.
        uart.wire.clear();
        uart.out(0, "x\r").flush(0).out(0, "\n");
        assert_eq!(uart.text(), "[evil] x\r\n");
    }

    #[test]
    fn backspaces_erase_only_what_the_vm_printed_on_its_line() {
        let mut uart = Uart::new(&["vm", "other"]);
        uart.out(0, "ab\x08\x08\x08\x08x\r\n");
        // The shown `^H` fills two columns of the VM's own, which the last one erases.
        assert_eq!(uart.text(), "[vm] ab\x08\x08^H\x08x\r\n");
        // An interrupted line starts a new tag, and with it a new count.
        uart.wire.clear();
        uart.out(0, "a").flush(0).out(1, "z\r\n").out(0, "\x08b\r\n");
        assert_eq!(uart.text(), "[vm] a\r\n[other] z\r\n[vm] ^Hb\r\n");
        // An escaped byte counts as what it shows.
        uart.wire.clear();
        uart.out(0, "\x1b\x08\x08\x08\r\n");
        assert_eq!(uart.text(), "[vm] ^[\x08\x08^H\r\n");
    }

    #[test]
    fn high_bytes_are_shown_in_hex() {
        let mut uart = Uart::new(&["vm"]);
        uart.out(0, "caf\u{e9}\r\n");
        assert_eq!(uart.text(), "[vm] caf\\xc3\\xa9\r\n");
    }

    #[test]
    fn a_name_cannot_smuggle_control_characters_into_a_tag() {
        let uart = &mut Uart::new(&["a\x1b[2J"]);
        uart.out(0, "x\r\n");
        assert_eq!(uart.text(), "[a^[[2J] x\r\n");
    }

    #[test]
    fn log_lines_stand_alone() {
        let mut uart = Uart::new(&["a", "b"]);
        uart.log("starting").out(0, "half").log("vm \"b\" powered off");
        uart.out(0, " done\r\n");
        // A held line is not broken by a log line.
        assert_eq!(uart.text(), "sluice: starting\r\nsluice: vm \"b\" powered off\r\n[a] half done\r\n");
        uart.wire.clear();
        uart.out(0, "half").flush(0).log("note").out(0, " done\r\n");
        assert_eq!(uart.text(), "[a] half\r\nsluice: note\r\n[a]  done\r\n");
    }

    #[test]
    fn log_lines_take_format_arguments() {
        let mut uart = Uart::new(&["a"]);
        let wire = &mut uart.wire;
        uart.mux.log_line(format_args!("warning: vm {} stopped\nat {:#x}", 1, 0x40), &mut |b| {
            wire.extend_from_slice(b)
        });
        assert_eq!(uart.text(), "sluice: warning: vm 1 stopped\r\nsluice: at 0x40\r\n");
    }

    #[test]
    fn every_printed_line_is_sluices() {
        let mut uart = Uart::new(&["a", "b"]);
        uart.out(1, "x")
            .flush(1)
            .print("Sluice 0.1.0\n\nstats:")
            .print(" 3 exits\n")
            .out(0, "y\r\n")
            .print("half")
            .log("l")
            .print("report\x1b")
            .out(0, "z\r\n");
        assert_eq!(
            uart.text(),
            "[b] x\r\nsluice: Sluice 0.1.0\r\nsluice: \r\nsluice: stats: 3 exits\r\n[a] y\r\n\
             sluice: half\r\nsluice: l\r\nsluice: report^[\r\n[a] z\r\n"
        );
    }

    #[test]
    fn closing_sends_what_is_held_then_shuts_the_vms_out() {
        let mut uart = Uart::new(&["a", "b"]);
        uart.out(0, "partial").out(1, "line\r\n");
        let wire = &mut uart.wire;
        uart.mux.close("exit status 1", &mut |b| wire.extend_from_slice(b));
        uart.out(0, "late\r\n").out(1, "sluice: exit status 0\r\n").out(7, "who?\r\n");
        uart.log("a report from another CPU").print("its table\n");
        let wire = &mut uart.wire;
        uart.mux.close("exit status 0", &mut |b| wire.extend_from_slice(b));
        assert_eq!(uart.mux.input(b'x'), InputAction::None, "input is over too");
        assert_eq!(uart.text(), "[b] line\r\n[a] partial\r\nsluice: exit status 1\r\n");
    }

    #[test]
    fn a_flooder_gets_its_share_and_the_others_theirs() {
        const HZ: u64 = 1_000_000;
        let mut uart = Uart::new(&["flood", "tick"]);
        uart.mux.start_shares(0, HZ);
        let line = [b'x'; 1023].iter().chain(b"\n").copied().collect::<Vec<u8>>();
        let wire = &mut uart.wire;
        let mut emit = |b: &[u8]| wire.extend_from_slice(b);
        // The flooder offers 1 MiB at once; the ticker prints a line after it.
        for _ in 0..1024 {
            uart.mux.output_at(0, &line, 0, &mut emit);
        }
        uart.mux.output_at(1, b"tick 1\n", 0, &mut emit);
        // A second later the flooder may send again: the count comes first.
        uart.mux.output_at(0, b"late\n", HZ, &mut emit);
        let text = core::str::from_utf8(&uart.wire).unwrap();
        let flooded = text.bytes().filter(|&b| b == b'x').count() as u64;
        // The burst: its line ends cost two bytes each.
        assert!(
            (share::BURST - 2 * share::BURST / 1024..=share::BURST).contains(&flooded),
            "{flooded} bytes of the flood went"
        );
        assert!(text.contains("[tick] tick 1\r\n"), "the ticker's line is not held behind the flood");
        let said =
            text.lines().find_map(|l| l.strip_prefix("sluice: vm \"flood\": ")).expect("the drops are said");
        let dropped: u64 = said.split(' ').next().unwrap().parse().unwrap();
        assert!(said.ends_with(
            " bytes of console output dropped (over its share of the console: 128 KiB at once, 128 KiB/s)"
        ));
        // Everything offered went or was counted (the line ends that went aside).
        assert!(
            (1024 * 1024 - share::BURST / 1024..=1024 * 1024).contains(&(dropped + flooded)),
            "{dropped} + {flooded}"
        );
        assert!(text.ends_with("late\r\n"), "the flooder prints again");
    }

    #[test]
    fn an_offer_takes_what_the_share_allows_and_drops_nothing() {
        const HZ: u64 = 1_000_000;
        let mut uart = Uart::new(&["tx"]);
        uart.mux.start_shares(0, HZ);
        let wire = &mut uart.wire;
        let mut emit = |b: &[u8]| wire.extend_from_slice(b);
        let big = alloc::vec![b'z'; share::BURST as usize + 100];
        assert_eq!(uart.mux.offer_at(0, &big, 0, &mut emit), share::BURST as usize);
        assert_eq!(uart.mux.offer_at(0, b"rest", 0, &mut emit), 0, "held, not dropped");
        // A second later the rest goes, and there is no count to say.
        assert_eq!(uart.mux.offer_at(0, b"rest\n", HZ, &mut emit), 5);
        uart.mux.close("exit status 0", &mut emit);
        let text = core::str::from_utf8(&uart.wire).unwrap();
        assert!(!text.contains("dropped"), "{}", &text[text.len() - 100..]);
        assert!(text.contains("rest\r\n"));
    }

    #[test]
    fn drops_not_said_yet_are_said_when_the_console_closes() {
        let mut uart = Uart::new(&["flood"]);
        uart.mux.start_shares(0, 1000);
        let big = alloc::vec![b'y'; share::BURST as usize + 5];
        let wire = &mut uart.wire;
        uart.mux.output_at(0, &big, 0, &mut |b| wire.extend_from_slice(b));
        uart.mux.close("exit status 0", &mut |b| wire.extend_from_slice(b));
        assert!(uart.text().ends_with("sluice: vm \"flood\": 5 bytes of console output dropped (over its share of the console: 128 KiB at once, 128 KiB/s)\r\nsluice: exit status 0\r\n"));
    }

    #[test]
    fn input_goes_to_the_vm_in_focus() {
        let mut mux = ConsoleMux::new(&["a", "b", "c"]);
        assert_eq!(mux.focus(), 0);
        assert_eq!(inputs(&mut mux, b"hi"), [deliver(0, b'h'), deliver(0, b'i')]);
        assert_eq!(
            inputs(&mut mux, b"\x012q"),
            [InputAction::None, InputAction::Switch { vm: 2 }, deliver(2, b'q')]
        );
        assert_eq!(mux.focus(), 2);
    }

    #[test]
    fn escape_keys() {
        let mut mux = ConsoleMux::new(&["a", "b", "c"]);
        let mut escape = |key: u8| {
            assert_eq!(mux.input(ESCAPE), InputAction::None);
            (mux.input(key), mux.focus())
        };
        assert_eq!(escape(b'1'), (InputAction::Switch { vm: 1 }, 1));
        assert_eq!(escape(b'1'), (InputAction::Switch { vm: 1 }, 1));
        assert_eq!(escape(b'0'), (InputAction::Switch { vm: 0 }, 0));
        // A VM that does not exist: the keys are dropped, the focus stays.
        assert_eq!(escape(b'3'), (InputAction::None, 0));
        assert_eq!(escape(b'9'), (InputAction::None, 0));
        assert_eq!(escape(b'n'), (InputAction::Switch { vm: 1 }, 1));
        assert_eq!(escape(b'n'), (InputAction::Switch { vm: 2 }, 2));
        assert_eq!(escape(b'N'), (InputAction::Switch { vm: 0 }, 0));
        assert_eq!(escape(b'h'), (InputAction::Help, 0));
        assert_eq!(escape(b'?'), (InputAction::Help, 0));
        assert_eq!(escape(b'x'), (InputAction::PowerOff, 0));
        assert_eq!(escape(b'X'), (InputAction::PowerOff, 0));
        assert_eq!(escape(ESCAPE), (deliver(0, ESCAPE), 0));
    }

    #[test]
    fn an_unknown_key_after_the_escape_is_dropped() {
        let mut mux = ConsoleMux::new(&["a", "b"]);
        assert_eq!(
            inputs(&mut mux, b"\x01z\x01\r\x01\x03ok"),
            [
                InputAction::None,
                InputAction::None,
                InputAction::None,
                InputAction::None,
                InputAction::None,
                InputAction::None,
                deliver(0, b'o'),
                deliver(0, b'k'),
            ]
        );
    }

    #[test]
    fn an_escape_split_across_calls_and_output_still_works() {
        let mut uart = Uart::new(&["a", "b"]);
        assert_eq!(uart.mux.input(ESCAPE), InputAction::None);
        // Output in between does not disturb the pending escape.
        uart.out(0, "tick\r\n");
        assert_eq!(uart.mux.input(b'1'), InputAction::Switch { vm: 1 });
        // A literal Ctrl-A, split the same way, then plain input again.
        assert_eq!(uart.mux.input(ESCAPE), InputAction::None);
        assert_eq!(uart.mux.input(ESCAPE), deliver(1, ESCAPE));
        assert_eq!(uart.mux.input(ESCAPE), InputAction::None);
        assert_eq!(uart.mux.input(b'x'), InputAction::PowerOff);
        assert_eq!(uart.mux.input(b'x'), deliver(1, b'x'));
    }

    #[test]
    fn one_vm_has_the_escape_keys_too() {
        let mut mux = ConsoleMux::new(&["solo"]);
        assert_eq!(
            inputs(&mut mux, b"\x01n\x010\x011\x01x"),
            [
                InputAction::None,
                InputAction::Switch { vm: 0 },
                InputAction::None,
                InputAction::Switch { vm: 0 },
                InputAction::None,
                InputAction::None,
                InputAction::None,
                InputAction::PowerOff,
            ]
        );
    }

    #[test]
    fn help_lists_the_keys_and_the_vms() {
        let mux = ConsoleMux::new(&["hello", "ticker"]);
        assert_eq!(
            mux.help_text().to_string(),
            "Ctrl-A 0: hello, Ctrl-A 1: ticker, Ctrl-A n: next, Ctrl-A x: quit, Ctrl-A Ctrl-A: send Ctrl-A"
        );
        assert_eq!(mux.vm_count(), 2);
        assert_eq!(mux.name(1), "ticker");
    }

    #[test]
    fn the_input_queue_is_bounded_and_counts_drops() {
        let mut mux = ConsoleMux::new(&["a", "b"]);
        for k in 0..INPUT_QUEUE_LEN + 10 {
            mux.queue_input(1, k as u8);
        }
        assert_eq!(mux.queued(1), INPUT_QUEUE_LEN);
        assert_eq!((mux.dropped(0), mux.dropped(1)), (0, 10));
        assert_eq!(mux.pop_input(0), None);
        assert_eq!(mux.pop_input(1), Some(0));
        assert_eq!(mux.pop_input(1), Some(1));
        // Room again: the ring wraps and keeps the order.
        mux.queue_input(1, 0xaa);
        assert_eq!(mux.dropped(1), 10);
        let rest: Vec<u8> = core::iter::from_fn(|| mux.pop_input(1)).collect();
        assert_eq!(rest.len(), INPUT_QUEUE_LEN - 1);
        assert_eq!(rest[0], 2);
        assert_eq!(rest[INPUT_QUEUE_LEN - 3], (INPUT_QUEUE_LEN - 1) as u8);
        assert_eq!(rest[INPUT_QUEUE_LEN - 2], 0xaa);
        assert_eq!(mux.queued(1), 0);
    }
}
