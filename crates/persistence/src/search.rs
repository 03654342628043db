//! Message search over the conversations a user is part of: PostgreSQL
//! full-text search (a `tsvector` the server writes with each message, with
//! a GIN index), SQLite FTS5.
//!
//! The engine's query is built from the parsed [`SearchQuery`], never from
//! the user's text: on PostgreSQL a `tsquery` literal of quoted, folded
//! words, their pairs and the viewer ([`crate::search_terms`]); on SQLite
//! each word is a quoted FTS5 string, bound as the `MATCH` parameter.
//! diesel does not cache `sql_query` statements, so PostgreSQL plans each
//! search with its bound values (see [`PG_SEARCH`]).
//!
//! The caller's conversations scope the match inside the statement, before
//! ordering and the limit; results are newest first by id (keyset paging
//! with `before`), not by rank.

use crate::db::DbConnection;
use crate::error::QueryResult;
use crate::rows::MessageRow;
use chat_domain::search::SearchQuery;
use chat_domain::{ConversationId, Message, MessageId, UserId};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Nullable, Text};

/// Where to search and how much to return.
#[derive(Debug, Clone, Copy)]
pub struct SearchScope {
    /// Whose conversations.
    pub viewer: UserId,
    /// Only this one of them (when the viewer is part of it; none otherwise).
    pub conversation: Option<ConversationId>,
    /// Only messages older than this id.
    pub before: Option<MessageId>,
    /// At most this many.
    pub limit: i64,
}

/// A PostgreSQL search statement: the message columns, `$where` (which
/// conversations, binding `$1` viewer and `$2` conversation), then the
/// cursor `$3`, the tsquery `$4` and the limit `$5`.
macro_rules! pg_search {
    ($where:literal) => {
        concat!(
            "SELECT m.id, m.conversation_id, m.sender_id, m.content, m.client_id, \
                    m.created_at, m.read_at, ",
            crate::rows::m_delivered_at!(),
            ", m.reactions, m.attachments \
             FROM messages m WHERE ",
            $where,
            " AND m.id < $3 \
              AND m.search_vector @@ $4::tsquery \
             ORDER BY m.id DESC LIMIT $5"
        )
    };
}

/// All the viewer's conversations. The tsquery requires the viewer's
/// participant lexeme, so the GIN index yields the viewer's matches only;
/// the bound tsquery is a constant while planning, so the planner weighs
/// it: reading the newest messages backwards for a common word, the GIN
/// index for a rare one. `conversation_id + 0` keeps the planner off the
/// per-conversation index here: through it, it repeated the GIN scan once
/// per conversation. The conversations stay in the statement: the
/// participants' lexemes narrow the search, they do not authorize it.
const PG_SEARCH: &str = pg_search!(
    "m.conversation_id + 0 IN ( \
        SELECT c.id FROM conversations c WHERE c.user_low = $1 OR c.user_high = $1) \
     AND $2::int8 IS NULL"
);

/// One conversation of the viewer's: its own index is the way in.
const PG_SEARCH_ONE: &str = pg_search!(
    "m.conversation_id = $2::int8 \
     AND EXISTS (SELECT 1 FROM conversations c \
                 WHERE c.id = $2 AND (c.user_low = $1 OR c.user_high = $1))"
);

const SQLITE_SEARCH: &str = concat!(
    "SELECT m.id, m.conversation_id, m.sender_id, m.content, m.client_id, \
       m.created_at, m.read_at, ",
    crate::rows::m_delivered_at!(),
    ", m.reactions, m.attachments \
FROM messages_fts JOIN messages m ON m.id = messages_fts.rowid \
WHERE messages_fts MATCH ?1 \
  AND messages_fts.rowid < ?2 \
  AND m.conversation_id IN ( \
        SELECT c.id FROM conversations c \
        WHERE (c.user_low = ?3 OR c.user_high = ?3) AND (?4 IS NULL OR c.id = ?4)) \
ORDER BY messages_fts.rowid DESC \
LIMIT ?5"
);

/// Up to `scope.limit` messages matching `query` in the viewer's
/// conversations, newest first, and whether more match beyond them.
/// A query without terms matches nothing (and costs no statement).
pub fn search(
    conn: &mut DbConnection,
    query: &SearchQuery,
    scope: SearchScope,
) -> QueryResult<(Vec<Message>, bool)> {
    if query.is_empty() || scope.limit <= 0 {
        return Ok((Vec::new(), false));
    }
    let before = scope.before.map_or(i64::MAX, |id| id.0);
    let only = scope.conversation.map(|c| c.0);
    let fetch = scope.limit.saturating_add(1);
    let mut rows: Vec<MessageRow> = match conn {
        DbConnection::Pg(pg) => {
            // One conversation has its own index; the viewer's lexeme would
            // only skew the estimate there.
            let (statement, viewer) = if only.is_some() {
                (PG_SEARCH_ONE, None)
            } else {
                (PG_SEARCH, Some(scope.viewer))
            };
            diesel::sql_query(statement)
                .bind::<BigInt, _>(scope.viewer.0)
                .bind::<Nullable<BigInt>, _>(only)
                .bind::<BigInt, _>(before)
                .bind::<Text, _>(crate::search_terms::tsquery(query, viewer))
                .bind::<BigInt, _>(fetch)
                .load(pg)?
        }
        DbConnection::Sqlite(lite) => diesel::sql_query(SQLITE_SEARCH)
            .bind::<Text, _>(fts5_query(query))
            .bind::<BigInt, _>(before)
            .bind::<BigInt, _>(scope.viewer.0)
            .bind::<Nullable<BigInt>, _>(only)
            .bind::<BigInt, _>(fetch)
            .load(lite)?,
    };
    let has_more = rows.len() as i64 > scope.limit;
    rows.truncate(scope.limit as usize);
    Ok((
        rows.into_iter().map(MessageRow::into_message).collect(),
        has_more,
    ))
}

/// The FTS5 query of `query`: every word a quoted string (a `"` inside
/// doubled, though words never hold one), `*` after a prefix word, the
/// words of a phrase joined with `+`, the terms with `AND`. Quoted, `AND`,
/// `OR`, `NOT`, `NEAR`, `:` or `^` in a word are text, not syntax.
fn fts5_query(query: &SearchQuery) -> String {
    query
        .terms()
        .iter()
        .map(|term| {
            term.words()
                .iter()
                .map(|w| {
                    let star = if w.is_prefix() { " *" } else { "" };
                    format!("\"{}\"{star}", w.text().replace('"', "\"\""))
                })
                .collect::<Vec<_>>()
                .join(" + ")
        })
        .collect::<Vec<_>>()
        .join(" AND ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(q: &str) -> SearchQuery {
        SearchQuery::parse(q).expect("query")
    }

    #[test]
    fn fts5_query_quotes_every_word() {
        assert_eq!(
            fts5_query(&parse(r#"café hel* "good morn*" NEAR(a b) x:y"#)),
            r#""café" AND "hel" * AND "good" + "morn" * AND "NEAR" + "a" AND "b" AND "x" + "y""#
        );
        assert_eq!(fts5_query(&parse("a OR b")), r#""a" AND "OR" AND "b""#);
    }
}
