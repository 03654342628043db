//! Where attachment bytes live: one interface over a local directory and
//! an S3-compatible object store.
//!
//! An upload is written to a [`Spool`] file on local disk as it arrives
//! (never held in memory whole), then [`FileStore::commit`]ted under a key
//! the service chose (random, never from the client): a rename for the
//! local store, an upload for S3. A spool file that is dropped without
//! being committed is removed; one left by a killed process is removed by
//! [`FileStore::sweep_spool`].

use bytes::Bytes;
use futures_util::Stream;
use std::io;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

/// The bytes of a stored file (or a range of them), in chunks.
pub type ByteStream = Pin<Box<dyn Stream<Item = io::Result<Bytes>> + Send>>;

/// An object opened for reading.
pub struct Opened {
    /// Its bytes (the range asked for, or all).
    pub stream: ByteStream,
    /// The whole object's size in bytes.
    pub size: u64,
}

impl std::fmt::Debug for Opened {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Opened")
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No object under that key.
    #[error("no such file")]
    NotFound,
    /// The store could not be reached or answered with an error.
    #[error("file store unavailable: {0}")]
    Unavailable(String),
    /// Local disk.
    #[error("file store i/o: {0}")]
    Io(#[from] io::Error),
}

/// Chunk size of reads from the local store.
const READ_CHUNK: usize = 64 * 1024;
/// Suffix of spool files.
const SPOOL_SUFFIX: &str = ".part";

/// The store: cheap to clone.
#[derive(Clone, Debug)]
pub struct FileStore {
    backend: Backend,
    spool_dir: PathBuf,
}

#[derive(Clone, Debug)]
enum Backend {
    /// Objects under `<root>/objects/<first two characters>/<key>`.
    Local { objects: PathBuf },
    /// Objects under `<prefix><key>` in a bucket.
    S3 {
        store: Arc<object_store::aws::AmazonS3>,
        prefix: String,
    },
}

/// Where an S3-compatible store is and how to sign for it.
#[derive(Clone)]
pub struct S3Config {
    /// Bucket.
    pub bucket: String,
    /// Region.
    pub region: String,
    /// Endpoint of an S3-compatible service; `None` for AWS.
    pub endpoint: Option<String>,
    /// Access key id; `None`: the `AWS_*` environment or instance role.
    pub access_key_id: Option<String>,
    /// Secret access key.
    pub secret_access_key: Option<String>,
    /// Prefix of every key.
    pub prefix: String,
    /// Whether a plain `http://` endpoint is allowed.
    pub allow_http: bool,
}

impl std::fmt::Debug for S3Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Config")
            .field("bucket", &self.bucket)
            .field("region", &self.region)
            .field("endpoint", &self.endpoint)
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

/// Uploads to S3 of at most this size are one `PUT`; larger ones are sent
/// in parts of this size, one part in memory at a time.
const S3_PART: usize = 5 * 1024 * 1024;

fn s3_error(e: object_store::Error) -> StoreError {
    match e {
        object_store::Error::NotFound { .. } => StoreError::NotFound,
        other => StoreError::Unavailable(other.to_string()),
    }
}

/// A file being written: removed when dropped unless committed.
#[derive(Debug)]
pub struct Spool {
    path: PathBuf,
    file: Option<tokio::fs::File>,
    written: u64,
    kept: bool,
}

impl Spool {
    /// Appends bytes.
    pub async fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        let file = self
            .file
            .as_mut()
            .ok_or_else(|| io::Error::other("spool already finished"))?;
        file.write_all(bytes).await?;
        self.written += bytes.len() as u64;
        Ok(())
    }

    /// Bytes written so far.
    pub fn len(&self) -> u64 {
        self.written
    }

    /// Whether nothing was written.
    pub fn is_empty(&self) -> bool {
        self.written == 0
    }

    /// Flushes and closes the file, so it can be read back by path.
    pub async fn finish(&mut self) -> io::Result<()> {
        if let Some(mut file) = self.file.take() {
            file.flush().await?;
        }
        Ok(())
    }

    /// Where the spooled bytes are (for inspection, e.g. image decoding).
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Spool {
    fn drop(&mut self) {
        if !self.kept {
            // One unlink; a file that cannot be removed is swept later.
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Keys are made by [`FileStore::new_key`]; anything else is refused
/// before it reaches a path.
fn checked_key(key: &str) -> io::Result<&str> {
    let ok = key.len() >= 3
        && key.len() <= 128
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(key)
    } else {
        Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "bad storage key",
        ))
    }
}

impl FileStore {
    /// The local store under `root` (created if missing): objects in
    /// `root/objects`, spool files in `root/spool`.
    pub fn local(root: &Path) -> io::Result<Self> {
        let objects = root.join("objects");
        let spool_dir = root.join("spool");
        std::fs::create_dir_all(&objects)?;
        std::fs::create_dir_all(&spool_dir)?;
        Ok(Self {
            backend: Backend::Local { objects },
            spool_dir,
        })
    }

    /// The S3-compatible store of `config`, spooling uploads in
    /// `spool_root/spool`. Requests time out and are retried a little, so
    /// a store that is down is an error within seconds, not a hang.
    pub fn s3(config: &S3Config, spool_root: &Path) -> Result<Self, StoreError> {
        use object_store::aws::AmazonS3Builder;
        let spool_dir = spool_root.join("spool");
        std::fs::create_dir_all(&spool_dir)?;
        let mut builder = AmazonS3Builder::from_env()
            .with_bucket_name(&config.bucket)
            .with_region(&config.region)
            .with_allow_http(config.allow_http)
            .with_client_options(
                object_store::ClientOptions::new()
                    .with_allow_http(config.allow_http)
                    .with_connect_timeout(Duration::from_secs(3))
                    .with_timeout(Duration::from_secs(30)),
            )
            .with_retry(object_store::RetryConfig {
                backoff: object_store::BackoffConfig::default(),
                max_retries: 2,
                retry_timeout: Duration::from_secs(10),
            });
        if let Some(endpoint) = &config.endpoint {
            builder = builder.with_endpoint(endpoint);
        }
        if let (Some(id), Some(secret)) = (&config.access_key_id, &config.secret_access_key) {
            builder = builder
                .with_access_key_id(id)
                .with_secret_access_key(secret);
        }
        let store = builder.build().map_err(s3_error)?;
        Ok(Self {
            backend: Backend::S3 {
                store: Arc::new(store),
                prefix: config.prefix.clone(),
            },
            spool_dir,
        })
    }

    fn s3_path(prefix: &str, key: &str) -> Result<object_store::path::Path, StoreError> {
        let key = checked_key(key)?;
        object_store::path::Path::parse(format!("{prefix}{key}"))
            .map_err(|e| StoreError::Unavailable(format!("bad object path: {e}")))
    }

    /// A fresh random key (32 hex digits).
    pub fn new_key() -> String {
        uuid::Uuid::new_v4().simple().to_string()
    }

    /// A new spool file.
    pub async fn spool(&self) -> io::Result<Spool> {
        let path = self
            .spool_dir
            .join(format!("{}{SPOOL_SUFFIX}", Self::new_key()));
        let file = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .await?;
        Ok(Spool {
            path,
            file: Some(file),
            written: 0,
            kept: false,
        })
    }

    fn local_path(objects: &Path, key: &str) -> io::Result<PathBuf> {
        let key = checked_key(key)?;
        Ok(objects.join(&key[..2]).join(key))
    }

    /// Stores the spooled bytes under `key`.
    pub async fn commit(&self, mut spool: Spool, key: &str) -> Result<(), StoreError> {
        spool.finish().await?;
        match &self.backend {
            Backend::Local { objects } => {
                let target = Self::local_path(objects, key)?;
                if let Some(dir) = target.parent() {
                    tokio::fs::create_dir_all(dir).await?;
                }
                tokio::fs::rename(&spool.path, &target).await?;
                spool.kept = true;
                Ok(())
            }
            Backend::S3 { store, prefix } => {
                use object_store::ObjectStoreExt as _;
                let path = Self::s3_path(prefix, key)?;
                let mut file = tokio::fs::File::open(&spool.path).await?;
                if spool.written <= S3_PART as u64 {
                    let mut bytes = Vec::with_capacity(usize::try_from(spool.written).unwrap_or(0));
                    file.read_to_end(&mut bytes).await?;
                    store
                        .put(&path, object_store::PutPayload::from(bytes))
                        .await
                        .map_err(s3_error)?;
                    return Ok(());
                }
                let upload = store.put_multipart(&path).await.map_err(s3_error)?;
                let mut parts = object_store::WriteMultipart::new_with_chunk_size(upload, S3_PART);
                let mut buf = vec![0u8; READ_CHUNK];
                loop {
                    let n = file.read(&mut buf).await?;
                    if n == 0 {
                        break;
                    }
                    // At most one part in flight besides the one filling.
                    parts.wait_for_capacity(1).await.map_err(s3_error)?;
                    parts.write(&buf[..n]);
                }
                parts.finish().await.map_err(s3_error)?;
                Ok(())
            }
        }
    }

    /// Stores small bytes (a thumbnail) under `key`.
    pub async fn put(&self, key: &str, bytes: Vec<u8>) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Local { .. } => {
                let mut spool = self.spool().await?;
                spool.write(&bytes).await?;
                self.commit(spool, key).await
            }
            Backend::S3 { store, prefix } => {
                use object_store::ObjectStoreExt as _;
                let path = Self::s3_path(prefix, key)?;
                store
                    .put(&path, object_store::PutPayload::from(bytes))
                    .await
                    .map_err(s3_error)?;
                Ok(())
            }
        }
    }

    /// The bytes under `key`, all of them or `range` (which the caller has
    /// checked against the size).
    pub async fn open(&self, key: &str, range: Option<Range<u64>>) -> Result<Opened, StoreError> {
        match &self.backend {
            Backend::Local { objects } => {
                let path = Self::local_path(objects, key)?;
                let mut file = match tokio::fs::File::open(&path).await {
                    Ok(f) => f,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {
                        return Err(StoreError::NotFound);
                    }
                    Err(e) => return Err(e.into()),
                };
                let size = file.metadata().await?.len();
                let (start, len) = match range {
                    Some(r) => (r.start, r.end.min(size).saturating_sub(r.start)),
                    None => (0, size),
                };
                if start > 0 {
                    file.seek(io::SeekFrom::Start(start)).await?;
                }
                Ok(Opened {
                    stream: Box::pin(chunks(file.take(len))),
                    size,
                })
            }
            Backend::S3 { store, prefix } => {
                use futures_util::TryStreamExt as _;
                use object_store::ObjectStore as _;
                let path = Self::s3_path(prefix, key)?;
                let options = object_store::GetOptions {
                    range: range.map(object_store::GetRange::Bounded),
                    ..Default::default()
                };
                let got = store.get_opts(&path, options).await.map_err(s3_error)?;
                let size = got.meta.size;
                let stream = got.into_stream().map_err(io::Error::other);
                Ok(Opened {
                    stream: Box::pin(stream),
                    size,
                })
            }
        }
    }

    /// Deletes the object under `key`; a missing one is fine.
    pub async fn delete(&self, key: &str) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Local { objects } => {
                let path = Self::local_path(objects, key)?;
                match tokio::fs::remove_file(&path).await {
                    Ok(()) => Ok(()),
                    Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
                    Err(e) => Err(e.into()),
                }
            }
            Backend::S3 { store, prefix } => {
                use object_store::ObjectStoreExt as _;
                let path = Self::s3_path(prefix, key)?;
                match store.delete(&path).await {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
                    Err(e) => Err(s3_error(e)),
                }
            }
        }
    }

    /// Removes spool files older than `age` (left by a process that was
    /// killed mid-upload); returns how many.
    pub async fn sweep_spool(&self, age: Duration) -> io::Result<usize> {
        let mut removed = 0;
        let mut dir = tokio::fs::read_dir(&self.spool_dir).await?;
        while let Some(entry) = dir.next_entry().await? {
            let is_spool = entry
                .file_name()
                .to_str()
                .is_some_and(|n| n.ends_with(SPOOL_SUFFIX));
            let Ok(meta) = entry.metadata().await else {
                continue;
            };
            let old = meta
                .modified()
                .ok()
                .and_then(|m| m.elapsed().ok())
                .is_some_and(|elapsed| elapsed >= age);
            if is_spool
                && meta.is_file()
                && old
                && tokio::fs::remove_file(entry.path()).await.is_ok()
            {
                removed += 1;
            }
        }
        Ok(removed)
    }
}

/// A reader as a stream of chunks.
fn chunks<R: tokio::io::AsyncRead + Unpin + Send + 'static>(
    reader: R,
) -> impl Stream<Item = io::Result<Bytes>> + Send {
    futures_util::stream::unfold(Some(reader), |state| async move {
        let mut reader = state?;
        let mut buf = vec![0u8; READ_CHUNK];
        match reader.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok(Bytes::from(buf)), Some(reader)))
            }
            Err(e) => Some((Err(e), None)),
        }
    })
}
