//! Naming the load/store instruction behind an abort the syndrome can't describe.
//!
//! When ESR_EL2.ISV is 0 Sluice refuses the access; the log line names the
//! instruction so the guest's author can see why (Arm ARM C4.1.66, "Loads and
//! Stores" encoding groups).

/// A short name for the load/store instruction `insn`, for log lines.
pub fn describe(insn: u32) -> &'static str {
    let bits = |hi: u32, lo: u32| (insn >> lo) & ((1 << (hi - lo + 1)) - 1);
    let load = bits(22, 22) == 1;
    let simd = bits(26, 26) == 1;
    if insn & 0xffff_ffe0 == 0xd50b_7420 {
        return "dc zva (zero a cache block)";
    }
    if bits(29, 27) == 0b101 {
        return match (bits(24, 23), load, simd) {
            (0b00, true, _) => "ldnp (load pair, non-temporal)",
            (0b00, false, _) => "stnp (store pair, non-temporal)",
            (0b01, true, _) => "ldp post-index (load pair with writeback)",
            (0b01, false, _) => "stp post-index (store pair with writeback)",
            (0b11, true, _) => "ldp pre-index (load pair with writeback)",
            (0b11, false, _) => "stp pre-index (store pair with writeback)",
            (_, true, false) => "ldp (load pair)",
            (_, false, false) => "stp (store pair)",
            (_, true, true) => "ldp (SIMD&FP load pair)",
            (_, false, true) => "stp (SIMD&FP store pair)",
        };
    }
    if bits(29, 24) == 0b00_1000 {
        return if load { "ldxr/ldaxr (load exclusive)" } else { "stxr/stlxr (store exclusive)" };
    }
    if bits(31, 31) == 0 && bits(29, 24) == 0b00_1100 {
        return if load { "ld1..ld4 (SIMD structure load)" } else { "st1..st4 (SIMD structure store)" };
    }
    if bits(29, 27) == 0b111 && bits(25, 24) == 0b00 {
        let store = bits(23, 22) == 0;
        return match (bits(21, 21), bits(11, 10), store) {
            (1, 0b00, _) => "ldadd/swp/cas family (atomic memory operation)",
            (0, 0b01, false) => "ldr post-index (load with writeback)",
            (0, 0b01, true) => "str post-index (store with writeback)",
            (0, 0b11, false) => "ldr pre-index (load with writeback)",
            (0, 0b11, true) => "str pre-index (store with writeback)",
            (_, _, _) if simd => "SIMD&FP load/store",
            (_, _, false) => "ldr (single register load)",
            (_, _, true) => "str (single register store)",
        };
    }
    if bits(29, 27) == 0b111 {
        return match (simd, bits(23, 22) == 0) {
            (true, _) => "SIMD&FP load/store",
            (false, true) => "str (single register store)",
            (false, false) => "ldr (single register load)",
        };
    }
    "not a recognised load/store"
}

#[cfg(test)]
mod tests {
    use super::describe;

    #[test]
    fn names_common_isv0_instructions() {
        assert_eq!(describe(0xa940_0c22), "ldp (load pair)"); // ldp x2, x3, [x1]
        assert_eq!(describe(0xa900_0c22), "stp (store pair)"); // stp x2, x3, [x1]
        assert_eq!(describe(0xa8c1_0c22), "ldp post-index (load pair with writeback)"); // ldp x2, x3, [x1], #16
        assert_eq!(describe(0xa9bf_7bfd), "stp pre-index (store pair with writeback)"); // stp x29, x30, [sp, #-16]!
        assert_eq!(describe(0xf840_8420), "ldr post-index (load with writeback)"); // ldr x0, [x1], #8
        assert_eq!(describe(0xb800_4c20), "str pre-index (store with writeback)"); // str w0, [x1, #4]!
        assert_eq!(describe(0xc85f_7c20), "ldxr/ldaxr (load exclusive)"); // ldxr x0, [x1]
        assert_eq!(describe(0x4c40_7020), "ld1..ld4 (SIMD structure load)"); // ld1 {v0.16b}, [x1]
        assert_eq!(describe(0xf820_0020), "ldadd/swp/cas family (atomic memory operation)"); // ldadd x0, x0, [x1]
        assert_eq!(describe(0xd50b_7420), "dc zva (zero a cache block)"); // dc zva, x0
        assert_eq!(describe(0xb940_0020), "ldr (single register load)"); // ldr w0, [x1]
        assert_eq!(describe(0xd503_201f), "not a recognised load/store"); // nop
    }
}
