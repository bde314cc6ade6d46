//! A short, seeded, stable-Rust cousin of fuzz/fuzz_targets/read_image.rs that runs in every
//! `cargo test`: mutates the golden files (bit flips, byte writes, truncation, insertion,
//! hostile lengths), recomputes the checksum half the time so mutations reach the entry walk
//! and protobuf decoding, and feeds each input to every kind's decoder. Any panic fails.
//! `CRHOOK_FUZZ_ITERS` raises the iteration count for a longer local run.

mod common;

use std::path::Path;

use common::golden_dir;
use crhook_core::frame::fix_checksum;
use crhook_core::show::SHOW_ROWS;
use crhook_core::{verify_framing, Kind, Limits};

/// splitmix64: tiny, seeded, good enough to pick mutations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}

const INTERESTING: [u32; 8] = [0, 1, 4, 0x7f, 0xffff, 0x0400_0000, 0x7fff_ffff, u32::MAX];

fn mutate(rng: &mut Rng, b: &mut Vec<u8>) {
    for _ in 0..=rng.below(4) {
        let len = b.len();
        match rng.below(6) {
            0 if len > 0 => {
                let i = rng.below(len);
                b[i] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let i = rng.below(len);
                b[i] = rng.next() as u8;
            }
            2 => b.truncate(rng.below(len + 1)),
            3 => {
                let i = rng.below(len + 1);
                let n = rng.below(16);
                for _ in 0..n {
                    b.insert(i, rng.next() as u8);
                }
            }
            4 if len >= 4 => {
                let i = rng.below(len - 3);
                let v = INTERESTING[rng.below(INTERESTING.len())];
                b[i..i + 4].copy_from_slice(&v.to_le_bytes());
            }
            _ if len > 0 => {
                let i = rng.below(len);
                let j = rng.below(len);
                b.swap(i, j);
            }
            _ => b.push(rng.next() as u8),
        }
    }
}

#[test]
fn mutated_golden_files_never_panic() {
    let iters: usize = std::env::var("CRHOOK_FUZZ_ITERS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20_000);
    let seeds: Vec<Vec<u8>> = Kind::ALL
        .iter()
        .map(|k| std::fs::read(golden_dir().join(k.file_name())).expect("golden file"))
        .collect();
    let limits = Limits::default();
    let mut rng = Rng(0x00c0_ffee);
    let mut decoded_ok = 0u64;
    for _ in 0..iters {
        let mut b = seeds[rng.below(seeds.len())].clone();
        mutate(&mut rng, &mut b);
        if rng.below(2) == 0 {
            fix_checksum(&mut b);
        }
        for row in SHOW_ROWS {
            let name = Path::new(row.kind.file_name());
            let _ = verify_framing(name, row.kind, &b, &limits);
            if (row.decode)(name, &b).is_ok() {
                decoded_ok += 1;
            }
        }
    }
    // Some mutations (in string bytes, with the checksum fixed) stay valid: proof the
    // mutator reaches past the checksum and framing checks.
    assert!(decoded_ok > 0);
}
