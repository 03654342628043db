//! Uploads: spooling a file as it arrives (size limit, sniffed type,
//! SHA-256), image dimensions and thumbnails on the blocking pool, storing
//! it; who may read a file; and the cleanup of uploads never sent.

use crate::error::{ApiError, ErrorCode};
use crate::service::to_completion;
use crate::settings::{AttachmentSettings, StoreKind};
use crate::state::AppState;
use actix_web::http::StatusCode;
use actix_web::web::Bytes;
use chat_domain::attachment::{Attachment, display_name};
use chat_domain::{AttachmentId, UserId};
use chat_files::sniff::{SNIFF_BYTES, TEXT_PLAIN, TextCheck, sniff};
use chat_files::{FileStore, Spool, StoreError};
use chat_persistence::attachments::{self, NewAttachment, StoredFile};
use futures_util::{Stream, StreamExt};
use sha2::{Digest, Sha256};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::sync::Semaphore;
use tokio::time::Instant;

/// The node's file store and its bound on image decoding.
#[derive(Debug)]
pub struct Files {
    /// Where the bytes live.
    pub store: FileStore,
    /// Images decoded at once.
    images: Semaphore,
}

impl Files {
    /// Opens the configured store (creating the local directories).
    pub fn open(settings: &AttachmentSettings) -> Result<Self, StoreError> {
        let root = std::path::Path::new(&settings.dir);
        let store = match settings.store {
            StoreKind::Local => FileStore::local(root)?,
            StoreKind::S3 => {
                let some = |v: &str| Some(v.to_owned()).filter(|v| !v.is_empty());
                let config = chat_files::S3Config {
                    bucket: settings.s3_bucket.clone(),
                    region: settings.s3_region.clone(),
                    endpoint: some(&settings.s3_endpoint),
                    access_key_id: some(&settings.s3_access_key_id),
                    secret_access_key: some(settings.s3_secret_access_key.expose()),
                    prefix: settings.s3_prefix.clone(),
                    allow_http: settings.s3_allow_http,
                };
                FileStore::s3(&config, root)?
            }
        };
        Ok(Self {
            store,
            images: Semaphore::new(settings.image_concurrency.max(1)),
        })
    }
}

/// An upload spooled to local disk and checked, not stored yet.
#[derive(Debug)]
pub struct Spooled {
    spool: Spool,
    filename: String,
    content_type: &'static str,
    size: u64,
    sha256: String,
}

/// 413 for a file over the limit.
fn too_large(max: u64) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        ErrorCode::PayloadTooLarge,
        format!("The file is larger than {max} bytes."),
    )
}

/// 415 for a type that is not allowed.
fn not_allowed(kind: Option<&str>) -> ApiError {
    let detail = match kind {
        Some(kind) => format!("Files of type {kind} are not accepted."),
        None => "The file's type is not recognized; it is not accepted.".to_owned(),
    };
    ApiError::new(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ErrorCode::UnsupportedMediaType,
        detail,
    )
}

/// 408 for an upload that did not arrive in time.
pub fn too_slow() -> ApiError {
    ApiError::new(
        StatusCode::REQUEST_TIMEOUT,
        ErrorCode::BadRequest,
        "The upload did not arrive in time.",
    )
}

/// 400 for a multipart body that could not be read.
pub fn unreadable(e: impl std::fmt::Display) -> ApiError {
    tracing::debug!(error = %e, "multipart body unreadable");
    ApiError::bad_request(
        ErrorCode::ParseError,
        format!("The multipart body could not be read: {e}."),
    )
}

fn store_failed(e: StoreError) -> ApiError {
    match e {
        StoreError::Io(e) => ApiError::internal_because(format!("file store: {e}")),
        other => {
            tracing::error!(error = %other, "file store unavailable");
            ApiError::unavailable()
        }
    }
}

/// When an upload must be complete, how long it may pause, and whether
/// its body has ended (a form that is still unfinished then never will be).
#[derive(Debug, Clone)]
pub struct Deadline {
    /// The whole upload.
    pub end: Instant,
    /// Between two chunks.
    pub idle: Duration,
    ended: Arc<AtomicBool>,
}

/// A request body that tells its [`Deadline`] when it has ended.
#[derive(Debug)]
pub struct Watched<S> {
    inner: S,
    ended: Arc<AtomicBool>,
}

impl<S: Stream + Unpin> Stream for Watched<S> {
    type Item = S::Item;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<S::Item>> {
        let polled = self.inner.poll_next_unpin(cx);
        if matches!(polled, Poll::Ready(None)) {
            self.ended.store(true, Ordering::Release);
        }
        polled
    }
}

impl Deadline {
    /// From the settings, starting now.
    pub fn new(state: &AppState) -> Self {
        let a = &state.settings.attachments;
        Self {
            end: Instant::now() + Duration::from_secs(a.upload_timeout_seconds),
            idle: Duration::from_millis(state.settings.limits.body_timeout_ms),
            ended: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Wraps the request body, so a form cut short is told from a slow one.
    pub fn watch<S>(&self, body: S) -> Watched<S> {
        Watched {
            inner: body,
            ended: self.ended.clone(),
        }
    }

    /// The next item of `stream` (the form or one of its fields): 408 when
    /// it does not come in time, 400 when the body has ended and the
    /// stream still waits for more.
    pub async fn next<S, T>(&self, stream: &mut S) -> Result<Option<T>, ApiError>
    where
        S: Stream<Item = T> + Unpin,
    {
        let at = self.end.min(Instant::now() + self.idle);
        let ended = &self.ended;
        let next = futures_util::future::poll_fn(|cx| match stream.poll_next_unpin(cx) {
            Poll::Ready(item) => Poll::Ready(Ok(item)),
            Poll::Pending if ended.load(Ordering::Acquire) => {
                Poll::Ready(Err(unreadable("the body ended before the form did")))
            }
            Poll::Pending => Poll::Pending,
        });
        tokio::time::timeout_at(at, next)
            .await
            .map_err(|_| too_slow())?
    }
}

/// Reads the `file` field to a spool file as it arrives: 413 as soon as
/// it crosses the limit, 415 as soon as its first bytes (or, for text, any
/// later ones) show a type that is not allowed. Nothing is left behind on
/// failure: the spool file goes with the error.
pub async fn spool<S, E>(
    state: &AppState,
    raw_filename: Option<&str>,
    field: &mut S,
    deadline: &Deadline,
) -> Result<Spooled, ApiError>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    let settings = &state.settings.attachments;
    let max = settings.max_bytes;
    let mut spool = state
        .files
        .store
        .spool()
        .await
        .map_err(|e| ApiError::internal_because(format!("spool: {e}")))?;
    let mut hasher = Sha256::new();
    let mut head: Vec<u8> = Vec::new();
    let mut kind: Option<&'static str> = None;
    let mut text: Option<TextCheck> = None;
    let mut size: u64 = 0;
    let decide = |head: &[u8]| -> Result<(&'static str, Option<TextCheck>), ApiError> {
        let found = sniff(head);
        match found {
            Some(k) if settings.allowed_types.iter().any(|a| a == k) => {
                let mut check = (k == TEXT_PLAIN).then(TextCheck::default);
                if let Some(c) = check.as_mut() {
                    c.feed(head);
                }
                Ok((k, check))
            }
            other => Err(not_allowed(other)),
        }
    };
    let write = |e: std::io::Error| ApiError::internal_because(format!("spool write: {e}"));
    while let Some(chunk) = deadline.next(field).await? {
        let chunk = chunk.map_err(unreadable)?;
        size += chunk.len() as u64;
        if size > max {
            return Err(too_large(max));
        }
        hasher.update(&chunk);
        if kind.is_none() {
            head.extend_from_slice(&chunk);
            if head.len() >= SNIFF_BYTES {
                let (k, check) = decide(&head)?;
                (kind, text) = (Some(k), check);
                spool.write(&head).await.map_err(write)?;
                head = Vec::new();
            }
            continue;
        }
        if let Some(check) = text.as_mut()
            && !check.feed(&chunk)
        {
            return Err(not_allowed(None));
        }
        spool.write(&chunk).await.map_err(write)?;
    }
    let content_type = match kind {
        Some(k) => k,
        None => {
            let (k, check) = decide(&head)?;
            text = check;
            spool.write(&head).await.map_err(write)?;
            k
        }
    };
    if text.as_ref().is_some_and(|c| !c.finish()) {
        return Err(not_allowed(None));
    }
    spool.finish().await.map_err(write)?;
    Ok(Spooled {
        spool,
        filename: display_name(raw_filename.unwrap_or_default()),
        content_type,
        size,
        sha256: hex(&hasher.finalize()),
    })
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// Stores a spooled upload for `uploader`: image dimensions and thumbnail
/// first (an image refused there stores nothing), then the row (not ready),
/// the bytes, and the row marked ready. Runs to its end even if the client
/// goes away; a process killed in between leaves a row that is never
/// ready, which the cleanup removes with whatever bytes it has.
pub async fn store(
    state: &AppState,
    uploader: UserId,
    spooled: Spooled,
) -> Result<Attachment, ApiError> {
    let state = state.clone();
    to_completion(async move { store_now(&state, uploader, spooled).await }).await
}

async fn store_now(
    state: &AppState,
    uploader: UserId,
    spooled: Spooled,
) -> Result<Attachment, ApiError> {
    let image = match chat_files::images::format_of(spooled.content_type) {
        Some(format) => Some(process_image(state, &spooled, format).await?),
        None => None,
    };
    let key = FileStore::new_key();
    let thumbnail_key = image.as_ref().map(|_| format!("{key}_t"));
    let new = NewAttachment {
        uploader,
        storage_key: key.clone(),
        thumbnail_key: thumbnail_key.clone(),
        filename: spooled.filename,
        content_type: spooled.content_type.to_owned(),
        size: i64::try_from(spooled.size).unwrap_or(i64::MAX),
        sha256: spooled.sha256,
        dimensions: image
            .as_ref()
            .map(|p| (i64::from(p.width), i64::from(p.height))),
    };
    let id = state
        .db
        .run(move |c| attachments::insert_pending(c, &new))
        .await?;
    let files = &state.files.store;
    let stored = async {
        files.commit(spooled.spool, &key).await?;
        if let (Some(p), Some(tk)) = (image, &thumbnail_key) {
            files.put(tk, p.thumbnail).await?;
        }
        Ok::<(), StoreError>(())
    }
    .await;
    if let Err(e) = stored {
        let _ = files.delete(&key).await;
        if let Some(tk) = &thumbnail_key {
            let _ = files.delete(tk).await;
        }
        let _ = state.db.run(move |c| attachments::delete(c, id)).await;
        return Err(store_failed(e));
    }
    Ok(state
        .db
        .run(move |c| attachments::mark_ready(c, id))
        .await?)
}

/// Dimensions and thumbnail of an image, on the blocking pool, at most
/// `attachments.image_concurrency` at once per node.
async fn process_image(
    state: &AppState,
    spooled: &Spooled,
    format: chat_files::images::ImageFormat,
) -> Result<chat_files::images::Processed, ApiError> {
    let settings = &state.settings.attachments;
    let _permit = state
        .files
        .images
        .acquire()
        .await
        .map_err(|_| ApiError::internal_because("image semaphore closed"))?;
    let path = spooled.spool.path().to_owned();
    let (max_pixels, side) = (settings.max_image_pixels, settings.thumbnail_px);
    let done = tokio::task::spawn_blocking(move || {
        chat_files::images::process(&path, format, max_pixels, side)
    })
    .await
    .map_err(|e| ApiError::internal_because(format!("image task: {e}")))?;
    done.map_err(|e| match e {
        chat_files::images::ImageError::Io(e) => {
            ApiError::internal_because(format!("image read: {e}"))
        }
        refused => ApiError::field("file", refused.to_string()),
    })
}

/// The file `id` if `viewer` may read it (the uploader, or a participant of
/// the conversation it was sent in); 404 otherwise, the same way whether
/// or not it exists.
pub async fn readable(
    state: &AppState,
    viewer: UserId,
    id: AttachmentId,
) -> Result<StoredFile, ApiError> {
    Ok(state
        .db
        .run(move |c| attachments::find_readable(c, id, viewer))
        .await?)
}

/// Opens a stored object for download: 404 if its bytes are gone, 503 if
/// the store is down.
pub async fn open(
    state: &AppState,
    key: &str,
    range: Option<std::ops::Range<u64>>,
) -> Result<chat_files::store::Opened, ApiError> {
    match state.files.store.open(key, range).await {
        Ok(opened) => Ok(opened),
        Err(StoreError::NotFound) => Err(ApiError::not_found("Not found.")),
        Err(e) => Err(store_failed(e)),
    }
}

/// Most uploads one cleanup round claims.
const CLEANUP_BATCH: i64 = 100;
/// How long a claim lasts: a node that dies mid-round loses it then.
const CLEANUP_LEASE: Duration = Duration::from_secs(300);

/// One cleanup round: claims uploads never sent that are older than the
/// retention time, deletes their bytes, then their rows; and removes spool
/// files left by killed uploads that old (and older than twice the upload
/// deadline). Returns how many uploads went.
pub async fn cleanup_once(state: &AppState) -> Result<usize, ApiError> {
    let ttl = Duration::from_secs(state.settings.attachments.unattached_ttl_seconds);
    let mut removed = 0;
    loop {
        let now = chat_domain::now();
        let older_than = now - chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::MAX);
        let lease = now + chrono::Duration::from_std(CLEANUP_LEASE).unwrap_or_default();
        let claimed = state
            .db
            .run(move |c| attachments::claim_expired(c, older_than, lease, CLEANUP_BATCH))
            .await?;
        if claimed.is_empty() {
            break;
        }
        let mut gone = Vec::with_capacity(claimed.len());
        for e in &claimed {
            let keys = std::iter::once(&e.storage_key).chain(e.thumbnail_key.as_ref());
            let mut ok = true;
            for key in keys {
                if let Err(err) = state.files.store.delete(key).await {
                    tracing::warn!(error = %err, "attachment cleanup: delete failed");
                    ok = false;
                }
            }
            if ok {
                gone.push(e.id);
            }
        }
        let n = gone.len();
        state
            .db
            .run(move |c| attachments::delete_claimed(c, &gone))
            .await?;
        removed += n;
        if n < claimed.len() || (claimed.len() as i64) < CLEANUP_BATCH {
            break;
        }
    }
    // A spool file in use is younger than its upload's deadline (it is
    // written until then, and committed right after): twice that is safe.
    let upload_timeout = state.settings.attachments.upload_timeout_seconds;
    let spool_age = ttl.max(Duration::from_secs(upload_timeout.saturating_mul(2)));
    if let Err(e) = state.files.store.sweep_spool(spool_age).await {
        tracing::warn!(error = %e, "attachment cleanup: spool sweep failed");
    }
    Ok(removed)
}

/// Runs [`cleanup_once`] every `attachments.cleanup_interval_seconds`.
pub fn spawn_cleanup(state: AppState) {
    let every = Duration::from_secs(state.settings.attachments.cleanup_interval_seconds);
    actix_web::rt::spawn(async move {
        let mut tick = tokio::time::interval(every);
        loop {
            tick.tick().await;
            match cleanup_once(&state).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(removed = n, "unattached uploads removed"),
                Err(e) => tracing::warn!(error = %e, "attachment cleanup failed"),
            }
        }
    });
}
