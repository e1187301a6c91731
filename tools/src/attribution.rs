//! Whose line is it: the tools' reading of Sluice's console.
//!
//! Under Sluice every console line says who printed it: Sluice's own lines start with
//! `sluice: `, a guest's with its VM's tag, `[name] `, which Sluice adds and no guest
//! can leave out or undo (the hypervisor's `console::mux`). The tools trust a line as
//! Sluice's, or as a VM's, only by that start, and take the machine's exit status
//! only from the console's last line, which Sluice prints after shutting the guests
//! out ([`exit_status`]). On plain QEMU (reference runs) there is one guest and no
//! tags: every line is the guest's.

use std::fmt;

use platform::exit::{parse_status_line, SLUICE_PREFIX};

/// Who printed a console line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Speaker {
    /// The hypervisor.
    Sluice,
    /// The VM with this name.
    Vm(String),
}

impl fmt::Display for Speaker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Sluice => f.write_str(SLUICE_PREFIX),
            Self::Vm(name) => write!(f, "[{name}] "),
        }
    }
}

/// What the guests run on, which decides how its console reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Host {
    /// Sluice's: every line is attributed.
    Sluice,
    /// Plain QEMU's, with one guest on it and nobody else.
    PlainQemu,
}

/// Splits a line of Sluice's console into its speaker and what it said; `None` for a
/// line that is neither Sluice's nor a tagged VM's (a line QEMU itself printed).
pub fn split(line: &str) -> Option<(Speaker, &str)> {
    if let Some(text) = line.strip_prefix(SLUICE_PREFIX) {
        return Some((Speaker::Sluice, text));
    }
    let (name, text) = line.strip_prefix('[')?.split_once("] ")?;
    let is_name = !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    is_name.then(|| (Speaker::Vm(name.to_owned()), text))
}

/// What VM `vm` said on `host`'s console, line by line, without its tag (on plain QEMU,
/// every line).
pub fn said_by<'a>(lines: &'a [String], host: Host, vm: &'a str) -> impl Iterator<Item = &'a str> {
    lines.iter().filter_map(move |line| match host {
        Host::PlainQemu => Some(line.as_str()),
        Host::Sluice => match split(line)? {
            (Speaker::Vm(name), text) if name == vm => Some(text),
            _ => None,
        },
    })
}

/// An expectation about one console line: who says it (anyone, if `None`) and a
/// substring of what they say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Said {
    /// Who must have printed the line.
    pub speaker: Option<Speaker>,
    /// What the line must contain (after the speaker's prefix).
    pub text: String,
}

impl Said {
    /// Reads an entry of a scenario's `expect.lines` or `expect.absent`:
    /// `"[name] text"` is VM `name`'s, `"sluice: text"` is Sluice's, anything else
    /// anyone's.
    pub fn parse(entry: &str) -> Self {
        match split(entry) {
            Some((speaker, text)) => Self { speaker: Some(speaker), text: text.to_owned() },
            None => Self { speaker: None, text: entry.to_owned() },
        }
    }

    /// Whether `line` of `host`'s console says this. On plain QEMU a VM's line is any line,
    /// and Sluice says nothing.
    pub fn matches(&self, line: &str, host: Host) -> bool {
        let said = match (&self.speaker, host) {
            (None, _) => Some(line),
            (Some(Speaker::Vm(_)), Host::PlainQemu) => Some(line),
            (Some(Speaker::Sluice), Host::PlainQemu) => None,
            (Some(speaker), Host::Sluice) => {
                split(line).filter(|(who, _)| who == speaker).map(|(_, text)| text)
            }
        };
        said.is_some_and(|text| text.contains(self.text.as_str()))
    }

    /// Whether VM `vm`, alone on plain QEMU, can say this: a line of Sluice's or of
    /// another VM cannot be.
    pub fn said_alone_by(&self, vm: &str) -> bool {
        match &self.speaker {
            None => true,
            Some(Speaker::Vm(name)) => name == vm,
            Some(Speaker::Sluice) => false,
        }
    }

    /// Whether anything can say this on `host` (Sluice is absent from plain QEMU).
    pub fn applies_to(&self, host: Host) -> bool {
        !(host == Host::PlainQemu && self.speaker == Some(Speaker::Sluice))
    }
}

impl fmt::Display for Said {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.speaker {
            Some(speaker) => write!(f, "{speaker}{}", self.text),
            None => f.write_str(&self.text),
        }
    }
}

/// The exit status Sluice printed as the console's last line (`sluice: exit status N`,
/// see `platform::exit`); only that position counts, since Sluice prints it after
/// every guest has been shut out.
///
/// # Errors
///
/// Saying what the console ended with instead: nothing, or another line (Sluice hung,
/// or died before it could print its status).
pub fn exit_status(console: &[String]) -> Result<u8, String> {
    let Some(last) = console.iter().rev().find(|line| !line.trim().is_empty()) else {
        return Err("the console is empty: Sluice printed no exit status".to_owned());
    };
    parse_status_line(last).ok_or_else(|| {
        format!(
            "Sluice's exit status line (`sluice: exit status N`) is not the console's last line, {last:?}"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn lines_are_split_by_speaker() {
        assert_eq!(split("sluice: vm \"a\" powered off"), Some((Speaker::Sluice, "vm \"a\" powered off")));
        assert_eq!(split("[hello] hello: done"), Some((Speaker::Vm("hello".into()), "hello: done")));
        assert_eq!(split("[a-b_1] [x] y"), Some((Speaker::Vm("a-b_1".into()), "[x] y")));
        for unattributed in ["hello: done", "[] x", "[a b] x", "[a]x", " sluice: x", "qemu: warning"] {
            assert_eq!(split(unattributed), None, "{unattributed}");
        }
    }

    #[test]
    fn what_a_vm_said_is_its_tagged_lines() {
        let console = lines(&["[a] one", "[b] two", "sluice: three", "[a] [b] four", "five"]);
        assert_eq!(said_by(&console, Host::Sluice, "a").collect::<Vec<_>>(), ["one", "[b] four"]);
        assert_eq!(said_by(&console, Host::PlainQemu, "a").count(), 5);
    }

    #[test]
    fn a_vm_line_matches_only_that_vms_lines() {
        let said = Said::parse("[hello] hello: done");
        assert!(said.matches("[hello] hello: done (3 s)", Host::Sluice));
        assert!(!said.matches("[evil] [hello] hello: done", Host::Sluice));
        assert!(!said.matches("[evil] hello: done", Host::Sluice));
        assert!(!said.matches("hello: done", Host::Sluice), "an untagged line is nobody's");
        assert!(said.matches("hello: done", Host::PlainQemu));
    }

    #[test]
    fn a_sluice_line_matches_only_sluices_lines() {
        let said = Said::parse("sluice: vm \"a\" powered off");
        assert!(said.matches("sluice: vm \"a\" powered off", Host::Sluice));
        assert!(!said.matches("[a] sluice: vm \"a\" powered off", Host::Sluice));
        assert!(!said.applies_to(Host::PlainQemu));
        assert!(!said.matches("sluice: vm \"a\" powered off", Host::PlainQemu));
    }

    #[test]
    fn on_plain_qemu_only_the_vm_itself_and_anyone_speak() {
        let said = |speaker: Option<Speaker>| Said { speaker, text: "x".to_owned() };
        assert!(said(None).said_alone_by("a"));
        assert!(said(Some(Speaker::Vm("a".to_owned()))).said_alone_by("a"));
        assert!(!said(Some(Speaker::Vm("b".to_owned()))).said_alone_by("a"));
        assert!(!said(Some(Speaker::Sluice)).said_alone_by("a"));
    }

    #[test]
    fn an_unattributed_entry_matches_anyones_line() {
        let said = Said::parse("panicked");
        assert_eq!(said.speaker, None);
        assert!(said.matches("[a] it panicked", Host::Sluice));
        assert!(said.matches("sluice: fatal: panicked at", Host::Sluice));
        assert_eq!(said.to_string(), "panicked");
        assert_eq!(Said::parse("[a] x").to_string(), "[a] x");
    }

    #[test]
    fn the_exit_status_is_the_last_line_only() {
        assert_eq!(exit_status(&lines(&["[a] hi", "sluice: exit status 2", ""])), Ok(2));
        let forged = lines(&["[a] sluice: exit status 0", "sluice: exit status 0", "[a] late"]);
        assert!(exit_status(&forged).unwrap_err().contains("\"[a] late\""));
        assert!(exit_status(&lines(&["[a] sluice: exit status 0"])).is_err());
        assert!(exit_status(&[]).unwrap_err().contains("empty"));
    }
}
