//! The trap decoder: any ESR_EL2/FAR_EL2/HPFAR_EL2 triple, and any instruction word
//! of an ISV=0 abort, decoded the way the trap path does.
//!
//! Invariants: nothing panics; a decoded MMIO access names a register 0-31, has
//! the width the syndrome's SAS gives, and an IPA made of HPFAR's page and FAR's
//! offset (below 2^52); a load's result fits its width and register, a store's
//! value its width; a refused abort is refused for the reason the syndrome gives;
//! the other classes carry the fields of their ISS; the instruction describer's
//! "ld"/"st" names agree with the instruction's load bit.
#![no_main]

use hypervisor::arch::aarch64::esr::{
    self, decode_data_abort, decode_sysreg, decode_trap, ec, DecodeError, Trap, WfxKind,
};
use hypervisor::arch::aarch64::insn;
use hypervisor::devices::AccessWidth;
use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;

#[derive(Debug, Arbitrary)]
struct Input {
    /// The exception class, apart, so every class is reached often.
    ec: u8,
    esr: u64,
    far: u64,
    hpfar: u64,
    /// What a load returned from the device, and the register a store wrote.
    value: u64,
    /// The instruction at the faulting PC.
    insn: u32,
}

/// HPFAR_EL2.FIPA, bits [43:4]: IPA[51:12].
const FIPA: u64 = 0x0000_0fff_ffff_fff0;

fuzz_target!(|input: Input| {
    sluice_fuzz::init_logging();
    // Half the time the class is one Sluice handles, the rest any of the 64.
    let handled = [ec::UNKNOWN, ec::WFX, ec::HVC64, ec::SMC64, ec::SYS64, ec::IABT_LOWER, ec::DABT_LOWER];
    let class =
        if input.ec & 0x80 != 0 { handled[usize::from(input.ec) % handled.len()] } else { input.ec & 0x3f };
    let esr = (input.esr & !(0x3f << 26)) | (u64::from(class) << 26);
    assert_eq!(esr::exception_class(esr), class);
    let iss = esr::iss(esr);
    let ipa = ((input.hpfar & FIPA) << 8) | (input.far & 0xfff);

    match decode_trap(esr, input.far, input.hpfar) {
        Trap::DataAbort(result) => {
            assert_eq!(class, ec::DABT_LOWER);
            assert_eq!(result, decode_data_abort(esr, input.far, input.hpfar));
            data_abort(esr, iss, ipa, result, input.value);
        }
        Trap::InstructionAbort { far, ipa: fault_ipa, fsc } => {
            assert_eq!(class, ec::IABT_LOWER);
            assert_eq!((far, u32::from(fsc)), (input.far, iss & 0x3f));
            if let Some(fault_ipa) = fault_ipa {
                assert_eq!(fault_ipa, ipa);
                assert!(fault_ipa < 1 << 52);
            }
        }
        Trap::Hvc { imm } => assert_eq!((class, u32::from(imm)), (ec::HVC64, iss & 0xffff)),
        Trap::Smc { imm } => assert_eq!((class, u32::from(imm)), (ec::SMC64, iss & 0xffff)),
        Trap::Wfx(kind) => {
            assert_eq!(class, ec::WFX);
            let expected = [WfxKind::Wfi, WfxKind::Wfe, WfxKind::Wfit, WfxKind::Wfet][(iss & 3) as usize];
            assert_eq!(kind, expected);
        }
        Trap::SysReg(access) => {
            assert_eq!(class, ec::SYS64);
            assert_eq!(access, decode_sysreg(esr));
            let r = access.reg;
            assert!(r.op0 <= 3 && r.op1 <= 7 && r.crn <= 15 && r.crm <= 15 && r.op2 <= 7, "{r:?}");
            assert!(access.rt <= 31);
            assert_eq!(access.read, iss & 1 != 0);
            let name = r.to_string();
            assert!(name.starts_with('S') && name.len() <= "S3_7_C15_C15_7".len(), "{name}");
        }
        Trap::Other { ec: other } => {
            assert_eq!(other, class);
            assert!(!matches!(
                other,
                ec::WFX | ec::HVC64 | ec::SMC64 | ec::SYS64 | ec::IABT_LOWER | ec::DABT_LOWER
            ));
        }
    }

    describe(input.insn);
});

/// A data abort's decoding against its syndrome.
fn data_abort(esr: u64, iss: u32, ipa: u64, result: Result<esr::MmioAccess, DecodeError>, value: u64) {
    let isv = iss & (1 << 24) != 0;
    let s1ptw = iss & (1 << 7) != 0;
    match result {
        Ok(access) => {
            assert!(isv, "an access decoded without ISV: {esr:#x}");
            assert!(!s1ptw && iss & (1 << 8) == 0, "a table walk or cache maintenance decoded: {esr:#x}");
            assert_eq!(access.ipa, ipa);
            assert!(access.ipa < 1 << 52);
            assert!(access.reg <= 31);
            assert_eq!(u32::from(access.reg), (iss >> 16) & 0x1f);
            assert_eq!(access.write, iss & (1 << 6) != 0);
            let widths = [AccessWidth::Byte, AccessWidth::Half, AccessWidth::Word, AccessWidth::Double];
            assert_eq!(access.width, widths[((iss >> 22) & 3) as usize]);
            let bytes = access.width.bytes();
            assert!(matches!(bytes, 1 | 2 | 4 | 8));
            assert_eq!(access.width.mask(), if bytes == 8 { u64::MAX } else { (1 << (8 * bytes)) - 1 });

            let loaded = access.load_result(value);
            // The low bits are the device's value; above them, zeros or copies of
            // the sign bit; a W register holds 32 bits (of a doubleword too, in a
            // syndrome no CPU makes: SAS = 3 with SF = 0).
            let register = if access.reg64 { u64::MAX } else { u64::from(u32::MAX) };
            assert_eq!(loaded & access.width.mask(), value & access.width.mask() & register);
            if !access.reg64 {
                assert!(loaded <= u64::from(u32::MAX), "{access:?} loads {loaded:#x} into a W register");
            }
            if !access.sign_extend {
                assert!(loaded <= access.width.mask(), "{access:?} zero-extends {value:#x} to {loaded:#x}");
            } else if bytes < 8 {
                let sign = value >> (8 * bytes - 1) & 1;
                let top = if access.reg64 { u64::MAX } else { u64::from(u32::MAX) };
                let expected_high = if sign == 1 { top & !access.width.mask() } else { 0 };
                assert_eq!(loaded & !access.width.mask(), expected_high, "{access:?} from {value:#x}");
            }
            assert_eq!(access.store_value(value), value & access.width.mask());
        }
        Err(DecodeError::NoSyndrome { ipa: got, write }) => {
            assert!(!isv);
            assert_eq!((got, write), (ipa, iss & (1 << 6) != 0));
        }
        Err(DecodeError::TableWalk { ipa: got }) => {
            assert!(s1ptw);
            assert_eq!(got, ipa);
        }
        Err(DecodeError::CacheMaintenance { ipa: got }) => {
            assert!(iss & (1 << 8) != 0 && !s1ptw);
            assert_eq!(got, ipa);
        }
        Err(DecodeError::Unexpected { dfsc, far }) => {
            assert_eq!(u32::from(dfsc), iss & 0x3f);
            assert!(!s1ptw, "a stage-2 fault on a table walk always has its IPA");
            assert_eq!(far.is_none(), iss & (1 << 10) != 0);
        }
    }
}

/// The describer of ISV=0 instructions.
fn describe(insn: u32) {
    let name = insn::describe(insn);
    assert!(!name.is_empty());
    let bits_23_22 = (insn >> 22) & 3;
    if name.starts_with("st") {
        assert_eq!(insn >> 22 & 1, 0, "{insn:#010x} is named {name:?} but has the load bit");
    } else if name.starts_with("ld") && !name.contains("atomic") {
        assert_ne!(bits_23_22, 0, "{insn:#010x} is named {name:?} but is a store");
    }
}
