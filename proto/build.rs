//! Compiles proto/crhook/*.proto with protox (pure Rust), so building needs no protoc binary.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::path::Path::new("proto");
    let mut files: Vec<_> = std::fs::read_dir(dir.join("crhook"))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "proto"))
        .collect();
    files.sort();
    for f in &files {
        println!("cargo:rerun-if-changed={}", f.display());
    }
    let fds = protox::compile(&files, [dir])?;
    let mut cfg = prost_build::Config::new();
    cfg.type_attribute(".", "#[derive(serde::Serialize, serde::Deserialize)]");
    cfg.btree_map(["."]);
    cfg.compile_fds(fds)?;
    Ok(())
}
