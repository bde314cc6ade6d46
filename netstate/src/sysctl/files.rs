//! Read-ahead for apply: the files of the planned per-device keys netlink does not carry
//! (about 18,000 at 2,000 links), read in chunks by a reader thread and, whenever apply
//! catches up with it, by apply's own thread, so that the reads, not the comparisons, set
//! the pace, on both cores.
//!
//! Two threads opening sysctl files contend for the sysctl lock, but together they still
//! read a fresh namespace's files about 15% faster than one. The reader thread shares the
//! namespace thread's network namespace (a new thread gets its creator's namespaces).
//! Values are read once the namespace-wide keys are written (they propagate to devices);
//! apply treats them as it treats the dump: a write that changes another key besides itself
//! marks that key stale, and a key about to be written is read again.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, Sender};

use super::layout::{self, DIRS};
use super::plan::{Item, Plan};
use super::procfs::{self, DirReader};

/// Keys per chunk: taking one costs an atomic operation and a message.
const CHUNK: usize = 256;

/// A chunk's values in key order: `None` for a file that does not read (apply then reads it
/// itself, for its error).
type Values = Vec<Option<String>>;

/// The planned per-device keys read from files, in plan order: those whose name the tables
/// map to no netlink slot or attribute in their directory. Known from the plan alone, so
/// the reads can start before the dump.
pub(super) struct FileKeys<'p, 'a> {
    plan: &'p Plan<'a>,
    keys: Vec<&'p Item>,
    /// the first chunk nobody has taken
    next: AtomicUsize,
}

impl<'p, 'a> FileKeys<'p, 'a> {
    pub fn new(plan: &'p Plan<'a>) -> FileKeys<'p, 'a> {
        // per entry of DIRS, by `Plan::names` index: whether netlink carries the name
        let netlink: Vec<Vec<bool>> = (0..DIRS.len())
            .map(|k| {
                plan.names
                    .iter()
                    .map(|n| layout::source(k, n).is_some())
                    .collect()
            })
            .collect();
        let from_file = |it: &Item| {
            it.dev().is_some()
                && !it
                    .dir()
                    .and_then(|k| netlink.get(k)?.get(it.name()))
                    .is_some_and(|n| *n)
        };
        FileKeys {
            plan,
            keys: plan.items().filter(|it| from_file(it)).collect(),
            next: AtomicUsize::new(0),
        }
    }

    /// The number of chunks of file keys.
    pub fn chunks(&self) -> usize {
        self.keys.len().div_ceil(CHUNK)
    }

    /// The reader thread: reads chunks in order until none is left, sending each. Stops
    /// when the receiver is gone.
    pub fn read_ahead(&self, tx: &Sender<(usize, Values)>) {
        let mut dirs = Dirs::default();
        loop {
            let c = self.next.fetch_add(1, Ordering::SeqCst);
            if c >= self.chunks() || tx.send((c, self.read(c, &mut dirs))).is_err() {
                return;
            }
        }
    }

    fn read(&self, chunk: usize, dirs: &mut Dirs) -> Values {
        let start = chunk * CHUNK;
        let end = self.keys.len().min(start + CHUNK);
        self.keys
            .get(start..end)
            .unwrap_or_default()
            .iter()
            .map(|it| dirs.read(self.plan, it))
            .collect()
    }
}

/// Directory descriptors of [`DIRS`], opened on first use.
#[derive(Default)]
struct Dirs([Option<Option<DirReader>>; 4]);

impl Dirs {
    fn read(&mut self, plan: &Plan<'_>, it: &Item) -> Option<String> {
        let dir = it.dir().and_then(|k| {
            let (fam, dir) = DIRS.get(k)?;
            self.0
                .get_mut(k)?
                .get_or_insert_with(|| DirReader::open(&[fam, dir]).ok().flatten())
                .as_mut()
        });
        let dev = plan.dev(it).unwrap_or_default();
        let name = plan.name(it);
        match dir {
            Some(r) => r.read(&[dev, name]).ok(),
            None => procfs::read(&procfs::proc_path(&plan.path(it))).ok(),
        }
    }
}

/// Apply's side: the value of each file key in turn, from the reader's chunks or, when the
/// next chunk is not taken yet, read here.
pub(super) struct Cursor<'f, 'p, 'a> {
    keys: &'f FileKeys<'p, 'a>,
    rx: Receiver<(usize, Values)>,
    /// the chunk in use and its values
    cur: Option<(usize, Values)>,
    /// file keys handed out so far
    at: usize,
    dirs: Dirs,
}

impl<'f, 'p, 'a> Cursor<'f, 'p, 'a> {
    pub fn new(keys: &'f FileKeys<'p, 'a>, rx: Receiver<(usize, Values)>) -> Self {
        Cursor {
            keys,
            rx,
            cur: None,
            at: 0,
            dirs: Dirs::default(),
        }
    }

    /// Whether `it` is a file key: then [`Cursor::next`] must be called for it, as the
    /// keys come in plan order.
    pub fn is_file_key(&self, it: &Item) -> bool {
        self.keys
            .keys
            .get(self.at)
            .is_some_and(|k| std::ptr::eq(*k, it))
    }

    /// The value of the next file key.
    pub fn next(&mut self) -> Option<String> {
        let c = self.at / CHUNK;
        if self.cur.as_ref().map(|(i, _)| *i) != Some(c) {
            let vals = self.chunk(c);
            self.cur = Some((c, vals));
        }
        let i = self.at % CHUNK;
        self.at += 1;
        self.cur
            .as_mut()
            .and_then(|(_, v)| v.get_mut(i))
            .and_then(Option::take)
    }

    fn chunk(&mut self, c: usize) -> Values {
        let next = &self.keys.next;
        if next
            .compare_exchange(c, c + 1, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
        {
            return self.keys.read(c, &mut self.dirs);
        }
        // The reader has it, and has sent every chunk it took before (this thread took in
        // order what it did not), so it is the next message. Were it not, or were the
        // reader gone, apply would read each key itself.
        match self.rx.recv() {
            Ok((i, v)) if i == c => v,
            _ => Vec::new(),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::collections::HashMap;
    use std::sync::mpsc;

    use super::*;
    use crate::sysctl::Phase;

    /// Keys of this process's own loopback, the file keys more than two chunks' worth:
    /// a key may appear many times in a plan.
    fn saved() -> crate::sysctl::saved::Saved {
        let key = |p: &str| crate::sysctl::test_key(p, "0");
        let mut v = vec![key("core/somaxconn")];
        for _ in 0..(CHUNK + 20) {
            v.push(key("ipv4/conf/lo/rp_filter"));
            v.push(key("ipv6/neigh/lo/locktime"));
            v.push(key("ipv4/neigh/lo/anycast_delay"));
        }
        crate::sysctl::saved::Saved::from_pb(&v)
    }

    /// Walks the plan as apply does; returns the file values handed out, and checks them
    /// against the files.
    fn walk(plan: &Plan<'_>, mut cur: Cursor<'_, '_, '_>) -> usize {
        let want: HashMap<String, String> =
            ["ipv6/neigh/lo/locktime", "ipv4/neigh/lo/anycast_delay"]
                .iter()
                .map(|p| {
                    let path: Vec<&str> = p.split('/').collect();
                    (
                        p.to_string(),
                        procfs::read(&procfs::proc_path(&path)).unwrap(),
                    )
                })
                .collect();
        let mut n = 0;
        for it in plan.items().skip_while(|it| it.dev().is_none()) {
            if cur.is_file_key(it) {
                let v = cur.next();
                assert_eq!(
                    v.as_ref(),
                    want.get(&plan.path(it).join("/")),
                    "{:?}",
                    plan.path(it)
                );
                n += 1;
            } else {
                assert_eq!(plan.name(it), "rp_filter");
            }
        }
        assert_eq!(cur.next(), None, "no key past the last");
        n
    }

    #[test]
    fn file_keys_are_those_netlink_lacks_in_plan_order() {
        let saved = saved();
        let plan = Plan::new(&saved, Phase::Late, &|d| Some(d.to_string())).unwrap();
        let keys = FileKeys::new(&plan);
        assert_eq!(keys.keys.len(), 2 * (CHUNK + 20));
        assert_eq!(keys.chunks(), 3);
    }

    #[test]
    fn cursor_with_the_reader_alongside() {
        let saved = saved();
        let plan = Plan::new(&saved, Phase::Late, &|d| Some(d.to_string())).unwrap();
        let keys = FileKeys::new(&plan);
        let n = std::thread::scope(|s| {
            let (tx, rx) = mpsc::channel();
            let k = &keys;
            s.spawn(move || k.read_ahead(&tx));
            walk(&plan, Cursor::new(&keys, rx))
        });
        assert_eq!(n, 2 * (CHUNK + 20));
    }

    #[test]
    fn cursor_after_the_reader_took_every_chunk() {
        let saved = saved();
        let plan = Plan::new(&saved, Phase::Late, &|d| Some(d.to_string())).unwrap();
        let keys = FileKeys::new(&plan);
        let (tx, rx) = mpsc::channel();
        keys.read_ahead(&tx);
        drop(tx);
        // the reader took each chunk once and then one past the end to find none left
        assert_eq!(keys.next.load(Ordering::SeqCst), 4);
        assert_eq!(walk(&plan, Cursor::new(&keys, rx)), 2 * (CHUNK + 20));
    }

    #[test]
    fn cursor_reads_itself_without_a_reader() {
        let saved = saved();
        let plan = Plan::new(&saved, Phase::Late, &|d| Some(d.to_string())).unwrap();
        let keys = FileKeys::new(&plan);
        let (tx, rx) = mpsc::channel();
        drop(tx);
        assert_eq!(walk(&plan, Cursor::new(&keys, rx)), 2 * (CHUNK + 20));
        assert_eq!(
            keys.next.load(Ordering::SeqCst),
            3,
            "this thread took every chunk"
        );
    }
}
