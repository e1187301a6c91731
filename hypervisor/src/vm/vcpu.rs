//! A vCPU's power state. (Its registers as saved on a trap are
//! `arch::aarch64::trap_frame::TrapFrame`.)

/// Where a vCPU is in its PSCI life cycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VcpuPower {
    /// Not running; its physical CPU idles until a `CPU_ON` (or a VM restart).
    Off,
    /// Asked to leave the guest (its VM stops or restarts); becomes `Off` when its
    /// physical CPU has left the guest.
    Stopping,
    /// Started by `CPU_ON` (or the VM's start): its physical CPU enters the guest at
    /// `entry` with x0 = `context` next time it looks.
    StartPending {
        /// Entry point.
        entry: u64,
        /// Value for x0.
        context: u64,
    },
    /// In the guest.
    On,
}

impl VcpuPower {
    /// Whether PSCI reports the vCPU as on (AFFINITY_INFO, CPU_ON's ALREADY_ON).
    pub fn is_on(self) -> bool {
        !matches!(self, Self::Off)
    }
}
