//! The HTTP side of the distribution API for one endpoint (a mirror or the registry) and one
//! repository: TLS as its hosts.toml says, and authentication on demand — a request goes out as
//! it is, and a 401 is answered by Basic credentials or a bearer token for the challenge's scope,
//! then sent once more. Pull uses GET; push uses HEAD and the upload calls through
//! [`RegistryClient::send_with`], whose body is made anew for the retry.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use reqwest::header::{HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_LENGTH, WWW_AUTHENTICATE};
use reqwest::{Method, Response, StatusCode};

use crate::images::registry::auth::{parse_challenge, Challenge, Credentials, TokenCache, TokenResponse};
use crate::images::registry::error::RegistryError;
use crate::images::registry::hosts::Endpoint;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// A registry that stops sending for this long is given up on (the pull can be resumed).
const READ_TIMEOUT: Duration = Duration::from_secs(60);
/// Token answers are small JSON documents.
const MAX_TOKEN_RESPONSE_BYTES: u64 = 1 << 20;

/// Talks to one endpoint about one repository.
pub struct RegistryClient {
    pub endpoint: Endpoint,
    /// The registry host as references name it (for messages: `berth login HOST`).
    registry_host: String,
    repository: String,
    http: reqwest::Client,
    credentials: Option<Credentials>,
    tokens: Arc<TokenCache>,
    /// The Authorization value that worked last; shared by the pull's concurrent requests.
    authorization: std::sync::Mutex<Option<HeaderValue>>,
    /// The actions a bearer token is asked for when a challenge names no scope.
    scope_actions: &'static str,
}

/// Makes a request body, once for the first try and once more for the retry after a 401.
pub type BodyFactory<'a> = &'a (dyn Fn() -> reqwest::Body + Send + Sync);

impl RegistryClient {
    pub fn new(
        endpoint: Endpoint,
        registry_host: &str,
        repository: &str,
        credentials: Option<Credentials>,
        tokens: Arc<TokenCache>,
    ) -> Result<RegistryClient, RegistryError> {
        let mut builder = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .read_timeout(READ_TIMEOUT)
            .user_agent(concat!("berth/", env!("CARGO_PKG_VERSION")));
        for ca_file in &endpoint.ca_files {
            let ca_error = |reason: String| RegistryError::CaFile {
                endpoint: endpoint.base_url.clone(),
                path: ca_file.clone(),
                reason,
            };
            let pem = std::fs::read(ca_file).map_err(|error| ca_error(error.to_string()))?;
            let certificates =
                reqwest::Certificate::from_pem_bundle(&pem).map_err(|error| ca_error(error.to_string()))?;
            if certificates.is_empty() {
                return Err(ca_error("it holds no PEM certificate".to_string()));
            }
            for certificate in certificates {
                builder = builder.add_root_certificate(certificate);
            }
        }
        if endpoint.skip_verify {
            builder = builder.danger_accept_invalid_certs(true);
        }
        let http = builder.build().map_err(|error| RegistryError::Client {
            endpoint: endpoint.base_url.clone(),
            reason: error.to_string(),
        })?;
        Ok(RegistryClient {
            endpoint,
            registry_host: registry_host.to_string(),
            repository: repository.to_string(),
            http,
            credentials,
            tokens,
            authorization: std::sync::Mutex::new(None),
            scope_actions: "pull",
        })
    }

    /// A client that asks for `pull,push` tokens, as a push needs.
    pub fn for_push(mut self) -> RegistryClient {
        self.scope_actions = "pull,push";
        self
    }

    pub fn repository(&self) -> &str {
        &self.repository
    }

    pub fn registry_host(&self) -> &str {
        &self.registry_host
    }

    /// `<base>/v2/<repository>/<rest>`, or `<base>/v2/` for an empty repository and rest.
    pub fn url(&self, rest: &str) -> String {
        if self.repository.is_empty() && rest.is_empty() {
            format!("{}/v2/", self.endpoint.base_url)
        } else {
            format!("{}/v2/{}/{rest}", self.endpoint.base_url, self.repository)
        }
    }

    fn pull_scope(&self) -> String {
        format!("repository:{}:{}", self.repository, self.scope_actions)
    }

    fn current_authorization(&self) -> Option<HeaderValue> {
        self.authorization.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }

    fn unreachable(&self, error: &reqwest::Error) -> RegistryError {
        // The whole chain: reqwest's own message is only "error sending request".
        let mut reason = error.to_string();
        let mut source = std::error::Error::source(error);
        while let Some(cause) = source {
            reason.push_str(": ");
            reason.push_str(&cause.to_string());
            source = cause.source();
        }
        RegistryError::Unreachable { endpoint: self.endpoint.base_url.clone(), reason }
    }

    /// Sends a request, authenticating when the registry asks; any status but 401 is returned
    /// to the caller as it came.
    pub async fn send(&self, method: Method, url: &str, accept: &[&str]) -> Result<Response, RegistryError> {
        self.send_with(method, url, accept, &[], None).await
    }

    /// [`RegistryClient::send`] with extra headers and a body.
    pub async fn send_with(
        &self,
        method: Method,
        url: &str,
        accept: &[&str],
        headers: &[(reqwest::header::HeaderName, String)],
        body: Option<BodyFactory<'_>>,
    ) -> Result<Response, RegistryError> {
        let build = |authorization: Option<HeaderValue>| {
            let mut request = self.http.request(method.clone(), url);
            if !accept.is_empty() {
                request = request.header(ACCEPT, accept.join(", "));
            }
            for (name, value) in headers {
                request = request.header(name.clone(), value.as_str());
            }
            if let Some(body) = body {
                request = request.body(body());
            }
            if let Some(value) = authorization {
                request = request.header(AUTHORIZATION, value);
            }
            request
        };
        let sent_with = self.current_authorization();
        let response = build(sent_with.clone()).send().await.map_err(|error| self.unreachable(&error))?;
        if response.status() != StatusCode::UNAUTHORIZED {
            return Ok(response);
        }
        let challenge = response
            .headers()
            .get(WWW_AUTHENTICATE)
            .and_then(|value| value.to_str().ok())
            .map(parse_challenge)
            .unwrap_or(Challenge::Basic);
        let authorization = self.authorize(&challenge, sent_with.is_some()).await?;
        let retried = build(Some(authorization.clone())).send().await.map_err(|error| self.unreachable(&error))?;
        if retried.status() == StatusCode::UNAUTHORIZED {
            return Err(self.refused(&challenge));
        }
        *self.authorization.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(authorization);
        Ok(retried)
    }

    fn challenge_scope(&self, challenge: &Challenge) -> String {
        match challenge {
            Challenge::Bearer { scope: Some(scope), .. } => scope.clone(),
            _ if self.repository.is_empty() => "the registry".to_string(),
            _ => self.pull_scope(),
        }
    }

    fn refused(&self, challenge: &Challenge) -> RegistryError {
        let (endpoint, host, scope) =
            (self.endpoint.base_url.clone(), self.registry_host.clone(), self.challenge_scope(challenge));
        match self.credentials {
            Some(_) => RegistryError::CredentialsRefused { endpoint, host, scope },
            None => RegistryError::CredentialsNeeded { endpoint, host, scope },
        }
    }

    /// The Authorization value that answers `challenge`. `stale` says the last one was refused,
    /// so a cached token for the scope is fetched anew.
    async fn authorize(&self, challenge: &Challenge, stale: bool) -> Result<HeaderValue, RegistryError> {
        let header = match challenge {
            Challenge::Basic => match &self.credentials {
                Some(credentials) => credentials.basic_header(),
                None => return Err(self.refused(challenge)),
            },
            Challenge::Bearer { realm, service, scope } => {
                let service = service.clone().unwrap_or_default();
                let scope = match scope {
                    Some(scope) => scope.clone(),
                    None if self.repository.is_empty() => String::new(),
                    None => self.pull_scope(),
                };
                if stale {
                    self.tokens.forget(realm, &service, &scope);
                }
                let token = match self.tokens.get(realm, &service, &scope) {
                    Some(token) => token,
                    None => {
                        let token = self.fetch_token(realm, &service, &scope, challenge).await?;
                        self.tokens.put(realm, &service, &scope, token.clone());
                        token
                    }
                };
                format!("Bearer {token}")
            }
            Challenge::Other(text) => {
                return Err(RegistryError::UnknownChallenge {
                    endpoint: self.endpoint.base_url.clone(),
                    challenge: text.clone(),
                })
            }
        };
        let mut value = HeaderValue::from_str(&header).map_err(|_| RegistryError::Token {
            realm: self.endpoint.base_url.clone(),
            reason: "the token holds characters an HTTP header cannot".into(),
        })?;
        value.set_sensitive(true);
        Ok(value)
    }

    async fn fetch_token(
        &self,
        realm: &str,
        service: &str,
        scope: &str,
        challenge: &Challenge,
    ) -> Result<String, RegistryError> {
        let token_error = |reason: String| RegistryError::Token { realm: realm.to_string(), reason };
        let mut request = self.http.get(realm);
        let mut query = Vec::new();
        if !service.is_empty() {
            query.push(("service", service));
        }
        if !scope.is_empty() {
            query.push(("scope", scope));
        }
        request = request.query(&query);
        if let Some(credentials) = &self.credentials {
            request = request.header(AUTHORIZATION, credentials.basic_header());
        }
        let response = request.send().await.map_err(|error| token_error(self.unreachable(&error).to_string()))?;
        match response.status() {
            status if status.is_success() => {}
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => return Err(self.refused(challenge)),
            status => return Err(token_error(format!("it answered HTTP {}", status.as_u16()))),
        }
        let body = read_capped(response, MAX_TOKEN_RESPONSE_BYTES)
            .await
            .map_err(|outcome| token_error(outcome.describe("the token answer")))?;
        let parsed: TokenResponse =
            serde_json::from_slice(&body).map_err(|error| token_error(format!("its answer is not JSON: {error}")))?;
        parsed.into_token().ok_or_else(|| token_error("its answer holds no token".into()))
    }
}

/// Why a capped read stopped.
pub enum CappedReadError {
    TooLarge { limit: u64 },
    Broken(String),
}

impl CappedReadError {
    pub fn describe(&self, what: &str) -> String {
        match self {
            CappedReadError::TooLarge { limit } => format!("{what} is over {limit} bytes"),
            CappedReadError::Broken(reason) => format!("{what} broke off: {reason}"),
        }
    }
}

/// Reads a whole response body, refusing one over `limit` bytes before or while it arrives.
pub async fn read_capped(response: Response, limit: u64) -> Result<Vec<u8>, CappedReadError> {
    let declared = response
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|text| text.parse::<u64>().ok());
    if declared.is_some_and(|length| length > limit) {
        return Err(CappedReadError::TooLarge { limit });
    }
    let mut body = Vec::with_capacity(declared.unwrap_or(0) as usize);
    let mut chunks = response.bytes_stream();
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk.map_err(|error| CappedReadError::Broken(error.to_string()))?;
        if body.len() as u64 + chunk.len() as u64 > limit {
            return Err(CappedReadError::TooLarge { limit });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}
