//! Errors of the AWS source. Each names the call (IMDS path or EC2 operation) that
//! failed, because that is what an operator needs to fix an IAM policy, an endpoint or
//! a network path.

/// A failure of discovery or sourcing; nothing derived from the failed attempt is used.
#[derive(Debug, thiserror::Error)]
pub enum AwsError {
    /// The source could not be set up (runtime, endpoint syntax, HTTP client).
    #[error("AWS source setup: {0}")]
    Setup(String),
    /// An IMDS read failed (after the client's own retries).
    #[error("IMDS GET {path} failed: {message}")]
    Imds {
        /// The metadata path, e.g. `/latest/meta-data/instance-id`.
        path: String,
        /// What went wrong.
        message: String,
    },
    /// IMDS answered something that cannot be used.
    #[error("IMDS {path}: {message}")]
    ImdsData {
        /// The metadata path.
        path: String,
        /// What is wrong with its content.
        message: String,
    },
    /// An EC2 API call failed (after the SDK's retries), e.g. `UnauthorizedOperation`.
    #[error("EC2 {operation} failed: {message}")]
    Api {
        /// The operation, e.g. `DescribeSecurityGroupRules`.
        operation: &'static str,
        /// The error code and message AWS gave, or the transport problem.
        message: String,
    },
    /// The EC2 API answered something inconsistent (a missing id, …).
    #[error("EC2 {operation}: {message}")]
    ApiData {
        /// The operation.
        operation: &'static str,
        /// What is wrong.
        message: String,
    },
}

impl AwsError {
    /// Short kind for metrics (`sgmirror_source_errors_total{kind}`).
    pub fn kind(&self) -> &'static str {
        match self {
            AwsError::Setup(_) => "setup",
            AwsError::Imds { .. } | AwsError::ImdsData { .. } => "imds",
            AwsError::Api { .. } | AwsError::ApiData { .. } => "api",
        }
    }
}

/// `Code: message` of an SDK error, with the transport cause when there is no service
/// error (timeouts, connection refused), so logs say more than "service error".
pub(crate) fn describe_sdk_error<E, R>(err: &aws_sdk_ec2::error::SdkError<E, R>) -> String
where
    E: aws_sdk_ec2::error::ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    use aws_sdk_ec2::error::SdkError;
    match err {
        SdkError::ServiceError(ctx) => {
            let e = ctx.err();
            match (e.code(), e.message()) {
                (Some(code), Some(msg)) => format!("{code}: {msg}"),
                (Some(code), None) => code.to_owned(),
                _ => format!("{e}"),
            }
        }
        other => error_chain(other),
    }
}

/// An error and its sources, `: `-separated: transport errors keep their cause
/// (connection refused, timed out) several sources down.
pub(crate) fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
