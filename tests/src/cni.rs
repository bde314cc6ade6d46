//! Pod sandboxes made the way CRI-O makes them, by running the reference CNI plugins, without
//! a container runtime: a named namespace, then `bridge` (with `host-local` IPAM) and
//! `loopback` called with `CNI_COMMAND=ADD`, and `DEL` when the sandbox goes.
//!
//! Everything is the test's own: the plugins run inside a test "host" namespace
//! ([`TestNs::host`]), so the bridge, the veth host ends and the `ip_forward` sysctl the
//! bridge plugin sets all land there, never in the machine's namespace; the network has its
//! own bridge name, subnet and IPAM data directory (`ipam.dataDir`), so nothing is shared with
//! other tests or with a real CNI configuration on the machine.
//!
//! Plugin behaviour this relies on (containernetworking-plugins 1.1.1, Debian bookworm,
//! installed in /usr/lib/cni):
//! - `CNI_NETNS` must name an nsfs file; a bare `ip netns` name is taken as a path relative to
//!   the plugin's working directory ("failed to Statfs"): use `/run/netns/NAME`.
//! - `bridge` creates the bridge (with the gateway address, `isGateway`) in the namespace it
//!   runs in, the veth pair with `eth0` in the sandbox (random MAC), the address and the
//!   routes given in `ipam.routes`; it leaves the sandbox's `lo` down, which the `loopback`
//!   plugin brings up, as CRI-O does.
//! - `host-local` allocates round-robin (`last_reserved_ip.0` in the data directory): after a
//!   DEL, the next ADD gets the next address, not the one just freed.
//! - DEL succeeds when the namespace is already gone (it still releases the address).
//! - The ADD result (`cniVersion` 1.0.0) lists `interfaces` (bridge, host veth, `eth0` with
//!   `sandbox`) and `ips` (`address` as CIDR, `gateway`, `interface` as an index into
//!   `interfaces`).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::{json, Value};

use crate::ns::check_output;
use crate::{ip_bin, require_root, unique_name, TempDir, TestNs};

/// Where the CNI plugins are: Debian's /usr/lib/cni, else the upstream /opt/cni/bin.
pub fn cni_plugin_dir() -> PathBuf {
    ["/usr/lib/cni", "/opt/cni/bin"]
        .iter()
        .map(PathBuf::from)
        .find(|d| d.join("bridge").exists() && d.join("host-local").exists())
        .unwrap_or_else(|| {
            panic!(
                "CNI plugins (bridge, host-local) not found in /usr/lib/cni or /opt/cni/bin; \
                 install containernetworking-plugins (`bash .ci/install-deps`)"
            )
        })
}

/// A CNI network: a test host namespace, the bridge `bridge` in it with gateway `.1` of
/// `10.203.<octet>.0/24`, and a private IPAM data directory. Sandboxes are made with
/// [`CniNetwork::sandbox`]; dropping the network deletes the bridge, the host and the IPAM
/// data (drop the sandboxes first: they borrow it).
#[derive(Debug)]
pub struct CniNetwork {
    host: TestNs,
    bridge: String,
    subnet: String,
    ipam: TempDir,
}

impl CniNetwork {
    /// A network on subnet `10.203.<octet>.0/24` with a bridge named for this process and
    /// `octet`; give each test its own `octet`.
    pub fn new(octet: u8) -> CniNetwork {
        require_root();
        cni_plugin_dir();
        let host = TestNs::host();
        host.ip(&["link", "set", "lo", "up"]);
        // <= 15 characters: "crh" + up to 7 digits of the pid + "b" + up to 3 digits
        let bridge = format!("crh{}b{octet}", std::process::id() % 10_000_000);
        CniNetwork {
            host,
            bridge,
            subnet: format!("10.203.{octet}.0/24"),
            ipam: TempDir::new("cni-ipam"),
        }
    }

    /// The namespace the plugins ran in: the bridge and the veth host ends are here. Run
    /// crhook in it (`crhook_cmd(Some(net.host()))`) so it is crhook's "host".
    pub fn host(&self) -> &TestNs {
        &self.host
    }

    pub fn bridge(&self) -> &str {
        &self.bridge
    }

    pub fn subnet(&self) -> &str {
        &self.subnet
    }

    /// `10.203.<octet>.<n>`: an address of this network's subnet.
    pub fn addr(&self, n: u8) -> String {
        let prefix = self.subnet.trim_end_matches(".0/24");
        format!("{prefix}.{n}")
    }

    /// The netconf given to the bridge plugin on stdin.
    pub fn conf(&self) -> Value {
        json!({
            "cniVersion": "1.0.0",
            "name": "crhook-test",
            "type": "bridge",
            "bridge": self.bridge,
            "isGateway": true,
            "ipMasq": false,
            "ipam": {
                "type": "host-local",
                "ranges": [[{"subnet": self.subnet}]],
                "routes": [{"dst": "0.0.0.0/0"}],
                "dataDir": self.ipam.path(),
            },
        })
    }

    fn loopback_conf() -> Value {
        json!({"cniVersion": "1.0.0", "name": "crhook-lo", "type": "loopback"})
    }

    /// Runs the plugin `conf.type` with `command` for (`id`, `netns`, `ifname`) inside the
    /// host namespace, `conf` on stdin, and exactly the CNI environment; returns its output.
    pub fn plugin(
        &self,
        command: &str,
        id: &str,
        netns: &Path,
        ifname: &str,
        conf: &Value,
    ) -> Output {
        let dir = cni_plugin_dir();
        let kind = conf["type"].as_str().unwrap_or("bridge");
        let mut child = Command::new(ip_bin())
            .args(["netns", "exec", self.host.name()])
            .arg(dir.join(kind))
            .env_clear()
            .env("CNI_COMMAND", command)
            .env("CNI_CONTAINERID", id)
            .env("CNI_NETNS", netns)
            .env("CNI_IFNAME", ifname)
            .env("CNI_PATH", &dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn CNI plugin {kind} {command}: {e}"));
        {
            let mut stdin = child
                .stdin
                .take()
                .unwrap_or_else(|| panic!("CNI plugin {kind}: no stdin pipe"));
            stdin
                .write_all(conf.to_string().as_bytes())
                .unwrap_or_else(|e| panic!("CNI plugin {kind} {command}: write netconf: {e}"));
        }
        child
            .wait_with_output()
            .unwrap_or_else(|e| panic!("CNI plugin {kind} {command}: wait: {e}"))
    }

    /// A new sandbox namespace `crh-<tag>-...` with `eth0` from the bridge plugin (an address
    /// the IPAM picks) and `lo` up from the loopback plugin.
    pub fn sandbox(&self, tag: &str) -> CniSandbox<'_> {
        let ns = TestNs::new(tag);
        let id = unique_name(tag);
        // From here on Drop runs DEL, even if ADD fails half-way.
        let mut sb = CniSandbox {
            net: self,
            ns: Some(ns),
            id,
            ip: String::new(),
            prefix_len: 0,
            gateway: String::new(),
            mac: String::new(),
            result: Value::Null,
        };
        let path = sb.ns().path();
        let out = self.plugin("ADD", &sb.id, &path, "lo", &Self::loopback_conf());
        check_output(&format!("CNI loopback ADD {}", sb.id), &out);
        let out = self.plugin("ADD", &sb.id, &path, "eth0", &self.conf());
        let text = check_output(&format!("CNI bridge ADD {}", sb.id), &out);
        let result: Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("CNI bridge ADD {}: bad JSON: {e}\n{text}", sb.id));
        let ip0 = result["ips"]
            .get(0)
            .unwrap_or_else(|| panic!("CNI bridge ADD {}: no ips in {result}", sb.id));
        let cidr = ip0["address"].as_str().unwrap_or_default();
        let (ip, len) = cidr
            .split_once('/')
            .unwrap_or_else(|| panic!("CNI bridge ADD {}: address {cidr:?}", sb.id));
        sb.ip = ip.to_string();
        sb.prefix_len = len
            .parse()
            .unwrap_or_else(|e| panic!("CNI bridge ADD {}: prefix {len:?}: {e}", sb.id));
        sb.gateway = ip0["gateway"].as_str().unwrap_or_default().to_string();
        let idx = ip0["interface"].as_u64().unwrap_or(u64::MAX);
        let iface = usize::try_from(idx)
            .ok()
            .and_then(|i| result["interfaces"].get(i))
            .unwrap_or_else(|| panic!("CNI bridge ADD {}: interface {idx} in {result}", sb.id));
        assert_eq!(iface["name"], "eth0", "CNI result's address is on eth0");
        sb.mac = iface["mac"].as_str().unwrap_or_default().to_string();
        sb.result = result;
        sb
    }
}

impl Drop for CniNetwork {
    fn drop(&mut self) {
        // The host namespace's deletion takes the bridge with it; deleting it first keeps a
        // leftover from naming a bridge if the namespace deletion fails.
        let _ = self.host.try_ip(&["link", "del", "dev", &self.bridge]);
    }
}

/// A pod sandbox of a [`CniNetwork`]: a named namespace with the plugins' `eth0`. On `Drop`
/// (or [`CniSandbox::delete`]) the plugins' DEL, then the namespace's deletion.
#[derive(Debug)]
pub struct CniSandbox<'a> {
    net: &'a CniNetwork,
    ns: Option<TestNs>,
    id: String,
    ip: String,
    prefix_len: u8,
    gateway: String,
    mac: String,
    result: Value,
}

impl CniSandbox<'_> {
    pub fn ns(&self) -> &TestNs {
        self.ns
            .as_ref()
            .unwrap_or_else(|| panic!("sandbox {} already deleted", self.id))
    }

    /// `/run/netns/NAME` as a string, what crhook's `--netns` takes.
    pub fn path_str(&self) -> String {
        self.ns().path_str()
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// The pod address the IPAM gave `eth0`.
    pub fn ip(&self) -> &str {
        &self.ip
    }

    pub fn prefix_len(&self) -> u8 {
        self.prefix_len
    }

    pub fn gateway(&self) -> &str {
        &self.gateway
    }

    /// `eth0`'s MAC as the plugin reported it.
    pub fn mac(&self) -> &str {
        &self.mac
    }

    /// The plugin's whole ADD result.
    pub fn result(&self) -> &Value {
        &self.result
    }

    fn del(&mut self, loud: bool) -> Vec<String> {
        let mut errors = Vec::new();
        let Some(ns) = self.ns.take() else {
            return errors;
        };
        let path = ns.path();
        for (ifname, conf) in [
            ("eth0", self.net.conf()),
            ("lo", CniNetwork::loopback_conf()),
        ] {
            let out = self.net.plugin("DEL", &self.id, &path, ifname, &conf);
            if !out.status.success() {
                errors.push(format!(
                    "CNI {} DEL {}: {}: {}{}",
                    conf["type"],
                    self.id,
                    out.status,
                    String::from_utf8_lossy(&out.stdout).trim_end(),
                    String::from_utf8_lossy(&out.stderr).trim_end()
                ));
            }
        }
        if loud {
            ns.delete();
        }
        errors
    }

    /// DEL and delete the namespace now, loudly.
    pub fn delete(mut self) {
        let errors = self.del(true);
        assert!(errors.is_empty(), "{}", errors.join("\n"));
    }
}

impl Drop for CniSandbox<'_> {
    fn drop(&mut self) {
        for e in self.del(false) {
            eprintln!("cleanup: {e}");
        }
    }
}
