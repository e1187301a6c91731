//! Device initialisation, the part every driver shares (virtio 1.2 §3.1.1).
//!
//! A driver calls [`negotiate`] (steps 1-6: reset, ACKNOWLEDGE, DRIVER, features,
//! FEATURES_OK), sets up its queues and configuration (step 7), then
//! [`driver_ok`] (step 8). If anything fails on the way it calls [`fail`].

use crate::error::{Error, Result};
use crate::features;
use crate::transport::{DeviceStatus, Transport};

/// Resets the device and negotiates features: the driver accepts the bits of
/// `supported` that the device offers (on a modern device VERSION_1 is required and
/// always accepted; on a legacy device only the low 32 bits exist and VERSION_1 is
/// not used). Returns the negotiated features.
///
/// A modern device then gets FEATURES_OK, which must read back. A legacy device has
/// no FEATURES_OK (§3.1.2 legacy note), so the step is skipped, as Linux does.
///
/// # Errors
///
/// [`Error::ResetTimeout`]; [`Error::FeaturesRefused`] when a modern device lacks
/// VERSION_1 or clears FEATURES_OK (the device is then marked FAILED).
pub fn negotiate<T: Transport + ?Sized>(transport: &mut T, supported: u64) -> Result<u64> {
    transport.reset()?;
    let mut status = DeviceStatus::ACKNOWLEDGE;
    transport.set_status(status);
    status |= DeviceStatus::DRIVER;
    transport.set_status(status);

    let offered = transport.read_device_features();
    let legacy = transport.is_legacy();
    let accepted = if legacy {
        offered & supported & u64::from(u32::MAX) & !features::VERSION_1
    } else {
        if offered & features::VERSION_1 == 0 {
            fail(transport);
            return Err(Error::FeaturesRefused);
        }
        offered & (supported | features::VERSION_1)
    };
    transport.write_driver_features(accepted);
    if !legacy {
        status |= DeviceStatus::FEATURES_OK;
        transport.set_status(status);
        if !transport.status().contains(DeviceStatus::FEATURES_OK) {
            fail(transport);
            return Err(Error::FeaturesRefused);
        }
    }
    Ok(accepted)
}

/// Step 8: the driver is ready; the device may now use the queues.
pub fn driver_ok<T: Transport + ?Sized>(transport: &mut T) {
    let status = transport.status();
    transport.set_status(status | DeviceStatus::DRIVER_OK);
}

/// Tells the device the driver gave up on it (sets FAILED).
pub fn fail<T: Transport + ?Sized>(transport: &mut T) {
    let status = transport.status();
    transport.set_status(status | DeviceStatus::FAILED);
}

/// Checks that the device is of type `expected`.
///
/// # Errors
///
/// [`Error::WrongDeviceType`].
pub fn expect_device<T: Transport + ?Sized>(transport: &T, expected: u32) -> Result {
    match transport.device_id() {
        found if found == expected => Ok(()),
        found => Err(Error::WrongDeviceType { expected, found }),
    }
}

/// Gives up on a device whose queues may be live: sets FAILED, then resets it so it
/// stops using any memory the driver gave it (§2.1.2), before that memory is freed.
pub fn abandon<T: Transport + ?Sized>(transport: &mut T) {
    fail(transport);
    let _ = transport.reset();
}
