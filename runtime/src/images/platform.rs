//! Which image of a multi-platform index runs here: the host's platform in OCI spelling, a
//! `--platform os/arch[/variant]` argument, and the choice among an index's descriptors. Archive
//! import and registry pull both choose through [`PlatformSpec::matches`].

use std::fmt;

use oci_spec::image::{Descriptor, Platform};

/// This machine's architecture in OCI (GOARCH) spelling.
pub fn oci_architecture() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum PlatformError {
    #[error("platform {given:?} is not os/arch or os/arch/variant (e.g. linux/amd64, linux/arm64/v8)")]
    Malformed { given: String },
}

/// A wanted platform: `os/arch[/variant]`, compared in OCI (GOOS/GOARCH) spelling.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlatformSpec {
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
}

impl PlatformSpec {
    /// linux on this machine's architecture, any variant.
    pub fn host() -> PlatformSpec {
        PlatformSpec { os: "linux".to_string(), architecture: oci_architecture().to_string(), variant: None }
    }

    /// Parses `os/arch` or `os/arch/variant`.
    pub fn parse(text: &str) -> Result<PlatformSpec, PlatformError> {
        let malformed = || PlatformError::Malformed { given: text.to_string() };
        let parts: Vec<&str> = text.split('/').collect();
        let valid_part = |part: &&str| {
            !part.is_empty() && part.bytes().all(|byte| byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'-')
        };
        if !(2..=3).contains(&parts.len()) || !parts.iter().all(valid_part) {
            return Err(malformed());
        }
        Ok(PlatformSpec {
            os: parts[0].to_ascii_lowercase(),
            architecture: parts[1].to_ascii_lowercase(),
            variant: parts.get(2).map(|variant| variant.to_ascii_lowercase()),
        })
    }

    /// Whether a descriptor's platform fits. A descriptor without one fits (single-platform
    /// layouts leave it out). A wanted variant must match the descriptor's; a descriptor
    /// without a variant counts as its architecture's default (`v8` for arm64).
    pub fn matches(&self, platform: Option<&Platform>) -> bool {
        let Some(platform) = platform else { return true };
        // Compared as text: `Arch` and `Os` keep values they have no variant for as text.
        if platform.os().to_string() != self.os || platform.architecture().to_string() != self.architecture {
            return false;
        }
        match &self.variant {
            None => true,
            Some(wanted) => match platform.variant().as_deref() {
                Some(variant) => variant == wanted,
                None => default_variant(&self.architecture) == Some(wanted.as_str()),
            },
        }
    }

    /// The first descriptor that fits, in the index's order.
    pub fn choose<'a>(&self, descriptors: &'a [Descriptor]) -> Option<&'a Descriptor> {
        descriptors.iter().find(|descriptor| self.matches(descriptor.platform().as_ref()))
    }
}

impl fmt::Display for PlatformSpec {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{}/{}", self.os, self.architecture)?;
        if let Some(variant) = &self.variant {
            write!(formatter, "/{variant}")?;
        }
        Ok(())
    }
}

fn default_variant(architecture: &str) -> Option<&'static str> {
    match architecture {
        "arm64" => Some("v8"),
        _ => None,
    }
}

/// The platforms an index offers, for an error message: `linux/amd64, linux/arm/v7`.
pub fn describe_platforms(descriptors: &[Descriptor]) -> String {
    let platforms: Vec<String> = descriptors
        .iter()
        .map(|descriptor| match descriptor.platform() {
            Some(platform) => match platform.variant() {
                Some(variant) => format!("{}/{}/{variant}", platform.os(), platform.architecture()),
                None => format!("{}/{}", platform.os(), platform.architecture()),
            },
            None => "unspecified".to_string(),
        })
        .collect();
    if platforms.is_empty() {
        "none".to_string()
    } else {
        platforms.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn platform(json: &str) -> Platform {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn parses_two_and_three_parts_and_refuses_the_rest() {
        let spec = PlatformSpec::parse("linux/arm64/v8").unwrap();
        assert_eq!(
            (spec.os.as_str(), spec.architecture.as_str(), spec.variant.as_deref()),
            ("linux", "arm64", Some("v8"))
        );
        assert_eq!(PlatformSpec::parse("Linux/AMD64").unwrap().to_string(), "linux/amd64");
        for bad in ["", "linux", "linux/", "/amd64", "linux/amd64/v1/x", "linux/am d64", "linux//v7"] {
            assert!(PlatformSpec::parse(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn variant_rules() {
        let arm_v7 = platform(r#"{"os":"linux","architecture":"arm","variant":"v7"}"#);
        let arm64_plain = platform(r#"{"os":"linux","architecture":"arm64"}"#);
        assert!(PlatformSpec::parse("linux/arm/v7").unwrap().matches(Some(&arm_v7)));
        assert!(!PlatformSpec::parse("linux/arm/v6").unwrap().matches(Some(&arm_v7)));
        assert!(PlatformSpec::parse("linux/arm").unwrap().matches(Some(&arm_v7)));
        assert!(PlatformSpec::parse("linux/arm64/v8").unwrap().matches(Some(&arm64_plain)));
        assert!(!PlatformSpec::parse("windows/arm64").unwrap().matches(Some(&arm64_plain)));
        assert!(PlatformSpec::parse("linux/s390x").unwrap().matches(None));
    }
}
