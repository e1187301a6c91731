//! The boot bundle: how `cargo xtask` hands a scenario to the hypervisor.
//!
//! The bundle is a flattened device tree (like U-Boot's FIT images), passed to QEMU
//! with `-initrd`; the hypervisor finds it through the host DTB's
//! `/chosen/linux,initrd-start`. `dtc -I dtb -O dts bundle.dtb` shows what is in it.
//!
//! ```text
//! / {
//!     compatible = "sluice,bundle-v1";
//!     log-level = "info";                  // optional: error, warn, info, debug, trace
//!     vm@0 {                               // one node per VM, in config order
//!         vm-name = "hello";            // (dtc reserves "name")
//!         cpus = <0>;                      // host CPU indices, in /cpus order
//!         memory-size = /bits/ 64 <size>;  // bytes, multiple of 2 MiB
//!         host-base = /bits/ 64 <pa>;      // optional: pin RAM at this host address
//!         kernel = [bytes];                // image, copied to kernel-addr
//!         kernel-addr = /bits/ 64 <ipa>;
//!         entry = /bits/ 64 <ipa>;         // first instruction, at EL1h
//!         dtb-addr = /bits/ 64 <ipa>;      // where the hypervisor writes the guest DTB
//!         initrd = [bytes];                // optional, copied to initrd-addr
//!         initrd-addr = /bits/ 64 <ipa>;
//!         bootargs = "console=ttyAMA0";    // optional
//!         virtio@0 {                       // one per virtio device, in config order:
//!             kind = "blk";                // device n sits in virtio-mmio slot n
//!             legacy;                      // optional: virtio-mmio version 1
//!             host-device = "sluice-0-0";  // blk on a host disk: its device's GET_ID
//!             disk-size = /bits/ 64 <n>;   // blk in RAM: bytes, a multiple of 512
//!             disk = [bytes];              // blk in RAM, optional: first bytes
//!             read-only;                   // blk, optional
//!             serial = "disk0";            // blk, optional: GET_ID's answer
//!         };                               // (kind = "console": no other property)
//!     };
//! };
//! ```
//!
//! Addresses are guest-physical; every 64-bit value is two big-endian cells.
//!
//! The tree's schema lives here once: [`spec`] is the typed form (a VM, a device)
//! with the rules a spec keeps, [`read`] reads a tree into checked specs (no_std,
//! over any device-tree reader: the hypervisor's), [`write`] writes specs as a tree
//! (feature `writer`: the tools). Both sides run the same checks, so the tools do
//! not write what the hypervisor would refuse, and the hypervisor re-checks all it
//! relies on anyway.

pub mod read;
pub mod spec;
#[cfg(feature = "writer")]
pub mod write;

/// `compatible` of the bundle's root node.
pub const COMPATIBLE: &str = "sluice,bundle-v1";
/// Root property: the hypervisor's log level.
pub const LOG_LEVEL: &str = "log-level";
/// Root property: [`TRACE_OFF`] turns the detailed trace off (absent: on).
pub const TRACE: &str = "trace";
/// Value of [`TRACE`]: only trap entry and return are timestamped (the exit
/// statistics), no other tracepoint and no ring of recent exits.
pub const TRACE_OFF: &str = "off";
/// Value of [`TRACE`]: every tracepoint (the default).
pub const TRACE_ON: &str = "on";
/// Name prefix of the VM nodes (`vm@0`, `vm@1`, ...).
pub const VM_NODE: &str = "vm";

/// VM property: its name, used in logs and console tags.
pub const VM_NAME: &str = "vm-name";
/// VM property: host CPU indices (u32 cells).
pub const VM_CPUS: &str = "cpus";
/// VM property: RAM size in bytes (u64).
pub const VM_MEMORY_SIZE: &str = "memory-size";
/// VM property: optional host physical base of the VM's RAM (u64).
pub const VM_HOST_BASE: &str = "host-base";
/// VM property: the kernel or bare-metal image bytes.
pub const VM_KERNEL: &str = "kernel";
/// VM property: guest-physical load address of the image (u64).
pub const VM_KERNEL_ADDR: &str = "kernel-addr";
/// VM property: guest-physical entry point (u64).
pub const VM_ENTRY: &str = "entry";
/// VM property: guest-physical address of the guest's DTB (u64).
pub const VM_DTB_ADDR: &str = "dtb-addr";
/// VM property: optional initrd bytes.
pub const VM_INITRD: &str = "initrd";
/// VM property: guest-physical load address of the initrd (u64).
pub const VM_INITRD_ADDR: &str = "initrd-addr";
/// VM property: optional kernel command line.
pub const VM_BOOTARGS: &str = "bootargs";

/// Name prefix of a VM's virtio device nodes (`virtio@0`, ...).
pub const DEVICE_NODE: &str = "virtio";
/// Device property: what it is, [`KIND_BLK`] or [`KIND_CONSOLE`].
pub const DEVICE_KIND: &str = "kind";
/// Value of [`DEVICE_KIND`]: virtio-blk over a RAM disk.
pub const KIND_BLK: &str = "blk";
/// Value of [`DEVICE_KIND`]: virtio-console on the shared UART.
pub const KIND_CONSOLE: &str = "console";
/// Console property: the name of the channel that joins this console to another
/// VM's console with the same name (without it, the console is on the shared UART).
pub const CONSOLE_CHANNEL: &str = "channel";
/// Device property (empty): use the legacy virtio-mmio interface (version 1).
pub const DEVICE_LEGACY: &str = "legacy";
/// Block device property: the ID (`GET_ID`) of the machine's own virtio-blk device
/// that holds the disk; without it, the disk is a RAM disk of `disk-size` bytes.
pub const DISK_HOST_DEVICE: &str = "host-device";
/// Block device property: the disk's size in bytes (u64).
pub const DISK_SIZE: &str = "disk-size";
/// Block device property: the disk's initial contents (at most `disk-size` bytes).
pub const DISK: &str = "disk";
/// Block device property (empty): writes are refused.
pub const DISK_READ_ONLY: &str = "read-only";
/// Block device property: the serial number `GET_ID` returns.
pub const DISK_SERIAL: &str = "serial";
/// Longest serial number (virtio-blk's `GET_ID` buffer).
pub const MAX_SERIAL_LEN: usize = 20;
/// Bytes per disk sector.
pub const SECTOR_SIZE: u64 = 512;

/// Largest guest DTB the hypervisor writes; the tools reserve this much at `dtb-addr`.
pub const GUEST_DTB_MAX_SIZE: u64 = 64 * 1024;
/// Granule of VM RAM sizes and host bases (one stage-2 block).
pub const MEMORY_GRANULE: u64 = 2 * 1024 * 1024;
/// Most VMs one bundle may hold (each has a bit in the exit status).
pub const MAX_VMS: usize = 7;
/// Most host CPUs Sluice drives (it has a boot and a trap stack for each); the
/// tools refuse a machine with more.
pub const MAX_HOST_CPUS: usize = 8;
