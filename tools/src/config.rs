//! The scenario file's schema, as written: a TOML file per scenario.
//!
//! This module only reads the file into these types; `validate` checks the values
//! and turns them into a [`crate::validate::Scenario`]. Sizes and addresses stay as
//! written ([`Number`]) so that a bad one is reported with its field's name.

use std::fmt;
use std::path::Path;

use anyhow::{Context, Result};
use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;

use crate::units::{parse_size, parse_u64};

/// A whole scenario file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The QEMU machine the scenario runs on.
    #[serde(default)]
    pub machine: MachineConfig,
    /// Settings of the hypervisor itself.
    #[serde(default)]
    pub hypervisor: HypervisorConfig,
    /// The VMs, in order (`[[vm]]` tables).
    #[serde(default)]
    pub vm: Vec<VmConfig>,
    /// What the test runner expects of a run; only scenarios with it are tests.
    pub expect: Option<ExpectConfig>,
}

/// `[machine]`: used by the tools only (QEMU's `-smp`, `-m` and `-machine`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MachineConfig {
    /// Number of host CPUs (`-smp`).
    #[serde(default = "MachineConfig::default_cpus")]
    pub cpus: i64,
    /// Host RAM (`-m`).
    #[serde(default = "MachineConfig::default_memory")]
    pub memory: Number,
    /// Memory tagging with tag storage (`-machine virt,mte=on`), which guests then
    /// get.
    #[serde(default)]
    pub mte: bool,
}

impl MachineConfig {
    fn default_cpus() -> i64 {
        1
    }

    fn default_memory() -> Number {
        Number::Text("1G".to_owned())
    }
}

impl Default for MachineConfig {
    fn default() -> Self {
        Self { cpus: Self::default_cpus(), memory: Self::default_memory(), mte: false }
    }
}

/// `[hypervisor]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HypervisorConfig {
    /// The hypervisor's log level.
    #[serde(default)]
    pub log_level: LogLevel,
    /// Every tracepoint on the trap path (true), or only trap entry and return.
    #[serde(default = "HypervisorConfig::default_trace")]
    pub trace: bool,
}

impl HypervisorConfig {
    fn default_trace() -> bool {
        true
    }
}

impl Default for HypervisorConfig {
    fn default() -> Self {
        Self { log_level: LogLevel::default(), trace: Self::default_trace() }
    }
}

/// The hypervisor's log level, as the bundle's `log-level` carries it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    /// Errors only.
    Error,
    /// Errors and warnings.
    Warn,
    /// The default.
    #[default]
    Info,
    /// Chatty.
    Debug,
    /// Everything.
    Trace,
}

impl LogLevel {
    /// The value written to the bundle.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Error => "error",
            Self::Warn => "warn",
            Self::Info => "info",
            Self::Debug => "debug",
            Self::Trace => "trace",
        }
    }
}

/// One `[[vm]]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VmConfig {
    /// Name used in logs, console tags and the exit summary.
    pub name: String,
    /// Host CPU indices this VM owns.
    pub cpus: Vec<i64>,
    /// RAM size.
    pub memory: Number,
    /// Optional host-physical address to pin the VM's RAM at.
    pub host_base: Option<Number>,
    /// An image file, or `guest:NAME` for a test guest the tools build.
    pub kernel: String,
    /// Load address (= entry) of a raw image without an arm64 Image header.
    pub load_address: Option<Number>,
    /// Optional initrd file.
    pub initrd: Option<String>,
    /// Optional kernel command line.
    pub bootargs: Option<String>,
    /// Its virtio devices, in slot order.
    #[serde(default)]
    pub virtio: Vec<VirtioConfig>,
}

/// One `[[vm.virtio]]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VirtioConfig {
    /// `"blk"` or `"console"`.
    pub kind: String,
    /// blk: `"file"` (the default with an `image`) or `"ram"`.
    pub backend: Option<String>,
    /// blk: the disk image file (used in place, for `"file"`), or a raw image that
    /// fills the start of a RAM disk.
    pub image: Option<String>,
    /// blk, RAM disks: the disk's size (default: the image's size).
    pub size: Option<Number>,
    /// blk: refuse writes.
    #[serde(default)]
    pub read_only: bool,
    /// blk: the serial number `GET_ID` returns.
    pub serial: Option<String>,
    /// console: joins it to the console of another VM that gives the same name,
    /// instead of the shared UART.
    pub channel: Option<String>,
    /// Use the legacy virtio-mmio interface (version 1).
    #[serde(default)]
    pub legacy: bool,
}

/// `[expect]`: what a test run must show.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpectConfig {
    /// Seconds after which QEMU is killed and the test fails.
    #[serde(default = "ExpectConfig::default_timeout")]
    pub timeout_secs: i64,
    /// The machine's exit status, as Sluice's last line says it (see `platform::exit`).
    #[serde(default)]
    pub exit_status: i64,
    /// Lines that must appear, in this order, each on a later line: `"[vm] text"` (a
    /// line of VM `vm` containing `text`) or `"sluice: text"` (one of Sluice's).
    #[serde(default)]
    pub lines: Vec<String>,
    /// Lines that must appear too, written like `lines`, but in any order (the
    /// last words of VMs that run at once and finish in no set order).
    #[serde(default)]
    pub anywhere: Vec<String>,
    /// Substrings that must appear nowhere (on anyone's line, or only on one VM's or
    /// Sluice's when written like an entry of `lines`).
    #[serde(default)]
    pub absent: Vec<String>,
    /// Files (relative to the workspace) that must not exist after the run, e.g.
    /// what a guest would create on the host if it could reach it; removed before.
    #[serde(default)]
    pub absent_files: Vec<String>,
    /// Damage done to the boot bundle, one run each (see `crate::damage`): the
    /// hypervisor must refuse it with a message, not crash.
    #[serde(default)]
    pub bundle_damage: Vec<String>,
    /// The clocks to run the scenario under: `"wall"` (real time) and `"icount"`
    /// (`-icount shift=0`: one host thread runs every CPU in turn, time counts
    /// instructions). Default: `["wall"]`.
    #[serde(default = "ExpectConfig::default_clocks")]
    pub clocks: Vec<String>,
    /// Also run the guest on plain QEMU with QEMU's own devices, in these virtio-mmio
    /// modes (`"modern"`, `"legacy"`); single-VM scenarios only.
    #[serde(default)]
    pub reference: Vec<String>,
    /// Input typed on the serial console, in order (`[[expect.send]]` tables).
    #[serde(default)]
    pub send: Vec<SendConfig>,
    /// QEMU must exit within this many milliseconds of the last typed input (its
    /// Ctrl-A x, say), measured by the tools' wall clock.
    #[serde(default)]
    pub quit_within_ms: Option<i64>,
    /// Runs after the first on the same disk files, under the same clock, each
    /// judged by its own `lines` (`[[expect.rerun]]` tables): what a run leaves on
    /// a file-backed disk, the next finds.
    #[serde(default)]
    pub rerun: Vec<RerunConfig>,
    /// What file-backed disks hold after the runs (`[[expect.disk]]` tables).
    #[serde(default)]
    pub disk: Vec<DiskCheckConfig>,
    /// Blank, sparse disk image files the runner makes when they are missing, before
    /// it reads the scenario: large test disks without a large file in the tree.
    #[serde(default)]
    pub blank_disks: Vec<BlankDiskConfig>,
}

/// One `[[expect.blank_disks]]` table.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlankDiskConfig {
    /// The file, relative to the scenario.
    pub path: String,
    /// Its size (`"4G"`).
    pub size: Number,
}

/// One `[[expect.disk]]` table.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiskCheckConfig {
    /// The VM, by name.
    pub vm: String,
    /// Its virtio slot (a file-backed blk device).
    pub slot: usize,
    /// The ext4 file system must be clean.
    #[serde(default)]
    pub fsck: bool,
    /// Files that must hold these texts (each the whole file but a final newline).
    #[serde(default)]
    pub files: Vec<FileCheckConfig>,
}

/// A file and what it must hold.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileCheckConfig {
    /// Its absolute path in the file system.
    pub path: String,
    /// Its text.
    pub text: String,
}

/// One `[[expect.rerun]]` table.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RerunConfig {
    /// Lines that must appear in this run, in order, written as in `[expect]`.
    pub lines: Vec<String>,
}

impl ExpectConfig {
    fn default_timeout() -> i64 {
        60
    }

    fn default_clocks() -> Vec<String> {
        vec!["wall".to_owned()]
    }
}

/// One `[[expect.send]]` table: type `text` once `after` has appeared in the output.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SendConfig {
    /// A substring of the serial output to wait for, looked for after the previous
    /// send's match.
    pub after: String,
    /// What to write to QEMU's stdin (the serial console) then.
    pub text: String,
}

/// A size or an address as written: a TOML integer or a string (`"64M"`, `"0x5000_0000"`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Number {
    /// A TOML integer.
    Int(i64),
    /// A TOML string, parsed later.
    Text(String),
}

impl Number {
    /// The number of bytes it says (`"64M"`, `4096`).
    ///
    /// # Errors
    ///
    /// What is wrong with it, in words.
    pub fn bytes(&self) -> Result<u64, String> {
        match self {
            Self::Int(n) => u64::try_from(*n).map_err(|_| format!("{n} is negative")),
            Self::Text(text) => parse_size(text),
        }
    }

    /// The address it says (`"0x5000_0000"`).
    ///
    /// # Errors
    ///
    /// What is wrong with it, in words.
    pub fn address(&self) -> Result<u64, String> {
        match self {
            Self::Int(n) => u64::try_from(*n).map_err(|_| format!("{n} is negative")),
            Self::Text(text) => parse_u64(text).map_err(|e| format!("{e} (write e.g. \"0x50000000\")")),
        }
    }
}

impl fmt::Display for Number {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Int(n) => write!(f, "{n}"),
            Self::Text(s) => write!(f, "{s:?}"),
        }
    }
}

impl<'de> Deserialize<'de> for Number {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct NumberVisitor;

        impl Visitor<'_> for NumberVisitor {
            type Value = Number;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an integer or a string such as \"64M\" or \"0x50000000\"")
            }

            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Number, E> {
                Ok(Number::Int(v))
            }

            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Number, E> {
                i64::try_from(v).map(Number::Int).map_err(|_| E::custom(format!("{v} is too large")))
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Number, E> {
                Ok(Number::Text(v.to_owned()))
            }
        }

        deserializer.deserialize_any(NumberVisitor)
    }
}

/// Parses a scenario from TOML text.
///
/// # Errors
///
/// TOML syntax errors and schema errors (unknown fields, wrong types), with the line
/// and the field's name as `toml` reports them.
pub fn parse(text: &str) -> Result<Config, toml::de::Error> {
    toml::from_str(text)
}

/// Reads and parses the scenario file at `path`.
///
/// # Errors
///
/// The file cannot be read, or [`parse`] refuses it; the message starts with the path.
pub fn load(path: &Path) -> Result<Config> {
    let text = crate::regular_file::read_to_string(path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    parse(&text).map_err(|e| anyhow::anyhow!("{}: {}", path.display(), e.to_string().trim_end()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_file_parses() {
        let config = parse(
            r#"
            [machine]
            cpus = 2
            memory = "1G"
            [hypervisor]
            log_level = "debug"
            trace = false
            [[vm]]
            name = "hello"
            cpus = [0]
            memory = "64M"
            host_base = "0x50000000"
            kernel = "guest:hello"
            load_address = 0x40080000
            initrd = "initrd.img"
            bootargs = "console=ttyAMA0"
            [expect]
            timeout_secs = 30
            exit_status = 0
            lines = ["a", "b"]
            absent = ["panicked"]
            [[expect.send]]
            after = "echo: ready"
            text = "hello\r"
            [[expect.send]]
            after = "hello"
            text = "\u0001x"
            "#,
        )
        .unwrap();
        assert_eq!(config.machine.cpus, 2);
        assert_eq!(config.machine.memory, Number::Text("1G".into()));
        assert_eq!(config.hypervisor.log_level, LogLevel::Debug);
        assert!(!config.hypervisor.trace);
        let vm = &config.vm[0];
        assert_eq!(vm.host_base, Some(Number::Text("0x50000000".into())));
        assert_eq!(vm.load_address, Some(Number::Int(0x4008_0000)));
        let expect = config.expect.unwrap();
        assert_eq!(expect.timeout_secs, 30);
        assert_eq!(expect.lines, ["a", "b"]);
        assert_eq!(
            expect.send,
            [
                SendConfig { after: "echo: ready".into(), text: "hello\r".into() },
                SendConfig { after: "hello".into(), text: "\u{1}x".into() },
            ]
        );
    }

    #[test]
    fn defaults_fill_missing_tables() {
        let config = parse("[[vm]]\nname = \"a\"\ncpus = [0]\nmemory = 1\nkernel = \"k\"").unwrap();
        assert_eq!(config.machine.cpus, 1);
        assert_eq!(config.machine.memory, Number::Text("1G".into()));
        assert_eq!(config.hypervisor.log_level, LogLevel::Info);
        assert!(config.hypervisor.trace, "tracing is on by default");
        assert!(config.expect.is_none());
        let expect = parse("[expect]").unwrap().expect.unwrap();
        assert_eq!((expect.timeout_secs, expect.exit_status), (60, 0));
        assert!(expect.send.is_empty());
    }

    #[test]
    fn unknown_fields_are_refused_by_name() {
        for (text, field) in [
            ("bogus = 1", "bogus"),
            ("[machine]\nram = 1", "ram"),
            ("[hypervisor]\nverbose = true", "verbose"),
            ("[[vm]]\nname = \"a\"\nmemroy = 1", "memroy"),
            ("[expect]\ntimeout = 1", "timeout"),
            ("[[expect.send]]\nafter = \"a\"\ntext = \"b\"\ndelay = 1", "delay"),
        ] {
            let message = parse(text).unwrap_err().to_string();
            assert!(message.contains(&format!("unknown field `{field}`")), "{message}");
        }
    }

    #[test]
    fn a_send_needs_both_fields() {
        for (text, field) in
            [("[[expect.send]]\ntext = \"b\"", "after"), ("[[expect.send]]\nafter = \"a\"", "text")]
        {
            let message = parse(text).unwrap_err().to_string();
            assert!(message.contains(&format!("missing field `{field}`")), "{message}");
        }
    }

    #[test]
    fn unknown_log_level_is_refused() {
        let message = parse("[hypervisor]\nlog_level = \"loud\"").unwrap_err().to_string();
        assert!(message.contains("loud"), "{message}");
    }

    #[test]
    fn load_names_the_file() {
        let dir = crate::testutil::TempDir::new("config-load");
        let path = dir.write("bad.toml", b"[machine]\nram = 1\n");
        let message = load(&path).unwrap_err().to_string();
        assert!(message.starts_with(&path.display().to_string()), "{message}");
        assert!(message.contains("unknown field `ram`"), "{message}");
        let missing = dir.path().join("missing.toml");
        assert!(format!("{:#}", load(&missing).unwrap_err()).contains("cannot read"));
    }
}
