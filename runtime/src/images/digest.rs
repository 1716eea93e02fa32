//! Digests as berth spells them (`sha256:<64 lower-case hex>`), and chain ids: the names of
//! blobs in the content store and of unpacked layers in the snapshotter.

use sha2::{Digest as _, Sha256};

pub const DIGEST_ALGORITHM_PREFIX: &str = "sha256:";

/// A string that is not `sha256:` followed by 64 lower-case hex digits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid digest {digest:?}: a digest must be \"sha256:\" followed by 64 lower-case hex digits")]
pub struct InvalidDigest {
    pub digest: String,
}

/// Checks that `digest` is `sha256:<64 lower-case hex>` and returns the hex part.
///
/// Upper-case hex is refused on purpose: two spellings of one digest would give two file names.
pub fn digest_hex(digest: &str) -> Result<&str, InvalidDigest> {
    let invalid = || InvalidDigest { digest: digest.to_string() };
    let hex_part = digest.strip_prefix(DIGEST_ALGORITHM_PREFIX).ok_or_else(invalid)?;
    let is_lower_hex = |byte: u8| byte.is_ascii_digit() || (b'a'..=b'f').contains(&byte);
    if hex_part.len() != 64 || !hex_part.bytes().all(is_lower_hex) {
        return Err(invalid());
    }
    Ok(hex_part)
}

/// The `sha256:<hex>` spelling of a finished hasher.
pub fn digest_of_hasher(hasher: Sha256) -> String {
    format!("{DIGEST_ALGORITHM_PREFIX}{}", hex::encode(hasher.finalize()))
}

/// The `sha256:<hex>` digest of a byte slice.
pub fn digest_of_bytes(bytes: &[u8]) -> String {
    let mut hasher = Sha256::new();
    hasher.update(bytes);
    digest_of_hasher(hasher)
}

/// Chain ids for a stack of diff ids (OCI image spec): the first equals the first diff id; each
/// next one is `sha256(previous chain id + " " + diff id)`. A chain id names a layer *with* all
/// layers beneath it, which is what an unpacked overlay lower really is.
pub fn chain_ids(diff_ids: &[String]) -> Vec<String> {
    let mut chain: Vec<String> = Vec::with_capacity(diff_ids.len());
    for diff_id in diff_ids {
        let next = match chain.last() {
            None => diff_id.clone(),
            Some(previous) => {
                let mut hasher = Sha256::new();
                hasher.update(previous.as_bytes());
                hasher.update(b" ");
                hasher.update(diff_id.as_bytes());
                digest_of_hasher(hasher)
            }
        };
        chain.push(next);
    }
    chain
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_hex_accepts_only_lower_case_sha256() {
        let good = format!("sha256:{}", "a".repeat(64));
        assert_eq!(digest_hex(&good).unwrap(), "a".repeat(64));
        for bad in [
            "",
            "sha256:",
            "sha512:abc",
            &format!("sha256:{}", "A".repeat(64)),
            &format!("sha256:{}/..", "a".repeat(61)),
        ] {
            assert_eq!(digest_hex(bad), Err(InvalidDigest { digest: bad.to_string() }), "{bad}");
        }
    }

    #[test]
    fn chain_ids_follow_the_image_spec() {
        let diff_ids = vec![digest_of_bytes(b"a"), digest_of_bytes(b"b")];
        let chain = chain_ids(&diff_ids);
        assert_eq!(chain[0], diff_ids[0]);
        assert_eq!(chain[1], digest_of_bytes(format!("{} {}", diff_ids[0], diff_ids[1]).as_bytes()));
        assert!(chain_ids(&[]).is_empty());
    }
}
