//! Golden tests of tc decoding and encoding.
