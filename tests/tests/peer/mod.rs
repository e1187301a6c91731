//! Adapters that let rcore-os' `virtio-drivers` (a front-end nobody here wrote)
//! drive Sluice's device models: its [`Hal`](virtio_drivers::Hal) over a shared
//! region ([`hal`]), and its [`Transport`](virtio_drivers::transport::Transport)
//! trait implemented register by register over a slot ([`transport`]), making the
//! same accesses its own `MmioTransport` makes.

pub mod hal;
pub mod transport;
