//! The object-store half of [`crate::storage`] when sluice is built without the `cloud`
//! feature: every remote URL is refused with a message saying how to get support.

use std::io::Read;

use crate::error::{Error, Result};

fn refused(path: &str) -> Error {
    Error::msg(format!(
        "{path}: object storage is not built into this sluice (build with `--features cloud`, \
         which the default build has)"
    ))
}

pub fn open(path: &str) -> Result<Box<dyn Read + Send>> {
    Err(refused(path))
}
pub fn read_all(path: &str) -> Result<Vec<u8>> {
    Err(refused(path))
}
pub fn exists(path: &str) -> Result<bool> {
    Err(refused(path))
}
pub fn size(path: &str) -> Result<u64> {
    Err(refused(path))
}
pub fn delete(path: &str) -> Result<()> {
    Err(refused(path))
}
pub fn expand(pattern: &str, _has_glob: bool) -> Result<Vec<String>> {
    Err(refused(pattern))
}

/// No remote writer can exist without the feature.
pub enum RemoteWriter {}

impl RemoteWriter {
    pub fn new(path: &str) -> Result<Self> {
        Err(refused(path))
    }
    pub fn write(&mut self, _data: &[u8]) -> std::io::Result<()> {
        match *self {}
    }
    pub fn commit(&mut self) -> Result<()> {
        match *self {}
    }
}
