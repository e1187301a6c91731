//! Where guest console output goes.
//!
//! Emulated UARTs (and later virtio-console) write through a [`ConsoleOutput`]; the
//! hypervisor's implementation forwards to the physical PL011 (the console
//! multiplexer will tag lines per VM), tests collect the bytes.

use alloc::boxed::Box;

/// A sink for one guest's console output.
pub trait ConsoleOutput: Send {
    /// Writes `bytes`, in order, to the console.
    fn write(&mut self, bytes: &[u8]);
}

/// A boxed console sink.
pub type BoxedConsole = Box<dyn ConsoleOutput>;
