//! Queries on users.

use crate::db::DbConnection;
use crate::error::QueryResult;
use crate::rows::{NewUserRow, UserRow, columns, to_naive};
use crate::schema::users;
use chat_domain::{User, UserId, Username};
use diesel::prelude::*;

/// A user to register; the password is already hashed.
#[derive(Debug)]
pub struct NewUser {
    /// Validated username.
    pub username: Username,
    /// PHC string of the password hash.
    pub password_hash: String,
    /// Trimmed first name.
    pub first_name: String,
    /// Trimmed last name.
    pub last_name: String,
    /// Avatar URL.
    pub avatar: Option<String>,
}

/// Profile fields to change; `None` leaves a field as it is.
#[derive(Debug, Default)]
pub struct ProfileChanges {
    /// New first name.
    pub first_name: Option<String>,
    /// New last name.
    pub last_name: Option<String>,
    /// New avatar (`Some(None)` clears it).
    pub avatar: Option<Option<String>>,
    /// Whether others may see the user's presence.
    pub share_presence: Option<bool>,
}

/// Inserts a user; a taken username (any case) is
/// `Conflict(Constraint::UsernameTaken)`.
pub fn create(conn: &mut DbConnection, new: &NewUser) -> QueryResult<User> {
    let key = new.username.key();
    let row: UserRow = diesel::insert_into(users::table)
        .values(NewUserRow {
            username: new.username.as_str(),
            username_key: &key,
            password_hash: &new.password_hash,
            first_name: &new.first_name,
            last_name: &new.last_name,
            avatar: new.avatar.as_deref(),
            created_at: to_naive(chat_domain::now()),
        })
        .returning(columns::<UserRow>())
        .get_result(conn)?;
    Ok(row.into_user())
}

/// The user with this id.
pub fn find(conn: &mut DbConnection, id: UserId) -> QueryResult<User> {
    let row: UserRow = users::table
        .find(id.0)
        .select(UserRow::as_select())
        .first(conn)?;
    Ok(row.into_user())
}

/// The users with these ids (in no particular order; unknown ids are skipped).
pub fn find_many(conn: &mut DbConnection, ids: &[UserId]) -> QueryResult<Vec<User>> {
    let raw: Vec<i64> = ids.iter().map(|i| i.0).collect();
    let rows: Vec<UserRow> = users::table
        .filter(users::id.eq_any(raw))
        .select(UserRow::as_select())
        .load(conn)?;
    Ok(rows.into_iter().map(UserRow::into_user).collect())
}

/// The user and password hash for a login, by case-insensitive username.
pub fn credentials(conn: &mut DbConnection, username: &str) -> QueryResult<Option<(User, String)>> {
    let row: Option<UserRow> = users::table
        .filter(users::username_key.eq(username.to_lowercase()))
        .select(UserRow::as_select())
        .first(conn)
        .optional()?;
    Ok(row.map(|r| {
        let hash = r.password_hash.clone();
        (r.into_user(), hash)
    }))
}

/// Applies profile changes and returns the updated user.
pub fn update_profile(
    conn: &mut DbConnection,
    id: UserId,
    changes: ProfileChanges,
) -> QueryResult<User> {
    let set = ProfileChangeset {
        first_name: changes.first_name.as_deref(),
        last_name: changes.last_name.as_deref(),
        avatar: changes.avatar.as_ref().map(Option::as_deref),
        share_presence: changes.share_presence,
    };
    if set.first_name.is_none()
        && set.last_name.is_none()
        && set.avatar.is_none()
        && set.share_presence.is_none()
    {
        return find(conn, id);
    }
    let row: UserRow = diesel::update(users::table.find(id.0))
        .set(set)
        .returning(columns::<UserRow>())
        .get_result(conn)?;
    Ok(row.into_user())
}

#[derive(AsChangeset)]
#[diesel(table_name = users)]
struct ProfileChangeset<'a> {
    first_name: Option<&'a str>,
    last_name: Option<&'a str>,
    avatar: Option<Option<&'a str>>,
    share_presence: Option<bool>,
}

/// Records when the user was last online.
/// Records `at` as `last_seen` of all of `ids` in one statement.
pub fn set_last_seen_many(
    conn: &mut DbConnection,
    ids: &[UserId],
    at: chrono::DateTime<chrono::Utc>,
) -> QueryResult<()> {
    if ids.is_empty() {
        return Ok(());
    }
    let raw: Vec<i64> = ids.iter().map(|i| i.0).collect();
    diesel::update(users::table.filter(users::id.eq_any(raw)))
        .set(users::last_seen.eq(to_naive(at)))
        .execute(conn)?;
    Ok(())
}
