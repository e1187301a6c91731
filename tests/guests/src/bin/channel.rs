//! `channel`: two bare-metal VMs talk over consoles joined by channels, each also
//! with a console of its own.
//!
//! Both VMs have three virtio-consoles: slot 0 joined to the other VM's slot 0
//! (channel "talk"), slot 1 joined to the other's slot 1 (channel "stuck"), slot 2
//! on the shared UART. With `channel.role=a`:
//!
//! 1. on "stuck", which the other VM never reads, `try_write` until it takes
//!    nothing: the transmit ring is full, and that is no error;
//! 2. on "talk", [`LINES`] numbered lines, each answered by the other VM with the
//!    sum of its bytes, every answer checked;
//! 3. [`BULK`] bytes of a pattern to the other VM, then as many back, each side
//!    checking what it got against the pattern it expects;
//! 4. a line through its own virtio-console, while "stuck" is still full.
//!
//! `channel.role=b` is the other side: answers the lines, checks the bulk and sends
//! its own, never reads "stuck", and writes through its own console too. Each
//! prints `channel: <what>` on the PL011 and ends with `channel: done`; a failed
//! check prints `channel: FAIL ...` and powers off.
#![cfg_attr(bare_metal, no_std, no_main)]
#![deny(unsafe_code)]

#[cfg(not(bare_metal))]
fn main() {
    eprintln!("channel is a bare-metal guest: build it with --target aarch64-unknown-none");
}

#[cfg(bare_metal)]
mod guest {
    use core::fmt;

    use guest_drivers::console::VirtioConsole;
    use guest_drivers::hal::BumpHal;
    use guest_drivers::transport::mmio::MmioTransport;
    use platform::hypercall;
    use test_guests::dtb::BootInfo;
    use test_guests::timer::{self, Deadline};
    use test_guests::{bootargs, cpu, latency, println, psci, smccc, virtio};

    type Console = VirtioConsole<&'static BumpHal, MmioTransport>;

    /// Numbered lines sent and answered.
    const LINES: u32 = 200;
    /// Bytes each way in the bulk transfer.
    const BULK: usize = 2 << 20;
    /// The longest a step waits for the other VM.
    const PATIENCE_MS: u64 = 60_000;

    test_guests::entry!(main);

    fn main(dtb: usize) -> ! {
        let info = BootInfo::read(dtb).unwrap_or_else(|e| fail(format_args!("dtb: {e:?}")));
        let role = info.bootargs.and_then(|args| bootargs::value(args, "channel.role"));
        let slots = virtio::read_slots(dtb).unwrap_or_else(|e| fail(format_args!("dtb: {e}")));
        let hal = virtio::take_dma_hal().unwrap_or_else(|| fail(format_args!("the DMA pool is taken")));
        let alone = matches!(role, Some("linux" | "ping" | "pong"));
        let mut consoles = slots.iter().take(if alone { 1 } else { 3 }).map(|slot| {
            let transport =
                virtio::claim(slot).unwrap_or_else(|e| fail(format_args!("slot {:#x}: {e}", slot.base)));
            VirtioConsole::new(transport, hal)
                .unwrap_or_else(|e| fail(format_args!("console {:#x}: {e}", slot.base)))
        });
        if let Some(role @ ("linux" | "ping" | "pong")) = role {
            let Some(mut link) = consoles.next() else { fail(format_args!("no virtio-console in slot 0")) };
            let iterations = info
                .bootargs
                .and_then(|args| bootargs::value(args, "iterations"))
                .and_then(|n| n.parse().ok())
                .unwrap_or(100)
                .min(MAX_ITERATIONS);
            match role {
                "linux" => with_linux(&mut link),
                "ping" => ping(&mut link, iterations),
                _ => pong(&mut link, iterations),
            }
            println!("channel: done");
            psci::system_off()
        }
        let (Some(mut talk), Some(mut stuck), Some(mut own)) =
            (consoles.next(), consoles.next(), consoles.next())
        else {
            fail(format_args!("three virtio-consoles expected, the DTB has {} slot(s)", slots.len()))
        };
        match role {
            Some("a") => {
                fill_stuck(&mut stuck);
                for n in 0..LINES {
                    let line = Line::numbered(n);
                    send(&mut talk, line.bytes());
                    let answer = receive_line(&mut talk);
                    if answer.bytes() != Line::sum_of(line.bytes()).bytes() {
                        fail(format_args!("line {n}: the answer is {:?}", answer.text()));
                    }
                }
                println!("channel: {LINES} lines answered, every sum right");
                bulk_send(&mut talk, 1);
                bulk_receive(&mut talk, 2);
            }
            Some("b") => {
                for n in 0..LINES {
                    let line = receive_line(&mut talk);
                    if line.bytes() != Line::numbered(n).bytes() {
                        fail(format_args!("line {n} came as {:?}", line.text()));
                    }
                    send(&mut talk, Line::sum_of(line.bytes()).bytes());
                }
                println!("channel: {LINES} lines received in order, each answered");
                bulk_receive(&mut talk, 1);
                bulk_send(&mut talk, 2);
            }
            other => fail(format_args!("channel.role must be a or b, not {other:?}")),
        }
        own.write(b"channel: own console works beside the channels\r\n")
            .unwrap_or_else(|e| fail(format_args!("own console: {e}")));
        if role == Some("a") && stuck.try_write(b"x") != Ok(0) {
            fail(format_args!("the stuck channel took more though nobody reads it"));
        }
        println!("channel: done");
        psci::system_off()
    }

    /// Most timed iterations of the ping-pong (`iterations=` in the bootargs).
    const MAX_ITERATIONS: usize = 1000;
    /// Bytes a bulk round moves (`channel-64k`).
    const ROUND_BYTES: usize = 64 * 1024;

    /// `cargo xtask bench`'s VM-to-VM paths, timed on the counter both CPUs share:
    /// `channel-one-way` (8 bytes written here until the other VM has read them, as
    /// its timestamp says), `channel-round-trip` (until its 16-byte answer is read
    /// here), and `channel-64k` (64 KiB written until the other VM says it read
    /// them all). Printed as the `bench` guest prints its paths.
    fn ping(link: &mut Console, iterations: usize) {
        wait_for_line(link, b"pong ready", PATIENCE_MS);
        let mut one_way = [0u64; MAX_ITERATIONS];
        let mut round_trip = [0u64; MAX_ITERATIONS];
        let mut answer = [0u8; 16];
        for i in 0..iterations + WARMUP {
            if i == WARMUP {
                trace_phase(PHASE_PING_PONG);
            }
            let sent_at = timer::counter();
            send(link, &sent_at.to_le_bytes());
            receive_exact(link, &mut answer);
            let back_at = timer::counter();
            let read_at = u64::from_le_bytes(answer[8..].try_into().unwrap_or_default());
            if let Some(i) = i.checked_sub(WARMUP) {
                one_way[i] = read_at.saturating_sub(sent_at);
                round_trip[i] = back_at - sent_at;
            }
        }
        trace_phase(PHASE_BULK);
        report("channel-one-way", PHASE_PING_PONG, &mut one_way[..iterations]);
        report("channel-round-trip", PHASE_PING_PONG, &mut round_trip[..iterations]);
        let mut rounds = [0u64; MAX_ITERATIONS];
        let chunk = [0x5au8; 4096];
        let mut ack = [0u8];
        let bulk_rounds = iterations.div_ceil(10);
        for round in rounds.iter_mut().take(bulk_rounds) {
            let start = timer::counter();
            for _ in 0..ROUND_BYTES / chunk.len() {
                send(link, &chunk);
            }
            receive_exact(link, &mut ack);
            *round = timer::counter() - start;
        }
        trace_phase(0);
        report("channel-64k", PHASE_BULK, &mut rounds[..bulk_rounds]);
    }

    /// The other side of [`ping`]: answers each message with it and the counter when
    /// it was read; acknowledges each 64 KiB.
    fn pong(link: &mut Console, iterations: usize) {
        send(link, b"\npong ready\n");
        let mut message = [0u8; 8];
        for i in 0..iterations + WARMUP {
            if i == WARMUP {
                trace_phase(PHASE_PING_PONG);
            }
            receive_exact(link, &mut message);
            let read_at = timer::counter();
            let mut answer = [0u8; 16];
            answer[..8].copy_from_slice(&message);
            answer[8..].copy_from_slice(&read_at.to_le_bytes());
            send(link, &answer);
        }
        trace_phase(PHASE_BULK);
        let mut chunk = [0u8; 4096];
        for _ in 0..iterations.div_ceil(10) {
            for _ in 0..ROUND_BYTES / chunk.len() {
                receive_exact(link, &mut chunk);
            }
            send(link, b"k");
        }
        trace_phase(0);
    }

    /// The trace phases of the timed paths: Sluice sums each CPU's exits per phase,
    /// and both VMs tag theirs the same, so the sums cover both sides of the channel.
    const PHASE_PING_PONG: u32 = 30;
    const PHASE_BULK: u32 = 31;

    /// Tags this CPU's exits from now on with `phase` (Sluice's `TRACE_PHASE`; on
    /// plain QEMU an unknown SMCCC call, which nothing here relies on).
    fn trace_phase(phase: u32) {
        smccc::hvc(u64::from(hypercall::TRACE_PHASE), u64::from(phase), 0, 0);
    }

    /// Untimed round trips before the timed ones.
    const WARMUP: usize = 10;

    /// Prints a path's summary and histogram lines, as the `bench` guest does.
    fn report(name: &str, phase: u32, samples: &mut [u64]) {
        latency::report(name, phase, samples, timer::frequency(), |args| println!("{args}"));
    }

    /// Bytes each way in the bulk transfer with Linux (its `dd` reads 4 MiB).
    const LINUX_BULK: usize = 4 << 20;
    /// How long Linux may take to boot (to open its end, or to come back).
    const LINUX_PATIENCE_MS: u64 = 600_000;

    /// The other end is Linux's `/dev/hvc1` (`tests/linux/init`, `sluice.channel`):
    /// lines answered with their sums, 4 MiB there and back, then a stream that
    /// goes on while Linux reboots, until it says it is back.
    fn with_linux(link: &mut Console) {
        println!("channel: waiting for Linux to open its end");
        wait_for_line(link, b"ready", LINUX_PATIENCE_MS);
        println!("channel: Linux opened its end");
        for n in 0..LINES {
            let line = Line::numbered(n);
            send(link, line.bytes());
            let answer = receive_line(link);
            if answer.bytes() != Line::sum_of(line.bytes()).bytes() {
                fail(format_args!("line {n}: Linux answered {:?}", answer.text()));
            }
        }
        println!("channel: {LINES} lines answered by Linux, every sum right");
        let mut chunk = [0u8; 4096];
        let mut back = [0u8; 4096];
        // Linux sends the bulk back only once it has all of it: send, then check.
        for at in (0..LINUX_BULK).step_by(chunk.len()) {
            (0..chunk.len()).for_each(|i| chunk[i] = pattern(3, at + i));
            send(link, &chunk);
        }
        for at in (0..LINUX_BULK).step_by(back.len()) {
            receive_exact(link, &mut back);
            if let Some(i) = (0..back.len()).find(|&i| back[i] != pattern(3, at + i)) {
                fail(format_args!("bulk from Linux: byte {} is {:#x}", at + i, back[i]));
            }
        }
        println!("channel: {} KiB to Linux and back, every byte as sent", LINUX_BULK / 1024);
        // A stream while Linux reboots: its ring fills and waits, no error. Once it
        // has stayed full for a second (Linux is down), the stream stops: more would
        // only pour into Linux's second boot before its tty is open (hvc reads and
        // drops what comes then), a flood for nothing.
        let mut streamed = 0u64;
        let mut full = false;
        let mut full_since: Option<Deadline> = None;
        let mut line = Line::default();
        let patience = Deadline::after_ms(LINUX_PATIENCE_MS);
        loop {
            if !full_since.is_some_and(Deadline::expired) {
                match link.try_write(b"stream\n") {
                    Ok(0) => {
                        full = true;
                        full_since.get_or_insert(Deadline::after_ms(1000));
                    }
                    Ok(n) => {
                        streamed += n as u64;
                        full_since = None;
                    }
                    Err(e) => fail(format_args!("stream: {e}")),
                }
            }
            if poll_line(link, &mut line) == Some(b"back") {
                break;
            }
            if patience.expired() {
                fail(format_args!("Linux never came back ({streamed} bytes streamed)"));
            }
            cpu::relax();
        }
        println!(
            "channel: Linux is back after its reboot ({streamed} bytes streamed; the ring {} full meanwhile)",
            if full { "was" } else { "was never" }
        );
        send(link, b"\nresync\n");
        wait_for_line(link, b"ok", PATIENCE_MS);
        println!("channel: the channel works again");
    }

    /// Reads lines until one is `want`, or fails after `patience_ms`.
    fn wait_for_line(console: &mut Console, want: &[u8], patience_ms: u64) {
        let mut line = Line::default();
        let patience = Deadline::after_ms(patience_ms);
        loop {
            if poll_line(console, &mut line) == Some(want) {
                return;
            }
            if patience.expired() {
                fail(format_args!("no line {:?} within {patience_ms} ms", core::str::from_utf8(want)));
            }
            cpu::relax();
        }
    }

    /// Reads what has come into `line`; once a line is complete, its bytes
    /// (without the `\n`; a `\r` is dropped), and `line` starts over. Overlong
    /// lines are cut.
    fn poll_line<'l>(console: &mut Console, line: &'l mut Line) -> Option<&'l [u8]> {
        let mut byte = [0u8];
        while console.read(&mut byte).unwrap_or_else(|e| fail(format_args!("read: {e}"))) == 1 {
            if byte[0] == b'\n' {
                let len = core::mem::take(&mut line.len);
                return Some(&line.bytes[..len]);
            }
            if line.len < line.bytes.len() && byte[0] != b'\r' {
                line.push(byte[0]);
            }
        }
        None
    }

    /// Writes to the channel nobody reads until it takes nothing, then checks that
    /// it keeps taking nothing, without error.
    fn fill_stuck(stuck: &mut Console) {
        let mut sent = 0;
        let patience = Deadline::after_ms(PATIENCE_MS);
        loop {
            match stuck.try_write(&[b's'; 256]) {
                Ok(0) => break,
                Ok(n) => sent += n,
                Err(e) => fail(format_args!("stuck: {e} after {sent} bytes")),
            }
            if patience.expired() {
                fail(format_args!("stuck: still taking bytes after {sent}"));
            }
        }
        let quiet = Deadline::after_ms(20);
        while !quiet.expired() {
            match stuck.try_write(b"x") {
                Ok(0) => {}
                other => fail(format_args!("stuck: full, then {other:?}")),
            }
        }
        println!("channel: stuck: the transmit ring is full after {sent} bytes, and that is no error");
    }

    /// Writes all of `bytes` (waiting for the channel to take them).
    fn send(console: &mut Console, bytes: &[u8]) {
        console.write(bytes).unwrap_or_else(|e| fail(format_args!("write: {e}")));
    }

    /// Reads exactly `buf.len()` bytes, or fails after [`PATIENCE_MS`].
    fn receive_exact(console: &mut Console, buf: &mut [u8]) {
        let mut done = 0;
        let patience = Deadline::after_ms(PATIENCE_MS);
        while done < buf.len() {
            let n = console.read(&mut buf[done..]).unwrap_or_else(|e| fail(format_args!("read: {e}")));
            if n == 0 {
                // Let the other VM's CPU run (under -icount one thread runs both).
                cpu::relax();
            }
            done += n;
            if patience.expired() {
                fail(format_args!("waited {PATIENCE_MS} ms for the other VM: {done} of {} bytes", buf.len()));
            }
        }
    }

    /// Reads one line (up to and with its `\n`).
    fn receive_line(console: &mut Console) -> Line {
        let mut line = Line::default();
        loop {
            let mut byte = [0u8];
            receive_exact(console, &mut byte);
            line.push(byte[0]);
            if byte[0] == b'\n' {
                return line;
            }
        }
    }

    /// The bulk pattern of side `seed`: byte `i`.
    fn pattern(seed: u32, i: usize) -> u8 {
        ((i as u32).wrapping_mul(2_654_435_761).wrapping_add(seed.wrapping_mul(0x9e37)) >> 24) as u8
    }

    fn bulk_send(console: &mut Console, seed: u32) {
        let start = timer::counter();
        let mut chunk = [0u8; 4096];
        for at in (0..BULK).step_by(chunk.len()) {
            for (i, b) in chunk.iter_mut().enumerate() {
                *b = pattern(seed, at + i);
            }
            send(console, &chunk);
        }
        let ms = timer::ms_from_ticks(timer::frequency(), timer::counter() - start).max(1);
        println!("channel: sent {} KiB in {ms} ms ({} KiB/s)", BULK / 1024, BULK as u64 * 1000 / 1024 / ms);
    }

    fn bulk_receive(console: &mut Console, seed: u32) {
        let mut chunk = [0u8; 4096];
        for at in (0..BULK).step_by(chunk.len()) {
            receive_exact(console, &mut chunk);
            if let Some(i) = (0..chunk.len()).find(|&i| chunk[i] != pattern(seed, at + i)) {
                fail(format_args!(
                    "bulk: byte {} is {:#x}, expected {:#x}",
                    at + i,
                    chunk[i],
                    pattern(seed, at + i)
                ));
            }
        }
        println!("channel: received {} KiB, every byte as sent", BULK / 1024);
    }

    /// A short line of text.
    struct Line {
        bytes: [u8; 64],
        len: usize,
    }

    impl Default for Line {
        fn default() -> Self {
            Self { bytes: [0; 64], len: 0 }
        }
    }

    impl Line {
        fn numbered(n: u32) -> Self {
            let mut line = Self::default();
            let _ = fmt::write(&mut line, format_args!("line {n}\n"));
            line
        }

        /// `sum S\n`, S the sum of `bytes`.
        fn sum_of(bytes: &[u8]) -> Self {
            let mut line = Self::default();
            let _ = fmt::write(
                &mut line,
                format_args!("sum {}\n", bytes.iter().map(|&b| u32::from(b)).sum::<u32>()),
            );
            line
        }

        fn push(&mut self, byte: u8) {
            if self.len == self.bytes.len() {
                fail(format_args!("a line longer than {} bytes", self.bytes.len()));
            }
            self.bytes[self.len] = byte;
            self.len += 1;
        }

        fn bytes(&self) -> &[u8] {
            &self.bytes[..self.len]
        }

        fn text(&self) -> &str {
            core::str::from_utf8(self.bytes()).unwrap_or("(not UTF-8)")
        }
    }

    impl fmt::Write for Line {
        fn write_str(&mut self, s: &str) -> fmt::Result {
            s.bytes().for_each(|b| self.push(b));
            Ok(())
        }
    }

    /// Reports a failed check and powers off.
    fn fail(what: fmt::Arguments<'_>) -> ! {
        println!("channel: FAIL {what}");
        psci::system_off()
    }
}
