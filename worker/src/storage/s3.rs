//! S3 storage (AWS and S3-compatible servers such as garage or MinIO) through `aws-sdk-s3`.
//!
//! The container is `bucket/prefix`: every key of the [`Storage`] trait is stored as the object
//! `prefix/key` in `bucket`. Objects up to [`MULTIPART_PART_SIZE`] go up in one `PutObject`, larger
//! ones as a multipart upload that is aborted when any part fails, so a failed upload leaves no
//! object and no dangling parts, and is never reported as success. S3 makes a completed upload
//! visible whole or not at all, which is the atomicity the trait asks for; a completed upload is
//! durable, so [`Storage::sync`] has nothing to do.
//!
//! The SDK is asynchronous; [`S3Storage`] owns a small tokio runtime and blocks on it, so the
//! engine keeps calling a blocking trait from its own threads. It must not be called from inside
//! another tokio runtime's asynchronous context.
//!
//! Configuration comes from the environment and the worker's configuration, never from flags
//! (credentials are secrets): see [`S3Config::from_env`].

use super::{ObjectInfo, Storage};
use crate::error::{Error, Result};
use crate::timestamp::Timestamp;
use aws_sdk_s3::config::{
    BehaviorVersion, Credentials, Region, RequestChecksumCalculation, ResponseChecksumValidation,
};
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use aws_sdk_s3::Client;
use std::fmt;

/// Objects larger than this go up as a multipart upload in parts of this size (the last part may
/// be smaller). S3 requires parts of at least 5 MiB, except the last.
pub const MULTIPART_PART_SIZE: usize = 16 << 20;

/// How many parts of one multipart upload are in flight at once.
const PART_CONCURRENCY: usize = 4;

/// The region used when neither the configuration nor the AWS environment/profile names one
/// (S3-compatible servers usually accept it; garage's default is `garage`, ours is set to this).
pub const DEFAULT_REGION: &str = "us-east-1";

/// Static credentials that replace the AWS credential chain (environment, profile, instance role).
#[derive(Clone, PartialEq, Eq)]
pub struct S3Credentials {
    /// The access key id (`AKIA...` on AWS, `GK...` on garage).
    pub access_key_id: String,
    /// The secret access key. Never printed: [`fmt::Debug`] redacts it.
    pub secret_access_key: String,
}

impl fmt::Debug for S3Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Credentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .finish()
    }
}

/// Where and how to reach an S3 container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Config {
    /// The bucket.
    pub bucket: String,
    /// The key prefix inside the bucket, without leading or trailing `/` (empty: the bucket's root).
    pub prefix: String,
    /// A custom endpoint URL (`http://127.0.0.1:3900`) for S3-compatible servers; `None` for AWS.
    pub endpoint: Option<String>,
    /// The region; `None` takes the AWS environment/profile's, else [`DEFAULT_REGION`].
    pub region: Option<String>,
    /// Addresses buckets as `endpoint/bucket/key` instead of `bucket.endpoint/key`: what most
    /// S3-compatible servers (garage among them) need.
    pub force_path_style: bool,
    /// Computes and validates checksums only where an operation requires them
    /// (`WhenRequired`), instead of the SDK's default CRC on every request: garage and other
    /// S3-compatible servers reject the SDK's default streaming checksums. Our own segment tags
    /// check the data end to end either way.
    pub checksums_when_required: bool,
    /// Static credentials; `None` uses the standard AWS chain (`AWS_ACCESS_KEY_ID` and
    /// `AWS_SECRET_ACCESS_KEY`, `AWS_PROFILE` and the shared config files, web identity, instance
    /// metadata).
    pub credentials: Option<S3Credentials>,
}

impl S3Config {
    /// A configuration for the container `bucket/prefix` (an `s3://` in front is accepted) with
    /// AWS defaults: no custom endpoint, virtual-hosted addressing, the SDK's checksums, and the
    /// AWS credential chain.
    pub fn new(container: &str) -> Result<Self> {
        let (bucket, prefix) = parse_container(container)?;
        Ok(S3Config {
            bucket,
            prefix,
            endpoint: None,
            region: None,
            force_path_style: false,
            checksums_when_required: false,
            credentials: None,
        })
    }

    /// The configuration for the container `bucket/prefix` from the process environment:
    ///
    /// - `FREEZER_S3_ENDPOINT`: custom endpoint URL (S3-compatible servers); unset means AWS.
    /// - `AWS_REGION` (else `AWS_DEFAULT_REGION`, else the AWS profile's region, else
    ///   [`DEFAULT_REGION`]).
    /// - `FREEZER_S3_FORCE_PATH_STYLE`: `true`/`false`; defaults to `true` when an endpoint is set.
    /// - `FREEZER_S3_CHECKSUMS`: `when_required` or `when_supported`; defaults to `when_required`
    ///   when an endpoint is set, else to the SDK's default (which honours
    ///   `AWS_REQUEST_CHECKSUM_CALCULATION`).
    /// - Credentials: the standard AWS chain (`AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`,
    ///   `AWS_PROFILE`, ...), read when the client is built.
    pub fn from_env(container: &str) -> Result<Self> {
        Self::from_lookup(container, |name| std::env::var(name).ok())
    }

    /// [`S3Config::from_env`] with the variables read through `var` (for the worker's
    /// configuration layering and for tests).
    pub fn from_lookup(container: &str, var: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let var = |name: &str| var(name).filter(|v| !v.trim().is_empty());
        let mut config = Self::new(container)?;
        config.endpoint = var("FREEZER_S3_ENDPOINT").map(|e| e.trim().to_string());
        config.region = var("AWS_REGION").or_else(|| var("AWS_DEFAULT_REGION"));
        let custom = config.endpoint.is_some();
        config.force_path_style = match var("FREEZER_S3_FORCE_PATH_STYLE") {
            None => custom,
            Some(v) => parse_bool(&v).ok_or_else(|| {
                Error::usage(format!(
                    "FREEZER_S3_FORCE_PATH_STYLE={v:?}: expected true or false"
                ))
            })?,
        };
        config.checksums_when_required = match var("FREEZER_S3_CHECKSUMS").as_deref() {
            None => custom,
            Some("when_required") => true,
            Some("when_supported") => false,
            Some(v) => {
                return Err(Error::usage(format!(
                    "FREEZER_S3_CHECKSUMS={v:?}: expected when_required or when_supported"
                )))
            }
        };
        Ok(config)
    }
}

fn parse_bool(v: &str) -> Option<bool> {
    match v.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Some(true),
        "0" | "false" | "no" | "off" => Some(false),
        _ => None,
    }
}

/// Splits `bucket/prefix` (optionally `s3://bucket/prefix`) into bucket and prefix.
fn parse_container(container: &str) -> Result<(String, String)> {
    let rest = container.strip_prefix("s3://").unwrap_or(container);
    let rest = rest.trim_start_matches('/');
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    if bucket.is_empty() {
        return Err(Error::usage(format!(
            "invalid S3 container {container:?}: expected bucket/prefix"
        )));
    }
    Ok((bucket.to_string(), prefix.trim_matches('/').to_string()))
}

/// A container in an S3 bucket: objects are `prefix/key`.
pub struct S3Storage {
    client: Client,
    runtime: tokio::runtime::Runtime,
    bucket: String,
    /// The prefix with a trailing `/`, or empty.
    prefix: String,
    /// Where requests go, for messages.
    endpoint: String,
}

impl fmt::Debug for S3Storage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Storage")
            .field("bucket", &self.bucket)
            .field("prefix", &self.prefix)
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

impl S3Storage {
    /// Reads a GetObject response's body to the end.
    async fn collect_body(
        &self,
        key: &str,
        out: aws_sdk_s3::operation::get_object::GetObjectOutput,
    ) -> Result<aws_sdk_s3::primitives::AggregatedBytes> {
        out.body.collect().await.map_err(|e| {
            Error::failure(format!(
                "downloading {}: {}",
                self.describe(key),
                DisplayErrorContext(&e)
            ))
        })
    }

    /// Builds a client for `config`. Makes no request: a missing bucket or bad credentials show
    /// up at the first operation.
    pub fn new(config: S3Config) -> Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("freezer-s3")
            .enable_all()
            .build()
            .map_err(|e| Error::failure(format!("cannot start the S3 client's runtime: {e}")))?;
        let mut loader = aws_config::defaults(BehaviorVersion::latest());
        if let Some(region) = &config.region {
            loader = loader.region(Region::new(region.clone()));
        }
        let sdk_config = runtime.block_on(loader.load());
        let mut builder = aws_sdk_s3::config::Builder::from(&sdk_config)
            .force_path_style(config.force_path_style);
        if sdk_config.region().is_none() {
            builder = builder.region(Region::from_static(DEFAULT_REGION));
        }
        if let Some(endpoint) = &config.endpoint {
            builder = builder.endpoint_url(endpoint.clone());
        }
        if config.checksums_when_required {
            builder = builder
                .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
                .response_checksum_validation(ResponseChecksumValidation::WhenRequired);
        }
        if let Some(c) = &config.credentials {
            builder = builder.credentials_provider(Credentials::new(
                c.access_key_id.clone(),
                c.secret_access_key.clone(),
                None,
                None,
                "freezer-config",
            ));
        }
        let prefix = if config.prefix.is_empty() {
            String::new()
        } else {
            format!("{}/", config.prefix.trim_matches('/'))
        };
        Ok(S3Storage {
            client: Client::from_conf(builder.build()),
            runtime,
            bucket: config.bucket,
            prefix,
            endpoint: config.endpoint.unwrap_or_else(|| "AWS S3".to_string()),
        })
    }

    /// The bucket.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// The object name of `key` inside the bucket.
    fn object(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    /// Turns an SDK error of operation `op` on `key` (`None`: the container) into an engine
    /// error: a missing object is `NotFound`; a missing bucket and denied access are failures
    /// that name the bucket and what to check; anything else names the object and the cause.
    fn error<E>(&self, op: &str, key: Option<&str>, err: SdkError<E, HttpResponse>) -> Error
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let status = err.raw_response().map(|r| r.status().as_u16());
        let code = err.code().unwrap_or_default().to_string();
        let what = match key {
            Some(k) => self.describe(k),
            None => format!("s3://{}/{}", self.bucket, self.prefix),
        };
        let detail = match (err.code(), err.message()) {
            (Some(c), Some(m)) => format!("{c}: {m}"),
            (Some(c), None) => c.to_string(),
            _ => DisplayErrorContext(&err).to_string(),
        };
        if code == "NoSuchBucket" || (key.is_none() && status == Some(404)) {
            // The container itself is missing: NotFound (exit 10) when checking it; on an
            // object operation a plain failure, since NotFound there means "this object".
            let error = if key.is_none() {
                Error::not_found
            } else {
                Error::failure
            };
            return error(format!(
                "bucket {:?} does not exist on {}",
                self.bucket, self.endpoint
            ))
            .with_guidance("create the bucket, or fix the container");
        }
        if status == Some(403)
            || matches!(
                code.as_str(),
                "AccessDenied" | "InvalidAccessKeyId" | "SignatureDoesNotMatch" | "Forbidden"
            )
        {
            return Error::failure(format!(
                "access denied to bucket {:?} on {} ({op} {what}: {detail})",
                self.bucket, self.endpoint
            ))
            .with_guidance(
                "check the credentials (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or the AWS \
                 profile) and the bucket's permissions",
            );
        }
        if code == "NoSuchKey" || code == "NotFound" || status == Some(404) {
            return Error::not_found(format!("{what} is missing"));
        }
        match &err {
            SdkError::DispatchFailure(_)
            | SdkError::TimeoutError(_)
            | SdkError::ResponseError(_) => Error::transient(format!(
                "{op} {what}: cannot reach S3 endpoint {}: {}",
                self.endpoint,
                error_chain(&err)
            )),
            _ => {
                let message = format!(
                    "{op} {what} failed: {detail}{}",
                    status.map(|s| format!(" (HTTP {s})")).unwrap_or_default()
                );
                let overloaded = matches!(
                    code.as_str(),
                    "SlowDown" | "RequestTimeout" | "InternalError" | "ServiceUnavailable"
                );
                if overloaded || status.is_some_and(|s| s >= 500 || s == 429) {
                    Error::transient(message)
                } else {
                    Error::failure(message)
                }
            }
        }
    }

    async fn put_multipart(&self, object: &str, key: &str, data: &[u8]) -> Result<()> {
        let created = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(object)
            .send()
            .await
            .map_err(|e| self.error("starting multipart upload of", Some(key), e))?;
        let Some(upload_id) = created.upload_id().map(str::to_string) else {
            return Err(Error::failure(format!(
                "multipart upload of {}: the server returned no upload id",
                self.describe(key)
            )));
        };
        match self.upload_parts(object, key, &upload_id, data).await {
            Ok(()) => Ok(()),
            Err(e) => {
                let abort = self
                    .client
                    .abort_multipart_upload()
                    .bucket(&self.bucket)
                    .key(object)
                    .upload_id(&upload_id)
                    .send()
                    .await;
                match abort {
                    Ok(_) => Err(e),
                    Err(a) => Err(Error::new(
                        e.kind,
                        format!(
                            "{} (aborting upload {upload_id} also failed: {}; a bucket lifecycle \
                             rule for incomplete multipart uploads removes its parts)",
                            e.message,
                            self.error("aborting multipart upload of", Some(key), a)
                        ),
                    )),
                }
            }
        }
    }

    async fn upload_parts(
        &self,
        object: &str,
        key: &str,
        upload_id: &str,
        data: &[u8],
    ) -> Result<()> {
        type PartResult = (
            i32,
            std::result::Result<
                aws_sdk_s3::operation::upload_part::UploadPartOutput,
                SdkError<aws_sdk_s3::operation::upload_part::UploadPartError, HttpResponse>,
            >,
        );
        let finish = |joined: std::result::Result<PartResult, tokio::task::JoinError>| match joined
        {
            Ok((number, Ok(out))) => Ok(CompletedPart::builder()
                .part_number(number)
                .set_e_tag(out.e_tag().map(str::to_string))
                .build()),
            Ok((number, Err(e))) => {
                Err(self.error(&format!("uploading part {number} of"), Some(key), e))
            }
            Err(e) => Err(Error::failure(format!(
                "uploading a part of {}: {e}",
                self.describe(key)
            ))),
        };
        // Dropping the JoinSet on an early return aborts the parts still in flight.
        let mut tasks = tokio::task::JoinSet::new();
        let mut parts = Vec::new();
        for (i, chunk) in data.chunks(MULTIPART_PART_SIZE).enumerate() {
            if tasks.len() >= PART_CONCURRENCY {
                if let Some(joined) = tasks.join_next().await {
                    parts.push(finish(joined)?);
                }
            }
            let number = i as i32 + 1;
            let request = self
                .client
                .upload_part()
                .bucket(&self.bucket)
                .key(object)
                .upload_id(upload_id)
                .part_number(number)
                .body(ByteStream::from(chunk.to_vec()));
            tasks.spawn(async move { (number, request.send().await) });
        }
        while let Some(joined) = tasks.join_next().await {
            parts.push(finish(joined)?);
        }
        parts.sort_by_key(|p| p.part_number());
        self.client
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(object)
            .upload_id(upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            )
            .send()
            .await
            .map_err(|e| self.error("completing multipart upload of", Some(key), e))?;
        Ok(())
    }
}

type HttpResponse = aws_sdk_s3::config::http::HttpResponse;

/// An error and its sources, `: `-separated, without the SDK's debug dump.
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.ends_with(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        source = s.source();
    }
    text
}

impl Storage for S3Storage {
    fn put(&self, key: &str, data: &[u8]) -> Result<()> {
        let object = self.object(key);
        self.runtime.block_on(async {
            if data.len() > MULTIPART_PART_SIZE {
                return self.put_multipart(&object, key, data).await;
            }
            self.client
                .put_object()
                .bucket(&self.bucket)
                .key(&object)
                .body(ByteStream::from(data.to_vec()))
                .send()
                .await
                .map_err(|e| self.error("uploading", Some(key), e))?;
            Ok(())
        })
    }

    fn sync(&self, _keys: &[String]) -> Result<()> {
        // A completed PutObject or CompleteMultipartUpload is durable.
        Ok(())
    }

    fn get(&self, key: &str) -> Result<Vec<u8>> {
        let object = self.object(key);
        self.runtime.block_on(async {
            let out = self
                .client
                .get_object()
                .bucket(&self.bucket)
                .key(&object)
                .send()
                .await
                .map_err(|e| self.error("downloading", Some(key), e))?;
            let body = self.collect_body(key, out).await?;
            Ok(body.to_vec())
        })
    }

    fn get_range(&self, key: &str, offset: u64, len: u64) -> Result<Vec<u8>> {
        if len == 0 {
            return Ok(Vec::new());
        }
        let object = self.object(key);
        let last = offset.saturating_add(len - 1);
        self.runtime.block_on(async {
            let out = match self
                .client
                .get_object()
                .bucket(&self.bucket)
                .key(&object)
                .range(format!("bytes={offset}-{last}"))
                .send()
                .await
            {
                Ok(out) => out,
                // A range that starts at or past the end: nothing to read, as with a file.
                Err(e)
                    if e.code() == Some("InvalidRange")
                        || e.raw_response().map(|r| r.status().as_u16()) == Some(416) =>
                {
                    return Ok(Vec::new())
                }
                Err(e) => return Err(self.error("downloading", Some(key), e)),
            };
            let body = self.collect_body(key, out).await?;
            let mut bytes = body.to_vec();
            // A server that ignores Range sends the whole object.
            if bytes.len() as u64 > len {
                let start = (offset as usize).min(bytes.len());
                let end = start.saturating_add(len as usize).min(bytes.len());
                bytes = bytes[start..end].to_vec();
            }
            Ok(bytes)
        })
    }

    fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>> {
        let full = self.object(prefix);
        self.runtime.block_on(async {
            let mut out = Vec::new();
            let mut token: Option<String> = None;
            loop {
                let page = self
                    .client
                    .list_objects_v2()
                    .bucket(&self.bucket)
                    .prefix(&full)
                    .set_continuation_token(token.take())
                    .send()
                    .await
                    .map_err(|e| self.error("listing", Some(prefix), e))?;
                for o in page.contents() {
                    let Some(key) = o.key().and_then(|k| k.strip_prefix(&self.prefix)) else {
                        continue;
                    };
                    out.push(ObjectInfo {
                        key: key.to_string(),
                        size: o.size().unwrap_or(0).max(0) as u64,
                        modified: o.last_modified().map(|t| Timestamp {
                            micros: t.secs() * 1_000_000 + i64::from(t.subsec_nanos() / 1000),
                        }),
                    });
                }
                match page.next_continuation_token() {
                    Some(t) if page.is_truncated() == Some(true) => token = Some(t.to_string()),
                    _ => break,
                }
            }
            out.sort_by(|a, b| a.key.cmp(&b.key));
            Ok(out)
        })
    }

    fn delete(&self, key: &str) -> Result<()> {
        let object = self.object(key);
        self.runtime.block_on(async {
            match self
                .client
                .delete_object()
                .bucket(&self.bucket)
                .key(&object)
                .send()
                .await
            {
                Ok(_) => Ok(()),
                Err(e) => match self.error("deleting", Some(key), e) {
                    e if e.kind == crate::error::ErrorKind::NotFound => Ok(()),
                    e => Err(e),
                },
            }
        })
    }

    fn describe(&self, key: &str) -> String {
        format!("s3://{}/{}{key}", self.bucket, self.prefix)
    }

    fn prepare(&self) -> Result<()> {
        self.check_container()
    }

    fn check_container(&self) -> Result<()> {
        self.runtime.block_on(async {
            self.client
                .head_bucket()
                .bucket(&self.bucket)
                .send()
                .await
                .map(drop)
                .map_err(|e| self.error("checking", None, e))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn lookup(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| map.get(name).cloned()
    }

    #[test]
    fn container_parsing() {
        let c = S3Config::new("bucket/a/b/").unwrap();
        assert_eq!((c.bucket.as_str(), c.prefix.as_str()), ("bucket", "a/b"));
        let c = S3Config::new("s3://bucket").unwrap();
        assert_eq!((c.bucket.as_str(), c.prefix.as_str()), ("bucket", ""));
        assert!(S3Config::new("").is_err());
    }

    #[test]
    fn environment_defaults() {
        let aws = S3Config::from_lookup("b/p", lookup(&[])).unwrap();
        assert_eq!(aws.endpoint, None);
        assert!(!aws.force_path_style);
        assert!(!aws.checksums_when_required);
        let garage = S3Config::from_lookup(
            "b/p",
            lookup(&[
                ("FREEZER_S3_ENDPOINT", "http://127.0.0.1:3900"),
                ("AWS_REGION", "us-east-1"),
            ]),
        )
        .unwrap();
        assert_eq!(garage.endpoint.as_deref(), Some("http://127.0.0.1:3900"));
        assert_eq!(garage.region.as_deref(), Some("us-east-1"));
        assert!(garage.force_path_style);
        assert!(garage.checksums_when_required);
        let explicit = S3Config::from_lookup(
            "b",
            lookup(&[
                ("FREEZER_S3_ENDPOINT", "http://x"),
                ("FREEZER_S3_FORCE_PATH_STYLE", "false"),
                ("FREEZER_S3_CHECKSUMS", "when_supported"),
            ]),
        )
        .unwrap();
        assert!(!explicit.force_path_style);
        assert!(!explicit.checksums_when_required);
        assert!(S3Config::from_lookup("b", lookup(&[("FREEZER_S3_CHECKSUMS", "always")])).is_err());
    }

    #[test]
    fn secrets_are_not_printed() {
        let mut c = S3Config::new("b").unwrap();
        c.credentials = Some(S3Credentials {
            access_key_id: "GKid".into(),
            secret_access_key: "topsecret".into(),
        });
        assert!(!format!("{c:?}").contains("topsecret"));
    }
}
