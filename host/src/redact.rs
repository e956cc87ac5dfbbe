//! Keeping secrets and forged lines out of what Vessel prints: passwords in
//! URLs, secret-looking settings, and control characters in text that
//! plugins and drivers wrote.

/// `url` with its password replaced by `***`: the password of its user
/// info (`redis://:hunter2@host/0` becomes `redis://:***@host/0`) and a
/// `pass` or `password` query parameter, where Redis URLs of a Unix socket
/// carry it (`redis+unix:///run/redis.sock?pass=hunter2` becomes
/// `...?pass=***`). Text that is not a URL with a password comes back as
/// it is.
pub fn url(url: &str) -> String {
    url_with_mask(url, "***")
}

/// `url` with its passwords replaced by `mask`, as [`url`] does with
/// `***`.
pub fn url_with_mask(url: &str, mask: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    // Two independent passes, so that a password holding '?' or '@' is
    // hidden whichever way it is read.
    let rest = mask_user_info(rest, mask);
    match rest.split_once('?') {
        Some((before, query)) => format!("{scheme}://{before}?{}", mask_query(query, mask)),
        None => format!("{scheme}://{rest}"),
    }
}

/// `rest` (a URL after its `scheme://`) with the password of its user info
/// replaced by `mask`; the user info ends at the last '@' before the path.
fn mask_user_info(rest: &str, mask: &str) -> String {
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let Some(at) = rest[..authority_end].rfind('@') else {
        return rest.to_string();
    };
    match rest[..at].split_once(':') {
        Some((user, _password)) => format!("{user}:{mask}{}", &rest[at..]),
        None => rest.to_string(),
    }
}

/// `query` with the value of each `pass` or `password` parameter replaced
/// by `mask`.
fn mask_query(query: &str, mask: &str) -> String {
    query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((name, _))
                if name.eq_ignore_ascii_case("pass") || name.eq_ignore_ascii_case("password") =>
            {
                format!("{name}={mask}")
            }
            _ => pair.to_string(),
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// Whether a setting or variable named `name` probably holds a secret, so
/// that its value is not printed.
pub fn is_secret_name(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    [
        "token",
        "password",
        "passwd",
        "secret",
        "key",
        "credential",
        "auth",
    ]
    .iter()
    .any(|word| name.contains(word))
}

/// `text` (from a plugin, a driver or a tool it ran) fit for one log line:
/// control characters are written as escapes (`\n`, `\u{1b}`), so text
/// cannot forge log lines or terminal sequences. Everything else is kept.
pub fn log_text(text: &str) -> String {
    if !text.chars().any(char::is_control) {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_in_urls_are_hidden() {
        assert_eq!(
            url("redis://:hunter2@127.0.0.1:6379/0"),
            "redis://:***@127.0.0.1:6379/0"
        );
        assert_eq!(url("redis://admin:p@ss@host/1"), "redis://admin:***@host/1");
        assert_eq!(url("redis://host:6379"), "redis://host:6379");
        assert_eq!(url("redis://user@host"), "redis://user@host");
        assert_eq!(url("not a url"), "not a url");
    }

    #[test]
    fn passwords_in_the_query_of_a_unix_socket_url_are_hidden() {
        assert_eq!(
            url("redis+unix:///run/redis/redis.sock?db=2&pass=hunter2&user=vessel"),
            "redis+unix:///run/redis/redis.sock?db=2&pass=***&user=vessel"
        );
        assert_eq!(
            url("unix:///tmp/r.sock?PASSWORD=a@b/c?d"),
            "unix:///tmp/r.sock?PASSWORD=***"
        );
        assert_eq!(
            url("redis+unix:///tmp/r.sock?db=0"),
            "redis+unix:///tmp/r.sock?db=0"
        );
        // A path with an '@' is not user info.
        assert_eq!(
            url("redis+unix:///srv/a@b/r.sock?pass=x"),
            "redis+unix:///srv/a@b/r.sock?pass=***"
        );
        assert_eq!(
            url("redis://:s3cret@127.0.0.1:6379/0?protocol=resp3"),
            "redis://:***@127.0.0.1:6379/0?protocol=resp3"
        );
        // A '?' in the password of the user info is not a query.
        assert_eq!(url("redis://:pa?ss@host/0"), "redis://:***@host/0");
        assert_eq!(url("redis://host?pass=x"), "redis://host?pass=***");
        // Nor is an '@' in a query's password the end of a user info.
        assert_eq!(url("redis://host?pass=a@b"), "redis://host?pass=***");
    }

    #[test]
    fn control_characters_cannot_forge_lines() {
        let forged = "ok\n2026-12-01T00:00:00Z INFO session stopped\u{1b}[2J";
        let safe = log_text(forged);
        assert!(!safe.contains('\n') && !safe.contains('\u{1b}'), "{safe}");
        assert!(safe.contains("ok\\n2026"));
        assert_eq!(log_text("plain text, ünïcode"), "plain text, ünïcode");
    }

    #[test]
    fn secret_names_are_recognised() {
        for name in [
            "API_TOKEN",
            "password",
            "aws_secret_access_key",
            "Authorization",
        ] {
            assert!(is_secret_name(name), "{name}");
        }
        for name in ["PATH", "url_template", "mode", "listen"] {
            assert!(!is_secret_name(name), "{name}");
        }
    }
}
