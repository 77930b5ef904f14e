//! Creation of ExtensionImages.
