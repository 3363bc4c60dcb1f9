"""Developer tooling (local servers, benchmark); not shipped in the image."""
