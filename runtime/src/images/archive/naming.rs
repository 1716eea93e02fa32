//! What an imported image is called: a `--name` flag, else what the archive says
//! (`io.containerd.image.name`, a full `org.opencontainers.image.ref.name`, or a docker-archive's
//! `RepoTags`), each validated the same way.

use std::collections::HashMap;

use crate::images::archive::ImportError;

pub const ANNOTATION_CONTAINERD_NAME: &str = "io.containerd.image.name";
pub const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";

/// How an image's `org.opencontainers.image.ref.name` reads in the `NoName` message.
pub fn describe_ref_name(ref_name: Option<&str>) -> String {
    match ref_name {
        Some(tag) => format!("its ref name {} is a tag only", berth_commands::validate::shown(tag)),
        None => "it has no ref name".to_string(),
    }
}

/// True if a reference names a tag or digest: a ':' after the last '/' (a ':' before it is a
/// registry port), or an '@'.
pub fn has_tag_or_digest(reference: &str) -> bool {
    let last_component = reference.rsplit('/').next().unwrap_or(reference);
    last_component.contains(':') || reference.contains('@')
}

/// The tag part of a full reference, if it has one.
pub fn tag_of(reference: &str) -> Option<&str> {
    if reference.contains('@') {
        return None;
    }
    let last_component = reference.rsplit('/').next().unwrap_or(reference);
    last_component.split_once(':').map(|(_, tag)| tag)
}

pub fn validate_name(name: &str) -> Result<(), ImportError> {
    let acceptable = |character: char| character.is_ascii_alphanumeric() || "._-/:@".contains(character);
    if name.is_empty()
        || !name.chars().all(acceptable)
        || name.starts_with(['/', ':', '@', '.', '-'])
        || name.ends_with(['/', ':', '@'])
    {
        return Err(ImportError::InvalidName { name: name.to_string() });
    }
    Ok(())
}

/// Naming, per image of the archive:
/// - `given_name` with a tag (`repo:tag`): used as is; only allowed when the archive holds one image.
/// - `given_name` without a tag: `name:<tag>`, the tag taken from the image's ref name, else `latest`.
/// - no `given_name`: the `io.containerd.image.name` annotation, else the
///   `org.opencontainers.image.ref.name` annotation if it is a full reference (umoci and skopeo
///   put only a tag there, which is not enough: `NoName`).
pub fn choose_name(
    image_idx: usize,
    annotations: &HashMap<String, String>,
    given_name: Option<&str>,
) -> Result<String, ImportError> {
    let containerd_name = annotations.get(ANNOTATION_CONTAINERD_NAME).filter(|value| !value.is_empty());
    let ref_name = annotations.get(ANNOTATION_REF_NAME).filter(|value| !value.is_empty());
    let ref_is_full = |reference: &String| reference.contains('/') || reference.contains(':');
    if let Some(given) = given_name {
        if has_tag_or_digest(given) {
            return Ok(given.to_string());
        }
        // The ref name is either a bare tag (umoci, skopeo) or a full reference with a tag.
        let tag = match (ref_name, containerd_name) {
            (Some(reference), _) if !ref_is_full(reference) => Some(reference.as_str()),
            (Some(reference), _) => tag_of(reference),
            (None, Some(full_name)) => tag_of(full_name),
            (None, None) => None,
        };
        let chosen = format!("{given}:{}", tag.unwrap_or("latest"));
        validate_name(&chosen)?;
        return Ok(chosen);
    }
    // Annotations are the archive's word, no more trusted than a --name flag.
    let chosen = match (containerd_name, ref_name) {
        (Some(full_name), _) => full_name.clone(),
        (None, Some(reference)) if ref_is_full(reference) => reference.clone(),
        _ => return Err(ImportError::NoName { image_idx, ref_name: ref_name.cloned() }),
    };
    validate_name(&chosen)?;
    Ok(chosen)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn annotations(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(key, value)| (key.to_string(), value.to_string())).collect()
    }

    #[test]
    fn naming_rules() {
        let tag_only = annotations(&[(ANNOTATION_REF_NAME, "layers")]);
        assert_eq!(choose_name(0, &tag_only, Some("busybox")).unwrap(), "busybox:layers");
        assert_eq!(choose_name(0, &annotations(&[]), Some("busybox")).unwrap(), "busybox:latest");
        assert_eq!(choose_name(0, &tag_only, Some("reg:5000/busybox:1")).unwrap(), "reg:5000/busybox:1");
        assert_eq!(choose_name(0, &tag_only, Some("reg:5000/busybox")).unwrap(), "reg:5000/busybox:layers");
        assert!(matches!(choose_name(0, &tag_only, None), Err(ImportError::NoName { .. })));
        let full_ref = annotations(&[(ANNOTATION_REF_NAME, "docker.io/library/busybox:1.36")]);
        assert_eq!(choose_name(0, &full_ref, None).unwrap(), "docker.io/library/busybox:1.36");
        assert_eq!(choose_name(0, &full_ref, Some("mine")).unwrap(), "mine:1.36");
        let containerd = annotations(&[(ANNOTATION_CONTAINERD_NAME, "docker.io/x/y:2"), (ANNOTATION_REF_NAME, "2")]);
        assert_eq!(choose_name(0, &containerd, None).unwrap(), "docker.io/x/y:2");
    }

    #[test]
    fn tag_detection_ignores_registry_ports() {
        assert!(!has_tag_or_digest("localhost:5000/busybox"));
        assert!(has_tag_or_digest("localhost:5000/busybox:1"));
        assert!(has_tag_or_digest("busybox@sha256:abc"));
        assert_eq!(tag_of("localhost:5000/busybox:1"), Some("1"));
        assert_eq!(tag_of("localhost:5000/busybox"), None);
    }
}
