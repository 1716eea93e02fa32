//! Registry authentication: credentials (never printed), the `WWW-Authenticate` challenge, and
//! the bearer-token exchange of the distribution spec's token flow, with tokens cached per
//! realm, service and scope so concurrent layer downloads share one.

use std::collections::HashMap;
use std::fmt;
use std::sync::Mutex;

use base64::Engine as _;

/// A user name and password (or a registry token as the password). Debug shows neither.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("Credentials(<redacted>)")
    }
}

impl Credentials {
    /// The value of an `Authorization: Basic` header.
    pub fn basic_header(&self) -> String {
        let pair = format!("{}:{}", self.username, self.password);
        format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(pair))
    }
}

/// What a 401 asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Challenge {
    Basic,
    Bearer { realm: String, service: Option<String>, scope: Option<String> },
    Other(String),
}

/// Parses a `WWW-Authenticate` value: a scheme, then `key="value"` pairs (values may hold
/// commas, as `scope="repository:a:pull,push"` does).
pub fn parse_challenge(header: &str) -> Challenge {
    let header = header.trim();
    let (scheme, rest) = header.split_once(' ').unwrap_or((header, ""));
    let mut params: HashMap<String, String> = HashMap::new();
    let mut chars = rest.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect::<String>().trim().to_ascii_lowercase();
        if key.is_empty() {
            break;
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => value.extend(chars.next()),
                    '"' => break,
                    other => value.push(other),
                }
            }
        } else {
            value = chars.by_ref().take_while(|c| *c != ',').collect::<String>().trim().to_string();
        }
        params.insert(key, value);
    }
    match scheme.to_ascii_lowercase().as_str() {
        "basic" => Challenge::Basic,
        "bearer" => match params.remove("realm") {
            Some(realm) => {
                Challenge::Bearer { realm, service: params.remove("service"), scope: params.remove("scope") }
            }
            None => Challenge::Other(header.to_string()),
        },
        _ => Challenge::Other(header.to_string()),
    }
}

/// Bearer tokens by (realm, service, scope). Shared by every client of one pull.
#[derive(Default, Debug)]
pub struct TokenCache {
    tokens: Mutex<HashMap<(String, String, String), String>>,
}

impl TokenCache {
    pub fn get(&self, realm: &str, service: &str, scope: &str) -> Option<String> {
        let tokens = self.tokens.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        tokens.get(&(realm.to_string(), service.to_string(), scope.to_string())).cloned()
    }

    pub fn put(&self, realm: &str, service: &str, scope: &str, token: String) {
        let mut tokens = self.tokens.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        tokens.insert((realm.to_string(), service.to_string(), scope.to_string()), token);
    }

    pub fn forget(&self, realm: &str, service: &str, scope: &str) {
        let mut tokens = self.tokens.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        tokens.remove(&(realm.to_string(), service.to_string(), scope.to_string()));
    }
}

/// The token endpoint's answer: `token`, or OAuth2's `access_token`.
#[derive(serde::Deserialize)]
pub struct TokenResponse {
    #[serde(default)]
    pub token: String,
    #[serde(default)]
    pub access_token: String,
}

impl TokenResponse {
    pub fn into_token(self) -> Option<String> {
        [self.token, self.access_token].into_iter().find(|token| !token.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_bearer_and_basic_challenges() {
        let bearer = parse_challenge(
            r#"Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull,push""#,
        );
        assert_eq!(
            bearer,
            Challenge::Bearer {
                realm: "https://auth.example/token".into(),
                service: Some("registry.example".into()),
                scope: Some("repository:a/b:pull,push".into()),
            }
        );
        assert_eq!(parse_challenge(r#"Basic realm="Registry Realm""#), Challenge::Basic);
        assert_eq!(
            parse_challenge("bearer realm=http://127.0.0.1:1/t"),
            Challenge::Bearer { realm: "http://127.0.0.1:1/t".into(), service: None, scope: None }
        );
        assert!(matches!(parse_challenge("Negotiate abc"), Challenge::Other(_)));
        assert!(matches!(parse_challenge("Bearer service=x"), Challenge::Other(_)));
    }

    #[test]
    fn credentials_never_show_in_debug() {
        let credentials = Credentials { username: "alice".into(), password: "s3cret".into() };
        let shown = format!("{credentials:?}");
        assert!(!shown.contains("alice") && !shown.contains("s3cret"), "{shown}");
        assert_eq!(credentials.basic_header(), "Basic YWxpY2U6czNjcmV0");
    }
}
