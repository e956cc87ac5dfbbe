//! OCI image references the way ignite reads them: `meta.NewOCIImageRef`
//! (`pkg/apis/meta/v1alpha1/image.go`) on top of `reference.ParseDockerRef`
//! from `github.com/containers/image` v3.0.2 (`docker/reference/normalize.go`,
//! `reference.go`, `regexp.go`, a copy of docker/distribution's grammar) and
//! `go-digest`'s digest validation. Used for the image argument of `run` and
//! for `--kernel-image`/`--sandbox-image`.

use crate::log::go_quote;

/// `reference.NameTotalLengthMax`.
const NAME_TOTAL_LENGTH_MAX: usize = 255;

/// `meta.NewOCIImageRef(text)`: the reference in its familiar form with a
/// tag (`weaveworks/ignite-ubuntu:latest`, `ubuntu:20.04`,
/// `localhost:5000/img:latest`), or ignite's error text.
pub fn parse_oci_image_ref(text: &str) -> Result<String, String> {
    if text.len() == 64 && text.bytes().all(|b| matches!(b, b'a'..=b'f' | b'0'..=b'9')) {
        return Err(format!(
            "invalid repository name ({text}), cannot specify 64-byte hexadecimal strings"
        ));
    }
    let (domain, remainder) = split_docker_domain(text);
    let remote_name = remainder.split(':').next().unwrap_or_default();
    if remote_name.to_lowercase() != remote_name {
        return Err("invalid reference format: repository name must be lowercase".to_string());
    }
    let full = format!("{domain}/{remainder}");
    let parsed = match parse(&full) {
        Some(parsed) => parsed,
        None if parse(&full.to_lowercase()).is_some() => {
            return Err("repository name must be lowercase".to_string());
        }
        None => return Err("invalid reference format".to_string()),
    };
    if parsed.name.len() > NAME_TOTAL_LENGTH_MAX {
        return Err(format!(
            "repository name must not be more than {NAME_TOTAL_LENGTH_MAX} characters"
        ));
    }
    if let Some(digest) = parsed.digest {
        validate_digest(digest)?;
        return Err(format!(
            "could not parse image {} with a tag",
            go_quote(text)
        ));
    }
    let tag = parsed.tag.unwrap_or("latest");
    Ok(format!("{}:{tag}", familiar_name(parsed.name)))
}

/// `SplitDockerDomain`: the registry host and the rest, with `docker.io`
/// and `library/` filled in.
fn split_docker_domain(name: &str) -> (String, String) {
    let (mut domain, mut remainder) = match name.split_once('/') {
        Some((first, rest))
            if first.contains('.') || first.contains(':') || first == "localhost" =>
        {
            (first.to_string(), rest.to_string())
        }
        _ => ("docker.io".to_string(), name.to_string()),
    };
    if domain == "index.docker.io" {
        domain = "docker.io".to_string();
    }
    if domain == "docker.io" && !remainder.contains('/') {
        remainder = format!("library/{remainder}");
    }
    (domain, remainder)
}

/// The parts `ReferenceRegexp` captures.
struct Parts<'a> {
    /// The repository name, domain included.
    name: &'a str,
    /// The tag, if any.
    tag: Option<&'a str>,
    /// The digest, if any.
    digest: Option<&'a str>,
}

/// Matches `ReferenceRegexp` (`name [":" tag] ["@" digest]`) anchored.
fn parse(text: &str) -> Option<Parts<'_>> {
    let (rest, digest) = match text.split_once('@') {
        Some((rest, digest)) => (rest, Some(digest)),
        None => (text, None),
    };
    if digest.is_some_and(|d| !is_digest(d)) {
        return None;
    }
    let (name, tag) = match rest.rsplit_once(':') {
        Some((name, tag)) if !tag.contains('/') => (name, Some(tag)),
        _ => (rest, None),
    };
    if tag.is_some_and(|t| !is_tag(t)) || !is_name(name) {
        return None;
    }
    Some(Parts { name, tag, digest })
}

/// `NameRegexp`: `[domain "/"] component ("/" component)*`.
fn is_name(name: &str) -> bool {
    let segments: Vec<&str> = name.split('/').collect();
    let all_components = |segments: &[&str]| segments.iter().all(|s| is_component(s));
    all_components(&segments)
        || (segments.len() > 1 && is_domain(segments[0]) && all_components(&segments[1..]))
}

/// `nameComponent`: `[a-z0-9]+` runs joined by `.`, `_`, `__` or dashes.
fn is_component(component: &str) -> bool {
    let bytes = component.as_bytes();
    let alphanumeric = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if !bytes.first().is_some_and(alphanumeric) || !bytes.last().is_some_and(alphanumeric) {
        return false;
    }
    let mut separators = component.split(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit());
    separators.all(|s| matches!(s, "" | "." | "_" | "__") || s.bytes().all(|b| b == b'-'))
}

/// `domain`: `domainComponent ("." domainComponent)* [":" [0-9]+]`.
fn is_domain(domain: &str) -> bool {
    let (host, port) = match domain.split_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (domain, None),
    };
    if port.is_some_and(|p| p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit())) {
        return false;
    }
    host.split('.').all(|part| {
        let bytes = part.as_bytes();
        !bytes.is_empty()
            && bytes[0].is_ascii_alphanumeric()
            && bytes[bytes.len() - 1].is_ascii_alphanumeric()
            && bytes
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || *b == b'-')
    })
}

/// `tag`: `[\w][\w.-]{0,127}`.
fn is_tag(tag: &str) -> bool {
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let bytes = tag.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 128
        && word(bytes[0])
        && bytes.iter().all(|&b| word(b) || b == b'.' || b == b'-')
}

/// `digestPat`: `algorithm ":" hex{32,}`, the algorithm being
/// `[A-Za-z][A-Za-z0-9]*` parts joined by `-`, `_`, `+` or `.`.
fn is_digest(digest: &str) -> bool {
    let Some((algorithm, hex)) = digest.split_once(':') else {
        return false;
    };
    let part_ok = |p: &str| {
        let bytes = p.as_bytes();
        !bytes.is_empty()
            && bytes[0].is_ascii_alphabetic()
            && bytes.iter().all(u8::is_ascii_alphanumeric)
    };
    algorithm.split(['-', '_', '+', '.']).all(part_ok)
        && hex.len() >= 32
        && hex.bytes().all(|b| b.is_ascii_hexdigit())
}

/// `digest.Parse` (go-digest): sha256/384/512 with lower-case hex of the
/// right length.
fn validate_digest(digest: &str) -> Result<(), String> {
    let (algorithm, encoded) = digest.split_once(':').unwrap_or((digest, ""));
    let length = match algorithm {
        "sha256" => 64,
        "sha384" => 96,
        "sha512" => 128,
        _ => {
            // `DigestRegexpAnchored`: lower-case algorithm parts.
            let lower = algorithm.split(['-', '_', '+', '.']).all(|p| {
                !p.is_empty()
                    && p.bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
            });
            return Err(if lower {
                "unsupported digest algorithm"
            } else {
                "invalid checksum digest format"
            }
            .to_string());
        }
    };
    if encoded.len() != length {
        return Err("invalid checksum digest length".to_string());
    }
    if !encoded
        .bytes()
        .all(|b| matches!(b, b'a'..=b'f' | b'0'..=b'9'))
    {
        return Err("invalid checksum digest format".to_string());
    }
    Ok(())
}

/// `FamiliarName`: drops `docker.io/` and an official `library/` prefix.
fn familiar_name(name: &str) -> &str {
    let Some(path) = name.strip_prefix("docker.io/") else {
        return name;
    };
    match path.strip_prefix("library/") {
        Some(official) if !official.contains('/') => official,
        _ => path,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_like_ignite() {
        let ok = |text: &str| parse_oci_image_ref(text).expect(text);
        assert_eq!(
            ok("weaveworks/ignite-ubuntu"),
            "weaveworks/ignite-ubuntu:latest"
        );
        assert_eq!(ok("docker.io/library/ubuntu:20.04"), "ubuntu:20.04");
        assert_eq!(ok("index.docker.io/foo/bar"), "foo/bar:latest");
        assert_eq!(ok("localhost:5000/img"), "localhost:5000/img:latest");
        assert_eq!(
            ok("Registry.Example.com/a/b:V1"),
            "Registry.Example.com/a/b:V1"
        );
        assert_eq!(ok("img:1.0"), "img:1.0");
        assert_eq!(ok("a__b/c--d/e.f_g"), "a__b/c--d/e.f_g:latest");
    }

    #[test]
    fn refuses_like_ignite() {
        let err = |text: &str| parse_oci_image_ref(text).unwrap_err();
        assert_eq!(
            err("Ubuntu"),
            "invalid reference format: repository name must be lowercase"
        );
        assert_eq!(err(""), "invalid reference format");
        assert_eq!(err("foo:bar:baz"), "invalid reference format");
        assert_eq!(err("a/-b"), "invalid reference format");
        assert_eq!(err("img:-tag"), "invalid reference format");
        assert_eq!(err("a___b"), "invalid reference format");
        assert_eq!(
            err(&"a".repeat(64)),
            format!(
                "invalid repository name ({}), cannot specify 64-byte hexadecimal strings",
                "a".repeat(64)
            )
        );
        assert_eq!(
            err(&format!("x/{}", "a".repeat(250))),
            "repository name must not be more than 255 characters"
        );
        let digest = format!("img@sha256:{}", "0".repeat(64));
        assert_eq!(
            err(&digest),
            format!("could not parse image \"{digest}\" with a tag")
        );
        assert_eq!(
            err(&format!("img@sha256:{}", "0".repeat(40))),
            "invalid checksum digest length"
        );
        assert_eq!(
            err(&format!("img@md5:{}", "0".repeat(32))),
            "unsupported digest algorithm"
        );
    }
}
