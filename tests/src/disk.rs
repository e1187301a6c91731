//! The emulated disk behind a virtio-blk model, and the data patterns tests write.

use hypervisor::mm::guest_memory::GuestMemory;

/// Bytes per sector.
pub const SECTOR: usize = 512;

/// A RAM disk: memory whose addresses are byte offsets into the disk, as
/// `hypervisor::devices::virtio::blk::Blk` takes it. The test keeps a view to check
/// what reached the disk, independently of any driver.
#[derive(Debug, Clone)]
pub struct Disk {
    mem: GuestMemory,
    sectors: u64,
}

impl Disk {
    /// A zeroed disk of `sectors` sectors. Its memory is leaked: a test is short.
    pub fn new(sectors: u64) -> Self {
        let bytes = vec![0u8; sectors as usize * SECTOR].into_boxed_slice();
        Self { mem: GuestMemory::from_static(0, Box::leak(bytes)), sectors }
    }

    /// A disk whose sector `n` holds `pattern(n, 512)`.
    pub fn patterned(sectors: u64) -> Self {
        let disk = Self::new(sectors);
        for n in 0..sectors {
            disk.write(n, &pattern(n, SECTOR));
        }
        disk
    }

    /// Capacity in sectors.
    pub fn sectors(&self) -> u64 {
        self.sectors
    }

    /// The memory to build the device model with (another view of the same disk).
    pub fn memory(&self) -> GuestMemory {
        self.mem.clone()
    }

    /// `count` sectors from `sector`, as they are on the disk.
    pub fn read(&self, sector: u64, count: usize) -> Vec<u8> {
        let mut out = vec![0; count * SECTOR];
        self.mem.read(sector * SECTOR as u64, &mut out).expect("inside the disk");
        out
    }

    /// Puts `data` on the disk at `sector`, behind the device's back.
    pub fn write(&self, sector: u64, data: &[u8]) {
        self.mem.write(sector * SECTOR as u64, data).expect("inside the disk");
    }
}

/// `len` deterministic bytes that differ with `seed` (and within a sector, so a
/// shifted copy shows).
pub fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0x2545_f491_4f6c_dd1d;
    (0..len)
        .map(|_| {
            // xorshift64
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}
