//! Users and the rules on their fields.

use crate::ids::UserId;
use serde::{Deserialize, Serialize};

/// Why a user field was refused; the message is shown to the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UserFieldError {
    /// The username breaks the length or character rule.
    #[error("Enter a valid username of 3 to 150 characters: letters, digits and @/./+/-/_ only.")]
    InvalidUsername,
    /// The password is shorter than [`Password::MIN_CHARS`].
    #[error("This password is too short. It must contain at least 8 characters.")]
    PasswordTooShort,
    /// The password is longer than [`Password::MAX_CHARS`].
    #[error("This password is too long. It must contain at most 1024 characters.")]
    PasswordTooLong,
    /// A first or last name longer than [`NamePart::MAX_CHARS`].
    #[error("Ensure this field has no more than 150 characters.")]
    NameTooLong,
    /// A NUL character, which no backend stores.
    #[error("Null characters are not allowed.")]
    NullCharacter,
    /// An avatar that is not an http(s) URL of at most [`Avatar::MAX_CHARS`].
    #[error("Enter a valid http or https URL of at most 2048 characters.")]
    InvalidAvatar,
}

/// A username: 3 to 150 characters of letters, digits and `@.+-_`
/// (Django's rule). Uniqueness is case-insensitive: compare [`Username::key`].
///
/// ```
/// use chat_domain::Username;
/// assert!(Username::parse("jdoe").is_ok());
/// assert!(Username::parse("jd").is_err());
/// assert!(Username::parse("j doe").is_err());
/// assert_eq!(Username::parse("JDoe").unwrap().key(), "jdoe");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Username(String);

impl Username {
    /// Fewest characters a username may have.
    pub const MIN_CHARS: usize = 3;
    /// Most characters a username may have.
    pub const MAX_CHARS: usize = 150;

    /// Checks the rule; the value is kept as given (no trimming, no case change).
    pub fn parse(raw: &str) -> Result<Self, UserFieldError> {
        let count = raw.chars().count();
        let allowed = |c: char| c.is_alphanumeric() || "@.+-_".contains(c);
        if !(Self::MIN_CHARS..=Self::MAX_CHARS).contains(&count) || !raw.chars().all(allowed) {
            return Err(UserFieldError::InvalidUsername);
        }
        Ok(Self(raw.to_owned()))
    }

    /// The username as given at registration.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The case-insensitive key that must be unique among users.
    pub fn key(&self) -> String {
        self.0.to_lowercase()
    }

    /// The username as an owned string.
    pub fn into_string(self) -> String {
        self.0
    }
}

/// A password that meets the policy: 8 to 1024 characters. The upper bound
/// keeps hashing cost bounded. Its `Debug` never shows the value.
///
/// ```
/// use chat_domain::Password;
/// assert!(Password::parse("correct horse").is_ok());
/// assert!(Password::parse("short").is_err());
/// assert_eq!(format!("{:?}", Password::parse("correct horse").unwrap()), "Password(***)");
/// ```
#[derive(Clone)]
pub struct Password(String);

impl Password {
    /// Fewest characters a password may have.
    pub const MIN_CHARS: usize = 8;
    /// Most characters a password may have.
    pub const MAX_CHARS: usize = 1024;

    /// Checks the policy.
    pub fn parse(raw: &str) -> Result<Self, UserFieldError> {
        let count = raw.chars().count();
        if count < Self::MIN_CHARS {
            return Err(UserFieldError::PasswordTooShort);
        }
        if count > Self::MAX_CHARS {
            return Err(UserFieldError::PasswordTooLong);
        }
        Ok(Self(raw.to_owned()))
    }

    /// The secret itself, for hashing only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(***)")
    }
}

/// A first or last name: at most 150 characters, surrounding whitespace trimmed.
///
/// ```
/// use chat_domain::NamePart;
/// assert_eq!(NamePart::parse(" John ").unwrap().as_str(), "John");
/// assert!(NamePart::parse(&"x".repeat(151)).is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NamePart(String);

impl NamePart {
    /// Most characters a name part may have.
    pub const MAX_CHARS: usize = 150;

    /// Trims and checks the length.
    pub fn parse(raw: &str) -> Result<Self, UserFieldError> {
        let trimmed = raw.trim();
        if trimmed.contains('\0') {
            return Err(UserFieldError::NullCharacter);
        }
        if trimmed.chars().count() > Self::MAX_CHARS {
            return Err(UserFieldError::NameTooLong);
        }
        Ok(Self(trimmed.to_owned()))
    }

    /// The trimmed name.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The trimmed name as an owned string.
    pub fn into_string(self) -> String {
        self.0
    }
}

/// An avatar URL: an `http://` or `https://` URI (RFC 3986: ASCII, only the
/// characters each part allows, `%` followed by two hex digits) with a
/// host part, at most 2048 characters. Not trimmed: a URL with whitespace
/// around it is not a URL (the handlers read a blank value as "none").
///
/// ```
/// use chat_domain::Avatar;
/// assert!(Avatar::parse("https://example.com/a.png").is_ok());
/// assert!(Avatar::parse("https://example.com/caf%C3%A9.png").is_ok());
/// assert!(Avatar::parse("https://example.com/café.png").is_err()); // not percent-encoded
/// assert!(Avatar::parse("javascript:alert(1)").is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Avatar(String);

impl Avatar {
    /// Most characters an avatar URL may have.
    pub const MAX_CHARS: usize = 2048;

    /// Checks scheme, syntax, host presence and length.
    pub fn parse(raw: &str) -> Result<Self, UserFieldError> {
        let rest = raw
            .strip_prefix("https://")
            .or_else(|| raw.strip_prefix("http://"))
            .ok_or(UserFieldError::InvalidAvatar)?;
        if raw.len() > Self::MAX_CHARS || !uri::is_authority_and_rest(rest) {
            return Err(UserFieldError::InvalidAvatar);
        }
        Ok(Self(raw.to_owned()))
    }

    /// The URL.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The URL as an owned string.
    pub fn into_string(self) -> String {
        self.0
    }
}

/// RFC 3986 syntax of what follows `scheme://`.
mod uri {
    /// `unreserved / sub-delims` (and `pct-encoded`, checked apart).
    fn plain(b: u8) -> bool {
        b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=".contains(&b)
    }

    /// Every byte is `plain`, one of `extra`, or starts a `%HH`.
    fn only(part: &str, extra: &[u8]) -> bool {
        let b = part.as_bytes();
        let mut i = 0;
        while i < b.len() {
            if b[i] == b'%' {
                if i + 2 >= b.len()
                    || !(b[i + 1].is_ascii_hexdigit() && b[i + 2].is_ascii_hexdigit())
                {
                    return false;
                }
                i += 3;
            } else if plain(b[i]) || extra.contains(&b[i]) {
                i += 1;
            } else {
                return false;
            }
        }
        true
    }

    /// `host [":" port]`, the host a reg-name, IPv4 address or IP-literal.
    fn host_port(hp: &str) -> bool {
        let (host_ok, port) = if let Some(literal) = hp.strip_prefix('[') {
            let Some((inside, after)) = literal.split_once(']') else {
                return false;
            };
            let port = match after {
                "" => "",
                p => match p.strip_prefix(':') {
                    Some(port) => port,
                    None => return false,
                },
            };
            (ip_literal(inside), port)
        } else {
            let (host, port) = hp.rsplit_once(':').unwrap_or((hp, ""));
            (only(host, b""), port)
        };
        host_ok && port.bytes().all(|b| b.is_ascii_digit())
    }

    /// `IPv6address / IPvFuture` (inside the brackets).
    fn ip_literal(inside: &str) -> bool {
        if let Some(future) = inside.strip_prefix(['v', 'V']) {
            return future.split_once('.').is_some_and(|(version, rest)| {
                !version.is_empty()
                    && version.bytes().all(|b| b.is_ascii_hexdigit())
                    && !rest.is_empty()
                    && rest.bytes().all(|b| plain(b) || b == b':')
            });
        }
        inside.parse::<std::net::Ipv6Addr>().is_ok()
    }

    /// `authority path-abempty ["?" query] ["#" fragment]`, with an
    /// authority that is not empty.
    pub(super) fn is_authority_and_rest(rest: &str) -> bool {
        let (rest, fragment) = rest.split_once('#').unwrap_or((rest, ""));
        let (rest, query) = rest.split_once('?').unwrap_or((rest, ""));
        let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        let (userinfo, hp) = match authority.rsplit_once('@') {
            Some((u, hp)) => (u, hp),
            None => ("", authority),
        };
        !authority.is_empty()
            && only(userinfo, b":")
            && host_port(hp)
            && only(path, b":@/")
            && only(query, b":@/?")
            && only(fragment, b":@/?")
    }
}

/// A user as the API shows it. The password hash never lives here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// The user's id.
    pub id: UserId,
    /// The username as registered.
    pub username: String,
    /// First name, possibly empty.
    pub first_name: String,
    /// Last name, possibly empty.
    pub last_name: String,
    /// Avatar URL, if any.
    pub avatar: Option<String>,
    /// When the user was last online (set when they go offline).
    pub last_seen: Option<chrono::DateTime<chrono::Utc>>,
    /// Whether others may see the user's presence.
    pub share_presence: bool,
}

impl User {
    /// First and last name joined by a space, or the username when both are empty.
    ///
    /// ```
    /// use chat_domain::{User, UserId};
    /// let mut u = User { id: UserId(1), username: "jdoe".into(), first_name: "John".into(),
    ///     last_name: "Doe".into(), avatar: None, last_seen: None, share_presence: true };
    /// assert_eq!(u.display_name(), "John Doe");
    /// u.last_name.clear();
    /// assert_eq!(u.display_name(), "John");
    /// u.first_name.clear();
    /// assert_eq!(u.display_name(), "jdoe");
    /// ```
    pub fn display_name(&self) -> String {
        let full = format!("{} {}", self.first_name, self.last_name);
        let full = full.trim();
        if full.is_empty() {
            self.username.clone()
        } else {
            full.to_owned()
        }
    }
}

/// A user. `name` is first and last name joined by a space, or the username
/// when both are empty. Passwords never appear in any response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(as = User,
    example = json!({"id": 7, "username": "jdoe", "first_name": "John", "last_name": "Doe",
        "name": "John Doe", "avatar": "https://example.com/a.png"})))]
pub struct UserView {
    /// The user's id.
    #[cfg_attr(feature = "openapi", schema(value_type = i64))]
    pub id: UserId,
    /// The username, in the case it was registered with.
    pub username: String,
    /// First name (may be empty).
    pub first_name: String,
    /// Last name (may be empty).
    pub last_name: String,
    /// Display name.
    pub name: String,
    /// Avatar URL, or null.
    #[cfg_attr(feature = "openapi", schema(required = true, format = "uri"))]
    pub avatar: Option<String>,
}

impl From<&User> for UserView {
    fn from(u: &User) -> Self {
        Self {
            id: u.id,
            username: u.username.clone(),
            first_name: u.first_name.clone(),
            last_name: u.last_name.clone(),
            name: u.display_name(),
            avatar: u.avatar.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn username_bounds_count_characters_not_bytes() {
        assert!(Username::parse("abc").is_ok());
        assert!(Username::parse(&"a".repeat(150)).is_ok());
        assert!(Username::parse(&"a".repeat(151)).is_err());
        assert!(Username::parse("ééé").is_ok());
        assert!(Username::parse("ab").is_err());
        assert!(Username::parse("").is_err());
    }

    #[test]
    fn username_characters() {
        assert!(Username::parse("a@b.c+d-e_f").is_ok());
        for bad in ["a b", "a/b", "a!b", "a\tb", "ab'c"] {
            assert!(Username::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn password_policy() {
        assert_eq!(
            Password::parse("1234567").unwrap_err(),
            UserFieldError::PasswordTooShort
        );
        assert!(Password::parse("12345678").is_ok());
        assert!(Password::parse(&"x".repeat(1025)).is_err());
    }

    #[test]
    fn nul_characters_are_refused() {
        assert_eq!(NamePart::parse("a\0b"), Err(UserFieldError::NullCharacter));
        assert!(Avatar::parse("https://a/\0").is_err());
        assert!(Username::parse("ab\0c").is_err());
    }

    #[test]
    fn avatar_rules() {
        assert!(Avatar::parse("http://a").is_ok());
        assert!(Avatar::parse("https://").is_err());
        assert!(Avatar::parse("ftp://a/b").is_err());
        assert!(Avatar::parse("https://a/b c").is_err());
        // RFC 3986 syntax, as the document's `format: uri` says.
        for ok in [
            "https://a/b?c=d&e#f",
            "https://u:p@h:8080/p;q/%C3%A9",
            "https://[::1]:80/",
            "https://[v1.x]/",
            "https://@",
            "https://:80",
        ] {
            assert!(Avatar::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "https://\u{c2}",
            "https://a/caf\u{e9}",
            "https://a]b",
            "https://a:port",
            "https://a/b[c",
            "https://a%zz",
            "https://a/%",
            "https://a/%4",
            "https://a/b?c#d#e",
            "https://a|b",
            "https://a/\"",
            "https://a/{}",
            "https://[::g]/",
            "https://[::1]x/",
            "https://a@b@c/",
            " https://a/",
            "https://a/\n",
        ] {
            assert!(Avatar::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn user_view_has_name() {
        let u = User {
            id: UserId(3),
            username: "x_y".into(),
            first_name: String::new(),
            last_name: "Doe".into(),
            avatar: Some("https://e/a.png".into()),
            last_seen: None,
            share_presence: false,
        };
        let v = serde_json::to_value(UserView::from(&u)).unwrap();
        assert_eq!(v["name"], "Doe");
        assert_eq!(v["avatar"], "https://e/a.png");
        assert_eq!(v["id"], 3);
    }
}
