//! Translation tables allocated on the hypervisor's heap.
//!
//! The hypervisor's heap is identity-mapped at EL2, so a table's address is also its
//! physical address: exactly what a table descriptor or VTTBR_EL2 holds. The tables
//! live as long as the value, which owns them.

use super::stage2::TableMemory;
use alloc::boxed::Box;
use alloc::vec::Vec;

/// One 4 KiB translation table.
#[repr(C, align(4096))]
struct Table([u64; 512]);

/// Tables owned by one VM.
#[derive(Default)]
pub struct HeapTables {
    tables: Vec<Box<Table>>,
}

impl HeapTables {
    /// No tables yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Index of the table at `pa`; panics if `pa` is not one of ours, which would be
    /// a bug in the table walker (it only follows descriptors it wrote).
    fn index(&self, pa: u64) -> usize {
        self.tables
            .iter()
            .position(|t| t.0.as_ptr() as u64 == pa)
            .expect("stage-2 walker followed a descriptor to a table it did not allocate")
    }
}

impl TableMemory for HeapTables {
    fn alloc_table(&mut self) -> Option<u64> {
        let table = Box::new(Table([0; 512]));
        let pa = table.0.as_ptr() as u64;
        self.tables.try_reserve(1).ok()?;
        self.tables.push(table);
        Some(pa)
    }

    fn table(&self, pa: u64) -> &[u64; 512] {
        &self.tables[self.index(pa)].0
    }

    fn table_mut(&mut self, pa: u64) -> &mut [u64; 512] {
        let i = self.index(pa);
        &mut self.tables[i].0
    }
}
