//! EL2 stacks: per CPU, one to start on and one for the trap path.
#![allow(unsafe_code)]

/// Bytes in each stack.
pub const STACK_SIZE: usize = 64 * 1024;
/// Most CPUs Sluice drives.
pub const MAX_CPUS: usize = platform::bundle::MAX_HOST_CPUS;

/// A 16-byte aligned stack.
#[repr(C, align(16))]
pub struct Stack(pub [u8; STACK_SIZE]);

/// The stacks CPUs start on (the boot CPU takes the first); each is abandoned when
/// its CPU enters its first guest.
#[no_mangle]
pub static mut BOOT_STACKS: [Stack; MAX_CPUS] = [const { Stack([0; STACK_SIZE]) }; MAX_CPUS];

/// Each CPU's trap stack: SP_EL2 is at its top whenever a guest runs.
pub static mut TRAP_STACKS: [Stack; MAX_CPUS] = [const { Stack([0; STACK_SIZE]) }; MAX_CPUS];

/// Top of CPU `cpu`'s trap stack.
pub fn trap_stack_top(cpu: usize) -> usize {
    core::ptr::addr_of!(TRAP_STACKS) as usize + (cpu + 1) * STACK_SIZE
}
