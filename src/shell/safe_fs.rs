//! Files and folders berthd writes or mounts as root, reached without
//! following a link someone else could have planted.
//!
//! A path is walked one component at a time from `/` with `O_NOFOLLOW`
//! (every step an `openat` on the folder reached so far), so a link swapped
//! in after a check cannot redirect the next step. What a link on the way
//! may do depends on the [`Links`] policy: [`Links::Trusted`] follows links
//! owned by root or by berth's own user (a user can only make links they
//! own), [`Links::Never`] follows none (host folders mounted into
//! containers, whose root makes root-owned links). Files are written to a
//! temp file with an unpredictable name opened `O_CREAT|O_EXCL|O_NOFOLLOW`,
//! given their owner and mode on the descriptor, synced, then renamed over
//! the target (a rename replaces a link, it never writes through one).

use std::collections::VecDeque;
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{openat, renameat, OFlag, AT_FDCWD};
use nix::sys::stat::{fchmod, mkdirat, Mode};
use nix::unistd::{fchown, unlinkat, Gid, Uid, UnlinkatFlags};

/// Links followed on the way (Linux's own limit).
const MAX_LINKS: usize = 40;

/// Which symbolic links a walk may follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Links {
    /// Links owned by root or by this process's user: nobody else could
    /// have made them.
    Trusted,
    /// None at all.
    Never,
}

#[derive(Debug, thiserror::Error)]
pub enum SafeFsError {
    #[error("{path}: {error}")]
    Io { path: PathBuf, error: io::Error },
    #[error("{path} is a symbolic link owned by uid {uid}: berth follows only links owned by root (or by its own user) to a file or folder it writes")]
    UntrustedLink { path: PathBuf, uid: u32 },
    #[error("{path} is a symbolic link: berth uses only real folders here (give the path the link points to)")]
    Link { path: PathBuf },
    #[error("{path} is not a folder")]
    NotDir { path: PathBuf },
    #[error("{path}: more than {MAX_LINKS} symbolic links on the way")]
    TooManyLinks { path: PathBuf },
    #[error("{path} is not an absolute path")]
    Relative { path: PathBuf },
}

/// Why a file only root may control cannot be trusted (see
/// [`read_trusted`]); the caller names the file and says what to do.
#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    #[error("is a symbolic link")]
    Link,
    #[error("is not a regular file")]
    NotAFile,
    #[error("is owned by uid {0}")]
    Owner(u32),
    /// It has one of the mode bits the caller refuses.
    #[error("has mode {0:o}")]
    Mode(u32),
    #[error("is larger than {0} bytes")]
    TooLarge(u64),
    #[error("{0}")]
    Io(io::Error),
}

/// The text of a file that only root (or this process's user) controls,
/// as berthd reads its credentials and its policy: opened without
/// following a link (and without blocking on a FIFO), a regular file,
/// owned by root or by this user, with none of the `refused_mode` bits,
/// at most `limit` bytes. None: there is no such file.
pub fn read_trusted(
    path: &Path,
    refused_mode: u32,
    limit: u64,
) -> Result<Option<String>, TrustError> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags((OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK).bits())
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) if e.raw_os_error() == Some(nix::libc::ELOOP) => return Err(TrustError::Link),
        Err(e) => return Err(TrustError::Io(e)),
    };
    let meta = file.metadata().map_err(TrustError::Io)?;
    if !meta.is_file() {
        return Err(TrustError::NotAFile);
    }
    if meta.uid() != 0 && meta.uid() != Uid::effective().as_raw() {
        return Err(TrustError::Owner(meta.uid()));
    }
    if meta.mode() & refused_mode != 0 {
        return Err(TrustError::Mode(meta.mode() & 0o7777));
    }
    let mut text = String::new();
    file.take(limit + 1)
        .read_to_string(&mut text)
        .map_err(TrustError::Io)?;
    if text.len() as u64 > limit {
        return Err(TrustError::TooLarge(limit));
    }
    Ok(Some(text))
}

impl SafeFsError {
    fn io(path: &Path, source: impl Into<io::Error>) -> Self {
        SafeFsError::Io {
            path: path.to_path_buf(),
            error: source.into(),
        }
    }
}

/// Who a written file belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner {
    /// Whoever writes it (the process's user and group).
    Writer,
    /// Exactly this user and group; failing to set them fails the write.
    Exactly(Uid, Gid),
    /// This user and group if the writer may give files away (root), else
    /// the writer's (what SME's tools do when an admin edits a db).
    IfAllowed(Uid, Gid),
}

/// A folder reached safely: every later operation is relative to its
/// descriptor, so nothing can move it under berth's feet.
#[derive(Debug)]
pub struct Dir {
    fd: OwnedFd,
    path: PathBuf,
}

/// Where an open file or folder really is (links resolved), as the
/// kernel sees it: whatever its path has become since.
pub fn real_path_of(fd: &impl std::os::fd::AsRawFd) -> io::Result<PathBuf> {
    std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

/// Opens the folder `path` (absolute); follows links as `links` allows.
pub fn open_dir(path: &Path, links: Links) -> Result<Dir, SafeFsError> {
    walk(path, links, None)
}

/// [`open_dir`], creating missing folders with `mode` (like `mkdir -p`).
pub fn create_dir_all(path: &Path, links: Links, mode: u32) -> Result<Dir, SafeFsError> {
    walk(path, links, Some(mode))
}

fn link_is_trusted(uid: u32) -> bool {
    uid == 0 || uid == Uid::effective().as_raw()
}

/// The walk: a stack of folder descriptors (so `..` in a link target goes
/// back to the folder actually walked through) and a queue of components
/// still to resolve (a followed link puts its target's in front).
fn walk(path: &Path, links: Links, create: Option<u32>) -> Result<Dir, SafeFsError> {
    if !path.is_absolute() {
        return Err(SafeFsError::Relative {
            path: path.to_path_buf(),
        });
    }
    let root = openat(
        AT_FDCWD,
        "/",
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| SafeFsError::io(Path::new("/"), e))?;
    let mut stack: Vec<(OwnedFd, PathBuf)> = vec![(root, PathBuf::from("/"))];
    let mut todo: VecDeque<OsString> = components(path);
    let mut followed = 0;
    while let Some(name) = todo.pop_front() {
        let (dir, here) = stack.last().expect("the stack always holds the root");
        let here = here.clone();
        if name == ".." {
            if stack.len() > 1 {
                stack.pop();
            }
            continue;
        }
        let next = here.join(&name);
        let flags = OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        let fd = match openat(dir, name.as_os_str(), flags, Mode::empty()) {
            Ok(fd) => fd,
            Err(Errno::ENOENT) if create.is_some() => {
                let mode = Mode::from_bits_truncate(create.unwrap_or(0o755));
                match mkdirat(dir, name.as_os_str(), mode) {
                    Ok(()) | Err(Errno::EEXIST) => {}
                    Err(e) => return Err(SafeFsError::io(&next, e)),
                }
                openat(dir, name.as_os_str(), flags, Mode::empty())
                    .map_err(|e| SafeFsError::io(&next, e))?
            }
            Err(e) => return Err(SafeFsError::io(&next, e)),
        };
        let meta = File::from(fd.try_clone().map_err(|e| SafeFsError::io(&next, e))?)
            .metadata()
            .map_err(|e| SafeFsError::io(&next, e))?;
        let kind = meta.file_type();
        if kind.is_symlink() {
            match links {
                Links::Never => return Err(SafeFsError::Link { path: next }),
                Links::Trusted if !link_is_trusted(meta.uid()) => {
                    return Err(SafeFsError::UntrustedLink {
                        path: next,
                        uid: meta.uid(),
                    })
                }
                Links::Trusted => {}
            }
            followed += 1;
            if followed > MAX_LINKS {
                return Err(SafeFsError::TooManyLinks {
                    path: path.to_path_buf(),
                });
            }
            let target = nix::fcntl::readlinkat(dir, name.as_os_str())
                .map_err(|e| SafeFsError::io(&next, e))?;
            let target = PathBuf::from(target);
            if target.is_absolute() {
                stack.truncate(1);
            }
            for part in components(&target).into_iter().rev() {
                todo.push_front(part);
            }
            continue;
        }
        if !kind.is_dir() {
            return Err(SafeFsError::NotDir { path: next });
        }
        stack.push((fd, next));
    }
    let (fd, _) = stack.pop().expect("the stack always holds the root");
    Ok(Dir {
        fd,
        path: path.to_path_buf(),
    })
}

/// The parts of a path to walk: names and `..`; `/` and `.` say nothing.
fn components(path: &Path) -> VecDeque<OsString> {
    path.components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_os_string()),
            Component::ParentDir => Some(OsString::from("..")),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => None,
        })
        .collect()
}

/// An unpredictable temp name for `name`: hidden (so a watcher or a
/// `conf.d/*.conf` include never picks it up half written) and unique.
fn temp_name(name: &OsStr) -> io::Result<OsString> {
    let mut random = [0u8; 8];
    File::open("/dev/urandom")?.read_exact(&mut random)?;
    let mut out = OsString::from(".");
    out.push(name);
    out.push(".");
    out.push(
        random
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>(),
    );
    out.push(".berth-tmp");
    Ok(out)
}

impl Dir {
    /// The path this folder was opened as.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Where the folder really is (links resolved), as the kernel sees it.
    pub fn real_path(&self) -> io::Result<PathBuf> {
        real_path_of(&self.fd)
    }

    fn entry(&self, name: &OsStr) -> io::Result<()> {
        let bytes = name.as_bytes();
        if bytes.is_empty() || bytes.contains(&b'/') || bytes == b"." || bytes == b".." {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{name:?} is not a file name"),
            ));
        }
        Ok(())
    }

    /// The folder's own owner and mode.
    pub fn metadata(&self) -> io::Result<std::fs::Metadata> {
        File::from(self.fd.try_clone()?).metadata()
    }

    /// The names in this folder, at most `limit` of them, in no order.
    pub fn names(&self, limit: usize) -> io::Result<Vec<OsString>> {
        use std::os::fd::AsRawFd;
        // The descriptor's own folder, whatever its path says now.
        std::fs::read_dir(format!("/proc/self/fd/{}", self.fd.as_raw_fd()))?
            .filter_map(Result::ok)
            .map(|e| Ok(e.file_name()))
            .take(limit)
            .collect()
    }

    /// The regular file `name` of this folder opened for reading: never
    /// through a link, never blocking on a FIFO or a device; None when
    /// there is none, or it is a link or not a regular file.
    pub fn open_file(&self, name: &OsStr) -> io::Result<Option<File>> {
        self.entry(name)?;
        let flags = OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_NONBLOCK;
        let file = match openat(&self.fd, name, flags, Mode::empty()) {
            Ok(fd) => File::from(fd),
            Err(Errno::ENOENT | Errno::ELOOP) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        Ok(file.metadata()?.is_file().then_some(file))
    }

    /// The regular file `name` of this folder, at most `limit` bytes; None
    /// when there is none (a link is not followed: it reads as none).
    pub fn read_file(&self, name: &OsStr, limit: u64) -> io::Result<Option<Vec<u8>>> {
        let Some(file) = self.open_file(name)? else {
            return Ok(None);
        };
        let mut bytes = Vec::new();
        file.take(limit.saturating_add(1)).read_to_end(&mut bytes)?;
        if bytes.len() as u64 > limit {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("larger than {limit} bytes"),
            ));
        }
        Ok(Some(bytes))
    }

    /// Replaces `name` with `bytes` atomically, with `mode` and `owner`.
    pub fn write_file(
        &self,
        name: &OsStr,
        bytes: &[u8],
        mode: u32,
        owner: Owner,
    ) -> io::Result<()> {
        self.entry(name)?;
        let flags =
            OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        // A name someone guessed and planted is skipped, not written through.
        let mut tries = 0;
        let (temp, fd) = loop {
            let temp = temp_name(name)?;
            match openat(
                &self.fd,
                temp.as_os_str(),
                flags,
                Mode::from_bits_truncate(0o600),
            ) {
                Ok(fd) => break (temp, fd),
                Err(Errno::EEXIST) if tries < 8 => tries += 1,
                Err(e) => return Err(e.into()),
            }
        };
        let result = (|| -> io::Result<()> {
            let mut file = File::from(fd);
            file.write_all(bytes)?;
            match owner {
                Owner::Writer => {}
                Owner::Exactly(uid, gid) => fchown(file.as_fd(), Some(uid), Some(gid))?,
                Owner::IfAllowed(uid, gid) => {
                    let _ = fchown(file.as_fd(), Some(uid), Some(gid));
                }
            }
            // After the owner: chown clears set-id bits.
            fchmod(file.as_fd(), Mode::from_bits_truncate(mode & 0o7777))?;
            file.sync_all()?;
            renameat(&self.fd, temp.as_os_str(), &self.fd, name)?;
            Ok(())
        })();
        if result.is_err() {
            let _ = unlinkat(&self.fd, temp.as_os_str(), UnlinkatFlags::NoRemoveDir);
        }
        result?;
        self.sync()
    }

    /// Removes the file (or link) `name`; a missing one is not an error.
    pub fn remove_file(&self, name: &OsStr) -> io::Result<()> {
        self.entry(name)?;
        match unlinkat(&self.fd, name, UnlinkatFlags::NoRemoveDir) {
            Ok(()) | Err(Errno::ENOENT) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// What `name` of this folder is: for a link, the link's own metadata
    /// (it is not followed); None when there is no such entry.
    pub fn stat(&self, name: &OsStr) -> io::Result<Option<std::fs::Metadata>> {
        self.entry(name)?;
        let flags = OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        match openat(&self.fd, name, flags, Mode::empty()) {
            Ok(fd) => Ok(Some(File::from(fd).metadata()?)),
            Err(Errno::ENOENT) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Whether `name` is a folder (links not followed).
    pub fn is_dir(&self, name: &OsStr) -> bool {
        let flags = OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        openat(&self.fd, name, flags, Mode::empty())
            .ok()
            .and_then(|fd| File::from(fd).metadata().ok())
            .is_some_and(|m| m.is_dir())
    }

    /// fsync of the folder, so a rename in it survives a crash.
    fn sync(&self) -> io::Result<()> {
        let fd = openat(
            &self.fd,
            ".",
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )?;
        File::from(fd).sync_all()
    }
}

/// Writes `bytes` to the file `path` atomically (its folder reached with
/// trusted links only, created 0755 if missing): what berth's own state
/// files use.
pub fn write_file(path: &Path, bytes: &[u8], mode: u32) -> Result<(), SafeFsError> {
    let (dir, name) = parent_and_name(path)?;
    let dir = create_dir_all(&dir, Links::Trusted, 0o755)?;
    dir.write_file(&name, bytes, mode, Owner::Writer)
        .map_err(|e| SafeFsError::io(path, e))
}

/// The absolute folder and file name of `path`.
pub fn parent_and_name(path: &Path) -> Result<(PathBuf, OsString), SafeFsError> {
    let absolute = std::path::absolute(path).map_err(|e| SafeFsError::io(path, e))?;
    match (absolute.parent(), absolute.file_name()) {
        (Some(dir), Some(name)) => Ok((dir.to_path_buf(), name.to_os_string())),
        _ => Err(SafeFsError::io(
            path,
            io::Error::new(io::ErrorKind::InvalidInput, "not a file path"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{symlink, PermissionsExt};

    #[test]
    fn a_planted_temp_link_is_never_written_through() {
        let dir = tempfile::tempdir().expect("tempdir");
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "precious").expect("write");
        // The old fixed temp name, linked to a file the writer must not touch.
        symlink(&victim, dir.path().join(".out.conf.berth-tmp")).expect("link");
        let d = open_dir(dir.path(), Links::Trusted).expect("open");
        d.write_file(OsStr::new("out.conf"), b"new", 0o640, Owner::Writer)
            .expect("write");
        assert_eq!(std::fs::read_to_string(&victim).expect("read"), "precious");
        let out = dir.path().join("out.conf");
        assert_eq!(std::fs::read_to_string(&out).expect("read"), "new");
        let mode = std::fs::metadata(&out).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o640);
        let leftovers: Vec<_> = std::fs::read_dir(dir.path())
            .expect("ls")
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().contains(".berth-tmp."))
            .collect();
        assert!(leftovers.is_empty());
    }

    #[test]
    fn a_link_at_the_target_is_replaced_not_followed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "precious").expect("write");
        symlink(&victim, dir.path().join("out")).expect("link");
        let d = open_dir(dir.path(), Links::Trusted).expect("open");
        assert_eq!(d.read_file(OsStr::new("out"), 100).expect("read"), None);
        d.write_file(OsStr::new("out"), b"new", 0o644, Owner::Writer)
            .expect("write");
        assert_eq!(std::fs::read_to_string(&victim).expect("read"), "precious");
        assert!(!std::fs::symlink_metadata(dir.path().join("out"))
            .expect("meta")
            .file_type()
            .is_symlink());
    }

    #[test]
    fn folders_are_made_and_links_follow_the_policy() {
        let dir = tempfile::tempdir().expect("tempdir");
        let real = dir.path().join("real");
        std::fs::create_dir(&real).expect("mkdir");
        symlink("real", dir.path().join("link")).expect("link");
        // Our own link (the test's user) is trusted...
        let d = create_dir_all(&dir.path().join("link/a/b"), Links::Trusted, 0o755)
            .expect("through a trusted link");
        assert!(real.join("a/b").is_dir());
        assert_eq!(d.real_path().expect("real path"), real.join("a/b"));
        // ...but with Links::Never no link at all is.
        let err =
            create_dir_all(&dir.path().join("link/c"), Links::Never, 0o755).expect_err("no links");
        assert!(matches!(err, SafeFsError::Link { .. }), "{err}");
        assert!(!real.join("c").exists());
        // `..` in a link target goes back the way the walk came.
        symlink("../real/a", real.join("up")).expect("link");
        let d = open_dir(&real.join("up/b"), Links::Trusted).expect("dotdot");
        assert_eq!(d.real_path().expect("real"), real.join("a/b"));
        // A file on the way is not a folder.
        std::fs::write(real.join("file"), "x").expect("write");
        assert!(matches!(
            open_dir(&real.join("file/x"), Links::Trusted),
            Err(SafeFsError::NotDir { .. })
        ));
    }

    #[test]
    fn link_loops_end() {
        let dir = tempfile::tempdir().expect("tempdir");
        symlink("b", dir.path().join("a")).expect("link");
        symlink("a", dir.path().join("b")).expect("link");
        assert!(matches!(
            open_dir(&dir.path().join("a"), Links::Trusted),
            Err(SafeFsError::TooManyLinks { .. })
        ));
    }

    #[test]
    fn links_of_other_users_are_not_followed_by_root() {
        if !Uid::effective().is_root() {
            return; // only root can make a link owned by someone else
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let real = dir.path().join("real");
        std::fs::create_dir(&real).expect("mkdir");
        let link = dir.path().join("link");
        symlink(&real, &link).expect("link");
        nix::unistd::fchownat(
            AT_FDCWD,
            &link,
            Some(Uid::from_raw(65534)),
            None,
            nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .expect("chown the link");
        let err = create_dir_all(&link.join("x"), Links::Trusted, 0o755).expect_err("untrusted");
        assert!(
            matches!(err, SafeFsError::UntrustedLink { uid: 65534, .. }),
            "{err}"
        );
        assert!(!real.join("x").exists());
    }
}
