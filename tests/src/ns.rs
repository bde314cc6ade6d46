//! Test network namespaces made with iproute2, deleted on `Drop`.
//!
//! Every namespace a test makes is named `crh-<tag>-<pid>-<counter>`, so parallel tests and
//! parallel test binaries never meet, and a leftover from a killed run names the pid that made
//! it. A test's "host" is one of these too ([`TestNs::host`]): nothing is ever put in the
//! namespace the test runner itself lives in. To make such a namespace crhook's own (where it
//! records the outer end of a veth as "host"), run the binary inside it with
//! [`crate::crhook_cmd`].

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// Absolute path of `ip`: hooks and sandboxes may run without PATH, and so do these tests.
pub fn ip_bin() -> &'static Path {
    static IP: OnceLock<PathBuf> = OnceLock::new();
    IP.get_or_init(|| {
        ["/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"]
            .iter()
            .map(PathBuf::from)
            .find(|p| p.exists())
            .unwrap_or_else(|| {
                panic!("iproute2 `ip` not found in /usr/sbin, /sbin, /usr/bin or /bin")
            })
    })
}

/// A unique name `crh-<tag>-<pid>-<counter>` for a namespace, directory or file.
pub fn unique_name(tag: &str) -> String {
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    format!("crh-{tag}-{}-{n}", std::process::id())
}

/// Panics with the command line, status and both streams unless `out` succeeded.
pub fn check_output(what: &str, out: &Output) -> String {
    if !out.status.success() {
        panic!(
            "{what}: {}\nstdout: {}\nstderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stdout).trim_end(),
            String::from_utf8_lossy(&out.stderr).trim_end()
        );
    }
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn run(cmd: &mut Command, what: &str) -> Output {
    cmd.stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot spawn: {e}"))
}

/// A named network namespace under /run/netns, deleted when dropped.
#[derive(Debug)]
pub struct TestNs {
    name: String,
    /// links in other namespaces this one owns: (namespace name, link name), deleted on Drop
    foreign_links: RefCell<Vec<(String, String)>>,
    deleted: bool,
}

impl TestNs {
    /// Makes a fresh, empty namespace (only `lo`, down) named `crh-<tag>-<pid>-<counter>`.
    pub fn new(tag: &str) -> TestNs {
        crate::require_root();
        let name = unique_name(tag);
        let out = run(
            Command::new(ip_bin()).args(["netns", "add", &name]),
            "ip netns add",
        );
        check_output(&format!("ip netns add {name}"), &out);
        TestNs {
            name,
            foreign_links: RefCell::new(Vec::new()),
            deleted: false,
        }
    }

    /// A namespace that plays "the host" for veth peers. Run crhook inside it
    /// (`crhook_cmd(Some(&host))`) and it is the namespace crhook runs in.
    pub fn host() -> TestNs {
        TestNs::new("host")
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// `/run/netns/NAME`, what `crhook ... --netns` takes.
    pub fn path(&self) -> PathBuf {
        PathBuf::from(format!("/run/netns/{}", self.name))
    }

    /// `path()` as a string, for argument lists.
    pub fn path_str(&self) -> String {
        self.path().display().to_string()
    }

    /// Runs `argv` inside the namespace (`ip netns exec NAME argv...`) and returns its output,
    /// whatever the exit status.
    pub fn exec(&self, argv: &[&str]) -> Output {
        let mut cmd = Command::new(ip_bin());
        cmd.args(["netns", "exec", &self.name]).args(argv);
        run(&mut cmd, &format!("ip netns exec {} {argv:?}", self.name))
    }

    /// Runs `ip -n NAME args...`; panics with stderr unless it succeeds. Returns stdout.
    pub fn ip(&self, args: &[&str]) -> String {
        let out = self.try_ip(args);
        check_output(&format!("ip -n {} {}", self.name, args.join(" ")), &out)
    }

    /// Runs `ip -n NAME args...` and returns its output, whatever the exit status.
    pub fn try_ip(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new(ip_bin());
        cmd.args(["-n", &self.name]).args(args);
        run(&mut cmd, &format!("ip -n {} {}", self.name, args.join(" ")))
    }

    /// Runs many `ip` commands (one per line, without the leading `ip`) in one process with
    /// `ip -n NAME -batch -`; panics naming the failing line.
    /// Adds `n` IPv4 /24 routes (172.16-31.x.0/24) via `gateway`, 4,096 per table from table
    /// 100: a namespace slow enough to capture and restore that a signal lands mid-way.
    pub fn add_routes(&self, n: u32, gateway: &str) {
        let mut batch = String::new();
        for i in 0..n {
            batch.push_str(&format!(
                "route add 172.{}.{}.0/24 via {gateway} table {}\n",
                16 + (i / 256) % 16,
                i % 256,
                100 + i / 4096
            ));
        }
        self.ip_batch(&batch);
    }

    pub fn ip_batch(&self, script: &str) {
        self.ip_batch_with(&[], script);
    }

    /// [`TestNs::ip_batch`] with global options before `-batch` (`-6`: a batch line cannot
    /// carry a family option).
    pub fn ip_batch_with(&self, opts: &[&str], script: &str) {
        use std::io::Write;
        let mut child = Command::new(ip_bin())
            .args(["-n", &self.name])
            .args(opts)
            .args(["-batch", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("ip -n {} -batch: cannot spawn: {e}", self.name));
        {
            let mut stdin = child.stdin.take().expect("piped stdin");
            stdin
                .write_all(script.as_bytes())
                .unwrap_or_else(|e| panic!("ip -n {} -batch: write script: {e}", self.name));
        }
        let out = child
            .wait_with_output()
            .unwrap_or_else(|e| panic!("ip -n {} -batch: wait: {e}", self.name));
        if !out.status.success() {
            let stderr = String::from_utf8_lossy(&out.stderr);
            // "Command failed -:N" names the line; show it.
            let line = stderr
                .lines()
                .find_map(|l| l.strip_prefix("Command failed -:"))
                .and_then(|n| n.trim().parse::<usize>().ok())
                .and_then(|n| script.lines().nth(n.saturating_sub(1)))
                .unwrap_or("?");
            panic!(
                "ip -n {} -batch failed at `{line}`: {}",
                self.name,
                stderr.trim_end()
            );
        }
    }

    /// Runs `sh -c script` inside the namespace; panics with stderr unless it succeeds.
    pub fn sh(&self, script: &str) -> String {
        let out = self.exec(&["/bin/sh", "-c", script]);
        check_output(&format!("sh -c {script:?} in {}", self.name), &out)
    }

    /// Writes a sysctl inside the namespace: `key` as path components below /proc/sys/net
    /// (`["ipv4", "conf", "ve0", "proxy_arp"]`), so interface names with dots stay whole.
    pub fn set_sysctl(&self, key: &[&str], value: &str) {
        let path = format!("/proc/sys/net/{}", key.join("/"));
        self.sh(&format!("printf '%s\\n' '{value}' > '{path}'"));
    }

    /// Reads a sysctl (path components below /proc/sys/net), trimmed.
    pub fn sysctl(&self, key: &[&str]) -> String {
        let path = format!("/proc/sys/net/{}", key.join("/"));
        self.sh(&format!("cat '{path}'")).trim().to_string()
    }

    /// The ifindex of `link`, or None when there is no such link.
    pub fn ifindex(&self, link: &str) -> Option<u64> {
        let out = self.try_ip(&["-j", "link", "show", "dev", link]);
        if !out.status.success() {
            return None;
        }
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        v.get(0)?.get("ifindex")?.as_u64()
    }

    pub fn link_exists(&self, link: &str) -> bool {
        self.ifindex(link).is_some()
    }

    /// `ip -d -j link show dev LINK` as one JSON object; panics when the link is missing.
    pub fn link_json(&self, link: &str) -> serde_json::Value {
        let out = self.ip(&["-d", "-j", "link", "show", "dev", link]);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap_or_else(|e| {
            panic!("ip -d -j link show {link} in {}: bad JSON: {e}", self.name)
        });
        v.get(0)
            .cloned()
            .unwrap_or_else(|| panic!("link {link} not found in {}", self.name))
    }

    /// Deletes `link` from namespace `other` when this namespace is dropped (for objects a test
    /// made in another namespace on this one's behalf). Errors then are ignored: deleting a
    /// veth end also deletes its peer, so the link may already be gone.
    pub fn register_link(&self, other: &TestNs, link: &str) {
        self.foreign_links
            .borrow_mut()
            .push((other.name.clone(), link.to_string()));
    }

    /// Deletes the namespace now. Its veth peers elsewhere disappear asynchronously (the
    /// kernel tears a namespace down in a workqueue), so wait for them with
    /// [`crate::wait_link_gone`] before re-creating them.
    pub fn delete(mut self) {
        self.cleanup(true);
    }

    fn cleanup(&mut self, loud: bool) {
        if self.deleted {
            return;
        }
        self.deleted = true;
        for (ns, link) in self.foreign_links.borrow_mut().drain(..) {
            let _ = Command::new(ip_bin())
                .args(["-n", &ns, "link", "del", "dev", &link])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
        let out = Command::new(ip_bin())
            .args(["netns", "del", &self.name])
            .stdin(Stdio::null())
            .output();
        match out {
            Ok(o) if o.status.success() => {}
            Ok(o) if loud => panic!(
                "ip netns del {}: {}",
                self.name,
                String::from_utf8_lossy(&o.stderr).trim_end()
            ),
            Err(e) if loud => panic!("ip netns del {}: {e}", self.name),
            // In Drop, a failure must not turn into a double panic; say it instead.
            Ok(o) => eprintln!(
                "cleanup: ip netns del {}: {}",
                self.name,
                String::from_utf8_lossy(&o.stderr).trim_end()
            ),
            Err(e) => eprintln!("cleanup: ip netns del {}: {e}", self.name),
        }
    }
}

impl Drop for TestNs {
    fn drop(&mut self) {
        self.cleanup(false);
    }
}
