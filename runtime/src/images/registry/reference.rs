//! Image references as Docker users write them, normalised the way docker and containerd read
//! them: `busybox` is `docker.io/library/busybox:latest`, `host:port/repo:tag` names another
//! registry, `repo@sha256:…` pins a digest. Hand-written (about a hundred lines) rather than a
//! crate: the parsers on crates.io come with a whole registry client, and berth needs the
//! grammar only.

use std::fmt;

use crate::images::digest::digest_hex;

/// Docker Hub as references name it, and the host its API is actually served from.
pub const DOCKER_HUB_DOMAIN: &str = "docker.io";
pub const DOCKER_HUB_API_HOST: &str = "registry-1.docker.io";
const DEFAULT_TAG: &str = "latest";

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ReferenceError {
    #[error("{} is not an image reference: {reason}; write [HOST[:PORT]/]REPOSITORY[:TAG][@sha256:DIGEST], e.g. busybox, docker.io/library/busybox:1.36 or 127.0.0.1:5000/app:1", berth_commands::validate::shown(given))]
    Malformed { given: String, reason: &'static str },
}

/// A registry host as `berth login` and hosts.toml directories name it (`docker.io`,
/// `127.0.0.1:5000`), or None if it is not one. It becomes a directory name under the hosts
/// config dir, so nothing that could climb out of it passes.
pub fn normalise_registry_host(host: &str) -> Option<String> {
    let valid = !host.is_empty()
        && host.len() <= 255
        && host.bytes().all(|byte| byte.is_ascii_alphanumeric() || b".-:[]".contains(&byte))
        && !host.starts_with(['.', '-', ':'])
        && !host.contains("..");
    match host {
        _ if !valid => None,
        "index.docker.io" | "registry-1.docker.io" => Some(DOCKER_HUB_DOMAIN.to_string()),
        _ => Some(host.to_ascii_lowercase()),
    }
}

/// A parsed, normalised reference.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reference {
    /// `docker.io`, `127.0.0.1:5000`, `registry.example`.
    pub domain: String,
    /// `library/busybox`, `local/busybox`.
    pub repository: String,
    /// Absent only when a digest is given and no tag.
    pub tag: Option<String>,
    pub digest: Option<String>,
}

impl Reference {
    pub fn parse(given: &str) -> Result<Reference, ReferenceError> {
        let malformed = |reason| ReferenceError::Malformed { given: given.to_string(), reason };
        if given.is_empty() || given.len() > 1024 {
            return Err(malformed("it is empty or longer than 1024 bytes"));
        }
        let (name_and_tag, digest) = match given.split_once('@') {
            Some((before, digest)) => {
                digest_hex(digest).map_err(|_| malformed("the digest is not sha256: and 64 lower-case hex digits"))?;
                (before, Some(digest.to_string()))
            }
            None => (given, None),
        };
        let last_slash = name_and_tag.rfind('/').map_or(0, |idx| idx + 1);
        let (name, tag) = match name_and_tag[last_slash..].rfind(':') {
            Some(colon) => (&name_and_tag[..last_slash + colon], Some(&name_and_tag[last_slash + colon + 1..])),
            None => (name_and_tag, None),
        };
        if let Some(tag) = tag {
            let valid_tag = !tag.is_empty()
                && tag.len() <= 128
                && !tag.starts_with(['.', '-'])
                && tag.bytes().all(|byte| byte.is_ascii_alphanumeric() || b"_.-".contains(&byte));
            if !valid_tag {
                return Err(malformed("the tag may hold only letters, digits, '_', '.' and '-' (at most 128)"));
            }
        }
        let (domain, remainder) = match name.split_once('/') {
            Some((first, rest)) if first.contains(['.', ':']) || first == "localhost" => (first.to_string(), rest),
            _ => (DOCKER_HUB_DOMAIN.to_string(), name),
        };
        let domain = normalise_registry_host(&domain)
            .ok_or_else(|| malformed("the registry host may hold only letters, digits, '.', '-' and a :port"))?;
        let repository = if domain == DOCKER_HUB_DOMAIN && !remainder.contains('/') {
            format!("library/{remainder}")
        } else {
            remainder.to_string()
        };
        let valid_component = |component: &str| {
            let bytes = component.as_bytes();
            !component.is_empty()
                && bytes[0].is_ascii_alphanumeric()
                && bytes[bytes.len() - 1].is_ascii_alphanumeric()
                && bytes.iter().all(|byte| byte.is_ascii_lowercase() || byte.is_ascii_digit() || b"._-".contains(byte))
        };
        if repository.len() > 255 || !repository.split('/').all(valid_component) {
            return Err(malformed(
                "each repository path component is lower-case letters and digits, joined by '.', '_' or '-'",
            ));
        }
        let tag = match (tag, &digest) {
            (Some(tag), _) => Some(tag.to_string()),
            (None, Some(_)) => None,
            (None, None) => Some(DEFAULT_TAG.to_string()),
        };
        Ok(Reference { domain, repository, tag, digest })
    }

    /// What the manifest is fetched by: the digest when given, else the tag.
    pub fn manifest_reference(&self) -> &str {
        self.digest.as_deref().or(self.tag.as_deref()).unwrap_or(DEFAULT_TAG)
    }

    /// The name the pulled image gets: `domain/repository:tag`, or `…@digest` without a tag.
    pub fn image_name(&self) -> String {
        match (&self.tag, &self.digest) {
            (Some(tag), _) => format!("{}/{}:{tag}", self.domain, self.repository),
            (None, Some(digest)) => format!("{}/{}@{digest}", self.domain, self.repository),
            (None, None) => format!("{}/{}", self.domain, self.repository),
        }
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{}/{}", self.domain, self.repository)?;
        if let Some(tag) = &self.tag {
            write!(formatter, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(formatter, "@{digest}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIGEST: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn normalises_as_docker_does() {
        let cases = [
            ("busybox", "docker.io/library/busybox:latest"),
            ("busybox:1.36", "docker.io/library/busybox:1.36"),
            ("user/app", "docker.io/user/app:latest"),
            ("index.docker.io/library/busybox:1", "docker.io/library/busybox:1"),
            ("127.0.0.1:5000/local/busybox", "127.0.0.1:5000/local/busybox:latest"),
            ("localhost/app:v1.0-rc", "localhost/app:v1.0-rc"),
            ("registry.example/a/b/c:2", "registry.example/a/b/c:2"),
        ];
        for (given, expected) in cases {
            assert_eq!(Reference::parse(given).unwrap().to_string(), expected, "{given}");
        }
        let pinned = Reference::parse(&format!("busybox@{DIGEST}")).unwrap();
        assert_eq!((pinned.tag.as_deref(), pinned.manifest_reference()), (None, DIGEST));
        assert_eq!(pinned.image_name(), format!("docker.io/library/busybox@{DIGEST}"));
        let both = Reference::parse(&format!("host:5000/app:1@{DIGEST}")).unwrap();
        assert_eq!(
            (both.domain.as_str(), both.tag.as_deref(), both.manifest_reference()),
            ("host:5000", Some("1"), DIGEST)
        );
        assert_eq!(both.image_name(), "host:5000/app:1");
    }

    #[test]
    fn refuses_what_does_not_parse() {
        for bad in
            ["", "Busybox", "busybox:", "busybox@sha256:abc", "a//b", "-a", "busybox:bad tag", "reg.example/", "x:y:z"]
        {
            let error = Reference::parse(bad).unwrap_err().to_string();
            assert!(error.contains("is not an image reference") && error.contains("e.g. busybox"), "{bad}: {error}");
        }
    }
}
