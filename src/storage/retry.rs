//! Retries and timeouts for every storage request: one `[storage]` section of the job file, applied alike to the source (object_store) and the lake (deltalake).
//!
//! The defaults are object_store's own, written out so that the run report and
//! the README can say what they are.

use std::collections::HashMap;
use std::time::Duration;

use deltalake::logstore::object_store::{
    azure::{AzureConfigKey, MicrosoftAzureBuilder},
    BackoffConfig, ClientConfigKey, RetryConfig,
};

/// How hard a storage request is tried before it is an error.
#[derive(Debug, Clone, PartialEq)]
pub struct StorageSettings {
    /// Retries of a request that failed transiently (5xx, timeout, connection reset); 0 disables them.
    pub max_retries: usize,
    /// No retry starts later than this after the first attempt.
    pub retry_timeout: Duration,
    /// One request, from connect to the last byte.
    pub request_timeout: Duration,
    /// The connect phase of one request.
    pub connect_timeout: Duration,
}

impl Default for StorageSettings {
    fn default() -> Self {
        StorageSettings {
            max_retries: 10,
            retry_timeout: Duration::from_secs(180),
            request_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(5),
        }
    }
}

fn secs(d: Duration) -> String {
    format!("{}ms", d.as_millis())
}

impl StorageSettings {
    /// object_store's retry policy.
    pub fn retry_config(&self) -> RetryConfig {
        RetryConfig {
            backoff: BackoffConfig::default(),
            max_retries: self.max_retries,
            retry_timeout: self.retry_timeout,
        }
    }

    /// Applies the settings to an Azure store builder (keeping what `from_env` set).
    pub fn apply(&self, builder: MicrosoftAzureBuilder) -> MicrosoftAzureBuilder {
        builder
            .with_retry(self.retry_config())
            .with_config(
                AzureConfigKey::Client(ClientConfigKey::Timeout),
                secs(self.request_timeout),
            )
            .with_config(
                AzureConfigKey::Client(ClientConfigKey::ConnectTimeout),
                secs(self.connect_timeout),
            )
    }

    /// The same settings as deltalake storage options (its Azure factory reads
    /// the retry keys into object_store's `RetryConfig` and passes the client keys on).
    pub fn delta_options(&self) -> HashMap<String, String> {
        HashMap::from([
            ("max_retries".to_string(), self.max_retries.to_string()),
            ("retry_timeout".to_string(), secs(self.retry_timeout)),
            ("timeout".to_string(), secs(self.request_timeout)),
            ("connect_timeout".to_string(), secs(self.connect_timeout)),
        ])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delta_options_parse_back_to_the_same_retry_config() {
        let s = StorageSettings {
            max_retries: 3,
            retry_timeout: Duration::from_secs(42),
            request_timeout: Duration::from_millis(1500),
            connect_timeout: Duration::from_secs(2),
        };
        let parsed = deltalake::logstore::StorageConfig::parse_options(s.delta_options())
            .expect("deltalake accepts the options");
        assert_eq!(parsed.retry.max_retries, 3);
        assert_eq!(parsed.retry.retry_timeout, Duration::from_secs(42));
        // The client keys are left for the Azure factory, which hands them to object_store.
        let azure: Vec<AzureConfigKey> = parsed
            .unknown_properties
            .keys()
            .filter_map(|k| k.parse().ok())
            .collect();
        assert!(azure.contains(&AzureConfigKey::Client(ClientConfigKey::Timeout)));
        assert!(azure.contains(&AzureConfigKey::Client(ClientConfigKey::ConnectTimeout)));
    }

    #[test]
    fn the_azure_builder_takes_the_timeouts() {
        let s = StorageSettings {
            request_timeout: Duration::from_millis(1500),
            ..StorageSettings::default()
        };
        let b = s.apply(MicrosoftAzureBuilder::new());
        assert_eq!(
            b.get_config_value(&AzureConfigKey::Client(ClientConfigKey::Timeout))
                .as_deref(),
            Some("1500ms")
        );
    }
}
