//! The one error type of the crate: every failure is a value, never a panic.

use core::fmt;

/// What went wrong talking to a virtio device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// The MMIO slot's MagicValue is not "virt" (0x7472_6976): no virtio-mmio
    /// transport lives there (virtio 1.2 §4.2.2).
    BadMagic(u32),
    /// The MMIO Version register holds neither 1 (legacy) nor 2 (modern).
    UnsupportedVersion(u32),
    /// DeviceID is 0: the slot exists but holds no device (§4.2.2).
    NoDevice,
    /// The device is not of the type the driver drives.
    WrongDeviceType {
        /// The device ID the driver wanted.
        expected: u32,
        /// The device ID the slot reports.
        found: u32,
    },
    /// The device did not accept the driver's features: FEATURES_OK did not read back
    /// (§3.1.1 step 6), or a modern device did not offer VERSION_1.
    FeaturesRefused,
    /// The device did not read 0 back after a reset (§2.1.2).
    ResetTimeout,
    /// The queue cannot be set up: QueueNumMax is 0, or the queue is already live.
    QueueUnavailable,
    /// The transport cannot express the ring's addresses (a legacy QueuePFN needs a
    /// page-aligned, contiguous layout below 16 TiB).
    BadQueueAddress,
    /// The HAL could not provide DMA memory.
    NoMemory,
    /// Not enough free descriptors (or request slots) for the buffer; retry after
    /// `get_buf` returned some.
    QueueFull,
    /// An argument is out of range: an empty or zero-length buffer, a chain longer
    /// than the queue, a length that is not a whole number of sectors, ...
    InvalidParam,
    /// The device returned a used element whose id is not the head of a chain the
    /// driver made available and has not got back yet (§2.7.8). The queue is broken
    /// from then on.
    BadUsedId(u32),
    /// The device moved the used index further than the number of buffers it holds.
    /// The queue is broken from then on.
    BadUsedIndex(u16),
    /// An earlier error broke the queue or the device was reset after a fatal error;
    /// re-initialise the device.
    Broken,
    /// The device set DEVICE_NEEDS_RESET (§2.1.1); the driver reset it.
    DeviceNeedsReset,
    /// The request has not completed yet; ask again later.
    NotReady,
    /// A token that names no request in flight or completed.
    InvalidToken,
    /// The device completed the request with an I/O error status
    /// (VIRTIO_BLK_S_IOERR, §5.2.6).
    IoError,
    /// The device does not support the request (VIRTIO_BLK_S_UNSUPP), or the feature
    /// it needs was not negotiated.
    Unsupported,
    /// The device is read-only (VIRTIO_BLK_F_RO).
    ReadOnly,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadMagic(m) => write!(f, "bad virtio-mmio magic {m:#x}"),
            Self::UnsupportedVersion(v) => write!(f, "unsupported virtio-mmio version {v}"),
            Self::NoDevice => write!(f, "no device in this virtio-mmio slot"),
            Self::WrongDeviceType { expected, found } => {
                write!(f, "device id {found}, expected {expected}")
            }
            Self::FeaturesRefused => write!(f, "device refused the driver's features"),
            Self::ResetTimeout => write!(f, "device did not complete its reset"),
            Self::QueueUnavailable => write!(f, "virtqueue unavailable"),
            Self::BadQueueAddress => write!(f, "ring address not expressible by the transport"),
            Self::NoMemory => write!(f, "out of DMA memory"),
            Self::QueueFull => write!(f, "virtqueue full"),
            Self::InvalidParam => write!(f, "invalid parameter"),
            Self::BadUsedId(id) => write!(f, "device returned bogus used id {id}"),
            Self::BadUsedIndex(idx) => write!(f, "device moved the used index to {idx}, past its buffers"),
            Self::Broken => write!(f, "virtqueue or device broken"),
            Self::DeviceNeedsReset => write!(f, "device needs reset"),
            Self::NotReady => write!(f, "request not complete"),
            Self::InvalidToken => write!(f, "no such request"),
            Self::IoError => write!(f, "device reported an I/O error"),
            Self::Unsupported => write!(f, "unsupported by the device"),
            Self::ReadOnly => write!(f, "device is read-only"),
        }
    }
}

impl core::error::Error for Error {}

/// The crate's result type.
pub type Result<T = ()> = core::result::Result<T, Error>;
