//! The in-memory image of one namespace: what checkpoint captures, what restore applies and
//! what diff compares. Reading and writing go through crhook-core's image directory, which
//! verifies the image and says whether it is sealed with this host's key ([`open_image`]).

use std::path::Path;

use crhook_core::{HostKey, ImageDir, ImageWriter, Kind, Limits, Trust};
use crhook_proto as pb;

use crate::error::Result;

#[derive(Debug, Default, Clone, PartialEq)]
pub struct Snapshot {
    pub links: Vec<pb::Link>,
    pub addresses: Vec<pb::Address>,
    pub routes: Vec<pb::Route>,
    pub nexthops: Vec<pb::NexthopObject>,
    pub rules: Vec<pb::Rule>,
    pub neighbours: Vec<pb::Neighbour>,
    pub tc: Vec<pb::TcObject>,
    pub sysctls: Vec<pb::Sysctl>,
    pub firewall: Vec<pb::FirewallRuleset>,
    pub tun_files: Vec<pb::TunFile>,
    pub ext_files: Vec<pb::ExtFile>,
    pub skipped_files: Vec<pb::SkippedFile>,
}

impl Snapshot {
    pub fn write(&self, w: &mut ImageWriter) -> Result<()> {
        self.write_kinds(w, |_| true)
    }

    /// Writes the file of every kind `carried` says (a child image leaves out what it takes
    /// from its parent). The one list of the kinds a snapshot holds.
    pub fn write_kinds(&self, w: &mut ImageWriter, carried: impl Fn(Kind) -> bool) -> Result<()> {
        macro_rules! put {
            ($($kind:expr => $field:ident),* $(,)?) => {
                $(if carried($kind) {
                    w.write($kind, &self.$field)?;
                })*
            };
        }
        put!(
            Kind::Links => links,
            Kind::Addresses => addresses,
            Kind::Routes => routes,
            Kind::Nexthops => nexthops,
            Kind::Rules => rules,
            Kind::Neighbours => neighbours,
            Kind::Tc => tc,
            Kind::Sysctls => sysctls,
            Kind::Firewall => firewall,
            Kind::TunFiles => tun_files,
            Kind::ExtFiles => ext_files,
            Kind::SkippedFiles => skipped_files,
        );
        Ok(())
    }

    /// Opens and verifies the image directory at `path` and reads it.
    pub fn read_dir(path: &std::path::Path) -> Result<Snapshot> {
        Snapshot::read(&ImageDir::open(path)?)
    }

    /// [`Snapshot::read_dir`] with the host key: the snapshot and whether the image is sealed
    /// with this host's key (see [`open_image`]).
    pub fn read_dir_trusted(path: &Path) -> Result<(Snapshot, Trust)> {
        let dir = open_image(path)?;
        Ok((Snapshot::read(&dir)?, dir.trust().clone()))
    }

    /// Reads every file; the two largest (sysctls, firewall) are decoded each on a thread of
    /// its own meanwhile (one thread for both left a core idle for 60 ms at L).
    pub fn read(dir: &ImageDir) -> Result<Snapshot> {
        Ok(Snapshot::read_with(dir, false)?.0)
    }

    /// [`Snapshot::read`], with `routes_encoded` the routes checked but left encoded (their
    /// entries are returned beside a snapshot without routes; see `restore/streamed.rs`).
    pub(crate) fn read_with(
        dir: &ImageDir,
        routes_encoded: bool,
    ) -> Result<(Snapshot, Option<crhook_core::Encoded>)> {
        std::thread::scope(|s| {
            let (mut snap, encoded, sysctls) = Snapshot::read_in(s, dir, routes_encoded)?;
            snap.sysctls = sysctls.join()?.to_pb();
            Ok((snap, encoded))
        })
    }

    /// [`Snapshot::read_with`] less the sysctls, which are still decoding on a thread of
    /// scope `s` when it returns, compact ([`crate::sysctl::Saved`]): the caller joins them
    /// when it needs them (restore, before its first change).
    pub(crate) fn read_in<'scope>(
        s: &'scope std::thread::Scope<'scope, '_>,
        dir: &'scope ImageDir,
        routes_encoded: bool,
    ) -> Result<(Snapshot, Option<crhook_core::Encoded>, Decoding<'scope>)> {
        let sysctls =
            Decoding(Some(s.spawn(|| {
                crate::sysctl::Saved::decode(&dir.read_encoded(Kind::Sysctls)?)
            })));
        let firewall = s.spawn(|| dir.read(Kind::Firewall));
        let rest = (|| -> Result<(Snapshot, Option<crhook_core::Encoded>)> {
            let (routes, encoded) = if routes_encoded {
                (Vec::new(), Some(dir.read_encoded(Kind::Routes)?))
            } else {
                (dir.read(Kind::Routes)?, None)
            };
            let snap = Snapshot {
                links: dir.read(Kind::Links)?,
                addresses: dir.read(Kind::Addresses)?,
                routes,
                nexthops: dir.read(Kind::Nexthops)?,
                rules: dir.read(Kind::Rules)?,
                neighbours: dir.read(Kind::Neighbours)?,
                tc: dir.read(Kind::Tc)?,
                tun_files: dir.read(Kind::TunFiles)?,
                ext_files: dir.read(Kind::ExtFiles)?,
                skipped_files: dir.read(Kind::SkippedFiles)?,
                ..Default::default()
            };
            Ok((snap, encoded))
        })();
        let firewall = firewall.join().map_err(read_panicked)?;
        let (mut snap, encoded) = rest?;
        snap.firewall = firewall?;
        Ok((snap, encoded, sysctls))
    }

    /// (kind, count) of every family, for stats.
    pub fn counts(&self) -> Vec<(&'static str, u64)> {
        self.counts_apart(None, None)
    }

    /// [`Snapshot::counts`], with the counts of routes and sysctls held apart (encoded, and
    /// [`crate::sysctl::Saved`]) when given.
    pub(crate) fn counts_apart(
        &self,
        routes: Option<u64>,
        sysctls: Option<u64>,
    ) -> Vec<(&'static str, u64)> {
        vec![
            ("links", self.links.len() as u64),
            ("addresses", self.addresses.len() as u64),
            ("routes", routes.unwrap_or(self.routes.len() as u64)),
            ("nexthops", self.nexthops.len() as u64),
            ("rules", self.rules.len() as u64),
            ("neighbours", self.neighbours.len() as u64),
            ("tc", self.tc.len() as u64),
            ("sysctls", sysctls.unwrap_or(self.sysctls.len() as u64)),
            ("firewall", self.firewall.len() as u64),
            ("tun_files", self.tun_files.len() as u64),
            ("ext_files", self.ext_files.len() as u64),
        ]
    }
}

/// The sysctls of an image, decoding on a thread of their own (see [`Snapshot::read_in`]).
/// Dropped unjoined (restore failed first), it waits for the thread and drops what it read.
pub(crate) struct Decoding<'scope>(
    Option<
        std::thread::ScopedJoinHandle<
            'scope,
            std::result::Result<crate::sysctl::Saved, crhook_core::ImageError>,
        >,
    >,
);

impl Decoding<'_> {
    /// The decoded sysctls, or why they could not be read.
    pub(crate) fn join(mut self) -> Result<crate::sysctl::Saved> {
        match self.0.take() {
            Some(h) => Ok(h.join().map_err(read_panicked)??),
            None => Ok(Default::default()),
        }
    }
}

impl Drop for Decoding<'_> {
    fn drop(&mut self) {
        // joined here, a panic of the thread is not re-raised by the scope's end
        if let Some(h) = self.0.take() {
            let _ = h.join();
        }
    }
}

fn read_panicked(_: Box<dyn std::any::Any + Send>) -> crate::error::NetstateError {
    crate::error::NetstateError::invalid("image reading thread panicked")
}

/// Opens and verifies the image directory at `path` with the key this host holds
/// (`$CRHOOK_IMAGE_KEY`, else /etc/crhook/image.key; a host without one yet finds every sealed
/// image foreign). `dir.trust()` is the verdict restore decides on; reading from `dir` charges
/// the default memory budgets.
pub fn open_image(path: &Path) -> Result<ImageDir> {
    let key = HostKey::load(&HostKey::configured_path())?;
    Ok(ImageDir::open_with(path, key.as_ref(), &Limits::default())?)
}

/// [`open_image`] for `op` (restore, diff): an image changed after it was sealed is refused.
pub fn open_unchanged(path: &Path, op: &str) -> Result<ImageDir> {
    refuse_changed(open_image(path)?, path, op)
}

/// [`open_unchanged`] for restore, which reads every file at once: each file is checked by
/// the thread that reads it (see [`ImageDir::open_deferred`]); a file changed after the image
/// was sealed fails its read, so the restore, before any change.
pub(crate) fn open_unchanged_deferred(path: &Path, op: &str) -> Result<ImageDir> {
    let key = HostKey::load(&HostKey::configured_path())?;
    let dir = ImageDir::open_deferred(path, key.as_ref(), &Limits::default())?;
    refuse_changed(dir, path, op)
}

fn refuse_changed(dir: ImageDir, path: &Path, op: &str) -> Result<ImageDir> {
    if let crhook_core::Trust::BadSeal { .. } = dir.trust() {
        return Err(crate::NetstateError::invalid(format!(
            "{op} from {}: {}; the image was changed after it was sealed, refused",
            path.display(),
            dir.trust()
        )));
    }
    Ok(dir)
}
