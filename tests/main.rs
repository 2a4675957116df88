
mod classifier;
