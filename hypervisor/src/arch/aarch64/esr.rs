//! Decoding ESR_EL2 syndromes into what the guest tried to do.
//!
//! Pure functions over register values, so they are tested on the host with
//! syndromes built from the Arm ARM (DDI 0487, D24.2.40 "ESR_EL2"); only the trap
//! entry reads the real registers.

/// Exception classes Sluice handles (ESR_EL2.EC, bits [31:26]).
pub mod ec {
    /// Unknown reason.
    pub const UNKNOWN: u8 = 0x00;
    /// Trapped WFI or WFE.
    pub const WFX: u8 = 0x01;
    /// HVC executed in AArch64 state.
    pub const HVC64: u8 = 0x16;
    /// SMC executed in AArch64 state (trapped by HCR_EL2.TSC).
    pub const SMC64: u8 = 0x17;
    /// Trapped MSR, MRS or system instruction in AArch64 state.
    pub const SYS64: u8 = 0x18;
    /// Instruction abort from a lower exception level.
    pub const IABT_LOWER: u8 = 0x20;
    /// Data abort from a lower exception level.
    pub const DABT_LOWER: u8 = 0x24;
}

/// Exception class of a syndrome.
pub const fn exception_class(esr: u64) -> u8 {
    ((esr >> 26) & 0x3f) as u8
}

/// Instruction-specific syndrome (ESR_EL2.ISS, bits [24:0]).
pub const fn iss(esr: u64) -> u32 {
    (esr & 0x1ff_ffff) as u32
}

/// Whether the trapped instruction was 32 bits long (ESR_EL2.IL).
pub const fn is_32bit_instruction(esr: u64) -> bool {
    esr & (1 << 25) != 0
}

/// Why a vCPU left the guest, decoded from ESR_EL2 and the fault address registers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trap {
    /// A data abort at stage 2: an MMIO access if it decoded.
    DataAbort(Result<MmioAccess, DecodeError>),
    /// An instruction fetch that faulted at stage 2 (outside the guest's RAM).
    InstructionAbort {
        /// Guest virtual address of the fetch (FAR_EL2).
        far: u64,
        /// Guest-physical address of the fetch, when HPFAR_EL2 holds it.
        ipa: Option<u64>,
        /// Fault status code (IFSC).
        fsc: u8,
    },
    /// `HVC #imm`.
    Hvc {
        /// The immediate.
        imm: u16,
    },
    /// `SMC #imm`, trapped by HCR_EL2.TSC.
    Smc {
        /// The immediate.
        imm: u16,
    },
    /// WFI, WFE, WFIT or WFET.
    Wfx(WfxKind),
    /// A trapped system register access.
    SysReg(SysRegAccess),
    /// Anything else, by exception class.
    Other {
        /// ESR_EL2.EC.
        ec: u8,
    },
}

/// Which wait instruction trapped (ISS.TI).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WfxKind {
    /// Wait for interrupt.
    Wfi,
    /// Wait for event.
    Wfe,
    /// WFI with timeout.
    Wfit,
    /// WFE with timeout.
    Wfet,
}

/// Decodes any trap from a lower exception level.
pub fn decode_trap(esr: u64, far: u64, hpfar: u64) -> Trap {
    let iss = iss(esr);
    match exception_class(esr) {
        ec::DABT_LOWER => Trap::DataAbort(decode_data_abort(esr, far, hpfar)),
        ec::IABT_LOWER => {
            let fsc = (iss & 0x3f) as u8;
            let ipa = hpfar_valid(fsc, iss & (1 << 7) != 0).then(|| fault_ipa(far, hpfar));
            Trap::InstructionAbort { far, ipa, fsc }
        }
        ec::HVC64 => Trap::Hvc { imm: iss as u16 },
        ec::SMC64 => Trap::Smc { imm: iss as u16 },
        ec::WFX => Trap::Wfx(match iss & 0b11 {
            0 => WfxKind::Wfi,
            1 => WfxKind::Wfe,
            2 => WfxKind::Wfit,
            _ => WfxKind::Wfet,
        }),
        ec::SYS64 => Trap::SysReg(decode_sysreg(esr)),
        ec => Trap::Other { ec },
    }
}

/// Width of one MMIO access.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum AccessWidth {
    /// 8 bits.
    Byte = 1,
    /// 16 bits.
    Half = 2,
    /// 32 bits.
    Word = 4,
    /// 64 bits.
    Double = 8,
}

impl AccessWidth {
    /// Number of bytes accessed.
    pub const fn bytes(self) -> u64 {
        self as u64
    }

    /// The width of an access of `bytes` bytes, if it is 1, 2, 4 or 8.
    pub const fn from_bytes(bytes: u64) -> Option<Self> {
        match bytes {
            1 => Some(Self::Byte),
            2 => Some(Self::Half),
            4 => Some(Self::Word),
            8 => Some(Self::Double),
            _ => None,
        }
    }

    /// Mask of the bits an access of this width carries.
    pub const fn mask(self) -> u64 {
        match self {
            Self::Double => u64::MAX,
            w => (1u64 << (w.bytes() * 8)) - 1,
        }
    }
}

/// A decoded guest load or store to an address with no RAM behind it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MmioAccess {
    /// Guest-physical address accessed.
    pub ipa: u64,
    /// Access size.
    pub width: AccessWidth,
    /// True for a store.
    pub write: bool,
    /// Transfer register number; 31 means XZR/WZR.
    pub reg: u8,
    /// A load that sign-extends its value (LDRSB, LDRSH, LDRSW).
    pub sign_extend: bool,
    /// The register is 64 bits wide (Xt rather than Wt).
    pub reg64: bool,
    /// Load-acquire or store-release semantics.
    pub acquire_release: bool,
}

impl MmioAccess {
    /// The value a load leaves in its register, from the `raw` value the device returned.
    ///
    /// The value is cut to the access width, sign-extended when the instruction asks
    /// for it, and cut again to 32 bits for a W register (Arm ARM C6.2, LDRSB etc.).
    pub fn load_result(&self, raw: u64) -> u64 {
        let bits = self.width.bytes() * 8;
        let mut value = raw & self.width.mask();
        if self.sign_extend && bits < 64 && value & (1 << (bits - 1)) != 0 {
            value |= !self.width.mask();
        }
        if !self.reg64 {
            value &= 0xffff_ffff;
        }
        value
    }

    /// The value a store writes, from the transfer register's content.
    pub fn store_value(&self, reg_value: u64) -> u64 {
        reg_value & self.width.mask()
    }
}

/// Why a data abort could not be turned into an [`MmioAccess`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecodeError {
    /// The syndrome does not describe the access (ISV = 0): a load/store pair, a
    /// writeback addressing mode, a SIMD or atomic access, and the like.
    NoSyndrome {
        /// Faulting guest-physical address.
        ipa: u64,
        /// True when the access was a write.
        write: bool,
    },
    /// The guest's own stage-1 table walk touched memory it doesn't have.
    TableWalk {
        /// Guest-physical address of the walk.
        ipa: u64,
    },
    /// A cache maintenance instruction on an address without RAM.
    CacheMaintenance {
        /// Guest-physical address of the operation.
        ipa: u64,
    },
    /// An external abort or another fault that is not a missing stage-2 mapping.
    Unexpected {
        /// Data fault status code (DFSC).
        dfsc: u8,
        /// The fault address, when known.
        far: Option<u64>,
    },
}

/// Decodes a data abort from a lower EL (EC 0x24) into an MMIO access.
///
/// The guest-physical address comes from HPFAR_EL2 (page) and FAR_EL2 (offset in
/// the page), as the Arm ARM requires for stage-2 faults (D8.13).
///
/// # Errors
///
/// A [`DecodeError`] says why the abort is not a decodable MMIO access; the caller
/// refuses it with an abort injected into the guest.
pub fn decode_data_abort(esr: u64, far: u64, hpfar: u64) -> Result<MmioAccess, DecodeError> {
    let iss = iss(esr);
    let dfsc = (iss & 0x3f) as u8;
    let s1ptw = iss & (1 << 7) != 0;
    let fnv = iss & (1 << 10) != 0;
    if !hpfar_valid(dfsc, s1ptw) {
        return Err(DecodeError::Unexpected { dfsc, far: (!fnv).then_some(far) });
    }
    let ipa = fault_ipa(far, hpfar);
    if s1ptw {
        return Err(DecodeError::TableWalk { ipa });
    }
    if iss & (1 << 8) != 0 {
        return Err(DecodeError::CacheMaintenance { ipa });
    }
    let write = iss & (1 << 6) != 0;
    if iss & (1 << 24) == 0 {
        return Err(DecodeError::NoSyndrome { ipa, write });
    }
    let width = match (iss >> 22) & 0b11 {
        0 => AccessWidth::Byte,
        1 => AccessWidth::Half,
        2 => AccessWidth::Word,
        _ => AccessWidth::Double,
    };
    Ok(MmioAccess {
        ipa,
        width,
        write,
        reg: ((iss >> 16) & 0x1f) as u8,
        sign_extend: iss & (1 << 21) != 0,
        reg64: iss & (1 << 15) != 0,
        acquire_release: iss & (1 << 14) != 0,
    })
}

/// Whether HPFAR_EL2 holds the faulting IPA: stage-2 translation, access flag and
/// permission faults, and any stage-2 fault on a stage-1 table walk (Arm ARM D24.2.78).
fn hpfar_valid(fsc: u8, s1ptw: bool) -> bool {
    let translation_or_access_or_permission = matches!(fsc & 0b11_1100, 0b00_0100 | 0b00_1000 | 0b00_1100);
    let address_size = fsc & 0b11_1100 == 0;
    translation_or_access_or_permission || address_size || s1ptw
}

/// Guest-physical fault address: HPFAR_EL2.FIPA holds IPA[51:12] in bits [43:4].
fn fault_ipa(far: u64, hpfar: u64) -> u64 {
    ((hpfar & 0x0000_0fff_ffff_fff0) << 8) | (far & 0xfff)
}

/// A trapped MRS, MSR or system instruction (EC 0x18).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SysRegAccess {
    /// The register, by its encoding.
    pub reg: SysReg,
    /// Transfer register; 31 means XZR.
    pub rt: u8,
    /// True for MRS (a read), false for MSR.
    pub read: bool,
}

/// A system register encoding: `S<op0>_<op1>_C<crn>_C<crm>_<op2>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct SysReg {
    /// op0.
    pub op0: u8,
    /// op1.
    pub op1: u8,
    /// CRn.
    pub crn: u8,
    /// CRm.
    pub crm: u8,
    /// op2.
    pub op2: u8,
}

impl SysReg {
    /// Names a register by its encoding.
    pub const fn new(op0: u8, op1: u8, crn: u8, crm: u8, op2: u8) -> Self {
        Self { op0, op1, crn, crm, op2 }
    }
}

impl core::fmt::Display for SysReg {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "S{}_{}_C{}_C{}_{}", self.op0, self.op1, self.crn, self.crm, self.op2)
    }
}

/// Decodes the ISS of a trapped system register access (Arm ARM D24.2.40, EC 0x18).
pub fn decode_sysreg(esr: u64) -> SysRegAccess {
    let iss = iss(esr);
    let field = |shift: u32, bits: u32| ((iss >> shift) & ((1 << bits) - 1)) as u8;
    SysRegAccess {
        reg: SysReg::new(field(20, 2), field(14, 3), field(10, 4), field(1, 4), field(17, 3)),
        rt: field(5, 5),
        read: iss & 1 != 0,
    }
}

#[cfg(test)]
// Syndromes spell out every field, zeros included, as the Arm ARM lists them.
#[allow(clippy::identity_op)]
mod tests {
    use super::*;

    const EC_DABT: u64 = (ec::DABT_LOWER as u64) << 26;
    const IL: u64 = 1 << 25;
    const ISV: u64 = 1 << 24;
    /// Translation fault, level 2.
    const DFSC_TRANS_L2: u64 = 0b00_0110;

    /// A data abort syndrome with a valid instruction syndrome.
    fn dabt(sas: u64, sse: bool, srt: u64, sf: bool, ar: bool, wnr: bool) -> u64 {
        EC_DABT
            | IL
            | ISV
            | (sas << 22)
            | ((sse as u64) << 21)
            | (srt << 16)
            | ((sf as u64) << 15)
            | ((ar as u64) << 14)
            | ((wnr as u64) << 6)
            | DFSC_TRANS_L2
    }

    /// HPFAR_EL2 for a fault at `ipa`.
    fn hpfar(ipa: u64) -> u64 {
        (ipa >> 12) << 4
    }

    #[test]
    fn decodes_a_32bit_load_from_a_literal_syndrome() {
        // ldr w1, [x0] at 0x0900_0018: EC 0x24, IL, ISV, SAS=2, SRT=1, DFSC=6.
        let esr = 0x9381_0006;
        let access = decode_data_abort(esr, 0xffff_0000_0000_0018, hpfar(0x0900_0000)).unwrap();
        assert_eq!(
            access,
            MmioAccess {
                ipa: 0x0900_0018,
                width: AccessWidth::Word,
                write: false,
                reg: 1,
                sign_extend: false,
                reg64: false,
                acquire_release: false,
            }
        );
    }

    #[test]
    fn decodes_every_width_and_direction() {
        let widths = [AccessWidth::Byte, AccessWidth::Half, AccessWidth::Word, AccessWidth::Double];
        for (sas, width) in widths.into_iter().enumerate() {
            for write in [false, true] {
                let esr = dabt(sas as u64, false, 7, sas == 3, false, write);
                let a = decode_data_abort(esr, 0x1234, hpfar(0x0a00_0000)).unwrap();
                assert_eq!(a.width, width);
                assert_eq!(a.write, write);
                assert_eq!(a.reg, 7);
                assert_eq!(a.ipa, 0x0a00_0234);
            }
        }
    }

    #[test]
    fn sign_extends_into_w_and_x_registers() {
        // ldrsb w2, [x0]
        let w = decode_data_abort(dabt(0, true, 2, false, false, false), 0, 0).unwrap();
        assert_eq!(w.load_result(0x80), 0xffff_ff80);
        assert_eq!(w.load_result(0x7f), 0x7f);
        // ldrsh x3, [x0]
        let x = decode_data_abort(dabt(1, true, 3, true, false, false), 0, 0).unwrap();
        assert_eq!(x.load_result(0x8001), 0xffff_ffff_ffff_8001);
        // ldrsw x4, [x0]
        let sw = decode_data_abort(dabt(2, true, 4, true, false, false), 0, 0).unwrap();
        assert_eq!(sw.load_result(0xdead_beef_8000_0000), 0xffff_ffff_8000_0000);
        // ldrh w5: zero-extends, ignores junk above the width
        let h = decode_data_abort(dabt(1, false, 5, false, false, false), 0, 0).unwrap();
        assert_eq!(h.load_result(0xffff_8001), 0x8001);
        // ldr x6: 64-bit untouched
        let d = decode_data_abort(dabt(3, false, 6, true, false, false), 0, 0).unwrap();
        assert_eq!(d.load_result(u64::MAX), u64::MAX);
    }

    #[test]
    fn register_31_is_the_zero_register() {
        // str wzr, [x0] and ldr xzr?: the decoder reports 31; the caller treats it as XZR.
        let st = decode_data_abort(dabt(2, false, 31, false, false, true), 0, 0).unwrap();
        assert_eq!(st.reg, 31);
        assert!(st.write);
    }

    #[test]
    fn store_value_is_cut_to_width() {
        let strb = decode_data_abort(dabt(0, false, 1, false, false, true), 0, 0).unwrap();
        assert_eq!(strb.store_value(0x1234_5678), 0x78);
        let str_x = decode_data_abort(dabt(3, false, 1, true, false, true), 0, 0).unwrap();
        assert_eq!(str_x.store_value(u64::MAX), u64::MAX);
    }

    #[test]
    fn acquire_release_is_reported() {
        let ldar = decode_data_abort(dabt(2, false, 0, false, true, false), 0, 0).unwrap();
        assert!(ldar.acquire_release);
    }

    #[test]
    fn isv_zero_is_refused_with_the_address() {
        // ldp x2, x3, [x1]: no instruction syndrome.
        let esr = EC_DABT | IL | DFSC_TRANS_L2;
        assert_eq!(
            decode_data_abort(esr, 0x10, hpfar(0x0900_0000)),
            Err(DecodeError::NoSyndrome { ipa: 0x0900_0010, write: false })
        );
        let esr_w = esr | (1 << 6);
        assert_eq!(
            decode_data_abort(esr_w, 0, hpfar(0x0900_0000)),
            Err(DecodeError::NoSyndrome { ipa: 0x0900_0000, write: true })
        );
    }

    #[test]
    fn table_walks_cache_maintenance_and_external_aborts_are_not_mmio() {
        let walk = EC_DABT | IL | (1 << 7) | DFSC_TRANS_L2;
        assert_eq!(
            decode_data_abort(walk, 0, hpfar(0x8000_0000)),
            Err(DecodeError::TableWalk { ipa: 0x8000_0000 })
        );
        let cm = EC_DABT | IL | (1 << 8) | (1 << 6) | DFSC_TRANS_L2;
        assert_eq!(
            decode_data_abort(cm, 0x40, hpfar(0x0a00_0000)),
            Err(DecodeError::CacheMaintenance { ipa: 0x0a00_0040 })
        );
        // Synchronous external abort, FAR not valid.
        let ext = EC_DABT | IL | (1 << 10) | 0b01_0000;
        assert_eq!(decode_data_abort(ext, 0, 0), Err(DecodeError::Unexpected { dfsc: 0x10, far: None }));
    }

    #[test]
    fn decodes_the_ipa_above_4gib() {
        let esr = dabt(2, false, 0, false, false, false);
        let a = decode_data_abort(esr, 0xabc, hpfar(0x7f_1234_5000)).unwrap();
        assert_eq!(a.ipa, 0x7f_1234_5abc);
    }

    #[test]
    fn decodes_other_trap_classes() {
        assert_eq!(decode_trap(((ec::HVC64 as u64) << 26) | IL | 0x1234, 0, 0), Trap::Hvc { imm: 0x1234 });
        assert_eq!(decode_trap(((ec::SMC64 as u64) << 26) | IL, 0, 0), Trap::Smc { imm: 0 });
        assert_eq!(decode_trap(((ec::WFX as u64) << 26) | IL, 0, 0), Trap::Wfx(WfxKind::Wfi));
        assert_eq!(decode_trap(((ec::WFX as u64) << 26) | IL | 1, 0, 0), Trap::Wfx(WfxKind::Wfe));
        assert_eq!(decode_trap(0x3c << 26, 0, 0), Trap::Other { ec: 0x3c });
        // Instruction fetch at 0x1000, translation fault level 1.
        let iabt = ((ec::IABT_LOWER as u64) << 26) | IL | 0b00_0101;
        assert_eq!(
            decode_trap(iabt, 0x1000, hpfar(0x1000)),
            Trap::InstructionAbort { far: 0x1000, ipa: Some(0x1000), fsc: 5 }
        );
    }

    #[test]
    fn decodes_sysreg_traps() {
        // mrs x3, id_aa64dfr0_el1 = S3_0_C0_C5_0, read.
        let iss = (3 << 20) | (0 << 17) | (0 << 14) | (0 << 10) | (3 << 5) | (5 << 1) | 1;
        let esr = ((ec::SYS64 as u64) << 26) | IL | iss;
        let access = decode_sysreg(esr);
        assert_eq!(access, SysRegAccess { reg: SysReg::new(3, 0, 0, 5, 0), rt: 3, read: true });
        // msr pmcr_el0, x1 = S3_3_C9_C12_0, write.
        let iss = (3 << 20) | (0 << 17) | (3 << 14) | (9 << 10) | (1 << 5) | (12 << 1);
        let access = decode_sysreg(((ec::SYS64 as u64) << 26) | IL | iss);
        assert_eq!(access, SysRegAccess { reg: SysReg::new(3, 3, 9, 12, 0), rt: 1, read: false });
        assert_eq!(access.reg.to_string(), "S3_3_C9_C12_0");
    }
}
