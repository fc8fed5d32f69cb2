//! Request paths decoded before routing, as nginx decodes them for APISIX. axum matches routes on
//! the raw path and refuses a parameter that is not UTF-8 once decoded; APISIX serves
//! `/apisix/%61dmin/ssls` as `/apisix/admin/ssls` and reads `%ff` as a byte of the name.

use axum::extract::Request;
use axum::http::uri::{PathAndQuery, Uri};
use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

/// What a decoded segment must keep escaped: all but RFC 3986's `pchar`.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b'!')
    .remove(b'$')
    .remove(b'&')
    .remove(b'\'')
    .remove(b'(')
    .remove(b')')
    .remove(b'*')
    .remove(b'+')
    .remove(b',')
    .remove(b';')
    .remove(b'=')
    .remove(b':')
    .remove(b'@');

/// `request` with every path segment decoded (bytes that are not UTF-8 replaced) and escaped
/// again only where a path needs it, so a `/` or `%` inside a segment stays inside it.
pub fn decoded(mut request: Request) -> Request {
    let uri = request.uri();
    if !uri.path().contains('%') {
        return request;
    }
    let path: Vec<String> = uri
        .path()
        .split('/')
        .map(|segment| {
            let segment = percent_decode_str(segment).decode_utf8_lossy();
            utf8_percent_encode(&segment, SEGMENT).to_string()
        })
        .collect();
    let path = path.join("/");
    let path_and_query = match uri.query() {
        Some(query) => format!("{path}?{query}"),
        None => path,
    };
    let Ok(path_and_query) = PathAndQuery::try_from(path_and_query) else {
        return request;
    };
    let mut parts = uri.clone().into_parts();
    parts.path_and_query = Some(path_and_query);
    if let Ok(uri) = Uri::from_parts(parts) {
        *request.uri_mut() = uri;
    }
    request
}
