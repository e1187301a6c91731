//! How a byte a guest sends looks on the shared console: shown, never obeyed.
//!
//! Printable ASCII and tab pass as they are. Every other byte is written out so a
//! person can read it and no terminal acts on it: a control character in caret
//! notation (`^[` for ESC, `^M` for a carriage return, `^?` for DEL), a byte above
//! 0x7e as `\xNN`. So a guest can't move the cursor, clear the screen, change colours
//! or send a terminal query through the console. Line ends and backspaces are the
//! multiplexer's business (`super::mux`); this module only names bytes.

use alloc::string::String;

/// The backspace control character.
pub const BACKSPACE: u8 = 0x08;
/// The longest form of one byte (`\xNN`).
pub const MAX_LEN: usize = 4;

/// Whether `byte` is shown as it is: printable ASCII or tab.
pub fn is_plain(byte: u8) -> bool {
    matches!(byte, b'\t' | 0x20..=0x7e)
}

/// How many bytes `byte` takes on the console (what [`visible`] writes).
pub fn shown_len(byte: u8) -> usize {
    match byte {
        _ if is_plain(byte) => 1,
        0x00..=0x1f | 0x7f => 2,
        _ => MAX_LEN,
    }
}

/// What `byte` looks like on the console, written into `buf`.
pub fn visible(byte: u8, buf: &mut [u8; MAX_LEN]) -> &[u8] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    match byte {
        _ if is_plain(byte) => {
            buf[0] = byte;
            &buf[..1]
        }
        0x00..=0x1f | 0x7f => {
            *buf = [b'^', byte ^ 0x40, 0, 0];
            &buf[..2]
        }
        _ => {
            *buf = [b'\\', b'x', HEX[usize::from(byte >> 4)], HEX[usize::from(byte & 0xf)]];
            &buf[..4]
        }
    }
}

/// Appends what `byte` looks like to `text`.
pub fn push_visible(text: &mut String, byte: u8) {
    let mut buf = [0; MAX_LEN];
    visible(byte, &mut buf).iter().for_each(|&b| text.push(char::from(b)));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shown(byte: u8) -> String {
        let mut text = String::new();
        push_visible(&mut text, byte);
        text
    }

    #[test]
    fn printable_ascii_and_tab_pass() {
        for byte in (0x20..=0x7e).chain([b'\t']) {
            assert_eq!(shown(byte), char::from(byte).to_string());
            assert!(is_plain(byte));
        }
    }

    #[test]
    fn controls_use_caret_notation() {
        assert_eq!(shown(0x1b), "^[");
        assert_eq!(shown(b'\r'), "^M");
        assert_eq!(shown(b'\n'), "^J");
        assert_eq!(shown(0x00), "^@");
        assert_eq!(shown(BACKSPACE), "^H");
        assert_eq!(shown(0x7f), "^?");
    }

    #[test]
    fn high_bytes_are_hex() {
        assert_eq!(shown(0x9b), "\\x9b");
        assert_eq!(shown(0xff), "\\xff");
        assert_eq!(shown(0x80), "\\x80");
    }

    #[test]
    fn nothing_shown_is_a_control_character() {
        for byte in 0..=255u8 {
            let text = shown(byte);
            assert!(text.len() <= MAX_LEN);
            assert!(text.bytes().all(is_plain), "{byte:#x} shows as {text:?}");
        }
    }
}
