//! Running other programs: show the command, run it, and say clearly when it fails.

use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};

/// The command as a person would type it (program and arguments, no environment).
pub fn describe(command: &Command) -> String {
    std::iter::once(command.get_program())
        .chain(command.get_args())
        .map(|part| {
            let text = part.to_string_lossy();
            if text.is_empty() || text.contains([' ', '\'', '"']) {
                format!("'{}'", text.replace('\'', r"'\''"))
            } else {
                text.into_owned()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Prints and runs `command` with inherited stdio.
///
/// # Errors
///
/// The program cannot be started, or it exits unsuccessfully.
pub fn run(command: &mut Command) -> Result<()> {
    let shown = describe(command);
    eprintln!("$ {shown}");
    let status = command.status().with_context(|| format!("cannot start `{shown}`"))?;
    if !status.success() {
        bail!("`{shown}` failed ({status})");
    }
    Ok(())
}

/// Runs `command` quietly and returns its standard output.
///
/// # Errors
///
/// The program cannot be started, or it exits unsuccessfully (its stderr is included).
pub fn output(command: &mut Command) -> Result<String> {
    let shown = describe(command);
    let out = command.stdin(Stdio::null()).output().with_context(|| format!("cannot start `{shown}`"))?;
    if !out.status.success() {
        bail!("`{shown}` failed ({}): {}", out.status, String::from_utf8_lossy(&out.stderr).trim());
    }
    String::from_utf8(out.stdout).with_context(|| format!("`{shown}` printed something that is not UTF-8"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describe_quotes_what_needs_it() {
        let mut command = Command::new("gdb");
        command.args(["-ex", "target remote :1234", "it's", ""]);
        assert_eq!(describe(&command), r"gdb -ex 'target remote :1234' 'it'\''s' ''");
    }

    #[test]
    fn run_and_output_report_failure() {
        assert!(run(&mut Command::new("true")).is_ok());
        let message = run(&mut Command::new("false")).unwrap_err().to_string();
        assert!(message.starts_with("`false` failed"), "{message}");
        assert_eq!(output(Command::new("echo").arg("hi")).unwrap(), "hi\n");
        let message = output(&mut Command::new("/nonexistent/program")).unwrap_err().to_string();
        assert!(message.contains("cannot start"), "{message}");
    }
}
