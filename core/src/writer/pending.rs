//! Image files written off the caller's thread. Each file gets a thread that checksums it
//! (crc32c and SHA-256 for the inventory), creates and writes it in the temporary directory
//! and fsyncs it, while the caller encodes the next file. `finish` takes the checksums as soon
//! as they are ready to write the inventory, and waits for the fsyncs only before the
//! directory is renamed into place, the moment the image appears: a crash before it leaves a
//! hidden temporary directory that the next writer removes, never an image.
//!
//! Why: an fsync here costs 0.2-1 ms (ext4 without a journal: the inode, then a device
//! flush); fsyncs issued together overlap their waits, and started while later files are
//! still being encoded they are mostly done when `finish` needs them. Checksumming beside
//! the encoding takes SHA-256 (1-2 ms for a 3 MiB image) off the caller's thread. A large
//! file (the firewall's, 22 MiB at 2,000 chains, is written when nothing else is left) is
//! checksummed on a second thread while the first writes and fsyncs it: SHA-256 of 22 MiB
//! takes 14 ms, its write and fsync as long again, and `finish` waits for both.

use std::ffi::OsStr;
use std::fs::File;
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;

use crate::error::ImageError;
use crate::place::write_new_at;
use crate::seal::sha256;

/// What a file's threads report before they end (in either order).
enum Step {
    /// the checksums of its bytes: crc32c of the body (as the trailer holds it), SHA-256
    Sums(u32, [u8; 32]),
    /// the file exists in the directory with all its bytes written (not yet fsynced)
    Created,
}

/// From this size on a file's checksums are computed on a thread of their own, beside its
/// write and fsync (below it a second thread costs more than it saves).
const SUMS_APART: usize = 1 << 20;

/// What a file's thread needs.
struct Job {
    dir: Arc<File>,
    name: &'static str,
    path: PathBuf,
    bytes: Arc<Vec<u8>>,
}

impl Job {
    /// Checksums, writes and fsyncs the file, reporting each step on `tx`; the checksums of a
    /// large file on a second thread meanwhile.
    fn run(&self, tx: &mpsc::Sender<Step>) -> Result<(), ImageError> {
        let bytes = self.bytes.as_slice();
        // a send fails only when the writer is gone (dropped after an error): keep going, the
        // directory is removed once this thread has been joined
        let sums = || {
            let _ = tx.send(Step::Sums(trailer_crc(bytes), sha256(bytes)));
        };
        if bytes.len() < SUMS_APART {
            sums();
            return self.write(tx);
        }
        std::thread::scope(|s| {
            let apart = std::thread::Builder::new()
                .name("crhook-sums".into())
                .spawn_scoped(s, sums);
            if apart.is_err() {
                // no thread to be had: checksum here first
                sums();
            }
            self.write(tx)
        })
    }

    /// Writes and fsyncs the file.
    fn write(&self, tx: &mpsc::Sender<Step>) -> Result<(), ImageError> {
        let bytes = self.bytes.as_slice();
        let f = write_new_at(self.dir.as_fd(), OsStr::new(self.name), &self.path, bytes)?;
        let _ = tx.send(Step::Created);
        f.sync_all()
            .map_err(|e| ImageError::io("fsync", &self.path, e))
    }
}

/// The crc32c of a file's body as its trailer holds it (the last four bytes). Every file
/// written here ends in a trailer checked or written just before: `Encoder::finish` wrote it
/// from the bytes it framed, or `verify_framing` compared it with the body.
fn trailer_crc(bytes: &[u8]) -> u32 {
    match bytes.len().checked_sub(4).and_then(|at| bytes.get(at..)) {
        Some(&[a, b, c, d]) => u32::from_le_bytes([a, b, c, d]),
        _ => crate::frame::body_crc(bytes),
    }
}

/// One file being written.
pub(super) struct Pending {
    path: PathBuf,
    rx: mpsc::Receiver<Step>,
    /// the steps received so far
    sums: Option<(u32, [u8; 32])>,
    created: bool,
    /// the thread, until joined
    handle: Option<JoinHandle<Result<(), ImageError>>>,
    /// the result once known: joined, or run on the caller's thread when no thread could be
    /// started
    done: Option<Result<(), ImageError>>,
}

impl std::fmt::Debug for Pending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Pending({})", self.path.display())
    }
}

impl Pending {
    /// Starts writing `bytes` as `name` in `dir` (`path` names it in errors).
    pub(super) fn start(dir: Arc<File>, name: &'static str, path: PathBuf, bytes: Vec<u8>) -> Self {
        let (tx, rx) = mpsc::channel();
        let job = Job {
            dir,
            name,
            path: path.clone(),
            bytes: Arc::new(bytes),
        };
        let theirs = Job {
            dir: Arc::clone(&job.dir),
            name,
            path: path.clone(),
            bytes: Arc::clone(&job.bytes),
        };
        let ttx = tx.clone();
        let spawned = std::thread::Builder::new()
            .name("crhook-write".into())
            .spawn(move || theirs.run(&ttx));
        let (handle, done) = match spawned {
            Ok(h) => (Some(h), None),
            // no thread to be had: write it here and now (the steps wait in the channel)
            Err(_) => (None, Some(job.run(&tx))),
        };
        Pending {
            path,
            rx,
            sums: None,
            created: false,
            handle,
            done,
        }
    }

    /// The file's crc32c and SHA-256.
    pub(super) fn sums(&mut self) -> Result<(u32, [u8; 32]), ImageError> {
        loop {
            if let Some(sums) = self.sums {
                return Ok(sums);
            }
            self.next_step()?;
        }
    }

    /// Waits until the file exists with all its bytes written.
    pub(super) fn created(&mut self) -> Result<(), ImageError> {
        while !self.created {
            self.next_step()?;
        }
        Ok(())
    }

    /// Waits until the file is on disk (fsynced).
    pub(super) fn wait(mut self) -> Result<(), ImageError> {
        self.join()
    }

    /// Receives the next step; the thread's error (or that it ended early) once the work has
    /// ended without sending more (its threads hold the only senders left after `start`).
    fn next_step(&mut self) -> Result<(), ImageError> {
        match self.rx.recv() {
            Ok(Step::Sums(crc, sha)) => self.sums = Some((crc, sha)),
            Ok(Step::Created) => self.created = true,
            Err(_) => return Err(self.failure()),
        }
        Ok(())
    }

    fn join(&mut self) -> Result<(), ImageError> {
        if let Some(h) = self.handle.take() {
            self.done = Some(h.join().unwrap_or_else(|_| {
                Err(ImageError::io(
                    "write",
                    &self.path,
                    std::io::Error::other("writer thread panicked"),
                ))
            }));
        }
        self.done.take().unwrap_or(Ok(()))
    }

    /// Why the thread stopped before a step: its error, or that it ended early.
    fn failure(&mut self) -> ImageError {
        match self.join() {
            Err(e) => e,
            Ok(()) => ImageError::io(
                "write",
                &self.path,
                std::io::Error::other("writer thread ended before its work was done"),
            ),
        }
    }
}

impl Drop for Pending {
    /// A writer dropped before `finish` (after an error) waits for its files' threads, so
    /// that its temporary directory is removed only once nothing writes into it.
    fn drop(&mut self) {
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}
