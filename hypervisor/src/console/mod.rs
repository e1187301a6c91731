//! Where guest console output goes.
//!
//! The emulated PL011s and virtio-consoles write through a [`ConsoleOutput`]; the
//! hypervisor's implementation forwards to the physical PL011 through the console
//! multiplexer ([`mux::ConsoleMux`]), which tags lines per VM, shows control
//! characters ([`escape`]), holds each VM to its share of the line ([`share`]) and
//! routes typed input ([`ring`] queues it); tests collect the bytes.

use alloc::boxed::Box;

pub mod escape;
pub mod mux;
pub mod ring;
pub mod share;

/// A sink for one guest's console output.
pub trait ConsoleOutput: Send {
    /// Writes `bytes`, in order, to the console; what the VM's share of it doesn't
    /// allow now is dropped (and counted).
    fn write(&mut self, bytes: &[u8]);

    /// Writes as many of `bytes` as the VM's share of the console allows now and
    /// returns how many (a prefix); the caller holds the rest for later. A sink
    /// without shares takes everything.
    fn offer(&mut self, bytes: &[u8]) -> usize {
        self.write(bytes);
        bytes.len()
    }
}

/// A boxed console sink.
pub type BoxedConsole = Box<dyn ConsoleOutput>;
