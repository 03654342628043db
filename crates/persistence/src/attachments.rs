//! Uploaded files: their rows, sending them with a message, who may read
//! them, and the claim-then-delete cleanup of those never sent.

use crate::db::DbConnection;
use crate::error::{Constraint, PersistenceError, QueryResult};
use crate::rows::{to_naive, to_utc};
use crate::schema::{attachments, conversations};
use chat_domain::attachment::Attachment;
use chat_domain::{AttachmentId, ConversationId, MessageId, UserId};
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use serde::{Deserialize, Serialize};

/// An upload about to be stored: its row is written first (not ready).
#[derive(Debug, Clone)]
pub struct NewAttachment {
    /// Who uploaded it.
    pub uploader: UserId,
    /// Where the bytes go: random, never from the client.
    pub storage_key: String,
    /// Where the thumbnail goes (images).
    pub thumbnail_key: Option<String>,
    /// Sanitized display name.
    pub filename: String,
    /// The sniffed type.
    pub content_type: String,
    /// Bytes.
    pub size: i64,
    /// Hex SHA-256 of the bytes (the download's `ETag`).
    pub sha256: String,
    /// Images: width and height.
    pub dimensions: Option<(i64, i64)>,
}

/// A stored file as a download needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredFile {
    /// The attachment object.
    pub attachment: Attachment,
    /// Where the bytes are.
    pub storage_key: String,
    /// Where the thumbnail is.
    pub thumbnail_key: Option<String>,
    /// Hex SHA-256 of the bytes.
    pub sha256: String,
    /// When it was uploaded.
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Queryable, Selectable)]
#[diesel(table_name = attachments)]
#[diesel(check_for_backend(diesel::pg::Pg, diesel::sqlite::Sqlite))]
struct AttachmentRow {
    id: i64,
    storage_key: String,
    thumbnail_key: Option<String>,
    filename: String,
    content_type: String,
    size: i64,
    sha256: String,
    width: Option<i64>,
    height: Option<i64>,
    created_at: chrono::NaiveDateTime,
}

impl AttachmentRow {
    fn into_stored(self) -> StoredFile {
        let dimensions = self.width.zip(self.height);
        StoredFile {
            attachment: Attachment::new(
                AttachmentId(self.id),
                self.filename,
                self.content_type,
                self.size,
                dimensions,
                self.thumbnail_key.is_some(),
            ),
            storage_key: self.storage_key,
            thumbnail_key: self.thumbnail_key,
            sha256: self.sha256,
            created_at: to_utc(self.created_at),
        }
    }
}

/// The form kept in `messages.attachments`: the URLs are derived from the
/// id when read, so they follow the routes, not what was stored.
#[derive(Debug, Serialize, Deserialize)]
struct Summary {
    id: i64,
    filename: String,
    content_type: String,
    size: i64,
    width: Option<i64>,
    height: Option<i64>,
    thumbnail: bool,
}

/// The attachments of a message from its stored summary (written by this
/// crate only; an unreadable one shows none).
pub(crate) fn from_summary(json: &str) -> Vec<Attachment> {
    let items: Vec<Summary> = serde_json::from_str(json).unwrap_or_default();
    items
        .into_iter()
        .map(|s| {
            Attachment::new(
                AttachmentId(s.id),
                s.filename,
                s.content_type,
                s.size,
                s.width.zip(s.height),
                s.thumbnail,
            )
        })
        .collect()
}

fn to_summary(list: &[Attachment]) -> QueryResult<String> {
    let items: Vec<Summary> = list
        .iter()
        .map(|a| Summary {
            id: a.id.0,
            filename: a.filename.clone(),
            content_type: a.content_type.clone(),
            size: a.size,
            width: a.width,
            height: a.height,
            thumbnail: a.thumbnail_url.is_some(),
        })
        .collect();
    serde_json::to_string(&items).map_err(|e| PersistenceError::other_with("attachment summary", e))
}

/// Writes the row of an upload whose bytes are about to be stored; it
/// becomes usable with [`mark_ready`].
pub fn insert_pending(conn: &mut DbConnection, new: &NewAttachment) -> QueryResult<AttachmentId> {
    let id: i64 = diesel::insert_into(attachments::table)
        .values((
            attachments::uploader_id.eq(new.uploader.0),
            attachments::storage_key.eq(&new.storage_key),
            attachments::thumbnail_key.eq(new.thumbnail_key.as_deref()),
            attachments::filename.eq(&new.filename),
            attachments::content_type.eq(&new.content_type),
            attachments::size.eq(new.size),
            attachments::sha256.eq(&new.sha256),
            attachments::width.eq(new.dimensions.map(|d| d.0)),
            attachments::height.eq(new.dimensions.map(|d| d.1)),
            attachments::ready.eq(false),
            attachments::created_at.eq(to_naive(chat_domain::now())),
        ))
        .returning(attachments::id)
        .get_result(conn)?;
    Ok(AttachmentId(id))
}

/// Marks an upload's bytes stored; returns its object.
pub fn mark_ready(conn: &mut DbConnection, id: AttachmentId) -> QueryResult<Attachment> {
    diesel::update(attachments::table.find(id.0))
        .set(attachments::ready.eq(true))
        .execute(conn)?;
    let row: AttachmentRow = attachments::table
        .find(id.0)
        .select(AttachmentRow::as_select())
        .first(conn)?;
    Ok(row.into_stored().attachment)
}

/// Deletes an upload's row (its bytes could not be stored).
pub fn delete(conn: &mut DbConnection, id: AttachmentId) -> QueryResult<()> {
    diesel::delete(attachments::table.find(id.0)).execute(conn)?;
    Ok(())
}

/// The name of the failure [`sendable`] and [`link`] roll a send back with.
pub const NOT_ATTACHABLE: &str = "attachments_not_attachable";

/// The objects of uploads `sender` may send, in the order listed, and
/// their summary for the message row: every id must be a ready upload of
/// `sender` that no message has (and the cleanup has not claimed), or the
/// send fails with `Conflict(Other(NOT_ATTACHABLE))` and stores nothing.
/// [`link`] then claims them for good, in the message's transaction.
pub(crate) fn sendable(
    conn: &mut DbConnection,
    ids: &[AttachmentId],
    sender: UserId,
) -> QueryResult<(Vec<Attachment>, String)> {
    if ids.is_empty() {
        return Ok((Vec::new(), "[]".to_owned()));
    }
    let raw: Vec<i64> = ids.iter().map(|i| i.0).collect();
    let rows: Vec<AttachmentRow> = attachments::table
        .filter(attachments::id.eq_any(&raw))
        .filter(attachments::uploader_id.eq(sender.0))
        .filter(attachments::ready.eq(true))
        .filter(attachments::message_id.is_null())
        .filter(attachments::claimed_until.is_null())
        .select(AttachmentRow::as_select())
        .load(conn)?;
    let mut by_id: std::collections::HashMap<i64, Attachment> = rows
        .into_iter()
        .map(|r| (r.id, r.into_stored().attachment))
        .collect();
    let list: Vec<Attachment> = raw.iter().filter_map(|id| by_id.remove(id)).collect();
    if list.len() != ids.len() {
        return Err(not_attachable());
    }
    let summary = to_summary(&list)?;
    Ok((list, summary))
}

/// Links the uploads [`sendable`] accepted to the message just inserted,
/// under the same conditions: on PostgreSQL the update locks the rows, so
/// of two sends racing for one upload the second finds it taken and rolls
/// back (`Conflict(Other(NOT_ATTACHABLE))`). The conversation is locked
/// first, as in every send.
pub(crate) fn link(
    conn: &mut DbConnection,
    ids: &[AttachmentId],
    sender: UserId,
    conversation: ConversationId,
    message: MessageId,
) -> QueryResult<()> {
    if ids.is_empty() {
        return Ok(());
    }
    let raw: Vec<i64> = ids.iter().map(|i| i.0).collect();
    let taken = diesel::update(
        attachments::table
            .filter(attachments::id.eq_any(&raw))
            .filter(attachments::uploader_id.eq(sender.0))
            .filter(attachments::ready.eq(true))
            .filter(attachments::message_id.is_null())
            .filter(attachments::claimed_until.is_null()),
    )
    .set((
        attachments::message_id.eq(message.0),
        attachments::conversation_id.eq(conversation.0),
    ))
    .execute(conn)?;
    if taken != ids.len() {
        return Err(not_attachable());
    }
    Ok(())
}

fn not_attachable() -> PersistenceError {
    PersistenceError::Conflict(Constraint::Other(NOT_ATTACHABLE.into()))
}

/// Whether `e` is the refusal of [`sendable`] or [`link`].
pub fn is_not_attachable(e: &PersistenceError) -> bool {
    matches!(e, PersistenceError::Conflict(Constraint::Other(name)) if name == NOT_ATTACHABLE)
}

/// The ready file `id` if `viewer` may read it: its uploader, or a
/// participant of the conversation it was sent in. One statement whether
/// or not the file exists, so a stranger learns nothing, not even from
/// the time the answer takes.
pub fn find_readable(
    conn: &mut DbConnection,
    id: AttachmentId,
    viewer: UserId,
) -> QueryResult<StoredFile> {
    let row: AttachmentRow = attachments::table
        .left_join(
            conversations::table.on(conversations::id
                .nullable()
                .eq(attachments::conversation_id)),
        )
        .filter(attachments::id.eq(id.0))
        .filter(attachments::ready.eq(true))
        .filter(
            attachments::uploader_id
                .eq(viewer.0)
                .or(conversations::user_low.nullable().eq(viewer.0))
                .or(conversations::user_high.nullable().eq(viewer.0)),
        )
        .select(AttachmentRow::as_select())
        .first(conn)?;
    Ok(row.into_stored())
}

/// Files the cleanup claimed: delete their bytes, then [`delete_claimed`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expired {
    /// The row.
    pub id: AttachmentId,
    /// The bytes.
    pub storage_key: String,
    /// The thumbnail.
    pub thumbnail_key: Option<String>,
}

/// Claims up to `limit` uploads that no message has and that are older than
/// `older_than` (ready or not: an upload cut short leaves a row that never
/// became ready), until `lease_until`. A row claimed by another node whose
/// lease has not run out is skipped, so of several nodes one deletes each
/// file and the others skip it; a node that dies mid-way leaves its claims
/// to run out and be taken again. A claimed row can no longer be sent.
pub fn claim_expired(
    conn: &mut DbConnection,
    older_than: DateTime<Utc>,
    lease_until: DateTime<Utc>,
    limit: i64,
) -> QueryResult<Vec<Expired>> {
    let now = to_naive(chat_domain::now());
    let claimable = attachments::message_id
        .is_null()
        .and(attachments::created_at.lt(to_naive(older_than)))
        .and(
            attachments::claimed_until
                .is_null()
                .or(attachments::claimed_until.lt(now)),
        );
    let candidates: Vec<i64> = attachments::table
        .filter(claimable)
        .order(attachments::id)
        .limit(limit)
        .select(attachments::id)
        .load(conn)?;
    if candidates.is_empty() {
        return Ok(Vec::new());
    }
    // The condition is checked again by the update itself: on PostgreSQL a
    // row another node claimed (or a send attached) meanwhile is
    // re-evaluated after its lock and skipped.
    let claimed: Vec<(i64, String, Option<String>)> = diesel::update(
        attachments::table
            .filter(attachments::id.eq_any(candidates))
            .filter(claimable),
    )
    .set(attachments::claimed_until.eq(to_naive(lease_until)))
    .returning((
        attachments::id,
        attachments::storage_key,
        attachments::thumbnail_key,
    ))
    .get_results(conn)?;
    Ok(claimed
        .into_iter()
        .map(|(id, storage_key, thumbnail_key)| Expired {
            id: AttachmentId(id),
            storage_key,
            thumbnail_key,
        })
        .collect())
}

/// Deletes the rows of claimed uploads whose bytes are gone.
pub fn delete_claimed(conn: &mut DbConnection, ids: &[AttachmentId]) -> QueryResult<usize> {
    let raw: Vec<i64> = ids.iter().map(|i| i.0).collect();
    Ok(diesel::delete(
        attachments::table
            .filter(attachments::id.eq_any(raw))
            .filter(attachments::message_id.is_null()),
    )
    .execute(conn)?)
}
