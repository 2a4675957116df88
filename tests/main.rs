
mod s3;
