//! Asking a person for an SSH password or a key's passphrase: on the
//! terminal, or through an `SSH_ASKPASS` program, as OpenSSH decides.
//!
//! - `SSH_ASKPASS_REQUIRE=force`: always the program (when `SSH_ASKPASS` is set);
//! - `SSH_ASKPASS_REQUIRE=never`: never the program;
//! - otherwise the terminal when standard input is one, else the program when
//!   `SSH_ASKPASS` is set and a display is (`DISPLAY` or `WAYLAND_DISPLAY`).
//!
//! With neither, nobody is asked: SFTP sign-in then fails naming what it tried.

use std::io::IsTerminal;
use std::process::{Command, Stdio};

use ferry_client::PasswordPrompt;

/// Where an answer comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Asker {
    Terminal,
    Program(std::ffi::OsString),
}

/// Decides from the environment (`var`) and whether stdin is a terminal.
fn choose(var: impl Fn(&str) -> Option<std::ffi::OsString>, terminal: bool) -> Option<Asker> {
    let require = var("SSH_ASKPASS_REQUIRE").unwrap_or_default();
    let program = var("SSH_ASKPASS").filter(|p| !p.is_empty() && require != "never");
    let display = ["DISPLAY", "WAYLAND_DISPLAY"]
        .iter()
        .any(|d| var(d).is_some_and(|v| !v.is_empty()));
    match program {
        Some(p) if require == "force" => Some(Asker::Program(p)),
        _ if terminal => Some(Asker::Terminal),
        Some(p) if display => Some(Asker::Program(p)),
        _ => None,
    }
}

/// The prompt the client commands use; `None` when nobody can be asked.
pub fn ssh_prompt() -> Option<PasswordPrompt> {
    let asker = choose(
        |name| std::env::var_os(name),
        std::io::stdin().is_terminal(),
    )?;
    Some(PasswordPrompt::new(move |prompt: &str| match &asker {
        Asker::Terminal => rpassword::prompt_password(prompt).ok(),
        Asker::Program(program) => ask_program(program, prompt),
    }))
}

/// Runs the askpass program with the prompt as its argument; the answer is
/// the first line it prints. A program that fails answers nothing.
fn ask_program(program: &std::ffi::OsStr, prompt: &str) -> Option<String> {
    let out = Command::new(program)
        .arg(prompt)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8(out.stdout).ok()?;
    Some(text.lines().next().unwrap_or_default().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with<'a>(
        vars: &'a [(&'a str, &'a str)],
    ) -> impl Fn(&str) -> Option<std::ffi::OsString> + 'a {
        move |name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).into())
        }
    }

    #[test]
    fn the_terminal_or_the_askpass_program_as_openssh_chooses() {
        let program = || Some(Asker::Program("/bin/ask".into()));
        type Vars<'a> = &'a [(&'a str, &'a str)];
        let cases: [(Vars, bool, Option<Asker>); 9] = [
            (&[], true, Some(Asker::Terminal)),
            (&[], false, None),
            (&[("SSH_ASKPASS", "/bin/ask")], false, None),
            (
                &[("SSH_ASKPASS", "/bin/ask"), ("DISPLAY", ":0")],
                false,
                program(),
            ),
            (
                &[("SSH_ASKPASS", "/bin/ask"), ("DISPLAY", ":0")],
                true,
                Some(Asker::Terminal),
            ),
            (
                &[
                    ("SSH_ASKPASS", "/bin/ask"),
                    ("SSH_ASKPASS_REQUIRE", "force"),
                ],
                true,
                program(),
            ),
            (
                &[
                    ("SSH_ASKPASS", "/bin/ask"),
                    ("SSH_ASKPASS_REQUIRE", "force"),
                ],
                false,
                program(),
            ),
            (
                &[
                    ("SSH_ASKPASS", "/bin/ask"),
                    ("SSH_ASKPASS_REQUIRE", "never"),
                    ("DISPLAY", ":0"),
                ],
                false,
                None,
            ),
            (
                &[("SSH_ASKPASS_REQUIRE", "force")],
                true,
                Some(Asker::Terminal),
            ),
        ];
        for (vars, terminal, expected) in cases {
            assert_eq!(
                choose(with(vars), terminal),
                expected,
                "{vars:?} terminal={terminal}"
            );
        }
    }

    #[test]
    fn the_program_answers_with_its_first_line() {
        let dir = tempfile::tempdir().expect("tempdir");
        let script = dir.path().join("ask.sh");
        std::fs::write(
            &script,
            "#!/bin/sh\nprintf 'pw for %s\\nsecond\\n' \"$1\"\n",
        )
        .expect("script");
        std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .expect("chmod");
        assert_eq!(
            ask_program(script.as_os_str(), "Passphrase:").as_deref(),
            Some("pw for Passphrase:")
        );
        let failing = dir.path().join("no.sh");
        std::fs::write(&failing, "#!/bin/sh\necho ignored\nexit 1\n").expect("script");
        std::fs::set_permissions(
            &failing,
            std::os::unix::fs::PermissionsExt::from_mode(0o700),
        )
        .expect("chmod");
        assert_eq!(ask_program(failing.as_os_str(), "x"), None);
        assert_eq!(
            ask_program(dir.path().join("missing").as_os_str(), "x"),
            None
        );
    }
}
