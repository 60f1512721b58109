//! The name a container gets in its ovnet network: `K8S_POD_NAME` from `CNI_ARGS` when the
//! runtime gives one, else the container id.
//!
//! An ovnet name is `[a-zA-Z0-9][a-zA-Z0-9_.-]*`, and the network's resolver answers it as a
//! DNS label, at most 63 bytes. A pod name or container id that fits both is used as it is.
//! Anything else (a 64-hex container id, a long or odd pod name) is mapped: characters outside
//! the set become `-`, the text is cut to [`KEPT`] characters, and `-` plus [`HASH_HEX`] hex
//! digits of a hash of the whole original is appended. The mapping is a function of the
//! original alone, so ADD on any host gives the same name, and two originals that share a long
//! prefix still get different names.

/// Longest name given: a DNS label.
pub const MAX_NAME_LEN: usize = 63;
/// Hex digits of the hash in a mapped name: 48 bits, so two mapped names in one network
/// collide with a probability of about n²/2⁴⁹ (below 10⁻⁸ for a thousand containers).
const HASH_HEX: usize = 12;
/// Characters of the original kept in a mapped name, so that it ends within [`MAX_NAME_LEN`].
const KEPT: usize = MAX_NAME_LEN - 1 - HASH_HEX;

/// The key of `CNI_ARGS` whose value names the container.
pub const POD_NAME_ARG: &str = "K8S_POD_NAME";

/// FNV-1a, 64 bits (offset basis and prime from the FNV reference): stable across builds and
/// hosts, unlike `std`'s hasher.
fn fnv1a(bytes: &[u8]) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    bytes
        .iter()
        .fold(OFFSET, |h, b| (h ^ u64::from(*b)).wrapping_mul(PRIME))
}

fn allowed(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')
}

/// Whether `s` is an ovnet name that is also a DNS label.
fn fits(s: &str) -> bool {
    s.len() <= MAX_NAME_LEN
        && s.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && s.chars().all(allowed)
}

/// `original` if it fits, else its mapped form (see the module doc).
pub fn map_name(original: &str) -> String {
    if fits(original) {
        return original.to_owned();
    }
    let cleaned: String = original
        .chars()
        .map(|c| if allowed(c) { c } else { '-' })
        .skip_while(|c| !c.is_ascii_alphanumeric())
        .take(KEPT)
        .collect();
    let hash = format!("{:016x}", fnv1a(original.as_bytes()));
    let hash = &hash[..HASH_HEX];
    if cleaned.is_empty() {
        hash.to_owned()
    } else {
        format!("{cleaned}-{hash}")
    }
}

/// The container's name: `K8S_POD_NAME` when given and not empty, else the container id;
/// mapped by [`map_name`].
pub fn container_name(pod_name: Option<&str>, container_id: &str) -> String {
    map_name(pod_name.filter(|p| !p.is_empty()).unwrap_or(container_id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_fit_are_kept() {
        for ok in ["web-0", "a", "nginx.default", &"a".repeat(63)] {
            assert_eq!(map_name(ok), ok);
        }
        assert_eq!(container_name(Some("web-0"), "c1"), "web-0");
        assert_eq!(container_name(Some(""), "c1"), "c1");
        assert_eq!(container_name(None, "c1"), "c1");
    }

    #[test]
    fn everything_else_is_mapped_into_a_dns_label_deterministically() {
        let id = "0123456789abcdef".repeat(4);
        let n = map_name(&id);
        assert_eq!(n.len(), MAX_NAME_LEN);
        assert!(n.starts_with(&id[..KEPT]), "{n}");
        assert_eq!(n, map_name(&id), "the same id maps to the same name");
        // Ids that differ only past the kept prefix still differ.
        let other = format!("{}0", &id[..63]);
        assert_ne!(map_name(&other), n);
        for original in [
            "-leading",
            "with space",
            "ünïcode-pod",
            "a/b:c",
            &"x".repeat(300),
            "---",
        ] {
            let m = map_name(original);
            assert!(fits(&m), "{original:?} → {m:?}");
            assert_ne!(m, original);
        }
        assert_eq!(
            map_name("with space"),
            format!(
                "with-space-{}",
                &format!("{:016x}", fnv1a(b"with space"))[..12]
            )
        );
    }

    #[test]
    fn fnv1a_matches_the_reference_vectors() {
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a(b"foobar"), 0x8594_4171_f739_67e8);
    }
}
