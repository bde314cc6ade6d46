//! `show` on directories and files written by the library.

mod common;

use std::fs;

use common::*;
use crhook_core::{encode_file, show, ImageError, Kind, ShowFormat};
use serde_json::Value;

fn json(path: &std::path::Path) -> Result<Value, Box<dyn std::error::Error>> {
    Ok(serde_json::from_str(&show(path, ShowFormat::Json)?)?)
}

#[test]
fn directory_is_an_array_with_inventory_first() -> Result<(), Box<dyn std::error::Error>> {
    let t = TempDir::new("show");
    let dir = write_fixture(&t.join("img"))?;
    let v = json(&dir)?;
    let files = v.as_array().ok_or("not an array")?;
    let names: Vec<&str> = files.iter().filter_map(|f| f["file"].as_str()).collect();
    assert_eq!(names.len(), 16, "{names:?}");
    assert_eq!(names[0], "inventory.img");
    assert_eq!(names[1], "links.img");
    assert_eq!(names[7], "tc.img");
    assert_eq!(names[14], "stats-restore.img");
    assert_eq!(names[15], "seal.img");
    assert_eq!(files[0]["magic"], "inventory");
    assert_eq!(files[0]["version"], "1.3");
    assert_eq!(
        files[15]["entries"][0]["key_id"],
        golden_key().id().to_string()
    );
    assert_eq!(files[0]["entries"][0]["files"][0]["name"], "links.img");
    // tc objects: their type by name, their options in hex
    let tc = &files[7]["entries"];
    assert_eq!(tc[0]["type"], "TC_QDISC");
    assert_eq!(tc[0]["options"], "0800010000000000");
    assert_eq!(tc[1]["type"], "TC_FILTER");
    assert_eq!(tc[1]["devrefs"][0]["ifname"], "ifb0");

    let links = &files[1];
    assert_eq!(links["magic"], "links");
    assert_eq!(links["message"], "crhook.Link");
    assert_eq!(links["entries"][1]["name"], "eth0");
    assert_eq!(links["entries"][1]["mac"], "02:42:ac:11:00:02");
    assert_eq!(
        links["entries"][1]["info"]["Veth"]["peer_place"],
        "PEER_HOST"
    );
    assert_eq!(links["entries"][4]["info"]["Vxlan"]["remote"], "239.1.1.1");

    let addrs = &files[2];
    assert_eq!(addrs["entries"][0]["address"], "10.0.0.2");
    assert_eq!(addrs["entries"][0]["broadcast"], "10.0.0.255");
    assert_eq!(addrs["entries"][1]["address"], "2001:db8::2");
    assert_eq!(addrs["entries"][1]["raw"][0]["value"], "dead");

    let routes = &files[3];
    assert_eq!(routes["entries"][0]["gateway"], "10.0.0.1");
    assert_eq!(routes["entries"][1]["multipath"][1]["gateway"], "10.0.0.3");
    assert_eq!(routes["entries"][2]["dst"], "2001:db8:1::");

    let neigh = files
        .iter()
        .find(|f| f["magic"] == "neighbours")
        .ok_or("no neighbours")?;
    assert_eq!(neigh["entries"][0]["lladdr"], "02:42:ac:11:00:01");
    let fw = files
        .iter()
        .find(|f| f["magic"] == "firewall")
        .ok_or("no firewall")?;
    assert_eq!(fw["entries"][0]["source"], "NFTABLES");
    assert_eq!(fw["entries"][0]["tables"][0]["name"], "filter");
    assert_eq!(fw["entries"][1]["source"], "IPTABLES_NFT");
    Ok(())
}

#[test]
fn text_lists_every_kind() -> Result<(), Box<dyn std::error::Error>> {
    let t = TempDir::new("showtext");
    let dir = write_fixture(&t.join("img"))?;
    let text = show(&dir, ShowFormat::Text)?;
    // a directory opens with its summary, then every file in detail
    assert!(text.starts_with("crhook image directory "), "{text}");
    assert!(text.contains("\n  links       "), "{text}");
    assert!(text.contains("\ninventory.img: inventory (crhook.Inventory), format 1.3, 1 entry\n"));
    for k in Kind::ALL {
        assert!(
            text.contains(&format!("{}: {} (", k.file_name(), k.name())),
            "{k} missing from:\n{text}"
        );
    }
    assert!(text.contains("name=eth0"));
    assert!(text.contains("address=10.0.0.2"));
    assert!(text.contains("-A INPUT -p tcp --dport 22 -j ACCEPT"));
    Ok(())
}

#[test]
fn single_file() -> Result<(), Box<dyn std::error::Error>> {
    let t = TempDir::new("showfile");
    let p = t.join("routes.img");
    fs::write(&p, encode_file(Kind::Routes, &routes()))?;
    let v = json(&p)?;
    assert_eq!(v["file"], "routes.img");
    assert_eq!(v["magic"], "routes");
    assert_eq!(v["entries"].as_array().map(Vec::len), Some(3));
    // A file under another name is shown by its magic.
    let q = t.join("copy.bin");
    fs::copy(&p, &q)?;
    assert_eq!(json(&q)?["magic"], "routes");
    Ok(())
}

#[test]
fn file_named_for_another_kind_is_refused() {
    let t = TempDir::new("showwrong");
    let p = t.join("links.img");
    fs::write(&p, encode_file(Kind::Routes, &routes())).expect("write");
    let r: Result<String, ImageError> = show(&p, ShowFormat::Json);
    let msg = r.err().map(|e| e.to_string()).unwrap_or_default();
    assert_eq!(
        msg,
        format!(
            "read {}: offset 4: file holds routes but links (by its name) was expected (kind magic vs file name)",
            p.display()
        )
    );
}

#[test]
fn corrupt_directory_is_not_shown() {
    let t = TempDir::new("showbad");
    let dir = write_fixture(&t.join("img")).expect("fixture");
    fs::remove_file(dir.join("rules.img")).expect("rm");
    assert!(show(&dir, ShowFormat::Json).is_err());
}
