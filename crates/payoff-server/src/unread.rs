//! A request body the handler left unread is read to its end, within a
//! bound, before the answer goes out.
//!
//! Why: hyper closes a connection whose request body was not read, and a
//! socket closed with unread bytes in its buffer makes the kernel send a
//! reset. A client still writing its upload then fails with "broken pipe"
//! or "connection reset", and the reset can destroy the answer before the
//! client reads it: a document over the upload limit surfaced as a network
//! error instead of 413 naming the limit (seen in CI). Reading the rest
//! first lets every client read the refusal, as nginx does when it
//! discards a request body. Bodies longer than [`BYTES_MAX`], or slower
//! than [`TIME_MAX`], are left to the reset: a refusal must not become a
//! way to hold the server.
//!
//! A client that asked `Expect: 100-continue` sends its body only once the
//! handler starts reading it (hyper says "continue" then). If the handler
//! answered without reading (a bad key, a missing permission), the body is
//! not asked for: reading it here would solicit an upload only to discard
//! it, and the client, told nothing, sends nothing and reads the answer.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::Request;
use axum::http::header;
use axum::middleware::Next;
use axum::response::Response;
use http_body::{Frame, SizeHint};
use tokio::sync::oneshot;

/// The most of an unread body read before answering.
pub const BYTES_MAX: u64 = 64 << 20;
/// The longest an answer waits for the rest of its request.
pub const TIME_MAX: Duration = Duration::from_secs(10);

/// The middleware: hands the handler a body that comes back here if it is
/// dropped unread, and reads what is left before answering.
pub(crate) async fn read_before_answering(request: Request, next: Next) -> Response {
    if !may_have_body(&request) {
        return next.run(request).await;
    }
    let waits_to_continue = request
        .headers()
        .get(header::EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    let (back, mut returned) = oneshot::channel();
    let request = request.map(|inner| {
        Body::new(Returning {
            inner: Some(inner),
            back: Some(back),
            unasked: waits_to_continue,
        })
    });
    let response = next.run(request).await;
    // The handler is done; its body came back if it was dropped unread. A
    // body still held (by a task the handler started) is not waited for.
    if let Ok(rest) = returned.try_recv() {
        // Nothing to gain from reading past the bound: the reset comes anyway.
        if rest.size_hint().lower() <= BYTES_MAX {
            let _ = tokio::time::timeout(TIME_MAX, read_to_end(rest)).await;
        }
    }
    response
}

/// Whether the request says it carries a body (a length above zero, or
/// chunks): most requests do not, and cost nothing here.
fn may_have_body(request: &Request) -> bool {
    let headers = request.headers();
    headers.contains_key(header::TRANSFER_ENCODING)
        || headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim() != "0")
}

/// Reads and drops frames until the end, an error or [`BYTES_MAX`].
async fn read_to_end(mut body: Body) {
    let mut read = 0u64;
    while let Some(frame) = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await {
        match frame {
            Ok(frame) => {
                read += frame.data_ref().map_or(0, |d| d.len() as u64);
                if read > BYTES_MAX {
                    return;
                }
            }
            Err(_) => return,
        }
    }
}

/// The request body as the handler sees it; sent back on drop unless read
/// to its end.
struct Returning {
    inner: Option<Body>,
    back: Option<oneshot::Sender<Body>>,
    /// The client waits for "100 Continue" and the handler has not read:
    /// nothing of the body is on its way.
    unasked: bool,
}

impl HttpBody for Returning {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        self.unasked = false;
        match self.inner.as_mut() {
            Some(inner) => Pin::new(inner).poll_frame(cx),
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(HttpBody::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.inner
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), HttpBody::size_hint)
    }
}

impl Drop for Returning {
    fn drop(&mut self) {
        if let (Some(inner), Some(back)) = (self.inner.take(), self.back.take()) {
            if !inner.is_end_stream() && !self.unasked {
                // The middleware may have stopped listening; then nobody reads.
                let _ = back.send(inner);
            }
        }
    }
}
