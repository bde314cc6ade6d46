//! crc32c forging, for a file that passes every non-cryptographic check: same size, same
//! crc32c, different content. This is why sealed images list SHA-256.

fn crc_table() -> [u32; 256] {
    let mut t = [0u32; 256];
    for (i, e) in t.iter_mut().enumerate() {
        let mut c = i as u32;
        for _ in 0..8 {
            c = if c & 1 != 0 {
                (c >> 1) ^ 0x82f6_3b78
            } else {
                c >> 1
            };
        }
        *e = c;
    }
    t
}

/// The raw (not inverted) crc32c register after `data`.
fn register(t: &[u32; 256], data: &[u8]) -> u32 {
    data.iter().fold(!0u32, |c, &b| {
        t[((c ^ u32::from(b)) & 0xff) as usize] ^ (c >> 8)
    })
}

/// Replaces the bytes at `at` with `new`, then rewrites the 4 bytes at `fix` (after the edit)
/// so the body's crc32c stays the same: for a reflected CRC, feeding 4 bytes `x` from
/// register `s` equals feeding 4 zero bytes from `s ^ x`, and that step inverts.
fn same_crc_edit(b: &mut [u8], at: usize, new: &[u8], fix: usize) {
    assert!(fix >= at + new.len());
    let t = crc_table();
    let want = register(&t, &b[..fix + 4]);
    b[at..at + new.len()].copy_from_slice(new);
    let s = register(&t, &b[..fix]);
    let mut y = want;
    for _ in 0..4 {
        let i = t.iter().position(|e| e >> 24 == y >> 24).unwrap();
        y = ((y ^ t[i]) << 8) | i as u32;
    }
    b[fix..fix + 4].copy_from_slice(&(y ^ s).to_le_bytes());
}

fn find(b: &[u8], what: &[u8]) -> usize {
    b.windows(what.len()).position(|w| w == what).unwrap()
}

/// In the fixture's links.img: eth0's alias "uplink" becomes "evil!!", and the 4 value bytes
/// of its extra raw attribute (type 58, encoded after the alias) absorb the difference.
pub fn swap_alias(b: &mut [u8]) {
    let at = find(b, b"uplink");
    let fix = find(b, &[0x08, 0x3a, 0x12, 0x04, 1, 0, 0, 0]) + 4;
    same_crc_edit(b, at, b"evil!!", fix);
}
