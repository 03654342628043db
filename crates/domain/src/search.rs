//! Message search: what a user's `q` means, and the highlighting of matches.
//!
//! A query is parsed into [`Term`]s, each a list of [`Word`]s; storage
//! builds its engine's query from those terms, never from the raw text, so
//! nothing a user types is an operator of the engine. The rules:
//!
//! - A word is a run of letters, digits and combining marks; everything
//!   else separates words (punctuation, symbols, emoji, spaces). Words
//!   match regardless of case and accents ([`fold`]).
//! - Every term must match (AND). There are no other operators: `OR`,
//!   `NOT`, `NEAR`, `-`, `!`, `&`, `|`, `(`, `)`, `:`, `^`, `+` are plain
//!   words or separators.
//! - A `*` right after a word, and not followed by a letter or digit,
//!   makes it a prefix (`hel*` matches `hello`). Any other `*` separates.
//! - `"quoted words"` are one term, a phrase: the words in this order,
//!   next to each other (punctuation between them does not count). A quote
//!   without a partner (the last one of an odd number) is literal text,
//!   which separates like any punctuation.
//! - Words joined by punctuation outside quotes (`e-mail`, `example.com`)
//!   are a phrase too, since the engines index `e` and `mail` side by side.
//!
//! ```
//! use chat_domain::search::SearchQuery;
//!
//! let q = SearchQuery::parse(r#"hel* "good morning" café"#).unwrap();
//! let terms: Vec<String> = q.terms().iter().map(|t| t.to_string()).collect();
//! assert_eq!(terms, ["hel*", "\"good morning\"", "café"]);
//! assert_eq!(
//!     q.highlight("Hello <b>friend</b>, good morning at the CAFE"),
//!     "<mark>Hello</mark> &lt;b&gt;friend&lt;/b&gt;, <mark>good morning</mark> at the <mark>CAFE</mark>",
//! );
//! ```

mod fold_table;

use std::fmt;
use std::ops::Range;

/// The longest `q`, in characters.
pub const MAX_QUERY_CHARS: usize = 256;

/// Why a `q` was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SearchQueryError {
    /// Missing, empty or only whitespace.
    #[error("This field may not be blank.")]
    Empty,
    /// More than [`MAX_QUERY_CHARS`] characters.
    #[error("Ensure this field has no more than {MAX_QUERY_CHARS} characters.")]
    TooLong,
}

/// One word of a term, as the user typed it (storage folds it with its
/// own engine).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Word {
    text: String,
    folded: String,
    prefix: bool,
}

impl Word {
    fn new(text: &str, prefix: bool) -> Self {
        Self {
            text: text.to_owned(),
            folded: fold(text),
            prefix,
        }
    }

    /// The word as typed: letters, digits and combining marks only.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The word as it is compared: [`fold`]ed (never empty).
    pub fn folded(&self) -> &str {
        &self.folded
    }

    /// Whether it matches any word that starts with it (`hel*`).
    pub fn is_prefix(&self) -> bool {
        self.prefix
    }

    /// Whether `folded` (a word of the content, already [`fold`]ed) matches.
    fn matches(&self, folded: &str) -> bool {
        if self.prefix {
            folded.starts_with(&self.folded)
        } else {
            folded == self.folded
        }
    }
}

/// Words that must appear next to each other, in this order: one word, or
/// a phrase.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Term {
    words: Vec<Word>,
}

impl Term {
    /// The words, in order; never empty.
    pub fn words(&self) -> &[Word] {
        &self.words
    }

    /// More than one word.
    pub fn is_phrase(&self) -> bool {
        self.words.len() > 1
    }
}

impl fmt::Display for Term {
    /// `word`, `prefix*` or `"a phrase"`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let quote = if self.is_phrase() { "\"" } else { "" };
        f.write_str(quote)?;
        for (i, w) in self.words.iter().enumerate() {
            let sep = if i > 0 { " " } else { "" };
            let star = if w.prefix { "*" } else { "" };
            write!(f, "{sep}{}{star}", w.text)?;
        }
        f.write_str(quote)
    }
}

/// A parsed `q`: the terms that must all match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchQuery {
    terms: Vec<Term>,
}

impl SearchQuery {
    /// Parses a user's `q` (see the [module](self) rules). Refuses only a
    /// blank or over-long `q`; anything else is a query, possibly with no
    /// terms (only punctuation), which matches nothing.
    ///
    /// ```
    /// use chat_domain::search::{SearchQuery, SearchQueryError};
    ///
    /// assert_eq!(SearchQuery::parse("  "), Err(SearchQueryError::Empty));
    /// assert_eq!(SearchQuery::parse(&"a".repeat(257)), Err(SearchQueryError::TooLong));
    /// assert!(SearchQuery::parse("( * :* !").unwrap().is_empty());
    /// let q = SearchQuery::parse("a OR b").unwrap();
    /// assert_eq!(q.terms().len(), 3, "OR is a word like any other");
    /// ```
    pub fn parse(q: &str) -> Result<Self, SearchQueryError> {
        if q.chars().count() > MAX_QUERY_CHARS {
            return Err(SearchQueryError::TooLong);
        }
        if q.trim().is_empty() {
            return Err(SearchQueryError::Empty);
        }
        let quotes: Vec<usize> = q.match_indices('"').map(|(i, _)| i).collect();
        // An odd quote out is literal text: it separates, like punctuation.
        let paired = &quotes[..quotes.len() & !1];
        let mut terms = Vec::new();
        let unquoted = |text: &str, terms: &mut Vec<Term>| {
            terms.extend(text.split_whitespace().filter_map(term_of));
        };
        let mut at = 0;
        for pair in paired.chunks_exact(2) {
            unquoted(&q[at..pair[0]], &mut terms);
            terms.extend(term_of(&q[pair[0] + 1..pair[1]]));
            at = pair[1] + 1;
        }
        unquoted(&q[at..], &mut terms);
        Ok(Self { terms })
    }

    /// The terms, in the order typed.
    pub fn terms(&self) -> &[Term] {
        &self.terms
    }

    /// No terms: the query matches nothing.
    pub fn is_empty(&self) -> bool {
        self.terms.is_empty()
    }

    /// `content` HTML-escaped, with each match of a term wrapped in
    /// `<mark>`…`</mark>` (regardless of case and accents). A phrase is
    /// one mark, the separators between its words included; overlapping
    /// matches merge into one mark.
    ///
    /// ```
    /// use chat_domain::search::SearchQuery;
    ///
    /// let q = SearchQuery::parse("ecole").unwrap();
    /// assert_eq!(q.highlight("L'ÉCOLE & <l'école>"),
    ///     "L&#x27;<mark>ÉCOLE</mark> &amp; &lt;l&#x27;<mark>école</mark>&gt;");
    /// ```
    pub fn highlight(&self, content: &str) -> String {
        let words: Vec<(Range<usize>, String)> = word_spans(content)
            .map(|r| {
                let folded = fold(&content[r.clone()]);
                (r, folded)
            })
            .collect();
        let mut marks: Vec<Range<usize>> = Vec::new();
        for term in &self.terms {
            let n = term.words.len();
            for window in words.windows(n) {
                if window
                    .iter()
                    .zip(&term.words)
                    .all(|((_, folded), w)| w.matches(folded))
                {
                    marks.push(window[0].0.start..window[n - 1].0.end);
                }
            }
        }
        marks.sort_by_key(|r| r.start);
        let mut out = String::with_capacity(content.len() + marks.len() * 13);
        let mut at = 0;
        let mut marks = marks.into_iter().peekable();
        while let Some(mark) = marks.next() {
            let mut end = mark.end;
            while let Some(next) = marks.next_if(|m| m.start <= end) {
                end = end.max(next.end);
            }
            escape_into(&mut out, &content[at..mark.start]);
            out.push_str("<mark>");
            escape_into(&mut out, &content[mark.start..end]);
            out.push_str("</mark>");
            at = end;
        }
        escape_into(&mut out, &content[at..]);
        out
    }
}

/// The term of one piece of text (a quoted phrase, or a whitespace-free
/// chunk outside quotes): its words, `None` when it has none.
fn term_of(text: &str) -> Option<Term> {
    let words: Vec<Word> = word_spans(text)
        .map(|r| {
            let mut after = text[r.end..].chars();
            let prefix = after.next() == Some('*') && !after.next().is_some_and(is_word_char);
            Word::new(&text[r], prefix)
        })
        // Combining marks alone fold to nothing: no engine indexes them.
        .filter(|w| !w.folded.is_empty())
        .collect();
    (!words.is_empty()).then_some(Term { words })
}

/// The words of `text` in order, [`fold`]ed: what an index stores for it,
/// so that a [`Word`] matches a word of `text` when their folded forms are
/// equal (or, for a prefix, when one starts with the other).
///
/// ```
/// let words: Vec<String> = chat_domain::search::index_words("L'École, e-mail: ÆON!").collect();
/// assert_eq!(words, ["l", "ecole", "e", "mail", "aeon"]);
/// ```
pub fn index_words(text: &str) -> impl Iterator<Item = String> + '_ {
    word_spans(text)
        .map(|r| fold(&text[r]))
        .filter(|w| !w.is_empty())
}

/// A letter, a digit or a combining mark.
fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || fold_char(c) == Some("")
}

/// The byte ranges of the words of `text`.
fn word_spans(text: &str) -> impl Iterator<Item = Range<usize>> + '_ {
    let mut chars = text.char_indices().peekable();
    std::iter::from_fn(move || {
        let (start, _) = chars.find(|(_, c)| is_word_char(*c))?;
        let mut end = text.len();
        for (i, c) in chars.by_ref() {
            if !is_word_char(c) {
                end = i;
                break;
            }
        }
        Some(start..end)
    })
}

/// What `unaccent` makes of `c`, when it changes it.
fn fold_char(c: char) -> Option<&'static str> {
    fold_table::FOLD
        .binary_search_by_key(&c, |(k, _)| *k)
        .ok()
        .map(|i| fold_table::FOLD[i].1)
}

/// `text` without accents (as PostgreSQL's `unaccent` removes them, so
/// `Æ` is `ae` and `ß` is `ss`), then lower-cased: the form in which words
/// are compared.
///
/// ```
/// assert_eq!(chat_domain::search::fold("Café ÉCOLE Straße"), "cafe ecole strasse");
/// ```
pub fn fold(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match fold_char(c) {
            Some(replacement) => out.push_str(replacement),
            None => out.push(c),
        }
    }
    out.to_lowercase()
}

/// `text` with `&`, `<`, `>`, `"` and `'` escaped for HTML.
///
/// ```
/// assert_eq!(chat_domain::search::escape_html(r#"<a href="x">'&'</a>"#),
///     "&lt;a href=&quot;x&quot;&gt;&#x27;&amp;&#x27;&lt;/a&gt;");
/// ```
pub fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    escape_into(&mut out, text);
    out
}

fn escape_into(out: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#x27;"),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn terms(q: &str) -> Vec<String> {
        SearchQuery::parse(q)
            .expect("query")
            .terms()
            .iter()
            .map(Term::to_string)
            .collect()
    }

    fn hl(q: &str, content: &str) -> String {
        SearchQuery::parse(q).expect("query").highlight(content)
    }

    #[test]
    fn fold_table_is_sorted_and_maps_to_words() {
        assert!(fold_table::FOLD.windows(2).all(|w| w[0].0 < w[1].0));
        for (c, r) in fold_table::FOLD {
            assert!(r.chars().all(char::is_alphanumeric), "{c:?} -> {r:?}");
        }
    }

    #[test]
    fn folds_case_and_accents() {
        assert_eq!(fold("ÉCOLE"), "ecole");
        assert_eq!(fold("école"), fold("ECOLE"));
        assert_eq!(fold("Ærøskøbing"), "aeroskobing");
        assert_eq!(fold("e\u{301}cole"), "ecole", "decomposed accents");
        assert_eq!(fold("ПРИВЕТ"), "привет");
    }

    #[test]
    fn blank_and_too_long() {
        assert_eq!(SearchQuery::parse(""), Err(SearchQueryError::Empty));
        assert_eq!(SearchQuery::parse(" \t\n"), Err(SearchQueryError::Empty));
        let max = "é".repeat(MAX_QUERY_CHARS);
        assert!(SearchQuery::parse(&max).is_ok(), "characters, not bytes");
        assert_eq!(
            SearchQuery::parse(&format!("{max}a")),
            Err(SearchQueryError::TooLong)
        );
    }

    #[test]
    fn words_prefixes_and_phrases() {
        assert_eq!(terms("Hello  world"), ["Hello", "world"]);
        assert_eq!(terms("hel*"), ["hel*"]);
        assert_eq!(terms("hel**"), ["hel*"]);
        assert_eq!(
            terms("hel*lo"),
            ["\"hel lo\""],
            "a star inside a word separates"
        );
        assert_eq!(terms("*hel"), ["hel"]);
        assert_eq!(terms(r#""good morning""#), ["\"good morning\""]);
        assert_eq!(terms(r#""good morn*""#), ["\"good morn*\""]);
        assert_eq!(terms(r#"x"good morning"y"#), ["x", "\"good morning\"", "y"]);
        assert_eq!(terms(r#""one""#), ["one"]);
        assert_eq!(
            terms("e-mail example.com"),
            ["\"e mail\"", "\"example com\""]
        );
    }

    #[test]
    fn unbalanced_quotes_are_literal() {
        assert_eq!(terms(r#""good morning"#), ["good", "morning"]);
        assert_eq!(
            terms(r#""a b" "c d"#),
            ["\"a b\"", "c", "d"],
            "the last odd quote is the literal one"
        );
        assert!(SearchQuery::parse(r#"""#).expect("query").is_empty());
        assert!(SearchQuery::parse(r#""""#).expect("query").is_empty());
    }

    #[test]
    fn operators_are_words_or_separators() {
        assert_eq!(terms("a & b"), ["a", "b"]);
        assert_eq!(terms("!x"), ["x"]);
        assert_eq!(terms("a|b"), ["\"a b\""]);
        assert_eq!(terms("NEAR(a b)"), ["\"NEAR a\"", "b"]);
        assert_eq!(terms("a OR b"), ["a", "OR", "b"]);
        assert_eq!(terms("-x +y ^z"), ["x", "y", "z"]);
        assert_eq!(terms("col:x"), ["\"col x\""]);
        for q in [
            "(", ")", "*", ":*", "\\", "&|!", "<->", "'", "''", "^", "\u{301}*",
        ] {
            assert!(SearchQuery::parse(q).expect("query").is_empty(), "{q}");
        }
    }

    #[test]
    fn every_word_is_letters_digits_and_marks() {
        let q = SearchQuery::parse(r#"a'b "c\"d" e''f $g% ü_ö 😀x ½"#).expect("query");
        for term in q.terms() {
            for w in term.words() {
                assert!(w.text().chars().all(is_word_char), "{w:?}");
                assert!(!w.text().is_empty());
            }
        }
    }

    #[test]
    fn highlights_words_case_and_accent_insensitively() {
        assert_eq!(
            hl("cafe", "Un Café, un CAFE."),
            "Un <mark>Café</mark>, un <mark>CAFE</mark>."
        );
        assert_eq!(hl("ÉCOLE", "l'école"), "l&#x27;<mark>école</mark>");
        assert_eq!(hl("cafe", "cafeteria"), "cafeteria", "a word, not a prefix");
    }

    #[test]
    fn highlights_prefixes_and_phrases() {
        assert_eq!(
            hl("hel*", "Hello help shell"),
            "<mark>Hello</mark> <mark>help</mark> shell"
        );
        assert_eq!(
            hl(
                r#""good morning""#,
                "good morning, morning good, Good,  Morning"
            ),
            "<mark>good morning</mark>, morning good, <mark>Good,  Morning</mark>"
        );
        assert_eq!(
            hl(r#""a a""#, "a a a"),
            "<mark>a a a</mark>",
            "overlaps merge"
        );
        assert_eq!(
            hl("good morning", "morning good"),
            "<mark>morning</mark> <mark>good</mark>"
        );
    }

    #[test]
    fn escapes_everything_else() {
        assert_eq!(
            hl("b", "<b>bold</b> & b"),
            "&lt;<mark>b</mark>&gt;bold&lt;/<mark>b</mark>&gt; &amp; <mark>b</mark>"
        );
        assert_eq!(hl("zzz", "<script>\"'&"), "&lt;script&gt;&quot;&#x27;&amp;");
        assert_eq!(hl("x", ""), "");
        assert_eq!(hl("ü", "xü"), "xü");
    }

    #[test]
    fn highlight_with_no_terms_only_escapes() {
        assert_eq!(hl("*", "a < b"), "a &lt; b");
    }
}
