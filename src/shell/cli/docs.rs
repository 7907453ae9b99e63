//! `berth generate-docs DIR` (hidden): the man pages and shell completions
//! the packages ship, made from the same clap definitions the binaries
//! parse, so they cannot drift. scripts/package.sh runs it.

use std::path::Path;

use clap::CommandFactory;
use clap_complete::Shell;

/// OUT/man/{berth.1, berth-VERB.1 …, berthd.8} and
/// OUT/completions/{berth.bash, _berth, berthd.bash, _berthd}.
pub fn write(out: &Path) -> std::io::Result<()> {
    let man = out.join("man");
    let completions = out.join("completions");
    std::fs::create_dir_all(&man)?;
    std::fs::create_dir_all(&completions)?;

    let berth = super::Cli::command();
    // One page per verb, as git does (berth-image-build.1 …), so each
    // page the SUBCOMMANDS section names exists.
    pages(&berth, &man)?;
    let berthd = crate::daemon::args::Args::command();
    page(&berthd, "8", &man.join("berthd.8"))?;

    for (mut cmd, name) in [(berth, "berth"), (berthd, "berthd")] {
        for (shell, file) in [
            (Shell::Bash, format!("{name}.bash")),
            (Shell::Zsh, format!("_{name}")),
        ] {
            let mut text = Vec::new();
            clap_complete::generate(shell, &mut cmd, name, &mut text);
            std::fs::write(completions.join(file), text)?;
        }
    }
    Ok(())
}

fn pages(cmd: &clap::Command, man: &Path) -> std::io::Result<()> {
    let name = cmd.get_name().to_string();
    page(cmd, "1", &man.join(format!("{name}.1")))?;
    for verb in cmd
        .get_subcommands()
        .filter(|v| v.get_name() != "help" && !v.is_hide_set())
    {
        // clap takes only 'static names; this program runs once.
        let full: &'static str = format!("{name}-{}", verb.get_name()).leak();
        pages(&verb.clone().name(full), man)?;
    }
    Ok(())
}

fn page(cmd: &clap::Command, section: &str, path: &Path) -> std::io::Result<()> {
    let mut text = Vec::new();
    // `berth help VERB` is for the terminal; the pages name each other.
    clap_mangen::Man::new(cmd.clone().disable_help_subcommand(true))
        .section(section)
        .manual("berth")
        .render(&mut text)?;
    std::fs::write(path, text)
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_page_a_page_names_exists_and_completions_know_the_verbs() {
        let dir = tempfile::tempdir().expect("tempdir");
        super::write(dir.path()).expect("write");
        let man = dir.path().join("man");
        let mut named = 0;
        for entry in std::fs::read_dir(&man).expect("man") {
            let text = std::fs::read_to_string(entry.expect("entry").path()).expect("read");
            // clap_mangen lists each subcommand on a line of its own:
            // berth\\-image\\-build(1).
            for line in text.lines() {
                let line = line.replace("\\-", "-");
                let Some((name, rest)) = line.split_once('(') else {
                    continue;
                };
                if name.starts_with("berth") && rest.len() == 2 && rest.ends_with(')') {
                    let section = &rest[..1];
                    assert!(
                        man.join(format!("{name}.{section}")).exists(),
                        "{name}({section}) is named but has no page"
                    );
                    named += 1;
                }
            }
        }
        assert!(named >= 10, "only {named} references checked");
        assert!(man.join("berthd.8").exists());
        assert!(
            !man.join("berth-generate-docs.1").exists(),
            "hidden verb got a page"
        );
        let bash =
            std::fs::read_to_string(dir.path().join("completions/berth.bash")).expect("bash");
        for verb in ["apply", "signal-event", "history", "image"] {
            assert!(bash.contains(verb), "bash completion lacks {verb}");
        }
        let zsh = std::fs::read_to_string(dir.path().join("completions/_berthd")).expect("zsh");
        assert!(zsh.contains("--config"), "{zsh}");
    }
}
