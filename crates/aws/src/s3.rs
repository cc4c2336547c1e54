//! Raw documents in S3 under a key prefix, with the content type kept and
//! server-side encryption requested on every write.

use async_trait::async_trait;
use aws_sdk_s3::Client;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::ServerSideEncryption;
use bytes::Bytes;
use rag_core::{DocumentStore, PresignedPut, StoreError, Tenant, UploadSigner};

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

#[async_trait]
impl UploadSigner for S3DocumentStore {
    /// A presigned `PutObject` whose signature covers the length, the type
    /// and the encryption header, so S3 refuses any other body.
    async fn presign_put(
        &self,
        tenant: &Tenant,
        key: &str,
        size: u64,
        content_type: &str,
        valid_for: std::time::Duration,
    ) -> Result<PresignedPut, StoreError> {
        let config = aws_sdk_s3::presigning::PresigningConfig::expires_in(valid_for)
            .map_err(|e| StoreError::permanent(format!("presigning an upload: {e}")))?;
        let length = i64::try_from(size)
            .map_err(|_| StoreError::permanent("an upload's size does not fit S3's".to_string()))?;
        let request = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(self.object_key(tenant, key))
            .content_type(content_type)
            .content_length(length)
            .server_side_encryption(ServerSideEncryption::Aes256)
            .presigned(config)
            .await
            .map_err(|e| classify(e).into_store_error(|| format!("bucket {}", self.bucket)))?;
        Ok(PresignedPut {
            url: request.uri().to_string(),
            headers: request
                .headers()
                .map(|(name, value)| (name.to_ascii_lowercase(), value.to_string()))
                .collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_presigned_upload_binds_its_length_type_and_encryption() {
        let config = aws_sdk_s3::Config::builder()
            .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
            .region(aws_sdk_s3::config::Region::new("eu-west-1"))
            .credentials_provider(aws_sdk_s3::config::Credentials::new(
                "AKIDEXAMPLE",
                "secret",
                None,
                None,
                "test",
            ))
            .build();
        let store = S3DocumentStore::new(Client::from_conf(config), "docs", "uploads/");
        let tenant = Tenant::new("team-a").unwrap();
        let put = store
            .presign_put(
                &tenant,
                "abc/object",
                1234,
                "application/pdf",
                std::time::Duration::from_secs(900),
            )
            .await
            .unwrap();
        assert!(put.url.contains("uploads/team-a/abc/object"), "{}", put.url);
        assert!(put.url.contains("X-Amz-Expires=900"), "{}", put.url);
        let signed = put
            .url
            .split('&')
            .find_map(|p| p.strip_prefix("X-Amz-SignedHeaders="))
            .unwrap();
        for header in [
            "content-length",
            "content-type",
            "x-amz-server-side-encryption",
        ] {
            assert!(signed.contains(header), "{header} is not signed: {signed}");
            assert!(put.headers.contains_key(header), "{:?}", put.headers);
        }
        assert_eq!(put.headers["content-length"], "1234");
        assert_eq!(put.headers["content-type"], "application/pdf");
    }
}
