//! Each VM's share of the one UART: a token bucket of bytes per VM.
//!
//! Every VM may send [`BURST`] bytes at once and [`RATE`] bytes a second after that,
//! whatever the others do. A sender that can wait (a virtio-console: the guest's
//! buffer stays the device's until it all went) is held to its share
//! ([`Share::take`]); from one that can't (a PL011 byte, an emergency write) what
//! goes beyond it is dropped and counted ([`Share::admit`]), and the count is said
//! a second after the first drop and then at most once a second while drops go on
//! (and when the console closes), so the counts cannot flood the console either.
//!
//! So a VM that floods the console cannot slow the UART, QEMU's character device, or
//! the reader at its far end for anyone else: the console carries at most `RATE`
//! bytes a second per VM, and another VM's line never waits behind a backlog (what a
//! VM holds stays in its own buffers). The burst is sized for a whole Linux boot log,
//! or a benchmark's report, arriving at once; the rate is ten times what a
//! 115200-baud line carries.
//!
//! The bucket counts what the guest's bytes take on the UART (an escaped byte two or
//! four, see `super::escape`), so escapes don't stretch a share; time is the generic
//! counter's, passed in by the caller.

use super::escape;

/// Bytes a VM may send at once.
pub const BURST: u64 = 128 * 1024;
/// Bytes a second a VM may send after its burst.
pub const RATE: u64 = 128 * 1024;

/// One VM's bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Share {
    tokens: u64,
    /// Counter time of the last refill.
    refilled_at: u64,
    /// Bytes dropped and not yet said.
    dropped: u64,
    /// Counter time a count was last said, or drops began after a quiet time.
    said_at: Option<u64>,
}

impl Share {
    /// A full bucket at counter time `now`.
    pub const fn new(now: u64) -> Self {
        Self { tokens: BURST, refilled_at: now, dropped: 0, said_at: None }
    }

    /// How many of `bytes`, sent at counter time `now` (counter at `hz`), may go (a
    /// prefix); the rest are counted as dropped.
    pub fn admit(&mut self, bytes: &[u8], now: u64, hz: u64) -> usize {
        let allowed = self.take(bytes, now, hz);
        self.count_dropped((bytes.len() - allowed) as u64, now);
        allowed
    }

    /// How many of `bytes`, offered at counter time `now`, may go now (a prefix);
    /// the caller holds the rest and offers it again later.
    pub fn take(&mut self, bytes: &[u8], now: u64, hz: u64) -> usize {
        self.refill(now, hz);
        let mut allowed = 0;
        for &byte in bytes {
            let cost = escape::shown_len(byte) as u64;
            if cost > self.tokens {
                break;
            }
            self.tokens -= cost;
            allowed += 1;
        }
        allowed
    }

    /// Counts `n` bytes dropped at counter time `now`.
    fn count_dropped(&mut self, n: u64, now: u64) {
        if n > 0 {
            self.dropped += n;
            self.said_at.get_or_insert(now);
        }
    }

    /// The bytes dropped since the count was last said, to say now (counter time
    /// `now`, at `hz`): a second after drops began or the count was last said, or
    /// whenever `force`d (the console closes); `None` when there is nothing to say
    /// yet.
    pub fn take_dropped(&mut self, now: u64, hz: u64, force: bool) -> Option<u64> {
        let due = self.said_at.is_some_and(|at| now.saturating_sub(at) >= hz);
        if self.dropped == 0 || !(force || due) {
            return None;
        }
        self.said_at = Some(now);
        Some(core::mem::take(&mut self.dropped))
    }

    fn refill(&mut self, now: u64, hz: u64) {
        let elapsed = now.saturating_sub(self.refilled_at);
        if self.tokens >= BURST {
            // Full: time passing earns nothing (the common case, one line now and then).
            self.refilled_at = now.max(self.refilled_at);
            return;
        }
        let earned = u128::from(elapsed) * u128::from(RATE) / u128::from(hz.max(1));
        if earned == 0 {
            return;
        }
        self.tokens = u64::try_from(earned).unwrap_or(u64::MAX).saturating_add(self.tokens).min(BURST);
        // The time those bytes took (rounded up, so nothing is earned twice); the rest
        // of a partial byte's time counts towards the next refill.
        let spent =
            u64::try_from((earned * u128::from(hz.max(1))).div_ceil(u128::from(RATE))).unwrap_or(elapsed);
        self.refilled_at += spent.min(elapsed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HZ: u64 = 62_500_000;

    fn text(n: usize) -> alloc::vec::Vec<u8> {
        alloc::vec![b'a'; n]
    }

    #[test]
    fn escaped_bytes_cost_what_they_take_on_the_wire() {
        let mut share = Share::new(0);
        let nuls = alloc::vec![0u8; BURST as usize];
        assert_eq!(share.admit(&nuls, 0, HZ), BURST as usize / 2, "^@ is two bytes");
        let mut share = Share::new(0);
        let high = alloc::vec![0xffu8; BURST as usize];
        assert_eq!(share.admit(&high, 0, HZ), BURST as usize / 4, "\\xff is four");
    }

    #[test]
    fn a_burst_then_the_rate() {
        let mut share = Share::new(0);
        assert_eq!(share.admit(&text(BURST as usize + 10), 0, HZ), BURST as usize);
        assert_eq!(share.take_dropped(0, HZ, false), None, "said a second later");
        // A tenth of a second later: a tenth of the rate.
        assert_eq!(share.admit(&text(100_000), HZ / 10, HZ), (RATE / 10) as usize);
        assert_eq!(share.take_dropped(HZ / 10, HZ, false), None);
        assert_eq!(share.admit(&text(10), HZ, HZ), 10);
        assert_eq!(share.take_dropped(HZ, HZ, false), Some(10 + 100_000 - RATE / 10));
        assert_eq!(share.take_dropped(HZ, HZ, false), None);
    }

    #[test]
    fn a_long_flood_gets_the_rate_and_no_more() {
        let mut share = Share::new(0);
        let mut sent = 0u64;
        // Ten seconds of 4 KiB writes every millisecond (4 MB/s offered).
        for ms in 0..10_000u64 {
            sent += share.admit(&text(4096), ms * HZ / 1000, HZ) as u64;
        }
        let most = BURST + 10 * RATE;
        assert!(sent <= most && sent >= most - 4096, "{sent} bytes of at most {most}");
    }

    #[test]
    fn counts_are_said_at_most_once_a_second() {
        let mut share = Share::new(0);
        let mut said = alloc::vec::Vec::new();
        let mut dropped = 0;
        // Three seconds of a flood, 4 KiB a millisecond.
        for ms in 0..3000u64 {
            let now = ms * HZ / 1000;
            dropped += 4096 - share.admit(&text(4096), now, HZ) as u64;
            if let Some(n) = share.take_dropped(now, HZ, false) {
                said.push((ms, n));
            }
        }
        assert!((2..=3).contains(&said.len()), "{said:?}");
        assert!(said.windows(2).all(|w| w[1].0 - w[0].0 >= 1000), "{said:?}");
        let rest = share.take_dropped(3 * HZ, HZ, true).unwrap_or(0);
        assert_eq!(said.iter().map(|s| s.1).sum::<u64>() + rest, dropped, "every byte counted once");
    }

    #[test]
    fn time_in_small_steps_is_not_lost() {
        let mut share = Share::new(0);
        share.admit(&text(BURST as usize), 0, HZ);
        // One counter tick at a time earns nothing per step, but adds up.
        for tick in 1..=HZ / 100 {
            share.refill(tick, HZ);
        }
        assert!((RATE / 100 - 1..=RATE / 100).contains(&share.tokens), "{}", share.tokens);
    }

    #[test]
    fn quiet_time_refills_no_more_than_the_burst() {
        let mut share = Share::new(0);
        share.admit(&text(BURST as usize), 0, HZ);
        assert_eq!(share.admit(&text(3 * BURST as usize), u64::MAX, HZ), BURST as usize);
        let forced = share.take_dropped(u64::MAX, HZ, true).unwrap();
        assert_eq!(forced, 2 * BURST);
    }
}
