//! Typed AWS errors. Every failed call becomes an [`Error`] whose [`ErrorKind`] is decided once,
//! here, from the SDK's error: whether an answer came at all, its HTTP status, and the service's
//! error code (the code of the operation's modelled error variant, or of an unmodelled one such
//! as CloudFormation's `ValidationError`). Retry, refusal and back-off decisions match on the
//! kind; none compares codes or message text.

use aws_sdk_organizations::error::{ProvideErrorMetadata, SdkError};

/// What kind of failure an AWS call ended in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The service asked to slow down (`Throttling`, `ThrottlingException`,
    /// `TooManyRequestsException`, `SlowDown`, `RequestLimitExceeded`).
    Throttled,
    /// What the call names does not exist (`*NotFoundException`, `*NotFound`, `NoSuchKey`,
    /// `NoSuchBucket`, `AWSOrganizationsNotInUseException`, `PolicyNotAttachedException`).
    NotFound,
    /// What the call would create exists already (`AlreadyExistsException`, `Duplicate*`,
    /// `*AlreadyEnabledException`, `AlreadyInOrganizationException`, `BucketAlreadyOwnedByYou`).
    AlreadyExists,
    /// Another change got there first or is under way (`ConcurrentModificationException`,
    /// `PreconditionFailed`, `ConditionalRequestConflict`, `OperationAborted`, HTTP 409/412).
    Conflict,
    /// The caller may not do this (`AccessDenied`, `AccessDeniedException`, HTTP 403).
    AccessDenied,
    /// The request was invalid for the resource's current state (`ValidationError`,
    /// `InvalidParameter*`, `ConstraintViolationException`, HTTP 400 otherwise unclassified).
    /// CloudFormation also answers `ValidationError` for a stack that does not exist.
    Invalid,
    /// The endpoint does not implement the call (`InvalidAction`, `UnknownOperationException`,
    /// `NotImplemented`, HTTP 501).
    Unsupported,
    /// No usable answer (timeout, dropped connection, unreadable response, HTTP 5xx): the
    /// request may have been carried out.
    AnswerLost,
    /// Any other answer: see the code.
    Service,
}

/// A failed AWS call: the operation (`service:Operation`), its [`ErrorKind`], the service's
/// error code when it sent one, and a message that names the call, the code and the service's
/// message (or, without an answer, the chain of causes). Credentials never appear in it.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{operation} failed: {detail}")]
pub struct Error {
    /// `service:Operation`, e.g. `organizations:CreateAccount`.
    pub operation: String,
    /// What kind of failure.
    pub kind: ErrorKind,
    /// The service's error code, e.g. `ConcurrentModificationException`.
    pub code: Option<String>,
    /// HTTP status of the answer, when one came.
    pub status: Option<u16>,
    detail: String,
}

impl Error {
    /// Classifies an SDK error of `operation` (`service:Operation`).
    pub fn from_sdk<E>(operation: &str, e: SdkError<E>) -> Error
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let status = e.raw_response().map(|r| r.status().as_u16());
        let code = e.as_service_error().and_then(|s| s.code()).map(str::to_string);
        let detail = match e.as_service_error() {
            Some(s) if s.code().is_some() => {
                format!("{}: {}", s.code().unwrap_or_default(), s.message().unwrap_or_default())
            }
            _ => {
                // The error's own chain of causes, without the SDK's debug dump.
                let mut msg = e.to_string();
                let mut source = std::error::Error::source(&e);
                while let Some(s) = source {
                    msg.push_str(": ");
                    msg.push_str(&s.to_string());
                    source = s.source();
                }
                if matches!(e, SdkError::DispatchFailure(_) | SdkError::TimeoutError(_)) {
                    msg.push_str(" (is the endpoint reachable? check AWS_ENDPOINT_URL, the network and credentials)");
                }
                msg
            }
        };
        let kind = Error::kind_of_sdk(&e);
        Error { operation: operation.to_string(), kind, code, status, detail }
    }

    /// The kind an SDK error would be classified as, without taking it.
    pub fn kind_of_sdk<E: ProvideErrorMetadata>(e: &SdkError<E>) -> ErrorKind {
        let status = e.raw_response().map(|r| r.status().as_u16());
        let code = e.as_service_error().and_then(|s| s.code());
        classify(matches!(e, SdkError::ServiceError(_)), status, code)
    }

    /// An error of this kind for `operation` with `detail`, for answers the SDK accepted but that
    /// say the call did not do what was asked.
    pub fn new(operation: &str, kind: ErrorKind, detail: impl Into<String>) -> Error {
        Error { operation: operation.to_string(), kind, code: None, status: None, detail: detail.into() }
    }

    /// Whether the failure is of `kind`.
    pub fn is(&self, kind: ErrorKind) -> bool {
        self.kind == kind
    }
}

/// `.or_missing("service:Operation", "what")` on a part of an answer the SDK accepted: an
/// [`ErrorKind::Service`] error that says the answer lacked `what` when it is `None`.
pub trait OrMissing<T> {
    /// The value, or an error naming the operation and what its answer lacked.
    fn or_missing(self, operation: &str, what: &str) -> Result<T, Error>;
}

impl<T> OrMissing<T> for Option<T> {
    fn or_missing(self, operation: &str, what: &str) -> Result<T, Error> {
        self.ok_or_else(|| Error::new(operation, ErrorKind::Service, format!("the answer has no {what}")))
    }
}

/// `.classify("service:Operation")` on the result of an SDK call: its error as an [`Error`].
pub trait Classify<T> {
    /// The result with its error classified ([`Error::from_sdk`]).
    fn classify(self, operation: &str) -> Result<T, Error>;
}

impl<T, E> Classify<T> for Result<T, SdkError<E>>
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    fn classify(self, operation: &str) -> Result<T, Error> {
        self.map_err(|e| Error::from_sdk(operation, e))
    }
}

/// The one table from error codes and HTTP statuses to kinds.
fn classify(answered: bool, status: Option<u16>, code: Option<&str>) -> ErrorKind {
    use ErrorKind::*;
    if !answered {
        return AnswerLost;
    }
    match code {
        Some(c) if throttling(c) => return Throttled,
        Some("InvalidAction" | "UnknownOperationException" | "NotImplemented") => return Unsupported,
        _ => {}
    }
    if status.is_some_and(|s| s >= 500 && s != 501) {
        return AnswerLost;
    }
    let by_code = code.and_then(|c| {
        Some(match c {
            "AccessDenied" | "AccessDeniedException" | "UnauthorizedOperation" => AccessDenied,
            // Someone else's bucket: not ours, and not a conflict to retry.
            "BucketAlreadyExists" => Service,
            "AWSOrganizationsNotInUseException"
            | "NoSuchKey"
            | "NoSuchBucket"
            | "NotFound"
            | "PolicyNotAttachedException" => NotFound,
            _ if c.ends_with("NotFoundException") || c.ends_with("NotFound") => NotFound,
            "AlreadyExistsException" | "AlreadyInOrganizationException" | "BucketAlreadyOwnedByYou" => AlreadyExists,
            _ if c.starts_with("Duplicate") || c.ends_with("AlreadyEnabledException") => AlreadyExists,
            "ConcurrentModificationException"
            | "PreconditionFailed"
            | "ConditionalRequestConflict"
            | "OperationAborted" => Conflict,
            "ValidationError" | "ConstraintViolationException" => Invalid,
            _ if c.starts_with("InvalidParameter") || c.starts_with("InvalidInput") => Invalid,
            _ => return None,
        })
    });
    match (by_code, status) {
        (Some(kind), _) => kind,
        (None, Some(403)) => AccessDenied,
        (None, Some(404)) => NotFound,
        (None, Some(409 | 412)) => Conflict,
        (None, Some(429)) => Throttled,
        (None, Some(501)) => Unsupported,
        _ => Service,
    }
}

fn throttling(code: &str) -> bool {
    matches!(
        code,
        "Throttling" | "ThrottlingException" | "TooManyRequestsException" | "SlowDown" | "RequestLimitExceeded"
    )
}

#[cfg(test)]
mod tests {
    use super::{classify, ErrorKind::*};

    #[test]
    fn codes_and_statuses_map_to_kinds() {
        let cases = [
            (true, Some(400), Some("ThrottlingException"), Throttled),
            (true, Some(400), Some("Throttling"), Throttled),
            (true, Some(400), Some("TooManyRequestsException"), Throttled),
            (true, Some(503), Some("SlowDown"), Throttled),
            (true, Some(400), Some("AccountNotFoundException"), NotFound),
            (true, Some(400), Some("AWSOrganizationsNotInUseException"), NotFound),
            (true, Some(404), Some("NoSuchKey"), NotFound),
            (true, Some(404), None, NotFound),
            (true, Some(400), Some("ChangeSetNotFound"), NotFound),
            (true, Some(400), Some("DuplicatePolicyException"), AlreadyExists),
            (true, Some(400), Some("PolicyTypeAlreadyEnabledException"), AlreadyExists),
            (true, Some(400), Some("AlreadyExistsException"), AlreadyExists),
            (true, Some(409), Some("BucketAlreadyOwnedByYou"), AlreadyExists),
            (true, Some(409), Some("BucketAlreadyExists"), Service),
            (true, Some(400), Some("ConcurrentModificationException"), Conflict),
            (true, Some(412), Some("PreconditionFailed"), Conflict),
            (true, Some(412), None, Conflict),
            (true, Some(403), Some("AccessDenied"), AccessDenied),
            (true, Some(400), Some("AccessDeniedException"), AccessDenied),
            (true, Some(400), Some("ValidationError"), Invalid),
            (true, Some(400), Some("ConstraintViolationException"), Invalid),
            (true, Some(400), Some("InvalidAction"), Unsupported),
            (true, Some(501), None, Unsupported),
            (true, Some(500), Some("InternalFailure"), AnswerLost),
            (false, None, None, AnswerLost),
            (true, Some(400), Some("SomethingElse"), Service),
        ];
        for (answered, status, code, want) in cases {
            assert_eq!(classify(answered, status, code), want, "{status:?} {code:?}");
        }
    }
}
