//! What builds send the engine (a context or rootfs folder as a tar, a
//! tarball, a saved-image tar) as a stream of chunks made on a thread: a
//! few chunks in memory at a time, whatever the size of the input.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use hyper::body::Bytes;
use tokio::sync::mpsc;

use super::ImageError;
use crate::engine::ByteStream;

/// Bytes per chunk, and chunks in flight.
const CHUNK: usize = 64 * 1024;
const IN_FLIGHT: usize = 4;

/// A `Write` that sends full chunks down the channel (blocking when the
/// engine is slower than the disk). Fails once the receiver is gone.
pub struct ChunkWriter {
    tx: mpsc::Sender<std::io::Result<Bytes>>,
    buf: Vec<u8>,
}

impl ChunkWriter {
    fn send(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK)));
        self.tx.blocking_send(Ok(chunk)).map_err(|_| {
            std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the engine stopped reading")
        })
    }
}

impl Write for ChunkWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let room = CHUNK - self.buf.len();
        let n = data.len().min(room);
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() >= CHUNK {
            self.send()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.send()
    }
}

/// Runs `produce` on a thread, writing into the stream it returns; an
/// error of `produce` ends the stream with that error.
pub(super) fn produced(
    produce: impl FnOnce(&mut ChunkWriter) -> std::io::Result<()> + Send + 'static,
) -> ByteStream {
    let (tx, rx) = mpsc::channel(IN_FLIGHT);
    std::thread::spawn(move || {
        let mut w = ChunkWriter {
            tx: tx.clone(),
            buf: Vec::with_capacity(CHUNK),
        };
        if let Err(e) = produce(&mut w).and_then(|()| w.flush()) {
            let _ = tx.blocking_send(Err(e));
        }
    });
    Box::pin(futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    }))
}

/// `folder` as a tar archive: links kept as links (never followed),
/// owners numeric, paths relative to the folder.
pub fn folder_as_tar(folder: &Path) -> ByteStream {
    let folder = folder.to_path_buf();
    produced(move |w| pack(w, &folder, &folder.display().to_string()))
}

/// The folder at `at` into `w` as a tar (`shown` names it in an error).
fn pack(w: &mut ChunkWriter, at: &Path, shown: &str) -> std::io::Result<()> {
    let mut builder = tar::Builder::new(w);
    builder.follow_symlinks(false);
    builder.mode(tar::HeaderMode::Complete);
    builder
        .append_dir_all(".", at)
        .map_err(|e| std::io::Error::new(e.kind(), format!("cannot pack {shown}: {e}")))?;
    builder.finish()
}

/// The file at `path`, opened now (so a missing file is said at once).
pub fn file(path: &Path) -> Result<ByteStream, ImageError> {
    let f = std::fs::File::open(path).map_err(|error| ImageError::Io {
        path: path.to_path_buf(),
        error,
    })?;
    Ok(opened_file(f, path))
}

/// The file `f`, opened at `path` (which errors name), from where it is.
pub fn opened_file(mut f: std::fs::File, path: &Path) -> ByteStream {
    let path: PathBuf = path.to_path_buf();
    produced(move |w| {
        let mut buf = vec![0u8; CHUNK];
        loop {
            let n = f
                .read(&mut buf)
                .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
            if n == 0 {
                return Ok(());
            }
            w.write_all(&buf[..n])?;
        }
    })
}

/// The folder `dir` (opened, and judged where it really is) as a tar, as
/// [`folder_as_tar`]: walked from the open folder itself
/// (`/proc/self/fd/N`), so the folder read is the one judged even if its
/// path is swapped for a link meanwhile. The descriptor lives as long as
/// the stream.
pub fn opened_folder_as_tar(dir: std::fs::File) -> ByteStream {
    use std::os::fd::AsRawFd;
    let at = PathBuf::from(format!("/proc/self/fd/{}", dir.as_raw_fd()));
    produced(move |w| {
        pack(w, &at, "the folder")?;
        drop(dir);
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt;

    async fn collect(mut s: ByteStream) -> std::io::Result<Vec<u8>> {
        let mut out = Vec::new();
        while let Some(chunk) = s.next().await {
            out.extend_from_slice(&chunk?);
        }
        Ok(out)
    }

    #[tokio::test]
    async fn a_folder_streams_as_a_tar_with_links_kept() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("a"), vec![b'x'; 300_000]).expect("write");
        std::os::unix::fs::symlink("/etc/passwd", dir.path().join("link")).expect("link");
        let bytes = collect(folder_as_tar(dir.path())).await.expect("tar");
        let mut archive = tar::Archive::new(bytes.as_slice());
        let mut seen = Vec::new();
        for entry in archive.entries().expect("entries") {
            let entry = entry.expect("entry");
            let kind = entry.header().entry_type();
            seen.push((
                entry.path().expect("path").display().to_string(),
                kind.is_symlink(),
                entry.size(),
            ));
        }
        assert!(
            seen.contains(&("a".to_string(), false, 300_000)),
            "{seen:?}"
        );
        assert!(
            seen.iter().any(|(p, link, _)| p == "link" && *link),
            "{seen:?}"
        );
    }

    #[tokio::test]
    async fn an_opened_folder_streams_what_it_held_when_opened() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("rootfs");
        std::fs::create_dir_all(root.join("etc")).expect("rootfs");
        std::fs::write(root.join("etc/hello"), "hi\n").expect("write");
        std::os::unix::fs::symlink("/etc/shadow", root.join("link")).expect("link");
        let opened = std::fs::File::open(&root).expect("open");
        // Swapped for a link once opened: the opened folder is read.
        std::fs::rename(&root, dir.path().join("moved")).expect("move");
        std::os::unix::fs::symlink("/etc", &root).expect("swap");
        let bytes = collect(opened_folder_as_tar(opened)).await.expect("tar");
        let mut archive = tar::Archive::new(bytes.as_slice());
        let mut seen = Vec::new();
        for entry in archive.entries().expect("entries") {
            let entry = entry.expect("entry");
            let name = entry.path().expect("path").display().to_string();
            seen.push((name, entry.header().entry_type().is_symlink()));
        }
        seen.sort();
        assert_eq!(
            seen,
            [
                ("./".to_string(), false),
                ("etc".to_string(), false),
                ("etc/hello".to_string(), false),
                ("link".to_string(), true)
            ]
        );
    }

    #[tokio::test]
    async fn a_file_streams_whole_and_a_missing_one_is_said_at_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("big");
        let data: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&path, &data).expect("write");
        assert_eq!(
            collect(file(&path).expect("open")).await.expect("read"),
            data
        );
        assert!(file(&dir.path().join("missing")).is_err());
    }
}
