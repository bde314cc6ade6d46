//! The entries of one image file checked but kept encoded, for a reader that decodes them a
//! few at a time (restore's routes) or decodes them itself (its sysctls).

use std::path::{Path, PathBuf};

use crate::budget::Budget;
use crate::error::ImageError;
use crate::file::{each_checked, over};
use crate::format::Limits;
use crate::frame;
use crate::magic::Kind;

/// The entries of one file, checked as [`crate::decode_file`] checks them (framing, schema shape,
/// budgets) but kept encoded: the reader decodes them a few at a time
/// ([`Encoded::decode`]), so what it holds decoded is bounded by what it takes at once
/// rather than by the file (100,000 routes are 3.8 MiB encoded and ~44 MiB decoded). The
/// image's memory budget is charged the entries' decoded contents, since a reader may decode
/// them all.
#[derive(Debug)]
pub struct Encoded {
    file: PathBuf,
    kind: Kind,
    bytes: prost::bytes::Bytes,
    /// each entry: offset of its length prefix (for errors), start and length of its payload
    spans: Vec<(u64, u32, u32)>,
}

impl Encoded {
    /// Checks `bytes`, the contents of `file`, a file of `kind`.
    pub(crate) fn check(
        file: &Path,
        kind: Kind,
        bytes: prost::bytes::Bytes,
        limits: &Limits,
        total: &Budget,
        crc: Option<u32>,
    ) -> Result<Encoded, ImageError> {
        let framed = frame::parse_known(file, &bytes, Some(kind), limits, crc)?;
        if framed.count > limits.max_repeated {
            let at = (bytes.len() - crate::format::TRAILER_LEN + 4) as u64;
            return Err(over(
                file,
                at,
                "repeated elements",
                framed.count,
                limits.max_repeated,
            ));
        }
        let mut spans = Vec::with_capacity(usize::try_from(framed.count).unwrap_or(0));
        let base = bytes.as_ptr() as usize;
        each_checked(
            file,
            kind,
            &framed,
            limits,
            total,
            bytes.len() as u64,
            framed.count,
            |_, offset, payload| {
                let start = payload.as_ptr() as usize - base;
                spans.push((offset, start as u32, payload.len() as u32));
                Ok(())
            },
        )?;
        Ok(Encoded {
            file: file.to_path_buf(),
            kind,
            bytes,
            spans,
        })
    }

    /// How many entries the file holds.
    pub fn len(&self) -> usize {
        self.spans.len()
    }

    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    /// The file the entries were read from.
    pub fn file(&self) -> &Path {
        &self.file
    }

    /// The encoded payload of entry `index`, checked as the read that made it checks it, for a
    /// reader that decodes it itself (see the netstate crate's saved sysctls).
    pub fn payload(&self, index: usize) -> Option<&[u8]> {
        let &(_, start, len) = self.spans.get(index)?;
        self.bytes
            .get(start as usize..start as usize + len as usize)
    }

    /// Decodes entry `index` (`M` must be the kind's message).
    pub fn decode<M: prost::Message + Default>(&self, index: usize) -> Result<M, ImageError> {
        let Some(&(offset, start, len)) = self.spans.get(index) else {
            return Err(ImageError::Corrupt {
                file: self.file.clone(),
                offset: 0,
                what: format!("no entry {index} (the file holds {})", self.spans.len()),
            });
        };
        let (start, len) = (start as usize, len as usize);
        M::decode(&self.bytes[start..start + len]).map_err(|source| ImageError::Decode {
            file: self.file.clone(),
            offset,
            index: index as u64,
            message: self.kind.info().message,
            source,
        })
    }
}
