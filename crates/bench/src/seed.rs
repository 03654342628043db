//! Users, accepted connections and their conversations written straight
//! into the benchmark's PostgreSQL database: 10,000 users with 100,000
//! connections would take far longer through the API than the benchmark.
//! Every user gets the password hash of one user registered through the
//! API (the hash names its own argon2 parameters), so each can log in.

use crate::Result;
use crate::api::{Api, User, bounded};
use crate::history::psql;

/// The seeded users, by their index in the graph.
#[derive(Debug, Clone)]
pub struct Seeded {
    /// Username of user `i` is `prefix` followed by `i`.
    pub prefix: String,
    pub ids: Vec<i64>,
}

impl Seeded {
    pub fn username(&self, i: usize) -> String {
        format!("{}{i}", self.prefix)
    }

    /// Logs in the users at `indexes`, `concurrency` at a time.
    pub async fn login(
        &self,
        api: &Api,
        indexes: &[usize],
        concurrency: usize,
    ) -> Result<Vec<User>> {
        bounded(indexes.len(), concurrency, |k| {
            let i = indexes[k];
            let username = self.username(i);
            let id = self.ids[i];
            async move {
                let token = api.login(&username).await?;
                Ok(User {
                    id,
                    username,
                    token,
                })
            }
        })
        .await
    }
}

/// The statements that create `n` users named `name0..` with the hash of
/// user `template`, and an accepted connection with its conversation for
/// every pair `(i, j)` of user indexes the query `edges` selects.
fn graph_sql(name: &str, n: usize, template: i64, edges: &str) -> Vec<String> {
    let len = name.len();
    let now = "(now() AT TIME ZONE 'UTC')";
    vec![
        format!(
            "INSERT INTO users (username, username_key, password_hash, created_at)
             SELECT '{name}' || g, lower('{name}' || g),
                    (SELECT password_hash FROM users WHERE id = {template}), {now}
             FROM generate_series(0, {n} - 1) AS g ORDER BY g"
        ),
        format!(
            "CREATE TEMP TABLE seed_u AS SELECT substr(username, {len} + 1)::int AS g, id
             FROM users WHERE left(username, {len}) = '{name}'"
        ),
        format!(
            "CREATE TEMP TABLE seed_e AS
             SELECT a.id AS req, b.id AS addr, least(a.id, b.id) AS lo, greatest(a.id, b.id) AS hi
             FROM ({edges}) AS e(i, j) JOIN seed_u a ON a.g = e.i JOIN seed_u b ON b.g = e.j
             WHERE a.id <> b.id"
        ),
        format!(
            "INSERT INTO connections (requester_id, addressee_id, user_low, user_high, status, created_at, updated_at)
             SELECT req, addr, lo, hi, 'accepted', {now}, {now} FROM seed_e ORDER BY lo, hi"
        ),
        format!(
            "INSERT INTO conversations (connection_id, user_low, user_high, created_at, updated_at)
             SELECT c.id, c.user_low, c.user_high, {now}, {now}
             FROM connections c JOIN seed_e e ON c.user_low = e.lo AND c.user_high = e.hi
             WHERE c.status = 'accepted' ORDER BY c.id"
        ),
        "UPDATE connections c SET conversation_id = v.id FROM conversations v
         WHERE v.connection_id = c.id AND c.conversation_id IS NULL"
            .to_owned(),
        "ANALYZE users".to_owned(),
        "ANALYZE connections".to_owned(),
        "ANALYZE conversations".to_owned(),
    ]
}

/// Seeds `n` users and the connections `edges` selects (a query of pairs
/// of user indexes `(i, j)`, `i` the requester).
pub async fn graph(
    api: &Api,
    database_url: &str,
    prefix: &str,
    n: usize,
    edges: &str,
) -> Result<Seeded> {
    crate::api::check_database_url(database_url)?;
    let template = api.create_users(&format!("{prefix}t"), 1, 1).await?;
    let template = template.first().ok_or("no template user")?.id;
    let name = format!("{prefix}{}s_", api.tag);
    let url = database_url.to_owned();
    let statements = graph_sql(&name, n, template, edges);
    let listing = tokio::task::spawn_blocking({
        let name = name.clone();
        move || -> Result<String> {
            let refs: Vec<&str> = statements.iter().map(String::as_str).collect();
            psql(&url, &refs)?;
            let len = name.len();
            psql(
                &url,
                &[&format!(
                    "SELECT substr(username, {len} + 1)::int AS g, id FROM users
                     WHERE left(username, {len}) = '{name}' ORDER BY g"
                )],
            )
        }
    })
    .await??;
    let mut ids = vec![0i64; n];
    for line in listing.lines() {
        let (g, id) = line
            .split_once('|')
            .ok_or_else(|| format!("unexpected psql output '{line}'"))?;
        let g: usize = g.trim().parse()?;
        *ids.get_mut(g).ok_or("seeded user index out of range")? = id.trim().parse()?;
    }
    if ids.contains(&0) {
        return Err("some seeded users are missing".into());
    }
    Ok(Seeded { prefix: name, ids })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn graph_sql_names_the_users_and_pairs() {
        let sql = graph_sql("prx_", 10, 3, "SELECT 0, 1").join(";\n");
        assert!(sql.contains("generate_series(0, 10 - 1)"));
        assert!(sql.contains("WHERE id = 3"));
        assert!(sql.contains("FROM (SELECT 0, 1) AS e(i, j)"));
        assert!(sql.contains("'accepted'"));
    }
}
