//! The host DTB reader, `read_host_dtb`, and the structural check every DTB goes
//! through first, `fdt_check::check`, on any bytes (the seeds in
//! `corpus/host_dtb/` are QEMU virt's DTB and one shaped like it).
//!
//! Invariants: nothing panics, error messages included; what `fdt_check`'s
//! documentation promises holds: once it accepts a blob, `Fdt::new`,
//! `find_node("/")`, `all_nodes`, `find_compatible`, and on every node
//! `properties`, `property`, `children`, `reg`, `cell_sizes` and `compatible`, and
//! on every property `as_str` and `as_usize`, run without panicking; a host DTB
//! that reads has RAM, CPUs and a UART, and the UART's INTID, if any, is an SPI.
#![no_main]

use fdt::node::FdtNode;
use fdt::Fdt;
use hypervisor::fdt_check;
use hypervisor::host::{read_host_dtb, HostError};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    sluice_fuzz::init_logging();
    let checked = fdt_check::check(data);
    if let Err(e) = checked {
        assert!(!e.to_string().is_empty());
    } else {
        walk_everything(data);
    }

    // `read_host_dtb` keeps the DTB for the life of the hypervisor: give it an
    // exact-size copy (so AddressSanitizer sees any read past it) for as long as
    // the result lives, then take the copy back.
    let copy: &'static mut [u8] = Box::leak(data.to_vec().into_boxed_slice());
    let ptr: *mut [u8] = copy;
    {
        // SAFETY: `ptr` comes from `Box::leak` just above and nothing has written
        // through it since; the shared reference lives only in this block.
        let blob: &'static [u8] = unsafe { &*ptr };
        match read_host_dtb(blob) {
            Ok(host) => {
                assert_eq!(checked, Ok(()));
                assert!(!host.ram.is_empty() && host.ram.iter().all(|r| r.size > 0));
                assert!(!host.cpus.is_empty());
                assert!(host.uart_intid.is_none_or(|intid| (32..1020).contains(&intid)), "{host:?}");
                if let Some(bundle) = host.bundle {
                    assert!(bundle.size > 0);
                }
            }
            Err(e) => {
                let message = e.to_string();
                assert!(message.starts_with("host DTB: "), "{message:?}");
                if let HostError::Malformed(fdt) = e {
                    assert_eq!(checked, Err(fdt));
                }
            }
        }
    }
    // SAFETY: the block above ended, and with it every reference into the copy
    // (the `HostInfo` and its strings were dropped there); `ptr` is the whole
    // leaked box.
    drop(unsafe { Box::from_raw(ptr) });
});

/// Everything `fdt_check` says is safe once it accepted the blob.
fn walk_everything(data: &[u8]) {
    let fdt = Fdt::new(data).expect("fdt_check accepted a blob Fdt::new refuses");
    let root = fdt.find_node("/").expect("fdt_check accepted a blob without a root");
    visit(root);
    let mut count = 0usize;
    for node in fdt.all_nodes() {
        visit(node);
        count += 1;
    }
    assert!(count >= 1);
    let _ = fdt.find_compatible(&["arm,pl011", "arm,gic-v3", "virtio,mmio"]);
}

fn visit(node: FdtNode<'_, '_>) {
    let _ = node.name;
    for property in node.properties() {
        let _ = (property.name, property.as_str(), property.as_usize());
    }
    for name in ["reg", "compatible", "#address-cells", "status", ""] {
        if let Some(property) = node.property(name) {
            let _ = (property.as_str(), property.as_usize());
        }
    }
    let sizes = node.cell_sizes();
    let _ = (sizes.address_cells, sizes.size_cells);
    if let Some(reg) = node.reg() {
        for region in reg {
            let _ = (region.starting_address, region.size);
        }
    }
    if let Some(compatible) = node.compatible() {
        let _ = compatible.all().count();
    }
    for child in node.children() {
        let _ = child.name;
        let _ = child.properties().count();
    }
}
