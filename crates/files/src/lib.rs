//! Attachment files: where their bytes live, what they are, and the
//! thumbnails of images. No HTTP and no database here: the API decides who
//! may store or read what, this crate only moves and inspects bytes.
//!
//! - [`store`]: one interface ([`FileStore`]) over a local directory (the
//!   embedded default) and an S3-compatible object store. Uploads are
//!   first written to a spool file on local disk, then committed under a
//!   random key.
//! - [`sniff`]: the type of a file from its bytes.
//! - [`images`]: dimensions from the header (huge ones refused before any
//!   decoding) and a JPEG thumbnail.

pub mod images;
pub mod sniff;
pub mod store;

pub use store::{ByteStream, FileStore, Opened, S3Config, Spool, StoreError};
