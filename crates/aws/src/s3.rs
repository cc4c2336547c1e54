//! Raw documents in S3 under a key prefix, with the content type kept and
//! server-side encryption requested on every write.

use async_trait::async_trait;
use aws_sdk_s3::Client;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::ServerSideEncryption;
use bytes::Bytes;
use rag_core::{DocumentStore, StoreError, Tenant};

use crate::sdk_error::classify;

pub struct S3DocumentStore {
    client: Client,
    bucket: String,
    prefix: String,
}

impl S3DocumentStore {
    /// `prefix` is prepended to every key; a trailing `/` is added when
    /// missing so keys never run into the prefix's last segment.
    pub fn new(client: Client, bucket: impl Into<String>, prefix: &str) -> Self {
        let prefix = prefix.trim_matches('/');
        S3DocumentStore {
            client,
            bucket: bucket.into(),
            prefix: if prefix.is_empty() {
                String::new()
            } else {
                format!("{prefix}/")
            },
        }
    }

    /// `<prefix><tenant>/<key>`: the tenant is a plain path segment, so
    /// no key of one tenant names an object of another.
    fn object_key(&self, tenant: &Tenant, key: &str) -> String {
        format!("{}{}/{}", self.prefix, tenant, key)
    }
}

#[async_trait]
impl DocumentStore for S3DocumentStore {
    async fn put(
        &self,
        tenant: &Tenant,
        key: &str,
        bytes: Bytes,
        content_type: &str,
    ) -> Result<(), StoreError> {
        let object_key = self.object_key(tenant, key);
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(&object_key)
            .content_type(content_type)
            .server_side_encryption(ServerSideEncryption::Aes256)
            .body(ByteStream::from(bytes))
            .send()
            .await
            .map_err(|e| classify(e).into_store_error(|| format!("bucket {}", self.bucket)))?;
        Ok(())
    }

    async fn get(&self, tenant: &Tenant, key: &str) -> Result<Bytes, StoreError> {
        let object_key = self.object_key(tenant, key);
        let output = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(&object_key)
            .send()
            .await
            .map_err(|e| classify(e).into_store_error(|| format!("object {object_key}")))?;
        let data = output
            .body
            .collect()
            .await
            .map_err(|e| StoreError::Transient(Box::new(e)))?;
        Ok(data.into_bytes())
    }

    async fn delete(&self, tenant: &Tenant, key: &str) -> Result<(), StoreError> {
        let object_key = self.object_key(tenant, key);
        match self
            .client
            .delete_object()
            .bucket(&self.bucket)
            .key(&object_key)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) => match classify(e).into_store_error(|| object_key.clone()) {
                StoreError::NotFound { .. } => Ok(()),
                other => Err(other),
            },
        }
    }

    async fn exists(&self, tenant: &Tenant, key: &str) -> Result<bool, StoreError> {
        let object_key = self.object_key(tenant, key);
        match self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(&object_key)
            .send()
            .await
        {
            Ok(_) => Ok(true),
            Err(e) => match classify(e).into_store_error(|| object_key.clone()) {
                StoreError::NotFound { .. } => Ok(false),
                other => Err(other),
            },
        }
    }

    fn backend_name(&self) -> &'static str {
        "s3"
    }
}
