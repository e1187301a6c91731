//! How much one call into a backend may do, so that every trap does a bounded
//! amount of work whatever a driver queued.
//!
//! A notify may find up to a queue's worth of chains, each of up to 256 descriptors
//! of up to 4 GiB (a hostile driver can point them all at the same RAM): done at once,
//! under the device's lock, that is minutes of copying during which the vCPU, any
//! other vCPU using the device, and console input for it get nowhere. So a backend stops when its
//! [`Budget`] runs out and says [`Progress::More`]; the transport remembers the queue,
//! and the VM goes on with it on its next exits, one budget per exit, in order
//! (`VirtioMmio::work_on_backlog`), with its EL2 timer set to make an exit soon
//! (later when the work [`Progress::Waiting`] for the console).

/// Bytes of data a backend moves in one call (it may finish the request it is in:
/// a block request is done whole, and is bounded by the disk's size).
pub const BYTES_PER_CALL: u64 = 64 * 1024;
/// Chains a backend takes from its queue in one call (each walk reads at most a
/// queue's worth of descriptors).
pub const CHAINS_PER_CALL: u32 = 64;

/// What is left of one call's allowance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    bytes: u64,
    chains: u32,
}

impl Budget {
    /// A full allowance for one call.
    pub const fn per_call() -> Self {
        Self { bytes: BYTES_PER_CALL, chains: CHAINS_PER_CALL }
    }

    /// Takes one chain from the allowance; false (taking nothing) when the call may
    /// not start another chain.
    pub fn take_chain(&mut self) -> bool {
        if self.chains == 0 || self.bytes == 0 {
            return false;
        }
        self.chains -= 1;
        true
    }

    /// Bytes the call may still move.
    pub fn bytes_left(&self) -> u64 {
        self.bytes
    }

    /// Counts `n` bytes moved (more than is left empties the allowance).
    pub fn spend_bytes(&mut self, n: u64) {
        self.bytes = self.bytes.saturating_sub(n);
    }
}

/// Whether a backend finished what its queue held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum Progress {
    /// Nothing is left: the queue is empty (as far as the backend saw).
    Done,
    /// The budget ran out with work left: call again.
    More,
    /// Work is left, but it waits for something outside the device (the VM's share
    /// of the console): call again, later.
    Waiting,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chains_and_bytes_run_out() {
        let mut budget = Budget::per_call();
        for _ in 0..CHAINS_PER_CALL {
            assert!(budget.take_chain());
        }
        assert!(!budget.take_chain());

        let mut budget = Budget::per_call();
        budget.spend_bytes(BYTES_PER_CALL - 1);
        assert_eq!(budget.bytes_left(), 1);
        assert!(budget.take_chain());
        budget.spend_bytes(u64::MAX);
        assert_eq!(budget.bytes_left(), 0);
        assert!(!budget.take_chain(), "no bytes left: no new chain");
    }
}
