//! Raw SQL that PostgreSQL prepares once per connection.
//!
//! diesel never caches a `sql_query` statement: it cannot know the text is
//! fixed, so PostgreSQL parses and plans it on every call. For the writer's
//! statements, run hundreds of times a second with a few sends each, that
//! parsing and planning was about a sixth of PostgreSQL's CPU. [`prepared`]
//! vouches that the text is a constant, which puts the statement in
//! diesel's per-connection cache (keyed by its text and bind types).

use diesel::pg::Pg;
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
use diesel::{QueryResult, RunQueryDsl};

/// A `sql_query` whose text is a constant; see [`prepared`].
#[derive(Debug, Clone, Copy)]
#[must_use = "Queries are only executed when calling `load`, `execute` or similar."]
pub struct Prepared<Q>(Q);

/// Lets diesel prepare `query` (a `diesel::sql_query` of a `const` text
/// with its binds) once per connection. Only for text that never varies:
/// each distinct text stays in every connection's cache. Not for
/// statements whose best plan depends on the bound values (PostgreSQL
/// may switch a prepared statement to one generic plan).
pub fn prepared<Q>(query: Q) -> Prepared<Q> {
    Prepared(query)
}

impl<Q: QueryFragment<Pg>> QueryFragment<Pg> for Prepared<Q> {
    fn walk_ast<'b>(&'b self, pass: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        self.0.walk_ast(pass)
    }

    fn is_safe_to_cache_prepared(&self, _backend: &Pg) -> QueryResult<bool> {
        Ok(true)
    }
}

impl<Q> QueryId for Prepared<Q> {
    type QueryId = ();
    // Keyed by its SQL text, not by type: every text is its own entry.
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl<Q: Query> Query for Prepared<Q> {
    type SqlType = Q::SqlType;
}

impl<Q, C> RunQueryDsl<C> for Prepared<Q> {}
