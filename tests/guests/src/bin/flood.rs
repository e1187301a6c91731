//! `flood`: floods the console through virtio-console with one notify.
//!
//! It sets the virtio-console's transmit queue up by hand (256 entries, its rings in
//! this image), builds one chain of 256 descriptors that all point at the same 45
//! MiB of its RAM (11.25 GiB to send, as a hostile driver would), makes it available
//! and notifies once. Then it waits for interrupts, never powering off (the
//! scenario ends with Ctrl-A x). Its lines (the contract of `tests/scenarios/console-flood.toml`):
//!
//! ```text
//! flood: notifying one chain of 256 x 45 MiB
//! flood: notified
//! ```
//!
//! Under Sluice the notify returns after one budget of the chain, and the rest goes
//! out a budget per exit of this VM, at this VM's share of the console (most of it
//! dropped and counted), while every other VM, the console and Ctrl-A keep going.
#![cfg_attr(bare_metal, no_std, no_main)]
#![deny(unsafe_code)]

#[cfg(not(bare_metal))]
fn main() {
    eprintln!("flood is a bare-metal guest: build it with --target aarch64-unknown-none");
}

#[cfg(bare_metal)]
mod guest {
    use core::fmt;
    use core::sync::atomic::{AtomicU16, AtomicU64, Ordering};

    use guest_drivers::init;
    use guest_drivers::transport::{device_id, Transport};
    use test_guests::dtb::BootInfo;
    use test_guests::{cpu, println, psci, virtio};

    /// Entries in the transmit queue, and descriptors in the chain.
    const QUEUE_SIZE: u16 = 256;
    /// The transmit queue of a virtio-console.
    const TRANSMITQ: u16 = 1;
    /// What every descriptor points at: 45 MiB from 16 MiB into RAM.
    const FLOOD_OFFSET: u64 = 16 << 20;
    const FLOOD_LEN: u32 = 45 << 20;
    const VIRTQ_DESC_F_NEXT: u64 = 1;

    /// The descriptor table: per entry, the address and then len | flags << 32 |
    /// next << 48 (little-endian `struct virtq_desc`).
    #[repr(C, align(16))]
    struct Descriptors([AtomicU64; 2 * QUEUE_SIZE as usize]);
    /// The driver area: flags, idx, ring[QUEUE_SIZE], used_event.
    #[repr(C, align(2))]
    struct Avail([AtomicU16; 3 + QUEUE_SIZE as usize]);
    /// The device area: flags, idx, then QUEUE_SIZE (id, len) pairs and avail_event.
    #[repr(C, align(4))]
    struct Used([AtomicU16; 3 + 4 * QUEUE_SIZE as usize]);

    static DESC: Descriptors = Descriptors([const { AtomicU64::new(0) }; 2 * QUEUE_SIZE as usize]);
    static AVAIL: Avail = Avail([const { AtomicU16::new(0) }; 3 + QUEUE_SIZE as usize]);
    static USED: Used = Used([const { AtomicU16::new(0) }; 3 + 4 * QUEUE_SIZE as usize]);

    test_guests::entry!(main);

    fn main(dtb: usize) -> ! {
        let info = BootInfo::read(dtb).unwrap_or_else(|e| fail(format_args!("cannot read the DTB: {e}")));
        let slots = virtio::read_slots(dtb).unwrap_or_else(|e| fail(format_args!("no DTB: {e}")));
        let [console] = virtio::claim_first(&slots, [device_id::CONSOLE])
            .unwrap_or_else(|(slot, e)| fail(format_args!("slot {:#x}: {e}", slot.base)));
        let Some((_, mut transport)) = console else { fail(format_args!("no virtio-console")) };
        let ram = info.memory();
        let Some(base) = ram.first().map(|r| r.base).filter(|_| info.is_ram(ram[0].base + FLOOD_OFFSET))
        else {
            fail(format_args!("no RAM"))
        };
        let flood = base + FLOOD_OFFSET;
        if !info.is_ram(flood + u64::from(FLOOD_LEN) - 1) {
            fail(format_args!("needs {} MiB of RAM", (FLOOD_OFFSET + u64::from(FLOOD_LEN)) >> 20));
        }

        init::negotiate(&mut transport, 0).unwrap_or_else(|e| fail(format_args!("negotiation: {e}")));
        transport.queue_select(TRANSMITQ);
        if transport.queue_max_size() < QUEUE_SIZE {
            fail(format_args!("the transmit queue takes {} entries", transport.queue_max_size()));
        }
        transport.queue_set_size(QUEUE_SIZE);
        let (desc, avail, used) = (DESC.0.as_ptr() as u64, AVAIL.0.as_ptr() as u64, USED.0.as_ptr() as u64);
        transport.queue_set_addresses(desc, avail, used).unwrap_or_else(|e| fail(format_args!("rings: {e}")));
        transport.queue_set_ready(true);
        init::driver_ok(&mut transport);

        for i in 0..u64::from(QUEUE_SIZE) {
            let last = i + 1 == u64::from(QUEUE_SIZE);
            let flags = if last { 0 } else { VIRTQ_DESC_F_NEXT };
            let next = if last { 0 } else { i + 1 };
            DESC.0[2 * i as usize].store(flood, Ordering::Relaxed);
            DESC.0[2 * i as usize + 1]
                .store(u64::from(FLOOD_LEN) | flags << 32 | next << 48, Ordering::Relaxed);
        }
        AVAIL.0[2].store(0, Ordering::Relaxed);
        AVAIL.0[1].store(1, Ordering::Release);
        println!("flood: notifying one chain of {QUEUE_SIZE} x {} MiB", FLOOD_LEN >> 20);
        transport.notify(TRANSMITQ);
        println!("flood: notified");
        // Sleep (with no interrupt enabled, `wfi` traps to Sluice, which goes on with
        // the chain at each of its timer's exits).
        loop {
            cpu::wait_for_interrupt();
        }
    }

    fn fail(what: fmt::Arguments<'_>) -> ! {
        println!("flood: FAIL {what}");
        psci::system_off()
    }
}
