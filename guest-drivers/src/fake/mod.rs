//! Fakes for host tests: a [`FakeHal`] whose device addresses differ from the CPU's
//! (so a missing translation faults), a [`FakeTransport`] that keeps the register
//! state a device would, and a [`FakeQueueDevice`] that plays the device's side of a
//! split virtqueue over the same memory.
//!
//! Available under `cfg(test)` and, for other crates' tests, the `test-utils`
//! feature (host only: it uses `std`).

mod device;
mod hal;
mod transport;

pub use device::{read_phys, write_phys, Chain, FakeDesc, FakeQueueDevice};
pub use hal::{FakeHal, FAKE_PHYS_BIT};
pub use transport::{FakeQueueState, FakeState, FakeTransport, NotifyHook};
