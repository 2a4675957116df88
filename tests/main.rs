
mod warc;
