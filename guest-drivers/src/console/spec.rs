//! The virtio-console wire format (virtio 1.2 §5.3): feature bits, configuration
//! layout, queue numbers.

/// Feature: `cols` and `rows` hold the console size.
pub const F_SIZE: u64 = 1 << 0;
/// Feature: several ports and a control queue (not used by this driver).
pub const F_MULTIPORT: u64 = 1 << 1;
/// Feature: writing `emerg_wr` prints one character, with no queue.
pub const F_EMERG_WRITE: u64 = 1 << 2;

/// Configuration offset: columns (u16).
pub const CONFIG_COLS: usize = 0;
/// Configuration offset: rows (u16).
pub const CONFIG_ROWS: usize = 2;
/// Configuration offset: most ports (u32, with [`F_MULTIPORT`]).
pub const CONFIG_MAX_NR_PORTS: usize = 4;
/// Configuration offset: emergency write (u32, with [`F_EMERG_WRITE`]).
pub const CONFIG_EMERG_WR: usize = 8;

/// Port 0's receive queue.
pub const RECEIVEQ: u16 = 0;
/// Port 0's transmit queue.
pub const TRANSMITQ: u16 = 1;
