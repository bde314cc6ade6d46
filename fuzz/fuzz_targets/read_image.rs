//! Feeds arbitrary bytes to the image reader as every kind, twice: as given (exercising the
//! header, trailer and checksum checks) and with the trailer checksum recomputed (so mutations
//! get past the checksum into the entry walk and protobuf decoding). Also runs `show`'s
//! decoders, which render every message to JSON, and the memory-budget walk of every kind's
//! schema over each entry and over the raw bytes. Any panic is a bug; errors are expected.

#![no_main]

use std::path::Path;

use crhook_core::frame::fix_checksum;
use crhook_core::show::SHOW_ROWS;
use crhook_core::Limits;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let limits = Limits {
        max_entry: 1 << 20,
        max_entries: 1 << 16,
        max_file: 1 << 24,
        max_repeated: 1 << 20,
        max_file_memory: 1 << 28,
        max_total_memory: 1 << 28,
    };
    let mut fixed = data.to_vec();
    fix_checksum(&mut fixed);
    for bytes in [data, fixed.as_slice()] {
        for row in SHOW_ROWS {
            let name = Path::new(row.kind.file_name());
            let _ = crhook_core::verify_framing(name, row.kind, bytes, &limits);
            let _ = (row.decode)(name, bytes);
            // the budget walk alone, over the entries as they are
            if let Some(schema) = crhook_core::proto::schema::message(row.kind.info().message) {
                if let Ok(framed) = crhook_core::frame::parse(name, bytes, Some(row.kind), &limits)
                {
                    let _ = framed.for_each(|_, _, payload| {
                        let _ = crhook_core::budget::footprint(schema, payload);
                        Ok(())
                    });
                }
                let _ = crhook_core::budget::footprint(schema, bytes);
            }
        }
        // show learns the kind from the magic when the name says nothing.
        let _ = crhook_core::show::show_bytes(Path::new("x.img"), bytes);
        let _ = crhook_core::decode_raw_file(
            Path::new("x.img"),
            crhook_core::Kind::Firewall,
            bytes,
            &limits,
        );
    }
});
