//! PostgreSQL's search index entries and queries, built here from the
//! domain's words ([`chat_domain::search::index_words`]) rather than by the
//! database, so that content and queries are split and folded by one
//! function, and so that a message's vector can carry what the database
//! cannot derive from its text alone:
//!
//! - every word with its positions (phrases are checked on them);
//! - every pair of adjacent words as one position-free lexeme `' a b'`: a
//!   phrase is found through its pairs in the GIN index instead of through
//!   every message holding all of its words (`"one of the"` read most of a
//!   user's messages to check positions);
//! - its two participants as lexemes `' u<id>'`: a search over all of a
//!   user's conversations intersects the user's entry in the index instead
//!   of fetching every match of the whole table to filter it.
//!
//! Pairs and participants start with a space, which no word holds, so no
//! query word or prefix can match them. Building the literals here costs
//! the server about a microsecond a message, and PostgreSQL less than its
//! own `unaccent` and parser did (migration `000018_search_terms`).

use chat_domain::UserId;
use chat_domain::search::{SearchQuery, Term, index_words};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;

/// PostgreSQL refuses lexemes of 2,047 bytes or more; its own parser skips
/// such words, and so does this.
const MAX_LEXEME_BYTES: usize = 2_000;

/// Positions above this are stored as this (PostgreSQL's limit).
const MAX_POSITION: usize = 16_383;

/// The `tsvector` literal of a message's content in a conversation between
/// `participants`.
pub(crate) fn vector(content: &str, participants: [UserId; 2]) -> String {
    let words: Vec<String> = index_words(content).collect();
    let mut positions: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, w) in words.iter().enumerate() {
        if w.len() <= MAX_LEXEME_BYTES {
            positions
                .entry(w.as_str())
                .or_default()
                .push((i + 1).min(MAX_POSITION));
        }
    }
    let pairs: BTreeSet<String> = words
        .windows(2)
        .map(|p| pair(&p[0], &p[1]))
        .filter(|p| p.len() <= MAX_LEXEME_BYTES)
        .collect();
    let mut out = String::with_capacity(content.len() * 3 + 32);
    for (w, at) in positions {
        quote_into(&mut out, w);
        for (k, p) in at.iter().enumerate() {
            let _ = write!(out, "{}{p}", if k == 0 { ':' } else { ',' });
        }
        out.push(' ');
    }
    for p in &pairs {
        quote_into(&mut out, p);
        out.push(' ');
    }
    for u in participants {
        quote_into(&mut out, &participant(u));
        out.push(' ');
    }
    out.pop();
    out
}

/// The `tsquery` literal of `query`; with `viewer`, it also requires the
/// viewer among the participants.
pub(crate) fn tsquery(query: &SearchQuery, viewer: Option<UserId>) -> String {
    let mut parts: Vec<String> = query.terms().iter().flat_map(term_parts).collect();
    if let Some(u) = viewer {
        let mut lexeme = String::new();
        quote_into(&mut lexeme, &participant(u));
        parts.push(lexeme);
    }
    parts.join(" & ")
}

/// What one term requires: a word (or prefix); for a phrase its pairs, and
/// the chain of its words with `<->` unless its pairs say it all (two
/// words, the first one whole).
fn term_parts(term: &Term) -> Vec<String> {
    let words = term.words();
    let lexeme = |text: &str, prefix: bool| {
        let mut s = String::new();
        quote_into(&mut s, text);
        if prefix {
            s.push_str(":*");
        }
        s
    };
    let mut parts: Vec<String> = words
        .windows(2)
        .filter(|p| !p[0].is_prefix())
        .map(|p| lexeme(&pair(p[0].folded(), p[1].folded()), p[1].is_prefix()))
        .collect();
    if words.len() > 2 || parts.is_empty() {
        let chain: Vec<String> = words
            .iter()
            .map(|w| lexeme(w.folded(), w.is_prefix()))
            .collect();
        parts.push(if chain.len() > 1 {
            format!("( {} )", chain.join(" <-> "))
        } else {
            chain.join("")
        });
    }
    parts
}

fn pair(a: &str, b: &str) -> String {
    format!(" {a} {b}")
}

fn participant(u: UserId) -> String {
    format!(" u{}", u.0)
}

/// `text` as a quoted lexeme of a `tsvector` or `tsquery` literal.
fn quote_into(out: &mut String, text: &str) {
    out.push('\'');
    for c in text.chars() {
        match c {
            '\'' => out.push_str("''"),
            '\\' => out.push_str("\\\\"),
            c => out.push(c),
        }
    }
    out.push('\'');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(text: &str, viewer: Option<i64>) -> String {
        tsquery(
            &SearchQuery::parse(text).expect("query"),
            viewer.map(UserId),
        )
    }

    #[test]
    fn vector_holds_words_pairs_and_participants() {
        assert_eq!(
            vector("The cat, the CAFÉ", [UserId(3), UserId(12)]),
            "'cafe':4 'cat':2 'the':1,3 ' cat the' ' the cafe' ' the cat' ' u3' ' u12'"
        );
        assert_eq!(vector("", [UserId(1), UserId(2)]), "' u1' ' u2'");
        let long = "x".repeat(2_001);
        assert_eq!(
            vector(&format!("a {long} b"), [UserId(1), UserId(2)]),
            "'a':1 'b':3 ' u1' ' u2'"
        );
    }

    #[test]
    fn queries_use_pairs_for_phrases() {
        assert_eq!(q("café", Some(7)), "'cafe' & ' u7'");
        assert_eq!(q("hel*", None), "'hel':*");
        assert_eq!(q(r#""of the""#, None), "' of the'");
        assert_eq!(q(r#""good morn*""#, None), "' good morn':*");
        assert_eq!(
            q(r#""one of the" x"#, Some(1)),
            "' one of' & ' of the' & ( 'one' <-> 'of' <-> 'the' ) & 'x' & ' u1'"
        );
        assert_eq!(q(r#""he* said""#, None), "( 'he':* <-> 'said' )");
        assert_eq!(q("e-mail", None), "' e mail'");
    }

    #[test]
    fn quotes_and_backslashes_are_escaped() {
        let mut s = String::new();
        quote_into(&mut s, r"it's a\b");
        assert_eq!(s, r"'it''s a\\b'");
    }
}
