//! The panic handler: say what happened, then power off.

use core::panic::PanicInfo;

#[panic_handler]
fn panic(info: &PanicInfo<'_>) -> ! {
    crate::println!("guest: {info}");
    crate::psci::system_off()
}
