//! no_std virtio front-end drivers (MMIO transport, split virtqueue, blk, console)
//! for bare-metal guests. The virtio issue fills this crate; for now it holds the
//! register-access primitive every driver builds on.
#![no_std]
#![deny(unsafe_code)]

pub mod mmio;
