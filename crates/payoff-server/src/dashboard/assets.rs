//! The stylesheet and the one script, compiled into the binary so the
//! dashboard needs no files beside it and no network.

use axum::extract::Path;
use axum::http::header;
use axum::response::{IntoResponse, Response};

use crate::problem::{ApiError, ErrorCode};

const STYLE: &str = include_str!("assets/style.css");
const SCRIPT: &str = include_str!("assets/app.js");

pub async fn serve(Path(file): Path<String>) -> Result<Response, ApiError> {
    let (body, media) = match file.as_str() {
        "style.css" => (STYLE, "text/css; charset=utf-8"),
        "app.js" => (SCRIPT, "text/javascript; charset=utf-8"),
        _ => {
            return Err(ApiError::new(
                ErrorCode::NotFound,
                format!("no asset \"{file}\""),
            ))
        }
    };
    Ok((
        [
            (header::CONTENT_TYPE, media),
            (header::CACHE_CONTROL, "public, max-age=300"),
        ],
        body,
    )
        .into_response())
}
