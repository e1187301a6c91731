//! A console sink that collects what a virtio-console (or PL011) model writes.

use std::sync::{Arc, Mutex};

use hypervisor::console::{BoxedConsole, ConsoleOutput};

/// Collected console output, shared between the device model's sink and the test.
#[derive(Debug, Clone, Default)]
pub struct ConsoleSink(Arc<Mutex<Vec<u8>>>);

impl ConsoleSink {
    /// An empty sink.
    pub fn new() -> Self {
        Self::default()
    }

    /// The boxed output to give a device model; it appends to this sink.
    pub fn output(&self) -> BoxedConsole {
        Box::new(Writer(self.0.clone()))
    }

    /// Everything written so far, emptying the sink.
    pub fn take(&self) -> Vec<u8> {
        std::mem::take(&mut *self.0.lock().expect("console sink"))
    }
}

struct Writer(Arc<Mutex<Vec<u8>>>);

impl ConsoleOutput for Writer {
    fn write(&mut self, bytes: &[u8]) {
        self.0.lock().expect("console sink").extend_from_slice(bytes);
    }
}
