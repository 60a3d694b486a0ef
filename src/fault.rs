//! Storage failures sorted into what an operator can act on: a missing container, refused credentials, an unreachable account.
//!
//! object_store reports most Azure failures as a generic error whose text holds
//! the HTTP status and the service's error code, so the kind is read from the
//! whole chain of causes. Also home of [`redact`]: nothing secret leaves the process.

use std::fmt;

/// What kind of storage failure an error is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    ContainerMissing,
    AuthRefused,
    Unreachable,
    Other,
}

impl Fault {
    /// Reads the kind of an error from its whole chain of causes.
    pub fn of(err: &(dyn std::error::Error + 'static)) -> Fault {
        Fault::of_text(&chain(err))
    }

    pub fn of_text(text: &str) -> Fault {
        let has = |needle: &str| text.contains(needle);
        if has("ContainerNotFound") || has("FilesystemNotFound") {
            Fault::ContainerMissing
        } else if has("AuthenticationFailed")
            || has("AuthorizationFailure")
            || has("AuthorizationPermissionMismatch")
            || has("InvalidAuthenticationInfo")
            || has("403 Forbidden")
            || has("401 Unauthorized")
            || has("NoAuthenticationInformation")
        {
            Fault::AuthRefused
        } else if has("error sending request")
            || has("dns error")
            || has("Connection refused")
            || has("tcp connect error")
            || has("operation timed out")
        {
            Fault::Unreachable
        } else {
            Fault::Other
        }
    }

    /// Configuration problems (exit 2): the run cannot succeed until someone changes something.
    pub fn is_config(self) -> bool {
        matches!(self, Fault::ContainerMissing | Fault::AuthRefused)
    }
}

/// An error and all its causes, one per line.
pub fn chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = String::new();
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = cur {
        let line = e.to_string();
        if !text.contains(&line) {
            if !text.is_empty() {
                text.push('\n');
            }
            text.push_str(&line);
        }
        cur = e.source();
    }
    text
}

/// The operator's sentence for a storage fault, followed by the store's own
/// first line when it adds something (auth, network) or its whole text (other).
pub fn describe(fault: Fault, container: Option<&str>, source: &dyn fmt::Display) -> String {
    let first_line = || {
        source
            .to_string()
            .lines()
            .next()
            .unwrap_or_default()
            .to_string()
    };
    match fault {
        Fault::ContainerMissing => match container {
            Some(c) => format!("container `{c}` does not exist"),
            None => "the container does not exist".to_string(),
        },
        Fault::AuthRefused => format!(
            "authentication refused by the storage account (check the AZURE_* credentials or the identity's role; see the README): {}",
            first_line()
        ),
        Fault::Unreachable => format!(
            "the storage account is unreachable (network, DNS or endpoint; retried before giving up): {}",
            first_line()
        ),
        Fault::Other => source.to_string(),
    }
}

/// Environment variables whose values are secrets.
const SECRET_VARS: [&str; 9] = [
    "AZURE_STORAGE_ACCOUNT_KEY",
    "AZURE_STORAGE_ACCESS_KEY",
    "AZURE_STORAGE_MASTER_KEY",
    "AZURE_STORAGE_KEY",
    "AZURE_CLIENT_SECRET",
    "AZURE_STORAGE_SAS_KEY",
    "AZURE_STORAGE_SAS_TOKEN",
    "AZURE_STORAGE_TOKEN",
    "AZURE_STORAGE_CONNECTION_STRING",
];

/// `text` with every secret from the environment and every SAS signature (`sig=…`) replaced by `***`.
pub fn redact(text: &str) -> String {
    let mut out = text.to_string();
    for var in SECRET_VARS {
        if let Ok(value) = std::env::var(var) {
            let value = value.trim();
            if value.len() >= 8 {
                out = out.replace(value, "***");
            }
        }
    }
    redact_query_param(&out, "sig=")
}

fn redact_query_param(text: &str, key: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(key) {
        let value_start = at + key.len();
        out.push_str(&rest[..value_start]);
        out.push_str("***");
        let tail = &rest[value_start..];
        let end = tail
            .find(|c: char| c == '&' || c.is_whitespace() || c == '"' || c == '\'')
            .unwrap_or(tail.len());
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_from_azure_error_text() {
        assert_eq!(
            Fault::of_text("Server returned non-2xx status code: 404 Not Found: <Code>ContainerNotFound</Code>"),
            Fault::ContainerMissing
        );
        assert_eq!(
            Fault::of_text("403 Forbidden: <Code>AuthenticationFailed</Code>"),
            Fault::AuthRefused
        );
        assert_eq!(
            Fault::of_text("after 10 retries - HTTP error: error sending request"),
            Fault::Unreachable
        );
        assert_eq!(Fault::of_text("500 Internal Server Error"), Fault::Other);
        assert!(Fault::AuthRefused.is_config() && !Fault::Unreachable.is_config());
    }

    #[test]
    fn sas_signatures_are_redacted() {
        let text = "GET https://a.blob.core.windows.net/raw?restype=container&sv=2022&sig=abc%2Fdef&se=1 failed";
        assert_eq!(
            redact_query_param(text, "sig="),
            "GET https://a.blob.core.windows.net/raw?restype=container&sv=2022&sig=***&se=1 failed"
        );
        assert_eq!(redact_query_param("sig=x", "sig="), "sig=***");
    }
}
