//! The board's time for the VMs' clocks: the host's PL031 (`arm,pl031` in the host
//! DTB), which Sluice only reads, and the CPU's counter for alarms. A board
//! without a PL031 starts its time at 0 (1970) when Sluice boots and counts it
//! with the counter.
#![allow(unsafe_code)]

use crate::arch::aarch64::el2;
use crate::devices::pl031::BoardClock;

/// The host clock.
pub struct HostClock {
    /// The PL031's data register (RTCDR, offset 0), if the board has one.
    data_register: Option<usize>,
    /// Counter ticks per second.
    counter_hz: u64,
}

impl HostClock {
    /// The clock read from the PL031 at `base`, if any.
    ///
    /// # Safety
    ///
    /// `base`, if given, is the address of a PL031's registers that EL2 maps as
    /// device memory; nothing writes them.
    pub unsafe fn new(base: Option<u64>) -> Self {
        Self { data_register: base.map(|b| b as usize), counter_hz: el2::counter_hz().max(1) }
    }
}

impl BoardClock for HostClock {
    fn seconds(&self) -> u32 {
        match self.data_register {
            // SAFETY: `new`'s contract: a mapped PL031, whose RTCDR a read doesn't change.
            Some(address) => unsafe { core::ptr::read_volatile(address as *const u32) },
            None => (el2::counter() / self.counter_hz) as u32,
        }
    }

    fn counter(&self) -> u64 {
        el2::counter()
    }

    fn counter_hz(&self) -> u64 {
        self.counter_hz
    }
}
