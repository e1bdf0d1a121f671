//! Plain HTTP/1.0 exchanges with a test's servers (the coordinator's REST API, a
//! published port): one request, the connection closed by the server after its answer,
//! so the body runs to the end of the stream and is never chunked. Blocking, with a
//! read timeout: tests call it between their awaits or on a blocking thread.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// Longest a test waits for an answer.
const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Sends `METHOD path` to `address` (`host:port`, or a URL starting with `http://`),
/// with the bearer token if any and `body` as JSON if any; returns the status and the
/// body.
pub fn request(
    address: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> std::io::Result<(u16, String)> {
    let address = address.trim_start_matches("http://").trim_end_matches('/');
    let mut stream = TcpStream::connect(address)?;
    stream.set_read_timeout(Some(READ_TIMEOUT))?;
    let mut request = format!("{method} {path} HTTP/1.0\r\nHost: {address}\r\n");
    if let Some(token) = token {
        request.push_str(&format!("Authorization: Bearer {token}\r\n"));
    }
    if let Some(body) = body {
        request.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    request.push_str("\r\n");
    request.push_str(body.unwrap_or(""));
    stream.write_all(request.as_bytes())?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let (head, body) = response
        .split_once("\r\n\r\n")
        .unwrap_or((response.as_str(), ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    Ok((status, body.to_string()))
}
