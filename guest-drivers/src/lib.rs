//! no_std virtio front-end drivers for bare-metal guests: the virtio-mmio transport
//! (modern and legacy), the split virtqueue, and virtio-blk and virtio-console
//! drivers.
//!
//! # Layers
//!
//! - [`hal::Hal`]: DMA memory and address translation, supplied by the guest
//!   ([`hal::BumpHal`] for a guest with the MMU off or an identity map);
//! - [`transport::Transport`]: the device's registers;
//!   [`transport::mmio::MmioTransport`] implements it for virtio-mmio, every
//!   register access one plain 32-bit load or store (configuration fields: one
//!   access of the field's width), so any hypervisor can decode the trap;
//! - [`queue::VirtQueue`]: a split virtqueue with the five operations (`add_buf`,
//!   `kick`, `get_buf`, `disable_cb`, `enable_cb`, plus `enable_cb_delayed`),
//!   EVENT_IDX and INDIRECT_DESC;
//! - [`init`]: the initialisation sequence of virtio 1.2 §3.1.1;
//! - [`blk::VirtioBlk`] and [`console::VirtioConsole`]: the drivers.
//!
//! Every failure is an [`Error`] value; a device that breaks the protocol is reset
//! (so it lets go of the driver's memory) and the driver reports
//! [`Error::Broken`] from then on.
//!
//! # Use on a bare-metal guest
//!
//! On QEMU virt (and Sluice), virtio-mmio slot `n` is at `0x0a00_0000 + n * 0x200`
//! with interrupt SPI `16 + n`. With the MMU off, DMA memory can be a static pool:
//!
//! ```no_run
//! use guest_drivers::blk::VirtioBlk;
//! use guest_drivers::console::VirtioConsole;
//! use guest_drivers::hal::BumpHal;
//! use guest_drivers::transport::mmio::{MmioTransport, SLOT_SIZE};
//!
//! /// Rings, request headers and receive buffers: 14 pages for one blk and one
//! /// console.
//! #[repr(C, align(4096))]
//! struct DmaPool([u8; 32 * 4096]);
//! static mut DMA_POOL: DmaPool = DmaPool([0; 32 * 4096]);
//!
//! fn main() -> Result<(), guest_drivers::Error> {
//!     let pool = core::ptr::addr_of_mut!(DMA_POOL) as usize;
//!     // SAFETY: the pool is used for nothing else, and the MMU is off (identity).
//!     let hal = unsafe { BumpHal::new(pool, core::mem::size_of::<DmaPool>()) };
//!
//!     // SAFETY: slot 0 is a virtio-mmio device owned by this driver alone.
//!     let transport = unsafe { MmioTransport::new(0x0a00_0000) }?;
//!     let mut blk = VirtioBlk::new(transport, &hal)?;
//!     let mut sector = [0u8; 512];
//!     blk.read_blocks(0, &mut sector)?;
//!     let last = blk.capacity() - 1;
//!     blk.write_blocks(last, &sector)?;
//!     blk.flush()?;
//!
//!     // SAFETY: slot 1, likewise.
//!     let transport = unsafe { MmioTransport::new(0x0a00_0000 + SLOT_SIZE) }?;
//!     let mut console = VirtioConsole::new(transport, &hal)?;
//!     console.write(b"hello from virtio-console\n")?;
//!     let mut input = [0u8; 16];
//!     let n = console.read(&mut input)?; // 0 when nothing was typed
//!     console.write(&input[..n])?;
//!     Ok(())
//! }
//! ```
//!
//! The drivers wait by spinning on the used ring. To sleep instead, submit with
//! [`blk::VirtioBlk::submit_read`] (and friends), call
//! [`blk::VirtioBlk::enable_interrupts`] (false means "completions are already
//! here: poll again"), and in the SPI handler call
//! [`blk::VirtioBlk::ack_interrupt`] then [`blk::VirtioBlk::poll`].
//!
//! # Tests
//!
//! Host builds run the unit tests against the fakes in `fake` (a HAL whose device
//! addresses differ from the CPU's, a transport with a strict status machine, and the
//! device's side of a virtqueue); the `test-utils` feature exports them to other
//! crates' host tests.
#![no_std]
#![deny(unsafe_code)]

#[cfg(any(test, feature = "test-utils"))]
extern crate std;

pub mod blk;
pub mod console;
mod dma;
pub mod error;
#[cfg(any(test, feature = "test-utils"))]
pub mod fake;
pub mod features;
pub mod hal;
pub mod init;
pub mod mmio;
pub mod queue;
pub mod relax;
pub mod transport;

pub use error::{Error, Result};
pub use hal::{Hal, PhysAddr, PAGE_SIZE};
pub use queue::VirtQueue;
pub use transport::Transport;
