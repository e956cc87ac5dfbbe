//! Keeping secrets and forged lines out of what Vessel prints: passwords in
//! URLs, secret-looking settings, and control characters in text that
//! plugins and drivers wrote.

/// `url` with the password of its user info replaced by `***`
/// (`redis://:hunter2@host/0` becomes `redis://:***@host/0`). Text that is
/// not a URL with a password comes back as it is.
pub fn url(url: &str) -> String {
    url_with_mask(url, "***")
}

/// `url` with the password of its user info replaced by `mask`, as
/// [`url`] does with `***`.
pub fn url_with_mask(url: &str, mask: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    // The user info ends at the last '@' before the path.
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let Some(at) = rest[..authority_end].rfind('@') else {
        return url.to_string();
    };
    let (user_info, host) = (&rest[..at], &rest[at..]);
    match user_info.split_once(':') {
        Some((user, _password)) => format!("{scheme}://{user}:{mask}{host}"),
        None => url.to_string(),
    }
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
