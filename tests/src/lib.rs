//! Shared helpers live in the e2e test binary; this library is intentionally empty.
