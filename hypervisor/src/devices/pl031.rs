//! A VM's PL031 real-time clock, as QEMU virt has it at `0x0901_0000` (SPI 2).
//!
//! The clock reads the board's time ([`BoardClock`]: the host's own PL031) plus an
//! offset of the VM's own, which the guest sets by writing the load register: one
//! VM setting its clock changes nobody else's, and the board's clock is never
//! written. The match register arms an alarm: when the guest's time reaches it, the
//! raw interrupt status is set, and the line (SPI 2) goes up if the guest unmasked
//! it. The trap path fires alarms: [`Pl031::alarm_due`] says at which counter value
//! the next is due, and [`Pl031::fire_alarm`] checks it then. Registers as the ARM
//! PrimeCell RTC (PL031) Technical Reference Manual, chapter 3, and as QEMU's model
//! answers them (the control register reads 1: the clock always runs).

use super::{AccessWidth, MmioDevice};

/// Where a VM's clock gets the board's time.
pub trait BoardClock: Send + Sync {
    /// The board's time, in seconds since 1970 (what its RTC says now).
    fn seconds(&self) -> u32;
    /// The CPU's counter now.
    fn counter(&self) -> u64;
    /// Counter ticks per second.
    fn counter_hz(&self) -> u64;
}

/// For host tests: a board clock stopped at 2027-01-01, its counter too.
#[cfg(test)]
pub struct StoppedClock;

#[cfg(test)]
impl BoardClock for StoppedClock {
    fn seconds(&self) -> u32 {
        1_798_761_600
    }
    fn counter(&self) -> u64 {
        0
    }
    fn counter_hz(&self) -> u64 {
        1
    }
}

/// Register offsets (PL031 TRM, table 3-1).
mod reg {
    /// RTCDR: the time (read only).
    pub const DR: u64 = 0x00;
    /// RTCMR: match.
    pub const MR: u64 = 0x04;
    /// RTCLR: load.
    pub const LR: u64 = 0x08;
    /// RTCCR: control.
    pub const CR: u64 = 0x0c;
    /// RTCIMSC: interrupt mask set and clear.
    pub const IMSC: u64 = 0x10;
    /// RTCRIS: raw interrupt status.
    pub const RIS: u64 = 0x14;
    /// RTCMIS: masked interrupt status.
    pub const MIS: u64 = 0x18;
    /// RTCICR: interrupt clear.
    pub const ICR: u64 = 0x1c;
    /// RTCPeriphID0..3, RTCPCellID0..3: a byte in each word.
    pub const ID: u64 = 0xfe0;
}

/// The identification bytes at 0xfe0..0xffc: part 0x031, designer ARM, revision 1;
/// the PrimeCell cell ID.
const ID_BYTES: [u8; 8] = [0x31, 0x10, 0x14, 0x00, 0x0d, 0xf0, 0x05, 0xb1];

/// How long after a due alarm whose second has not come yet (the counter and the
/// board's clock need not agree) it is checked again: a sixteenth of a second.
const RECHECK_DIVISOR: u64 = 16;

/// One VM's PL031.
pub struct Pl031 {
    clock: &'static dyn BoardClock,
    /// The guest's time minus the board's, wrapping.
    offset: u32,
    /// What the guest last wrote to the load register.
    load: u32,
    match_value: u32,
    /// The interrupt is unmasked (RTCIMSC bit 0).
    unmasked: bool,
    /// The match happened (RTCRIS bit 0).
    raised: bool,
    /// The counter value at which the match is due, while an alarm is armed.
    due: Option<u64>,
}

impl Pl031 {
    /// A clock in its reset state, reading `clock`'s time.
    pub fn new(clock: &'static dyn BoardClock) -> Self {
        Self { clock, offset: 0, load: 0, match_value: 0, unmasked: false, raised: false, due: None }
    }

    /// The time the guest reads now.
    fn now(&self) -> u32 {
        self.clock.seconds().wrapping_add(self.offset)
    }

    /// Arms the alarm for the match register, as the load and match writes do: at
    /// once if the guest's time is the match, else in as many seconds as the match
    /// is ahead (a match behind the time is more than a century ahead).
    fn arm(&mut self) {
        let ahead = self.match_value.wrapping_sub(self.now());
        if ahead == 0 {
            self.raised = true;
            self.due = None;
        } else {
            let ticks = u64::from(ahead).saturating_mul(self.clock.counter_hz());
            self.due = Some(self.clock.counter().saturating_add(ticks));
        }
    }

    /// The counter value at which the armed alarm is due, if one is.
    pub fn alarm_due(&self) -> Option<u64> {
        self.due
    }

    /// The alarm's counter value has come: the match is raised if the guest's time
    /// has reached it, or checked again shortly if the board's second lags.
    pub fn fire_alarm(&mut self) {
        let Some(due) = self.due else { return };
        let counter = self.clock.counter();
        if counter < due {
            return;
        }
        if self.now().wrapping_sub(self.match_value) as i32 >= 0 {
            self.raised = true;
            self.due = None;
        } else {
            self.due = Some(counter + (self.clock.counter_hz() / RECHECK_DIVISOR).max(1));
        }
    }
}

impl MmioDevice for Pl031 {
    fn name(&self) -> &str {
        "pl031"
    }

    fn read(&mut self, offset: u64, _width: AccessWidth) -> u64 {
        let value = match offset {
            reg::DR => self.now(),
            reg::MR => self.match_value,
            reg::LR => self.load,
            reg::CR => 1,
            reg::IMSC => u32::from(self.unmasked),
            reg::RIS => u32::from(self.raised),
            reg::MIS => u32::from(self.raised && self.unmasked),
            reg::ID..=0xffc if offset.is_multiple_of(4) => {
                u32::from(ID_BYTES[((offset - reg::ID) / 4) as usize])
            }
            _ => 0,
        };
        u64::from(value)
    }

    fn write(&mut self, offset: u64, _width: AccessWidth, value: u64) {
        let value = value as u32;
        match offset {
            reg::LR => {
                self.offset = value.wrapping_sub(self.clock.seconds());
                self.load = value;
                self.arm();
            }
            reg::MR => {
                self.match_value = value;
                self.arm();
            }
            reg::IMSC => self.unmasked = value & 1 != 0,
            reg::ICR if value & 1 != 0 => self.raised = false,
            // The clock always runs; the rest is read only.
            _ => {}
        }
    }

    fn interrupt_level(&self) -> bool {
        self.raised && self.unmasked
    }

    fn reset(&mut self) {
        *self = Self::new(self.clock);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

    /// A board clock the test moves: `HZ` counter ticks a second.
    struct TestClock {
        seconds: AtomicU32,
        counter: AtomicU64,
    }

    const HZ: u64 = 1000;
    const START: u32 = 1_800_000_000;

    impl TestClock {
        fn leaked() -> &'static TestClock {
            Box::leak(Box::new(TestClock { seconds: AtomicU32::new(START), counter: AtomicU64::new(5) }))
        }

        /// `n` seconds pass, on both clocks.
        fn pass(&self, n: u32) {
            self.seconds.fetch_add(n, Ordering::SeqCst);
            self.counter.fetch_add(u64::from(n) * HZ, Ordering::SeqCst);
        }
    }

    impl BoardClock for TestClock {
        fn seconds(&self) -> u32 {
            self.seconds.load(Ordering::SeqCst)
        }
        fn counter(&self) -> u64 {
            self.counter.load(Ordering::SeqCst)
        }
        fn counter_hz(&self) -> u64 {
            HZ
        }
    }

    fn read(rtc: &mut Pl031, offset: u64) -> u32 {
        rtc.read(offset, AccessWidth::Word) as u32
    }

    fn write(rtc: &mut Pl031, offset: u64, value: u32) {
        rtc.write(offset, AccessWidth::Word, u64::from(value));
    }

    #[test]
    fn reads_the_board_time_and_identifies_as_a_pl031() {
        let clock = TestClock::leaked();
        let mut rtc = Pl031::new(clock);
        assert_eq!(read(&mut rtc, reg::DR), START);
        clock.pass(2);
        assert_eq!(read(&mut rtc, reg::DR), START + 2);
        assert_eq!(read(&mut rtc, reg::CR), 1, "always running");
        let id: Vec<u32> = (0..8).map(|i| read(&mut rtc, reg::ID + 4 * i)).collect();
        assert_eq!(id, [0x31, 0x10, 0x14, 0x00, 0x0d, 0xf0, 0x05, 0xb1]);
    }

    #[test]
    fn a_load_sets_this_clock_alone_and_a_reset_forgets_it() {
        let clock = TestClock::leaked();
        let (mut a, mut b) = (Pl031::new(clock), Pl031::new(clock));
        write(&mut a, reg::LR, 4_102_444_800);
        assert_eq!(read(&mut a, reg::LR), 4_102_444_800);
        clock.pass(3);
        assert_eq!(read(&mut a, reg::DR), 4_102_444_803, "it runs from what was loaded");
        assert_eq!(read(&mut b, reg::DR), START + 3, "the other VM's clock is the board's");
        write(&mut a, reg::DR, 7);
        write(&mut a, reg::CR, 0);
        assert_eq!(read(&mut a, reg::DR), 4_102_444_803, "DR is read only and the clock can't be stopped");
        a.reset();
        assert_eq!(read(&mut a, reg::DR), START + 3);
        assert_eq!(read(&mut a, reg::LR), 0);
    }

    #[test]
    fn the_alarm_raises_the_line_when_unmasked_until_cleared() {
        let clock = TestClock::leaked();
        let mut rtc = Pl031::new(clock);
        write(&mut rtc, reg::MR, START + 2);
        assert_eq!(rtc.alarm_due(), Some(5 + 2 * HZ));
        rtc.fire_alarm();
        assert_eq!(read(&mut rtc, reg::RIS), 0, "not due yet");
        clock.pass(2);
        rtc.fire_alarm();
        assert_eq!(read(&mut rtc, reg::RIS), 1);
        assert_eq!(read(&mut rtc, reg::MIS), 0, "masked");
        assert!(!rtc.interrupt_level());
        assert_eq!(rtc.alarm_due(), None);
        write(&mut rtc, reg::IMSC, 1);
        assert!(rtc.interrupt_level());
        assert_eq!(read(&mut rtc, reg::MIS), 1);
        write(&mut rtc, reg::ICR, 1);
        assert!(!rtc.interrupt_level());
        assert_eq!(read(&mut rtc, reg::RIS), 0);
    }

    #[test]
    fn an_alarm_whose_second_lags_the_counter_is_checked_again() {
        let clock = TestClock::leaked();
        let mut rtc = Pl031::new(clock);
        write(&mut rtc, reg::MR, START + 1);
        // The counter reaches the deadline, but the board's clock is still short.
        clock.counter.fetch_add(HZ, Ordering::SeqCst);
        rtc.fire_alarm();
        assert_eq!(read(&mut rtc, reg::RIS), 0);
        let again = rtc.alarm_due().expect("still armed");
        assert_eq!(again, clock.counter() + HZ / RECHECK_DIVISOR);
        clock.seconds.fetch_add(1, Ordering::SeqCst);
        clock.counter.store(again, Ordering::SeqCst);
        rtc.fire_alarm();
        assert_eq!(read(&mut rtc, reg::RIS), 1);
    }

    #[test]
    fn a_match_equal_to_the_time_raises_at_once_and_one_behind_never() {
        let clock = TestClock::leaked();
        let mut rtc = Pl031::new(clock);
        write(&mut rtc, reg::MR, START);
        assert_eq!(read(&mut rtc, reg::RIS), 1);
        write(&mut rtc, reg::ICR, 1);
        write(&mut rtc, reg::MR, START - 1);
        let due = rtc.alarm_due().unwrap();
        assert!(due > u64::from(u32::MAX - 1) * HZ / 2, "more than half of the u32 range of seconds ahead");
        write(&mut rtc, reg::LR, START + 100);
        write(&mut rtc, reg::MR, START + 100);
        assert_eq!(read(&mut rtc, reg::RIS), 1, "the match follows the guest's own time");
    }
}
