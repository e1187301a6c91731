//! The architecture layer.
//!
//! The `aarch64` module holds pure decoders (host-tested) and, in the bare-metal
//! build only, the code that touches real registers.

pub mod aarch64;

pub use aarch64::esr::{self, DecodeError, MmioAccess, SysRegAccess, Trap};
pub use aarch64::inject::{self, GuestException, Injection};
