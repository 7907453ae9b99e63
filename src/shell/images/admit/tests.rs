//! What the policy lets a build do before it reads anything: sources,
//! profiles, host paths, and git's local repositories.

use std::path::{Path, PathBuf};

use super::*;

fn policy(text: &str) -> Result<Policy, PolicyError> {
    Policy::parse(Path::new("/etc/berth/policy.toml"), text)
}

fn spec(record: &str) -> ImageSpec {
    crate::images::record::one_spec(record)
}

/// A refusal as said.
#[derive(Debug, PartialEq)]
struct Why(String);

impl std::ops::Deref for Why {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

fn said(spec: &ImageSpec, policy: &Result<Policy, PolicyError>) -> Result<Option<String>, Why> {
    admit(&Config::default(), spec, policy)
        .map(|t| t.map(|(name, _)| name))
        .map_err(|e| Why(e.to_string()))
}

#[test]
fn git_tells_a_folder_here_from_a_remote() {
    let here = std::env::current_dir().expect("cwd");
    for (url, paths) in [
        ("file:///srv/repo.git", vec![PathBuf::from("/srv/repo.git")]),
        ("FILE:///srv/r", vec![PathBuf::from("/srv/r")]),
        ("file://localhost/etc", vec![PathBuf::from("/etc")]),
        (
            "file:///%65tc",
            vec![PathBuf::from("/%65tc"), PathBuf::from("/etc")],
        ),
        ("/root/repo", vec![PathBuf::from("/root/repo")]),
        ("./repo", vec![here.join("./repo")]),
        ("repo", vec![here.join("repo")]),
        ("a/b:c", vec![here.join("a/b:c")]),
    ] {
        assert_eq!(local_repository(url), paths, "{url}");
    }
    for url in [
        "https://example.com/r.git",
        "ssh://git@example.com/r.git",
        "git@example.com:r.git",
        "example.com:/srv/r",
        "ext::sh -c x",
    ] {
        assert_eq!(local_repository(url), Vec::<PathBuf>::new(), "{url}");
    }
}

#[test]
fn an_unusable_policy_or_a_source_it_does_not_list_refuses_every_build() {
    let records = [
        "g=image|Source|git|Repository|https://example.com/r.git|Tag|g:1\n",
        "r=image|Source|rootfs|Path|/srv/rootfs|Tag|r:1\n",
        "t=image|Source|tar|Path|/srv/t.tar|Tag|t:1\n",
    ];
    let broken = policy("[images\n");
    assert!(broken.is_err());
    for record in records {
        let s = spec(record);
        assert_eq!(said(&s, &Ok(Policy::default())), Ok(None), "{record}");
        let refused = said(&s, &broken);
        assert!(
            refused
                .as_ref()
                .is_err_and(|e| e.contains("no image is built or loaded")),
            "{refused:?}"
        );
    }
    let git_only = policy("[images]\nsources = [\"git\"]\n");
    assert_eq!(said(&spec(records[0]), &git_only), Ok(None));
    for (record, kind) in [(records[1], "rootfs"), (records[2], "tar")] {
        let refused = said(&spec(record), &git_only);
        assert_eq!(
            refused,
            Err(Why(format!(
                "Source {kind}: the policy /etc/berth/policy.toml does not allow images built from {kind} ([images] sources = git)"
            )))
        );
    }
    // `local` is every image built here.
    let local = policy("[images]\nsources = [\"local\"]\n");
    for record in records {
        assert_eq!(said(&spec(record), &local), Ok(None), "{record}");
    }
}

#[test]
fn a_record_names_only_the_default_or_a_confining_profile_unless_granted() {
    let jail = "default_profile = \"confined\"\n[profiles.open]\n";
    let tar = |profile: &str| {
        spec(&format!(
            "t=image|Source|tar|Path|/srv/t.tar|Tag|t:1{profile}\n"
        ))
    };
    let p = policy(jail);
    assert_eq!(said(&tar(""), &p), Ok(Some("confined".into())));
    for escape in ["default", "open"] {
        let refused = said(&tar(&format!("|Profile|{escape}")), &p);
        assert!(
            refused.as_ref().is_err_and(|e| e.contains(&format!(
                "Profile \"{escape}\": an image record may name only the default profile \"confined\""
            )) && e.contains(&format!("[records.t] profiles = [\"{escape}\"]"))),
            "{refused:?}"
        );
    }
    // Granted by the record's name: not a tenant image then.
    let granted = policy(&format!("{jail}[records.t]\nprofiles = [\"default\"]\n"));
    assert_eq!(said(&tar("|Profile|default"), &granted), Ok(None));
    assert!(said(&tar("|Profile|open"), &granted).is_err());
    // Another record's grant is not this one's.
    let other = policy(&format!("{jail}[records.u]\nprofiles = [\"default\"]\n"));
    assert!(said(&tar("|Profile|default"), &other).is_err());
    // A grant pinned to an image holds for a record making that image.
    let pinned = |image: &str| {
        policy(&format!(
            "{jail}[records.t]\nprofiles = [\"default\"]\nimage = \"{image}\"\n"
        ))
    };
    assert_eq!(said(&tar("|Profile|default"), &pinned("t:1")), Ok(None));
    assert!(said(&tar("|Profile|default"), &pinned("t:2")).is_err());
    // A confining profile is always allowed, and the default one is.
    let open = policy("[profiles.cell]\nconfined = true\n");
    assert_eq!(said(&tar("|Profile|cell"), &open), Ok(Some("cell".into())));
    assert_eq!(said(&tar("|Profile|default"), &open), Ok(None));
}

#[test]
fn a_host_path_the_policy_keeps_from_images_is_never_read() {
    let ok = Ok(Policy::default());
    for (record, what) in [
        ("x=image|Source|rootfs|Path|/etc|Tag|t/x:1", "Path /etc: "),
        (
            "x=image|Source|tar|Path|/root/x.tar|Tag|t/x:1",
            "Path /root/x.tar: ",
        ),
        (
            "x=image|Source|git|Repository|file:///etc/r|Tag|t/x:1",
            "Repository /etc/r: ",
        ),
        (
            "x=image|Source|git|Repository|file:///%65tc/r|Tag|t/x:1",
            "Repository /etc/r: ",
        ),
        (
            "x=image|Source|git|Repository|/root/r|Tag|t/x:1",
            "Repository /root/r: ",
        ),
    ] {
        let refused = said(&spec(&format!("{record}\n")), &ok);
        assert!(
            refused
                .as_ref()
                .is_err_and(|e| e.starts_with(what) && e.contains("never read into an image")),
            "{record}: {refused:?}"
        );
    }
    let remote = spec("x=image|Source|git|Repository|https://example.com/r.git|Tag|t/x:1\n");
    assert_eq!(said(&remote, &ok), Ok(None));
    let roots = policy("[images]\npath_roots = [\"/srv/images\"]\n");
    let inside = spec("x=image|Source|rootfs|Path|/srv/images/x|Tag|t/x:1\n");
    assert_eq!(said(&inside, &roots), Ok(None));
    for record in [
        "x=image|Source|rootfs|Path|/srv/other|Tag|t/x:1\n",
        "x=image|Source|git|Repository|file:///srv/repo|Tag|t/x:1\n",
    ] {
        let refused = said(&spec(record), &roots);
        assert!(
            refused.as_ref().is_err_and(|e| e.contains("path_roots")),
            "{refused:?}"
        );
    }
    assert_eq!(said(&remote, &roots), Ok(None));
}

#[test]
fn what_is_opened_is_judged_where_it_really_is() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ok = Ok(Policy::default());
    let config = Config::default();
    let folder = dir.path().join("rootfs");
    std::fs::create_dir(&folder).expect("folder");
    assert!(open_judged(&config, &ok, &folder).is_ok());
    // What a swap after the first check would leave: a link to /etc.
    let link = dir.path().join("swapped");
    std::os::unix::fs::symlink("/etc", &link).expect("link");
    let said = open_judged(&config, &ok, &link).map_err(|e| e.to_string());
    assert!(
        said.as_ref()
            .is_err_and(|e| e == "refused: Path /etc: /etc is never read into an image"),
        "{said:?}"
    );
    let file_link = dir.path().join("passwd");
    std::os::unix::fs::symlink("/etc/passwd", &file_link).expect("link");
    assert!(open_judged(&config, &ok, &file_link).is_err());
    assert!(open_judged(&config, &policy("[images\n"), &folder).is_err());
    // A FIFO (or a device a container made) is never opened: a read of
    // one could block the build, an open of one act on the host.
    let fifo = dir.path().join("fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).expect("fifo");
    let said = open_judged(&config, &ok, &fifo).map_err(|e| e.to_string());
    assert!(
        said.as_ref()
            .is_err_and(|e| e.contains("is neither a regular file nor a folder")),
        "{said:?}"
    );
    // A regular file opens, and reads.
    let tar = dir.path().join("app.tar");
    std::fs::write(&tar, b"data").expect("write");
    let mut opened = open_judged(&config, &ok, &tar).expect("opens");
    let mut read = String::new();
    std::io::Read::read_to_string(&mut opened, &mut read).expect("reads");
    assert_eq!(read, "data");
}
