//! The one way an error becomes a line of text: its message followed by those of its
//! causes.
//!
//! Libraries keep their causes as `#[source]`, so `Display` alone says only the outer
//! layer ("failed to connect"), and the reason ("connection refused") is lost once the
//! error crosses a process boundary as a string or lands in a log field. Every shell
//! that flattens an error (connectors, the shuffle client, the gRPC and REST clients)
//! calls this function, so all of them print the same shape.

/// Returns an error's message followed by those of its causes, joined by `: `, for
/// logs and for failures reported across a process boundary.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("failed to connect")]
    struct Outer {
        #[source]
        source: std::io::Error,
    }

    #[test]
    fn every_cause_follows_the_message() {
        let error = Outer {
            source: std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused"),
        };
        assert_eq!(error_chain(&error), "failed to connect: refused");
    }

    #[test]
    fn an_error_without_a_cause_is_its_message() {
        let error = std::io::Error::other("disk full");
        assert_eq!(error_chain(&error), "disk full");
    }
}
