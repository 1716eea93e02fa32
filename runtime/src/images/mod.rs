//! Images on the host: content-addressed blobs ([`content`]), image archives read into them
//! ([`archive`]), layers unpacked into overlay form ([`unpack`]) as committed snapshots, and the
//! per-container writable layers mounted over them ([`snapshot`]); [`platform`] picks an image
//! from a multi-platform index. [`import`] puts these together for `Images/Import`.

pub mod archive;
pub mod content;
pub mod digest;
pub mod dir_cursor;
pub mod import;
pub mod platform;
pub mod registry;
pub mod snapshot;
pub mod unpack;
