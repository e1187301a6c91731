//! A cheap RAM test: one word per 4 KiB page over the RAM the guest does not use.
//!
//! The pages run from the end of the image (its .bss and stack included) to 2 MiB below
//! the end of RAM (where the tools put the DTB), skipping any page that overlaps a
//! reserved range (the DTB and the initrd wherever the loader put them: plain QEMU puts
//! the DTB in the middle of RAM). Every page gets a word that depends on its address;
//! only then are they all read back, so two addresses that reach the same memory are
//! caught as well as memory that does not hold a value.

use platform::Region;

/// The stride of the test.
pub const PAGE_SIZE: u64 = 4096;
/// The top of RAM left alone (the DTB area of Sluice's guests).
pub const TOP_RESERVE: u64 = 2 * 1024 * 1024;

/// The page-aligned addresses the test writes, in ascending order.
///
/// `ram` is the RAM range that holds the image, `image_end` one past the image's last
/// byte, `reserved` the ranges to keep off.
pub fn pages(ram: Region, image_end: u64, reserved: &[Region]) -> impl Iterator<Item = u64> + '_ {
    let ram_end = ram.end().unwrap_or(u64::MAX);
    let start = image_end.max(ram.base).next_multiple_of(PAGE_SIZE);
    let end = ram_end.saturating_sub(TOP_RESERVE) & !(PAGE_SIZE - 1);
    (start..end.max(start)).step_by(PAGE_SIZE as usize).filter(move |&page| {
        let page = Region::new(page, PAGE_SIZE);
        !reserved.iter().any(|r| r.overlaps(&page))
    })
}

/// The word written at `addr`: differs between any two addresses and from the
/// address itself, and has both 0 and 1 bits in each byte for most addresses.
pub const fn pattern(addr: u64) -> u64 {
    (addr ^ 0xa5a5_5a5a_c3c3_3c3c).rotate_left(17)
}

/// A word that did not read back as written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mismatch {
    /// Where.
    pub addr: u64,
    /// What was written.
    pub expected: u64,
    /// What came back.
    pub found: u64,
}

#[cfg(bare_metal)]
pub use self::run::test_free_ram;

#[cfg(bare_metal)]
#[allow(unsafe_code)]
mod run {
    use super::{pages, pattern, Mismatch};
    use crate::dtb::BootInfo;
    use crate::image;

    /// Tests the free RAM around the image that `info` describes; returns the number
    /// of pages tested.
    ///
    /// # Errors
    ///
    /// The first word that did not read back as written.
    pub fn test_free_ram(info: &BootInfo<'_>) -> Result<usize, Mismatch> {
        let Some(ram) = info.ram_holding(image::start()) else {
            return Ok(0);
        };
        let mut reserved = [info.dtb; 2];
        let reserved = match info.initrd {
            Some(initrd) => {
                reserved[1] = initrd;
                &reserved[..]
            }
            None => &reserved[..1],
        };
        let each = || pages(ram, image::end(), reserved);
        for page in each() {
            // SAFETY: `page` is 8-byte aligned RAM of this guest beyond its image,
            // .bss and stack and outside the DTB and initrd: nothing Rust uses.
            unsafe { core::ptr::write_volatile(page as *mut u64, pattern(page)) };
        }
        let mut count = 0;
        for page in each() {
            // SAFETY: as above; the word was written by the loop before.
            let found = unsafe { core::ptr::read_volatile(page as *const u64) };
            if found != pattern(page) {
                return Err(Mismatch { addr: page, expected: pattern(page), found });
            }
            count += 1;
        }
        Ok(count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1024 * 1024;
    const RAM: Region = Region::new(0x4000_0000, 64 * MIB);

    #[test]
    fn covers_image_end_to_two_mib_below_ram_end() {
        let image_end = 0x4022_3000;
        let all: Vec<u64> = pages(RAM, image_end, &[]).collect();
        assert_eq!(all.first(), Some(&0x4022_3000));
        assert_eq!(all.last(), Some(&(0x4400_0000 - TOP_RESERVE - PAGE_SIZE)));
        assert_eq!(all.len() as u64, (0x43e0_0000 - 0x4022_3000) / PAGE_SIZE);
        assert!(all.windows(2).all(|w| w[1] - w[0] == PAGE_SIZE));
    }

    #[test]
    fn rounds_an_unaligned_image_end_up() {
        assert_eq!(pages(RAM, 0x4022_3001, &[]).next(), Some(0x4022_4000));
    }

    #[test]
    fn skips_pages_that_overlap_reserved_ranges() {
        // Plain QEMU with -m 64M puts the DTB at 0x4200_0000 (1 MiB, by its header).
        let dtb = Region::new(0x4200_0000, 0x10_0000);
        let initrd = Region::new(0x4300_0800, 0x1000); // straddles two pages
        let with: Vec<u64> = pages(RAM, 0x4030_0000, &[dtb, initrd]).collect();
        let without = pages(RAM, 0x4030_0000, &[]).count();
        assert_eq!(with.len(), without - 256 - 2);
        assert!(!with.iter().any(|&p| dtb.contains(p)));
        assert!(!with.contains(&0x4300_0000) && !with.contains(&0x4300_1000));
        assert!(with.contains(&0x4300_2000) && with.contains(&0x41ff_f000));
    }

    #[test]
    fn tiny_or_full_ram_gives_no_pages() {
        let small = Region::new(0x4000_0000, 2 * MIB);
        assert_eq!(pages(small, 0x4020_0000, &[]).count(), 0);
        assert_eq!(pages(RAM, 0x4400_0000, &[]).count(), 0);
        // An image end below the range starts the test at the range's base.
        assert_eq!(pages(RAM, 0x1000, &[]).next(), Some(RAM.base));
    }

    #[test]
    fn pattern_differs_from_neighbours_and_address() {
        let a = 0x4022_3000;
        assert_ne!(pattern(a), pattern(a + PAGE_SIZE));
        assert_ne!(pattern(a), a);
    }
}
