//! Attachments: files uploaded by a user and sent with a message.

use crate::ids::AttachmentId;
use serde::{Deserialize, Serialize};

/// Most attachments one message may carry.
pub const MAX_ATTACHMENTS_PER_MESSAGE: usize = 10;

/// Longest display name kept for a file, in characters.
pub const MAX_FILENAME_CHARS: usize = 255;

/// The attachment object of the wire protocol: what an upload answers and
/// what messages and `chat_message` events list. `url` and
/// `thumbnail_url` are paths on the service (see [`Attachment::new`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Attachment {
    /// The attachment's id.
    #[cfg_attr(feature = "openapi", schema(value_type = i64))]
    pub id: AttachmentId,
    /// The uploaded file's name, sanitized: a display name only.
    pub filename: String,
    /// The type sniffed from the bytes (never the client's claim).
    pub content_type: String,
    /// Size in bytes.
    pub size: i64,
    /// Where the bytes are: `GET` with the access token (header or `token`
    /// query parameter).
    pub url: String,
    /// Images: width in pixels; null otherwise.
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub width: Option<i64>,
    /// Images: height in pixels; null otherwise.
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub height: Option<i64>,
    /// Images: a JPEG at most 320 px on its long side; null otherwise.
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub thumbnail_url: Option<String>,
}

impl Attachment {
    /// The object of a stored file; the URLs follow from the id.
    ///
    /// ```
    /// use chat_domain::{attachment::Attachment, AttachmentId};
    /// let a = Attachment::new(AttachmentId(4), "a.png".into(), "image/png".into(), 10, Some((2, 3)), true);
    /// assert_eq!(a.url, "/api/chat/attachments/4/");
    /// assert_eq!(a.thumbnail_url.as_deref(), Some("/api/chat/attachments/4/thumbnail/"));
    /// ```
    pub fn new(
        id: AttachmentId,
        filename: String,
        content_type: String,
        size: i64,
        dimensions: Option<(i64, i64)>,
        has_thumbnail: bool,
    ) -> Self {
        Self {
            id,
            filename,
            content_type,
            size,
            url: format!("/api/chat/attachments/{id}/"),
            width: dimensions.map(|d| d.0),
            height: dimensions.map(|d| d.1),
            thumbnail_url: has_thumbnail.then(|| format!("/api/chat/attachments/{id}/thumbnail/")),
        }
    }

    /// Whether the file is shown inline (an image) rather than downloaded.
    pub fn is_image(&self) -> bool {
        self.content_type.starts_with("image/")
    }
}

/// The display name of an uploaded file: the last path component of what
/// the client sent, without control characters, trimmed, at most
/// [`MAX_FILENAME_CHARS`] characters; `file` when nothing is left. Never
/// used as a path.
///
/// ```
/// use chat_domain::attachment::display_name;
/// assert_eq!(display_name("../../etc/passwd"), "passwd");
/// assert_eq!(display_name("C:\\Users\\me\\photo.png"), "photo.png");
/// assert_eq!(display_name(" a\u{0}b\n.txt "), "ab.txt");
/// assert_eq!(display_name(".."), "file");
/// assert_eq!(display_name(""), "file");
/// ```
pub fn display_name(raw: &str) -> String {
    let last = raw.rsplit(['/', '\\']).next().unwrap_or_default();
    let cleaned: String = last
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_FILENAME_CHARS)
        .collect();
    let trimmed = cleaned.trim();
    if trimmed.is_empty() || trimmed == "." || trimmed == ".." {
        "file".to_owned()
    } else {
        trimmed.to_owned()
    }
}

/// Why a list of attachment ids was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AttachmentIdsError {
    /// More than [`MAX_ATTACHMENTS_PER_MESSAGE`].
    #[error("A message may carry at most 10 attachments.")]
    TooMany,
    /// The same id twice.
    #[error("An attachment is listed twice.")]
    Repeated,
    /// Not a list of positive integers.
    #[error("Field 'attachment_ids' must be a list of attachment ids.")]
    NotIds,
}

/// Checks a message's attachment ids: at most ten, each once.
///
/// ```
/// use chat_domain::{attachment::check_ids, AttachmentId};
/// assert!(check_ids(&[AttachmentId(1), AttachmentId(2)]).is_ok());
/// assert!(check_ids(&[AttachmentId(1), AttachmentId(1)]).is_err());
/// assert!(check_ids(&vec![AttachmentId(1); 11]).is_err());
/// ```
pub fn check_ids(ids: &[AttachmentId]) -> Result<(), AttachmentIdsError> {
    if ids.len() > MAX_ATTACHMENTS_PER_MESSAGE {
        return Err(AttachmentIdsError::TooMany);
    }
    let mut sorted = ids.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    if sorted.len() != ids.len() {
        return Err(AttachmentIdsError::Repeated);
    }
    Ok(())
}

/// Parses a JSON `attachment_ids` value (absent or null: none).
pub fn parse_ids(
    value: Option<&serde_json::Value>,
) -> Result<Vec<AttachmentId>, AttachmentIdsError> {
    let items = match value {
        None | Some(serde_json::Value::Null) => return Ok(Vec::new()),
        Some(serde_json::Value::Array(items)) => items,
        Some(_) => return Err(AttachmentIdsError::NotIds),
    };
    if items.len() > MAX_ATTACHMENTS_PER_MESSAGE {
        return Err(AttachmentIdsError::TooMany);
    }
    let ids = items
        .iter()
        .map(|v| v.as_i64().filter(|id| *id > 0).map(AttachmentId))
        .collect::<Option<Vec<_>>>()
        .ok_or(AttachmentIdsError::NotIds)?;
    check_ids(&ids)?;
    Ok(ids)
}
