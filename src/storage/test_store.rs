//! A store for tests of what storage trouble does: an in-memory store whose
//! HEAD requests can be slow (a store retrying them) and whose ranged GETs can
//! fail (an outage), everything else passed through. Tests only.

use std::time::Duration;

use deltalake::logstore::object_store::{
    self, memory::InMemory, path::Path as StorePath, ObjectStore, PutOptions, PutPayload,
};
use futures::stream::BoxStream;

/// See the module's doc.
#[derive(Debug, Default)]
pub struct TroubledStore {
    /// Where the objects are.
    pub inner: InMemory,
    /// How long a HEAD takes; the object is read halfway through.
    pub head_delay: Duration,
    /// Every GET of a range fails, as after every retry of an outage.
    pub ranges_fail: bool,
    /// Every plain GET (not a HEAD, not a range) fails, once set.
    pub gets_fail: std::sync::atomic::AtomicBool,
}

impl std::fmt::Display for TroubledStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TroubledStore")
    }
}

#[async_trait::async_trait]
impl ObjectStore for TroubledStore {
    async fn put_opts(
        &self,
        location: &StorePath,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<object_store::PutResult> {
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &StorePath,
        opts: object_store::PutMultipartOptions,
    ) -> object_store::Result<Box<dyn object_store::MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(
        &self,
        location: &StorePath,
        options: object_store::GetOptions,
    ) -> object_store::Result<object_store::GetResult> {
        let plain = !options.head && options.range.is_none();
        if plain && self.gets_fail.load(std::sync::atomic::Ordering::Relaxed) {
            return Err(object_store::Error::Generic {
                store: "TroubledStore",
                source: "503 Server Busy, after every retry".into(),
            });
        }
        if self.ranges_fail && options.range.is_some() {
            return Err(object_store::Error::Generic {
                store: "TroubledStore",
                source: "503 Server Busy, after every retry".into(),
            });
        }
        if !options.head || self.head_delay.is_zero() {
            return self.inner.get_opts(location, options).await;
        }
        // The object is read halfway through: renewals land before and after.
        tokio::time::sleep(self.head_delay / 2).await;
        let got = self.inner.get_opts(location, options).await;
        tokio::time::sleep(self.head_delay / 2).await;
        got
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<StorePath>>,
    ) -> BoxStream<'static, object_store::Result<StorePath>> {
        self.inner.delete_stream(locations)
    }

    fn list(
        &self,
        prefix: Option<&StorePath>,
    ) -> BoxStream<'static, object_store::Result<object_store::ObjectMeta>> {
        self.inner.list(prefix)
    }

    async fn list_with_delimiter(
        &self,
        prefix: Option<&StorePath>,
    ) -> object_store::Result<object_store::ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(
        &self,
        from: &StorePath,
        to: &StorePath,
        options: object_store::CopyOptions,
    ) -> object_store::Result<()> {
        self.inner.copy_opts(from, to, options).await
    }
}
