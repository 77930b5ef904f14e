//! Inspection and extraction of images.
