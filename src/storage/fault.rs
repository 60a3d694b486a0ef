//! Storage failures sorted into what an operator can act on: a missing container, refused credentials, no credential at all, an unreachable account.
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
    /// No credential source gave a token: the storage account was never asked.
    NoCredential,
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
        } else if TOKEN_FAILURES.iter().any(|t| has(t)) {
            // Before the status codes and network errors: a token endpoint's
            // 400 or 401, or its closed port, is not the storage account's. But
            // one that timed out or answered 5xx or 429 past every retry (the
            // instance metadata endpoint down for a while) may answer the next
            // attempt: a failure to retry (exit 1), not a missing identity.
            if TOKEN_OUTAGES.iter().any(|t| has(t)) {
                Fault::Unreachable
            } else {
                Fault::NoCredential
            }
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
        matches!(
            self,
            Fault::ContainerMissing | Fault::AuthRefused | Fault::NoCredential
        )
    }
}

/// How object_store's Azure credentials say they got no token (its
/// `azure::credential::Error`): the token request (environment, workload or
/// managed identity) or the Azure CLI failed.
const TOKEN_FAILURES: [&str; 5] = [
    "Error performing token request",
    "Error getting token response body",
    "Error reading federated token file",
    "'az account get-access-token' command failed",
    "Failed to parse azure cli response",
];

/// How a token endpoint that exists says it could not answer now.
const TOKEN_OUTAGES: [&str; 8] = [
    "500 Internal Server Error",
    "502 Bad Gateway",
    "503 Service Unavailable",
    "504 Gateway Timeout",
    "429 Too Many Requests",
    "operation timed out",
    "timed out",
    "Connection reset",
];

/// The managed identity endpoint object_store asks when no other credential is set.
const IMDS: &str = "http://169.254.169.254/metadata/identity/oauth2/token";

/// Which credential sources the environment sets up, in the order object_store
/// picks the one it uses (it uses one: the first set up), each with what it
/// needs; the last, managed identity, is what is left when none is.
pub fn credential_sources(env: impl Fn(&str) -> Option<String>) -> String {
    let set = |k: &str| env(k).is_some_and(|v| !v.trim().is_empty());
    let any = |ks: &[&str]| ks.iter().any(|k| set(k));
    let all = |ks: &[&str]| ks.iter().all(|k| set(k));
    let client = ["AZURE_CLIENT_ID", "AZURE_STORAGE_CLIENT_ID"];
    let tenant = ["AZURE_TENANT_ID", "AZURE_STORAGE_TENANT_ID"];
    let yes_no = |b: bool| if b { "set" } else { "not set" };
    let keys = any(&[
        "AZURE_STORAGE_ACCOUNT_KEY",
        "AZURE_STORAGE_ACCESS_KEY",
        "AZURE_STORAGE_SAS_TOKEN",
        "AZURE_STORAGE_SAS_KEY",
        "AZURE_STORAGE_TOKEN",
    ]);
    let principal = any(&client)
        && any(&tenant)
        && any(&["AZURE_CLIENT_SECRET", "AZURE_STORAGE_CLIENT_SECRET"]);
    let workload = any(&client) && any(&tenant) && all(&["AZURE_FEDERATED_TOKEN_FILE"]);
    let cli = env("AZURE_USE_AZURE_CLI").is_some_and(|v| v.trim().eq_ignore_ascii_case("true"));
    let endpoint = env("IDENTITY_ENDPOINT")
        .or_else(|| env("AZURE_MSI_ENDPOINT"))
        .unwrap_or_else(|| IMDS.to_string());
    let used = if keys {
        "an account key, SAS or bearer token from the environment"
    } else if workload {
        "workload identity"
    } else if principal {
        "the service principal in the environment"
    } else if cli {
        "the Azure CLI"
    } else {
        "managed identity"
    };
    format!(
        "tried {used}. Environment: account key or SAS (AZURE_STORAGE_ACCOUNT_KEY, AZURE_STORAGE_SAS_TOKEN) {},          service principal (AZURE_CLIENT_ID, AZURE_TENANT_ID, AZURE_CLIENT_SECRET) {};          workload identity (AZURE_CLIENT_ID, AZURE_TENANT_ID, AZURE_FEDERATED_TOKEN_FILE) {};          Azure CLI (AZURE_USE_AZURE_CLI=true after `az login`) {};          managed identity (endpoint {}){}",
        yes_no(keys),
        yes_no(principal),
        yes_no(workload),
        yes_no(cli),
        redact_url(&endpoint),
        if used == "managed identity" {
            ": asked, as nothing else is set"
        } else {
            ": not asked"
        },
    )
}

/// An error and all its causes, one per line.
pub fn chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = String::new();
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = cur {
        let full = e.to_string();
        let line = without_backtrace(&full);
        if !text.contains(line) {
            if !text.is_empty() {
                text.push('\n');
            }
            text.push_str(line);
        }
        cur = e.source();
    }
    text
}

/// `message` without the backtrace some errors carry in their text (the Delta
/// kernel's, when `RUST_BACKTRACE` is set: `\n   0: buoyant_kernel::…`, eighty
/// frames), which would bury the cause in a report or a log line.
fn without_backtrace(message: &str) -> &str {
    let mut at = 0;
    for line in message.split_inclusive('\n') {
        let frame = line.trim_start();
        let digits = frame.bytes().take_while(u8::is_ascii_digit).count();
        if at > 0 && digits > 0 && frame[digits..].starts_with(": ") {
            return message[..at].trim_end();
        }
        at += line.len();
    }
    message
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
        Fault::NoCredential => format!(
            "no Azure credential gave a token, so the storage account was not asked: {}. Set one of them (on Azure Batch or a VM: assign the pool a managed identity, and name it with AZURE_CLIENT_ID when there are several; see the README). The token request said: {}",
            credential_sources(|k| std::env::var(k).ok()),
            first_line()
        ),
        Fault::Unreachable => format!(
            "the storage account is unreachable (network, DNS or endpoint; retried before giving up): {}",
            first_line()
        ),
        Fault::Other => without_backtrace(&source.to_string()).to_string(),
    }
}

/// Environment variables whose values are secrets.
const SECRET_VARS: [&str; 10] = [
    "AZURE_STORAGE_CLIENT_SECRET",
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

/// What in a location would be a credential: a query string (a SAS: `sv`,
/// `sig`, `se`, `skoid`, …) or a password in its user-info. coldpath takes
/// credentials only from the environment, never from a URL, so such a location
/// is refused; this says why, without repeating the secret.
pub fn url_secret(location: &str) -> Option<&'static str> {
    if location.contains("://") && location.contains('?') {
        return Some("carries a query string (a SAS token?)");
    }
    let url = url::Url::parse(location).ok()?;
    if url.query().is_some() {
        Some("carries a query string (a SAS token?)")
    } else if url.password().is_some() {
        Some("carries a password in its user-info")
    } else {
        None
    }
}

/// A URL as it may be shown: its query string (and fragment) becomes `***`,
/// and so does its user-info, except the container that `abfs(s)://container@account` names.
pub fn redact_url(location: &str) -> String {
    let Ok(mut url) = url::Url::parse(location) else {
        return location.to_string();
    };
    if url.cannot_be_a_base() {
        return location.to_string();
    }
    if url.query().is_some() {
        url.set_query(Some("***"));
    }
    if url.fragment().is_some() {
        url.set_fragment(Some("***"));
    }
    if url.password().is_some() {
        let _ = url.set_password(Some("***"));
    }
    let container_name = matches!(url.scheme(), "abfs" | "abfss");
    if !url.username().is_empty() && !container_name {
        let _ = url.set_username("***");
    }
    url.to_string()
}

/// Every URL in `text` through [`redact_url`]; a URL runs to the next space or quote.
fn redact_urls(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        let start = rest[..at]
            .rfind(|c: char| !(c.is_ascii_alphanumeric() || c == '+' || c == '-' || c == '.'))
            .map_or(0, |i| i + 1);
        let len = rest[at..]
            .find(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | '`' | '<' | '>' | '\\'))
            .unwrap_or(rest.len() - at);
        let end = at + len;
        out.push_str(&rest[..start]);
        out.push_str(&redact_url(&rest[start..end]));
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

/// `text` with every secret from the environment replaced by `***`, and every
/// URL's query string and user-info (as `redact_url` does); a stray `sig=…` too.
pub fn redact(text: &str) -> String {
    let mut out = redact_urls(text);
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
        // A token endpoint that refused or was not there is no refusal by the account.
        for text in [
            "Generic MicrosoftAzure error: Error performing token request: HTTP error: error sending request\ntcp connect error: Connection refused",
            "Error performing token request: Client error with status 400 Bad Request: Identity not found",
            "Error performing token request: 401 Unauthorized",
            "'az account get-access-token' command failed: Please run 'az login'",
        ] {
            assert_eq!(Fault::of_text(text), Fault::NoCredential, "{text}");
        }
        assert!(Fault::NoCredential.is_config());
        // One that is there but down, past every retry, is worth another attempt.
        for text in [
            "Error performing token request: Error after 10 retries in 180s, max_retries:10, retry_timeout:180s, source:HTTP status server error (503 Service Unavailable) for url (http://169.254.169.254/metadata/identity/oauth2/token)",
            "Error performing token request: HTTP error: error sending request\noperation timed out",
            "Error performing token request: Client error with status 429 Too Many Requests",
        ] {
            assert_eq!(Fault::of_text(text), Fault::Unreachable, "{text}");
        }
    }

    /// A backtrace in an error's text (the Delta kernel's, with
    /// `RUST_BACKTRACE` set) is left out; the message before it stays.
    #[test]
    fn an_errors_backtrace_is_left_out_of_its_text() {
        let kernel = "Kernel error: Json error: unexpected 'h'\n   0: buoyant_kernel::error::Error::with_backtrace\n   1: core::ops::function::FnMut::call_mut\n             at ./src/lib.rs:1:1\n";
        assert_eq!(
            without_backtrace(kernel),
            "Kernel error: Json error: unexpected 'h'"
        );
        let plain = "HTTP status 503\n2 retries";
        assert_eq!(without_backtrace(plain), plain);
        assert_eq!(
            without_backtrace("10: not a frame on the first line"),
            "10: not a frame on the first line"
        );
    }

    #[test]
    fn the_credential_sources_say_which_was_tried_and_what_is_missing() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(key, _)| *key == k)
                    .map(|(_, v)| v.to_string())
            }
        };
        let none = credential_sources(env(&[]));
        assert!(none.starts_with("tried managed identity."), "{none}");
        for word in [
            "AZURE_STORAGE_ACCOUNT_KEY",
            "AZURE_CLIENT_SECRET",
            "AZURE_FEDERATED_TOKEN_FILE",
            "AZURE_USE_AZURE_CLI",
            "169.254.169.254",
            "asked, as nothing else is set",
        ] {
            assert!(none.contains(word), "{word}: {none}");
        }
        assert_eq!(none.matches("not set").count(), 4, "{none}");
        let closed = credential_sources(env(&[("IDENTITY_ENDPOINT", "http://127.0.0.1:9/token")]));
        assert!(
            closed.contains("endpoint http://127.0.0.1:9/token"),
            "{closed}"
        );
        let workload = credential_sources(env(&[
            ("AZURE_CLIENT_ID", "c"),
            ("AZURE_TENANT_ID", "t"),
            ("AZURE_FEDERATED_TOKEN_FILE", "/var/run/token"),
        ]));
        assert!(
            workload.starts_with("tried workload identity."),
            "{workload}"
        );
        assert!(workload.ends_with(": not asked"), "{workload}");
        let cli = credential_sources(env(&[("AZURE_USE_AZURE_CLI", "true")]));
        assert!(cli.starts_with("tried the Azure CLI."), "{cli}");
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

    #[test]
    fn urls_lose_their_query_string_and_user_info_everywhere_in_a_text() {
        let text = r#"{"source": "https://acct.blob.core.windows.net/raw?sv=2022-11-02&ss=b&srt=co&sp=rl&se=2030-01-01&skoid=k1&sig=S3CR3T", "lake": "az://u:p4ss@lake/iot"} and `abfss://raw@acct.dfs.core.windows.net/t?sig=X`"#;
        let out = redact(text);
        for secret in ["S3CR3T", "sv=", "skoid", "se=2030", "p4ss", "sig=X"] {
            assert!(!out.contains(secret), "{secret} in {out}");
        }
        assert!(
            out.contains("https://acct.blob.core.windows.net/raw?***"),
            "{out}"
        );
        assert!(
            out.contains("abfss://raw@acct.dfs.core.windows.net/t?***"),
            "{out}"
        );
        assert!(out.contains("az://***:***@lake/iot"), "{out}");
        // Plain locations are unchanged.
        assert_eq!(
            redact("az://raw/telemetry and ./lake"),
            "az://raw/telemetry and ./lake"
        );
    }

    #[test]
    fn redacting_a_json_text_keeps_it_json() {
        let report = serde_json::json!({"error": "GET https://a.blob.core.windows.net/raw?sv=1&sig=S3CR3T\nfailed", "lake": "https://a/lake\\x"});
        let text = redact(&serde_json::to_string(&report).unwrap());
        let back: serde_json::Value = serde_json::from_str(&text).unwrap();
        let error = back["error"].as_str().unwrap();
        assert!(
            !error.contains("S3CR3T") && error.ends_with("?***\nfailed"),
            "{error}"
        );
    }

    #[test]
    fn credentials_in_a_location_are_named_not_repeated() {
        assert!(url_secret("https://a.blob.core.windows.net/raw?sv=1&sig=abc").is_some());
        assert!(url_secret("az://user:pw@raw/x").is_some());
        assert!(url_secret("abfss://raw@acct.dfs.core.windows.net/x").is_none());
        assert!(url_secret("./lake").is_none());
        // A query that makes the URL unparseable is still a query.
        assert!(url_secret("https://[bad?sig=abc").is_some());
        let why = url_secret("https://a/raw?sig=abc").unwrap_or_default();
        assert!(!why.contains("abc"));
    }
}
