//! The virtio-blk wire format (virtio 1.2 §5.2): feature bits, configuration layout,
//! request header, request types and status codes.

/// Feature: `size_max` holds the largest segment size.
pub const F_SIZE_MAX: u64 = 1 << 1;
/// Feature: `seg_max` holds the most segments per request.
pub const F_SEG_MAX: u64 = 1 << 2;
/// Feature: the disk geometry is in the configuration.
pub const F_GEOMETRY: u64 = 1 << 4;
/// Feature: the device is read-only.
pub const F_RO: u64 = 1 << 5;
/// Feature: `blk_size` holds the optimal block size.
pub const F_BLK_SIZE: u64 = 1 << 6;
/// Feature: the cache flush command exists.
pub const F_FLUSH: u64 = 1 << 9;
/// Feature: the topology is in the configuration.
pub const F_TOPOLOGY: u64 = 1 << 10;
/// Feature: discard commands exist.
pub const F_DISCARD: u64 = 1 << 13;
/// Feature: write-zeroes commands exist.
pub const F_WRITE_ZEROES: u64 = 1 << 14;

/// Configuration offset: capacity in 512-byte sectors (u64).
pub const CONFIG_CAPACITY: usize = 0;
/// Configuration offset: largest segment (u32, with [`F_SIZE_MAX`]).
pub const CONFIG_SIZE_MAX: usize = 8;
/// Configuration offset: most segments per request (u32, with [`F_SEG_MAX`]).
pub const CONFIG_SEG_MAX: usize = 12;
/// Configuration offset: block size (u32, with [`F_BLK_SIZE`]).
pub const CONFIG_BLK_SIZE: usize = 20;
/// Configuration offset: most sectors one discard segment covers (u32, with [`F_DISCARD`]).
pub const CONFIG_MAX_DISCARD_SECTORS: usize = 36;
/// Configuration offset: most segments of one discard request (u32, with [`F_DISCARD`]).
pub const CONFIG_MAX_DISCARD_SEG: usize = 40;
/// Configuration offset: discard alignment in sectors (u32, with [`F_DISCARD`]).
pub const CONFIG_DISCARD_SECTOR_ALIGNMENT: usize = 44;
/// Configuration offset: most sectors one write-zeroes segment covers (u32, with
/// [`F_WRITE_ZEROES`]).
pub const CONFIG_MAX_WRITE_ZEROES_SECTORS: usize = 48;
/// Configuration offset: most segments of one write-zeroes request (u32, with
/// [`F_WRITE_ZEROES`]).
pub const CONFIG_MAX_WRITE_ZEROES_SEG: usize = 52;
/// Configuration offset: whether write-zeroes may unmap (u8, with [`F_WRITE_ZEROES`]).
pub const CONFIG_WRITE_ZEROES_MAY_UNMAP: usize = 56;

/// Request type: read.
pub const T_IN: u32 = 0;
/// Request type: write.
pub const T_OUT: u32 = 1;
/// Request type: flush the write cache.
pub const T_FLUSH: u32 = 4;
/// Request type: read the device ID string.
pub const T_GET_ID: u32 = 8;
/// Request type: discard sectors (data: 16-byte discard segments).
pub const T_DISCARD: u32 = 11;
/// Request type: write zeroes to sectors (data: 16-byte segments, as for discard).
pub const T_WRITE_ZEROES: u32 = 13;

/// Status: success.
pub const S_OK: u8 = 0;
/// Status: I/O error.
pub const S_IOERR: u8 = 1;
/// Status: unsupported request.
pub const S_UNSUPP: u8 = 2;

/// The unit of `sector` in requests, whatever the block size.
pub const SECTOR_SIZE: usize = 512;
/// Bytes of the request header: type u32, reserved u32, sector u64.
pub const HEADER_SIZE: usize = 16;
/// Bytes of the device ID string (GET_ID).
pub const ID_BYTES: usize = 20;
