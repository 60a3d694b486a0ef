//! Blob access tiers, which object_store does not expose: archived raw blobs are found before a run reads them, and `plan --rehydrate` asks Azure to bring them back.
//!
//! This is the one place that uses Azure's official `azure_storage_blob` SDK.
//! It authenticates like the source does (object_store's order): an account
//! key (the SDK has no shared-key auth, so a short-lived read/list/write SAS is
//! signed with it here; the emulator's well-known key likewise), workload
//! identity, a service principal, a SAS, the Azure CLI, managed identity.

use std::sync::Arc;

use azure_core::credentials::{Secret, TokenCredential};
use azure_storage_blob::models::{
    AccessTier, BlobClientSetTierOptions, BlobContainerClientListBlobsOptions, RehydratePriority,
};
use azure_storage_blob::BlobContainerClient;
use base64::Engine;
use futures::TryStreamExt;
use url::Url;

use super::{Blob, Storage};

/// The emulator's account and its published key.
const EMULATOR_ACCOUNT: &str = "devstoreaccount1";
const EMULATOR_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

#[derive(Debug, thiserror::Error)]
pub enum TierError {
    #[error("blob tiers of {location}: {message}")]
    Setup { location: String, message: String },
    #[error("blob tiers of {location}, `{what}`: {message}")]
    Request {
        location: String,
        what: String,
        message: String,
    },
}

impl TierError {
    /// Setting up the client, or a refusal of the credentials, is the configuration (exit 2).
    pub fn is_config(&self) -> bool {
        match self {
            TierError::Setup { .. } => true,
            TierError::Request { message, .. } => {
                crate::storage::fault::Fault::of_text(message).is_config()
            }
        }
    }
}

/// A listed blob's tier, as the storage account reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobTier {
    /// Relative to the source, like [`Blob::path`].
    pub path: String,
    pub bytes: u64,
    /// `Hot`, `Cool`, `Cold`, `Archive` (absent where the account has no tiers).
    pub tier: Option<String>,
    /// `rehydrate-pending-to-hot` and the like, while a rehydration runs.
    pub archive_status: Option<String>,
}

impl BlobTier {
    /// A read of this blob fails until it is rehydrated.
    pub fn is_archived(&self) -> bool {
        self.tier.as_deref() == Some("Archive")
    }
}

/// How fast Azure should rehydrate (Standard: up to 15 h; High: about 1 h, and dearer).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Priority {
    Standard,
    High,
}

/// Tier lookups for one Azure source.
pub struct Tiers {
    client: BlobContainerClient,
    /// The source's folder inside the container (blob names are `root/path`).
    root: String,
    location: String,
}

impl Tiers {
    /// A tier client for `storage`, or `None` for a local source (no tiers).
    pub fn for_source(storage: &Storage) -> Result<Option<Tiers>, TierError> {
        let setup = |message: String| TierError::Setup {
            location: storage.location.clone(),
            message,
        };
        let Some(endpoint) = container_endpoint(&storage.location).map_err(setup)? else {
            return Ok(None);
        };
        let (url, credential) = authenticate(endpoint).map_err(setup)?;
        let client =
            BlobContainerClient::new(url, credential, None).map_err(|e| setup(e.to_string()))?;
        Ok(Some(Tiers {
            client,
            root: storage.root.as_ref().to_string(),
            location: storage.location.clone(),
        }))
    }

    fn blob_name(&self, path: &str) -> String {
        if self.root.is_empty() {
            path.to_string()
        } else {
            format!("{}/{}", self.root, path)
        }
    }

    /// The tiers of `blobs`, listed prefix by prefix (one request per page, not per blob).
    pub async fn of(
        &self,
        prefixes: &[String],
        blobs: &[Blob],
    ) -> Result<Vec<BlobTier>, TierError> {
        let mut found = std::collections::HashMap::new();
        for prefix in prefixes {
            let full = self.blob_name(prefix);
            let request = |e: azure_core::Error| TierError::Request {
                location: self.location.clone(),
                what: full.clone(),
                message: crate::storage::fault::chain(&e),
            };
            let options = BlobContainerClientListBlobsOptions {
                prefix: Some(full.clone()),
                ..Default::default()
            };
            let mut pages = self
                .client
                .list_blobs(Some(options))
                .map_err(request)?
                .into_pages();
            while let Some(page) = pages.try_next().await.map_err(request)? {
                let page = page.into_model().map_err(request)?;
                for item in page.blob_items {
                    let (Some(name), Some(props)) = (item.name, item.properties) else {
                        continue;
                    };
                    found.insert(
                        name,
                        (
                            props.access_tier.map(|t| t.to_string()),
                            props.archive_status.map(|s| s.to_string()),
                        ),
                    );
                }
            }
        }
        Ok(blobs
            .iter()
            .map(|b| {
                let (tier, archive_status) = found
                    .get(&self.blob_name(&b.path))
                    .cloned()
                    .unwrap_or_default();
                BlobTier {
                    path: b.path.clone(),
                    bytes: b.size,
                    tier,
                    archive_status,
                }
            })
            .collect())
    }

    /// Asks Azure to move an archived blob back to Hot (Set Blob Tier with a rehydrate priority).
    pub async fn rehydrate(&self, path: &str, priority: Priority) -> Result<(), TierError> {
        let name = self.blob_name(path);
        let options = BlobClientSetTierOptions {
            rehydrate_priority: Some(match priority {
                Priority::Standard => RehydratePriority::Standard,
                Priority::High => RehydratePriority::High,
            }),
            ..Default::default()
        };
        self.client
            .blob_client(&name)
            .set_tier(AccessTier::Hot, Some(options))
            .await
            .map_err(|e| TierError::Request {
                location: self.location.clone(),
                what: name.clone(),
                message: crate::storage::fault::chain(&e),
            })?;
        Ok(())
    }
}

/// Where the account and container of a source live.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Endpoint {
    /// `https://account.blob.core.windows.net/container` (or the emulator's).
    container_url: Url,
    account: String,
    container: String,
    emulator: bool,
}

fn env(key: &str) -> Option<String> {
    std::env::var(key).ok().filter(|v| !v.is_empty())
}

fn truthy(key: &str) -> bool {
    env(key).is_some_and(|v| matches!(v.to_ascii_lowercase().as_str(), "1" | "true" | "yes"))
}

/// The blob endpoint of a source location; `None` for a local one.
fn container_endpoint(location: &str) -> Result<Option<Endpoint>, String> {
    if !location.contains("://") {
        return Ok(None);
    }
    let url = Url::parse(location).map_err(|e| e.to_string())?;
    let (account, container) = match url.scheme() {
        "file" => return Ok(None),
        "az" | "azure" | "adl" => {
            let container = url.host_str().unwrap_or_default().to_string();
            let account = if truthy("AZURE_STORAGE_USE_EMULATOR") {
                EMULATOR_ACCOUNT.to_string()
            } else {
                env("AZURE_STORAGE_ACCOUNT_NAME")
                    .ok_or("`az://` needs AZURE_STORAGE_ACCOUNT_NAME for the account")?
            };
            (account, container)
        }
        "abfs" | "abfss" => {
            let host = url.host_str().unwrap_or_default();
            let account = host.split('.').next().unwrap_or_default().to_string();
            (account, url.username().to_string())
        }
        "https" | "http" => {
            let host = url.host_str().unwrap_or_default();
            let account = host.split('.').next().unwrap_or_default().to_string();
            let container = url
                .path_segments()
                .and_then(|mut s| s.next())
                .unwrap_or_default()
                .to_string();
            (account, container)
        }
        other => return Err(format!("no blob tiers for `{other}://` locations")),
    };
    if account.is_empty() || container.is_empty() {
        return Err("cannot tell the account and container from the URL".into());
    }
    let emulator = account == EMULATOR_ACCOUNT && truthy("AZURE_STORAGE_USE_EMULATOR");
    let base = if emulator {
        format!(
            "{}/{account}",
            env("AZURITE_BLOB_STORAGE_URL")
                .unwrap_or_else(|| "http://127.0.0.1:10000".into())
                .trim_end_matches('/')
        )
    } else {
        format!("https://{account}.blob.core.windows.net")
    };
    let container_url = Url::parse(&format!("{base}/{container}")).map_err(|e| e.to_string())?;
    Ok(Some(Endpoint {
        container_url,
        account,
        container,
        emulator,
    }))
}

/// The container URL (with a SAS where that is the credential) and the Entra ID credential, if any.
fn authenticate(endpoint: Endpoint) -> Result<(Url, Option<Arc<dyn TokenCredential>>), String> {
    let err = |e: azure_core::Error| e.to_string();
    let key = env("AZURE_STORAGE_ACCOUNT_KEY")
        .or_else(|| env("AZURE_STORAGE_ACCESS_KEY"))
        .or_else(|| env("AZURE_STORAGE_MASTER_KEY"))
        .or_else(|| endpoint.emulator.then(|| EMULATOR_KEY.to_string()));
    let with_sas = |sas: &str| {
        let mut url = endpoint.container_url.clone();
        url.set_query(Some(sas.trim_start_matches('?')));
        url
    };
    if let Some(key) = key {
        let sas = account_sas(&endpoint.account, &key, endpoint.emulator)?;
        return Ok((with_sas(&sas), None));
    }
    let client_id = env("AZURE_CLIENT_ID").or_else(|| env("AZURE_STORAGE_CLIENT_ID"));
    let tenant_id = env("AZURE_TENANT_ID").or_else(|| env("AZURE_STORAGE_TENANT_ID"));
    if env("AZURE_FEDERATED_TOKEN_FILE").is_some() {
        let credential = azure_identity::WorkloadIdentityCredential::new(None).map_err(err)?;
        return Ok((endpoint.container_url, Some(credential)));
    }
    if let (Some(id), Some(tenant), Some(secret)) =
        (&client_id, &tenant_id, env("AZURE_CLIENT_SECRET"))
    {
        let credential = azure_identity::ClientSecretCredential::new(
            tenant,
            id.clone(),
            Secret::new(secret),
            None,
        )
        .map_err(err)?;
        return Ok((endpoint.container_url, Some(credential)));
    }
    if let Some(sas) = env("AZURE_STORAGE_SAS_KEY").or_else(|| env("AZURE_STORAGE_SAS_TOKEN")) {
        return Ok((with_sas(&sas), None));
    }
    if truthy("AZURE_USE_AZURE_CLI") {
        let credential = azure_identity::AzureCliCredential::new(None).map_err(err)?;
        return Ok((endpoint.container_url, Some(credential)));
    }
    let options = azure_identity::ManagedIdentityCredentialOptions {
        user_assigned_id: user_assigned(client_id, env("AZURE_MSI_RESOURCE_ID")),
        ..Default::default()
    };
    let credential = azure_identity::ManagedIdentityCredential::new(Some(options)).map_err(err)?;
    Ok((endpoint.container_url, Some(credential)))
}

/// The user-assigned identity the managed identity credential asks for, as
/// the source's credential (object_store) picks it: by client id
/// (`AZURE_CLIENT_ID`), else by resource id (`AZURE_MSI_RESOURCE_ID`); none,
/// the node's only identity.
fn user_assigned(
    client_id: Option<String>,
    resource_id: Option<String>,
) -> Option<azure_identity::UserAssignedId> {
    client_id
        .map(azure_identity::UserAssignedId::ClientId)
        .or_else(|| resource_id.map(azure_identity::UserAssignedId::ResourceId))
}

/// An account SAS for blobs (list, read, write; containers and objects) valid
/// for one hour, signed with the account key (SAS version 2019-12-12).
fn account_sas(account: &str, key: &str, allow_http: bool) -> Result<String, String> {
    let key = base64::engine::general_purpose::STANDARD
        .decode(key.trim())
        .map_err(|_| "the account key is not base64".to_string())?;
    let now = chrono::Utc::now();
    let fmt = |t: chrono::DateTime<chrono::Utc>| t.format("%Y-%m-%dT%H:%M:%SZ").to_string();
    let (start, expiry) = (
        fmt(now - chrono::Duration::minutes(5)),
        fmt(now + chrono::Duration::hours(1)),
    );
    let (permissions, services, types, version) = ("rlw", "b", "co", "2019-12-12");
    let protocol = if allow_http { "https,http" } else { "https" };
    let to_sign = format!(
        "{account}\n{permissions}\n{services}\n{types}\n{start}\n{expiry}\n\n{protocol}\n{version}\n"
    );
    let signing = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &key);
    let signature = base64::engine::general_purpose::STANDARD
        .encode(ring::hmac::sign(&signing, to_sign.as_bytes()).as_ref());
    Ok(url::form_urlencoded::Serializer::new(String::new())
        .append_pair("sv", version)
        .append_pair("ss", services)
        .append_pair("srt", types)
        .append_pair("sp", permissions)
        .append_pair("st", &start)
        .append_pair("se", &expiry)
        .append_pair("spr", protocol)
        .append_pair("sig", &signature)
        .finish())
}

/// What a run or a backfill says when blobs are archived: which, how many bytes, what to do.
pub fn archived_message(date: &str, archived: &[&BlobTier]) -> String {
    let bytes: u64 = archived.iter().map(|b| b.bytes).sum();
    let rehydrating = archived
        .iter()
        .filter(|b| b.archive_status.is_some())
        .count();
    let first: Vec<&str> = archived.iter().take(5).map(|b| b.path.as_str()).collect();
    format!(
        "{} blob(s) of {date} ({bytes} bytes) are in the Archive tier and cannot be read \
         ({rehydrating} already rehydrating): {}{}. `coldpath plan --date {date} --rehydrate` asks \
         Azure to bring them back (up to 15 h at standard priority, about 1 h at high); run the \
         date again once they are Hot",
        archived.len(),
        first.join(", "),
        if archived.len() > first.len() {
            ", …"
        } else {
            ""
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pool with several identities names the one to use by client id or,
    /// as object_store also reads it, by resource id: the tier check asks for
    /// the same one as the source.
    #[test]
    fn the_tier_check_names_the_identity_the_source_uses() {
        let id = |c: Option<&str>, r: Option<&str>| {
            format!(
                "{:?}",
                user_assigned(c.map(String::from), r.map(String::from))
            )
        };
        let res = "/subscriptions/s/resourceGroups/g/providers/Microsoft.ManagedIdentity/userAssignedIdentities/coldpath";
        assert_eq!(id(None, Some(res)), format!("Some(ResourceId({res:?}))"));
        assert_eq!(
            id(Some("0000-id"), Some(res)),
            "Some(ClientId(\"0000-id\"))"
        );
        assert_eq!(id(None, None), "None");
    }

    #[test]
    fn endpoints_of_each_url_form() {
        let e = container_endpoint("abfss://raw@plant7.dfs.core.windows.net/telemetry")
            .unwrap()
            .unwrap();
        assert_eq!(
            e.container_url.as_str(),
            "https://plant7.blob.core.windows.net/raw"
        );
        let e = container_endpoint("https://plant7.blob.core.windows.net/raw/x/")
            .unwrap()
            .unwrap();
        assert_eq!(
            (e.account.as_str(), e.container.as_str()),
            ("plant7", "raw")
        );
        assert_eq!(container_endpoint("fixtures/raw").unwrap(), None);
        assert_eq!(container_endpoint("file:///tmp/raw").unwrap(), None);
    }

    #[test]
    fn the_account_sas_carries_its_fields_and_refuses_a_bad_key() {
        // Whether the signature is right is for a real service to say: the Azurite tests use it.
        let sas = account_sas(EMULATOR_ACCOUNT, EMULATOR_KEY, false).unwrap();
        let q: std::collections::HashMap<String, String> =
            url::form_urlencoded::parse(sas.as_bytes())
                .into_owned()
                .collect();
        assert_eq!(q["sp"], "rlw");
        assert_eq!(q["spr"], "https");
        assert!(q["se"] > q["st"]);
        assert!(account_sas("a", "not base64!", false).is_err());
    }

    #[test]
    fn the_archived_message_names_blobs_bytes_and_the_way_out() {
        let tiers: Vec<BlobTier> = (0..7)
            .map(|i| BlobTier {
                path: format!("telemetry/2024/03/11/0{i}/a.json"),
                bytes: 100,
                tier: Some("Archive".into()),
                archive_status: (i == 0).then(|| "rehydrate-pending-to-hot".into()),
            })
            .collect();
        let refs: Vec<&BlobTier> = tiers.iter().collect();
        let m = archived_message("2024-03-11", &refs);
        assert!(m.starts_with("7 blob(s) of 2024-03-11 (700 bytes)"), "{m}");
        assert!(m.contains("(1 already rehydrating)"), "{m}");
        assert!(m.contains("telemetry/2024/03/11/00/a.json"), "{m}");
        assert!(!m.contains("/06/"), "only the first five are named: {m}");
        assert!(m.contains("--rehydrate"), "{m}");
    }
}
