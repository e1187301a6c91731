//! EL2 stacks: one to boot on, and one per CPU for the trap path.
#![allow(unsafe_code)]

/// Bytes in each stack.
pub const STACK_SIZE: usize = 64 * 1024;
/// Most CPUs Sluice drives.
pub const MAX_CPUS: usize = 8;

/// A 16-byte aligned stack.
#[repr(C, align(16))]
pub struct Stack(pub [u8; STACK_SIZE]);

/// The stack the boot CPU initialises on; abandoned when it enters its first guest.
#[no_mangle]
pub static mut BOOT_STACK: Stack = Stack([0; STACK_SIZE]);

/// Each CPU's trap stack: SP_EL2 is at its top whenever a guest runs.
pub static mut TRAP_STACKS: [Stack; MAX_CPUS] = [const { Stack([0; STACK_SIZE]) }; MAX_CPUS];
