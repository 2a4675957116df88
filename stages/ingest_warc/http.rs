//! HTTP/1.x response parsing for WARC `response` payloads: status line, headers, chunked
//! transfer-encoding and `Content-Encoding` (gzip, deflate, br). Pure functions over byte
//! slices; every decompression is capped so a decompression bomb costs at most `cap` bytes.

use std::io::Read;

/// A parsed HTTP response head plus the raw body slice.
#[derive(Debug, Clone, Default)]
pub struct Response<'a> {
    /// Status code, e.g. 200.
    pub status: u16,
    /// Headers in order, names as sent.
    pub headers: Vec<(String, String)>,
    /// The bytes after the header block (still transfer- and content-encoded).
    pub body: &'a [u8],
}

impl Response<'_> {
    /// The first header with this name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    /// Every header with this name (case-insensitive), trimmed, in order.
    pub fn headers_all<'s>(&'s self, name: &'s str) -> impl Iterator<Item = &'s str> + 's {
        self.headers
            .iter()
            .filter(move |(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim())
    }
}

/// Why a payload could not be turned into a body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HttpError {
    /// No `HTTP/x.y NNN` status line.
    BadStatusLine,
    /// The header block never ends.
    UnterminatedHeaders,
    /// Decompressing a Content-Encoding failed.
    ContentEncoding(String),
    /// The decoded body exceeds the cap.
    TooLarge,
}

impl HttpError {
    /// Machine-readable reason.
    pub fn reason(&self) -> &'static str {
        match self {
            HttpError::BadStatusLine => "http_bad_status_line",
            HttpError::UnterminatedHeaders => "http_unterminated_headers",
            HttpError::ContentEncoding(_) => "http_content_encoding",
            HttpError::TooLarge => "too_large",
        }
    }
}

/// Maximum size of the HTTP header block.
pub const MAX_HEAD_BYTES: usize = 256 * 1024;

/// Parse a response: status line and headers (CRLF or bare LF line ends, folded lines
/// joined). The body is what follows the blank line.
pub fn parse_response(block: &[u8]) -> Result<Response<'_>, HttpError> {
    let head_end = find_head_end(block).ok_or(HttpError::UnterminatedHeaders)?;
    let (head, body_start) = head_end;
    let head = &block[..head];
    let mut lines = head
        .split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l));
    let status_line = lines.next().ok_or(HttpError::BadStatusLine)?;
    let status = parse_status_line(status_line).ok_or(HttpError::BadStatusLine)?;
    let mut headers: Vec<(String, String)> = Vec::new();
    for line in lines {
        if line.is_empty() {
            continue;
        }
        if matches!(line[0], b' ' | b'\t') {
            if let Some(last) = headers.last_mut() {
                last.1.push(' ');
                last.1.push_str(String::from_utf8_lossy(line).trim());
            }
            continue;
        }
        if let Some(c) = memchr::memchr(b':', line) {
            let k = String::from_utf8_lossy(&line[..c]).trim().to_string();
            let v = String::from_utf8_lossy(&line[c + 1..]).trim().to_string();
            headers.push((k, v));
        }
    }
    Ok(Response {
        status,
        headers,
        body: &block[body_start..],
    })
}

/// (end of head, start of body), accepting `\r\n\r\n` or `\n\n` (and mixes).
fn find_head_end(block: &[u8]) -> Option<(usize, usize)> {
    let lim = block.len().min(MAX_HEAD_BYTES);
    let mut i = 0;
    while i < lim {
        let nl = i + memchr::memchr(b'\n', &block[i..lim])?;
        // line ending at nl; is the next line empty?
        let mut j = nl + 1;
        if j < block.len() && block[j] == b'\r' {
            j += 1;
        }
        if j < block.len() && block[j] == b'\n' {
            return Some((nl + 1, j + 1));
        }
        if j >= block.len() {
            // Head ends exactly at the end of the block (no body).
            return Some((block.len(), block.len()));
        }
        i = nl + 1;
    }
    None
}

/// `HTTP/1.1 200 OK` → 200. Lenient about the reason phrase and extra spaces.
pub fn parse_status_line(line: &[u8]) -> Option<u16> {
    let s = std::str::from_utf8(line).ok()?.trim();
    let mut parts = s.split_ascii_whitespace();
    let proto = parts.next()?;
    if !proto.to_ascii_uppercase().starts_with("HTTP/") {
        return None;
    }
    let code = parts.next()?;
    if code.len() != 3 {
        return None;
    }
    code.parse().ok()
}

/// Undo chunked transfer-encoding. Returns `None` when the body is not valid chunked data
/// (warcio's `example-wrong-chunks` case: the header says chunked, the body is not); the
/// caller then falls back to the raw body. Output is capped at `cap` bytes (`Err(TooLarge)`).
pub fn dechunk(body: &[u8], cap: usize) -> Option<Result<Vec<u8>, HttpError>> {
    let mut out = Vec::new();
    let mut i = 0;
    loop {
        let nl = memchr::memchr(b'\n', &body[i..])? + i;
        let line = &body[i..nl];
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let size_str = line.split(|&b| b == b';').next().unwrap_or(b"");
        let size_str = std::str::from_utf8(size_str).ok()?.trim();
        if size_str.is_empty() || size_str.len() > 15 {
            return None;
        }
        let size = usize::from_str_radix(size_str, 16).ok()?;
        i = nl + 1;
        if size == 0 {
            return Some(Ok(out));
        }
        if size > body.len() - i {
            // Truncated last chunk: keep what is there (the capture was cut).
            if out.len() + (body.len() - i) > cap {
                return Some(Err(HttpError::TooLarge));
            }
            out.extend_from_slice(&body[i..]);
            return Some(Ok(out));
        }
        if out.len() + size > cap {
            return Some(Err(HttpError::TooLarge));
        }
        out.extend_from_slice(&body[i..i + size]);
        i += size;
        // Chunk data ends with CRLF (be lenient about a bare LF or nothing at the end).
        if body[i..].starts_with(b"\r\n") {
            i += 2;
        } else if body[i..].starts_with(b"\n") {
            i += 1;
        }
        if i >= body.len() {
            return Some(Ok(out));
        }
    }
}

/// Decode a `Content-Encoding` into at most `cap` bytes. `identity`/unknown/empty
/// encodings return the input. Reading stops at `cap + 1` bytes, so a bomb is cut off.
pub fn decode_content(body: &[u8], encoding: &str, cap: usize) -> Result<Vec<u8>, HttpError> {
    let enc = encoding.trim().to_ascii_lowercase();
    let limit = cap as u64 + 1;
    let mut out = Vec::new();
    let res = match enc.as_str() {
        "gzip" | "x-gzip" => flate2::read::MultiGzDecoder::new(body)
            .take(limit)
            .read_to_end(&mut out),
        "deflate" => {
            // "deflate" is meant to be zlib-wrapped, but many servers send raw deflate.
            let r = flate2::read::ZlibDecoder::new(body)
                .take(limit)
                .read_to_end(&mut out);
            if r.is_err() {
                out.clear();
                flate2::read::DeflateDecoder::new(body)
                    .take(limit)
                    .read_to_end(&mut out)
            } else {
                r
            }
        }
        "br" => brotli_decompressor::Decompressor::new(body, 4096)
            .take(limit)
            .read_to_end(&mut out),
        _ => return Ok(body.to_vec()),
    };
    match res {
        Ok(_) if out.len() > cap => Err(HttpError::TooLarge),
        Ok(_) => Ok(out),
        // A capture cut mid-stream still yields useful text: keep what decoded.
        Err(_) if !out.is_empty() => Ok(out),
        Err(e) => Err(HttpError::ContentEncoding(format!("{enc}: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn parses_status_and_headers() {
        let r = parse_response(b"HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=gbk\r\nX-Long: a\r\n  b\r\n\r\n<html>").unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.header("content-type"), Some("text/html; charset=gbk"));
        assert_eq!(r.header("x-long"), Some("a b"));
        assert_eq!(r.body, b"<html>");
        let r = parse_response(b"HTTP/1.0 404 Not Found\n\nnope").unwrap();
        assert_eq!((r.status, r.body), (404, &b"nope"[..]));
        let r = parse_response(b"HTTP/1.1 301\r\nLocation: /x\r\n").unwrap();
        assert_eq!(r.status, 301);
        assert!(r.body.is_empty());
    }

    #[test]
    fn rejects_garbage() {
        assert_eq!(
            parse_response(b"GARBAGE 200\r\n\r\n").unwrap_err(),
            HttpError::BadStatusLine
        );
        assert_eq!(
            parse_response(b"HTTP/1.1 20x OK\r\n\r\n").unwrap_err(),
            HttpError::BadStatusLine
        );
        assert_eq!(
            parse_response(b"").unwrap_err(),
            HttpError::UnterminatedHeaders
        );
    }

    #[test]
    fn dechunks() {
        let body = b"4\r\nWiki\r\n5;ext=1\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n0\r\n\r\n";
        assert_eq!(
            dechunk(body, 1000).unwrap().unwrap(),
            b"Wikipedia in\r\n\r\nchunks."
        );
        // Not chunked at all → None (caller falls back to the raw body).
        assert!(dechunk(b"<html>hello</html>", 1000).is_none());
        // Truncated final chunk keeps the bytes that are there.
        assert_eq!(dechunk(b"a\r\nabc", 1000).unwrap().unwrap(), b"abc");
        // Cap.
        assert_eq!(
            dechunk(b"4\r\nWiki\r\n0\r\n\r\n", 3).unwrap().unwrap_err(),
            HttpError::TooLarge
        );
    }

    #[test]
    fn content_encodings_and_bomb_cap() {
        let text = "中文网页内容".repeat(100);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(text.as_bytes()).unwrap();
        let gz = gz.finish().unwrap();
        assert_eq!(
            decode_content(&gz, "gzip", 1 << 20).unwrap(),
            text.as_bytes()
        );
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        z.write_all(text.as_bytes()).unwrap();
        assert_eq!(
            decode_content(&z.finish().unwrap(), "deflate", 1 << 20).unwrap(),
            text.as_bytes()
        );
        let mut d = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
        d.write_all(text.as_bytes()).unwrap();
        assert_eq!(
            decode_content(&d.finish().unwrap(), "deflate", 1 << 20).unwrap(),
            text.as_bytes()
        );
        // A 10 MB run of zeros compresses to ~10 KB; the cap stops it at 1 KB + 1.
        let mut bomb = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        bomb.write_all(&vec![0u8; 10 << 20]).unwrap();
        assert_eq!(
            decode_content(&bomb.finish().unwrap(), "gzip", 1024).unwrap_err(),
            HttpError::TooLarge
        );
        assert!(matches!(
            decode_content(b"not gzip", "gzip", 1024),
            Err(HttpError::ContentEncoding(_))
        ));
        assert_eq!(
            decode_content(b"plain", "identity", 1024).unwrap(),
            b"plain"
        );
    }

    #[test]
    fn brotli() {
        // "hello" compressed with brotli (quality 11), produced by the reference encoder.
        let br: &[u8] = &[0x0b, 0x02, 0x80, 0x68, 0x65, 0x6c, 0x6c, 0x6f, 0x03];
        assert_eq!(decode_content(br, "br", 1024).unwrap(), b"hello");
    }
}
